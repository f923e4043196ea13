# samiam ML backend: one image for the web tier (default command) and the GPU workers
# (`samiam worker`, see docker-compose.yml). SAM checkpoints are read from the /models volume.
#
# Base: plain Python, no torch of its own. torch's Linux wheels from the package index carry their
# CUDA libraries (the nvidia-* packages pinned in requirements.txt), so the GPU only needs the host's
# NVIDIA driver, and the image runs exactly the torch that CI tests (.ci/run) instead of whatever a
# pytorch/pytorch or nvidia/cuda base would bring.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SAMIAM_MODEL_DIR=/models \
    PYTHONPATH=/app

WORKDIR /app
# The pinned set first (regenerate with tools/lock_requirements.sh), so that code changes reuse this layer.
COPY requirements.txt /app/requirements.txt
RUN pip install -r requirements.txt
COPY . /app
RUN pip install --no-deps . \
    && useradd --create-home --uid 10001 samiam \
    && mkdir -p /models \
    && chown samiam /models

USER samiam
VOLUME ["/models"]
EXPOSE 9090

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "samiam.service.healthcheck"]

# gthread: each /predict waits (up to PREDICT_DEADLINE_S) in a thread, not a process.
# Override flags with GUNICORN_CMD_ARGS, e.g. "--workers 4 --threads 32".
CMD ["gunicorn", "--bind", "0.0.0.0:9090", "--worker-class", "gthread", "--workers", "2", \
     "--threads", "16", "--timeout", "120", "--access-logfile", "-", "_wsgi:app"]
