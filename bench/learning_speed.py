"""How fast the service answers Label Studio's annotation webhooks, and how long learning takes.

Usage::

    python bench/learning_speed.py                # 20 annotations of 1024 px images, both modes
    python bench/learning_speed.py --size 512 --annotations 10 --no-write

Label Studio waits 1 s for a webhook (``shared/notes/label-studio-1.23-protocol.md``), so
``/webhook`` must answer at once and leave the work to the queue. For each mode (embedded: jobs
in a thread of the web process; Redis: a real redis-server and an in-process burst RQ worker)
this posts ``--annotations`` ``ANNOTATION_CREATED`` bodies (the ground truth of a synthetic
micrograph of ``--size`` px as brush RLE, one distinct annotation each) to the app through
Flask's test client and reports the answer time (p50 / p95 / max); then it times the learning
jobs (image download from a fake Label Studio, RLE decoding, crop embedding with the
weight-free engine's texture embedder, storing the contribution and deriving the prototypes
from all of them so far) and reports the mean per annotation (engine loading excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from annotated_series import brushes, png
from fake_label_studio import FakeLabelStudio
from redis import Redis
from redis_server import RedisServer
from rq import Queue
from rq.job import Job
from sections import write_section
from service_helpers import service_config

from samiam.labelstudio.config import brush_label_config
from samiam.service import create_app
from samiam.service.worker import run_worker
from samiam.synth.series import generate_series

DOCS = ROOT / "docs" / "benchmarks.md"


def run_mode(mode: str, size: int, annotations: int, work: Path) -> dict:
    scene = generate_series(3, 1, 1, size)[0]
    label_studio = FakeLabelStudio()
    redis = RedisServer(work / "redis").start() if mode == "redis" else None
    try:
        config = service_config(redis.url if redis else None, label_studio)
        app = create_app(config)
        client = app.test_client()
        if not redis:
            app.extensions["samiam"]["dispatcher"].runtime.engine()
        url = label_studio.add_file("scene.png", png(scene.image))
        project = {"id": 1, "label_config": brush_label_config(sorted(scene.names))}
        result = brushes(scene)
        answers = []
        for i in range(1, annotations + 1):
            body = {"action": "ANNOTATION_CREATED", "project": project, "task": {"id": 1, "data": {"image": url}},
                    "annotation": {"id": i, "result": result, "updated_at": "2026-01-01T00:00:00Z"}}
            started = time.perf_counter()
            answer = client.post("/webhook", json=body)
            answers.append(time.perf_counter() - started)
            assert answer.status_code == 200 and answer.get_json()["status"] == "queued", answer.get_json()
        if redis:  # the jobs' own run times (the burst worker also loads the engine)
            run_worker(config, burst=True)
            queue = Queue(config.queue_name, connection=Redis.from_url(redis.url))
            finished = [Job.fetch(i, connection=queue.connection) for i in queue.finished_job_registry.get_job_ids()]
            learning = sum((job.ended_at - job.started_at).total_seconds() for job in finished)
        else:  # the engine was loaded before the first webhook
            started = time.perf_counter()
            dispatcher = app.extensions["samiam"]["dispatcher"]
            while dispatcher.queue_depth():
                time.sleep(0.01)
            learning = time.perf_counter() - started
        learned = app.extensions["samiam"]["prototypes"].get("1")
        assert learned is not None and learned.labels[0].images == annotations, "not every annotation was learned"
        if not redis:
            app.extensions["samiam"]["dispatcher"].shutdown()
        answers_ms = sorted(1000 * a for a in answers)
        return {"mode": mode, "p50": statistics.median(answers_ms),
                "p95": answers_ms[min(len(answers_ms) - 1, round(0.95 * (len(answers_ms) - 1)))],
                "max": answers_ms[-1], "per_annotation_s": learning / annotations,
                "body_kb": len(json.dumps(body)) / 1024}
    finally:
        if redis:
            redis.stop()
        label_studio.close()


def report(rows: list[dict], args, when: str) -> str:
    lines = [(f"`python bench/learning_speed.py --size {args.size} --annotations {args.annotations}`, {when}, "
             f"{args.machine} (load average {os.getloadavg()[0]:.1f} at the end of the run). "
              "Weight-free engine (classical proposer's embedder)."),
             "",
             "| mode | webhook answer p50 / p95 / max (ms) | body (KiB) | learning job per annotation (s) |",
             "|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['p50']:.1f} / {r['p95']:.1f} / {r['max']:.1f} | {r['body_kb']:.0f} | "
              f"{r['per_annotation_s']:.2f} |" for r in rows]
    lines += ["", ("Label Studio waits 1 s for a webhook: the answer is the body check and one enqueue; the learning "
              "job (download, RLE decoding, crop embedding, storing, deriving the project's prototypes from all "
              "its contributions so far) runs on the queue.")]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--annotations", type=int, default=20)
    parser.add_argument("--modes", nargs="+", default=["embedded", "redis"])
    parser.add_argument("--machine", default="dev box, 2 shared cores, no GPU")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory() as work:
        rows = [run_mode(mode, args.size, args.annotations, Path(work)) for mode in args.modes]
    text = report(rows, args, when)
    print(text)
    if not args.no_write:
        write_section(DOCS, "learning-speed", "Learning label names from annotations (service)", text)


if __name__ == "__main__":
    main()
