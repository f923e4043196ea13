"""End to end with a cloud source storage: S3 (moto's server) -> Label Studio 1.23.2 -> samiam.

The test starts moto's S3 server (``moto_server``) behind a recording storage host, Label
Studio and ``samiam serve`` (embedded: the worker code runs in the web process) on loopback, puts
a micrograph in a bucket, connects the bucket to a project as a Label Studio S3 source storage
(``s3_endpoint`` = the storage host, presigned URLs on) and syncs it: the task's data holds
``s3://bucket/key``. Label Studio's "Retrieve predictions" sends that URI to samiam, which asks
Label Studio's presign endpoint with its key and follows the 303 to the storage host (listed in
``SAMIAM_STORAGE_HOSTS``) without the key; Label Studio must store a prediction whose masks are
the engine's for the object's bytes, and the storage host must never have seen the key.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import requests
from browser import require_e2e
from label_studio import TOKEN, free_port, label_studio_bin, start_label_studio, stop, wait_for
from moto_s3 import AWS, MOTO_SERVER, MotoS3, StorageHost

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "lsfo_lattice_haadf.jpg"
BUCKET = "micrographs"
KEY = "haadf/lsfo_lattice_haadf.jpg"
CONFIG = ('<View><Image name="image" value="$image"/><BrushLabels name="tag" toName="image">'
          '<Label value="Material A"/><Label value="Material B"/></BrushLabels></View>')
ENGINE_ENV = {"SAMIAM_PROPOSALS_PROPOSER": "classical"}

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_e2e(label_studio_bin() is not None, "label-studio (set SAMIAM_LABEL_STUDIO_BIN)")
    require_e2e(MOTO_SERVER.exists(), "moto_server (pip install 'moto[server]', the test extra)")
    work = tmp_path_factory.mktemp("e2e-cloud")
    moto = MotoS3(work / "moto.log").start()
    storage = StorageHost(moto)
    backend_process, studio = None, None
    try:
        studio = start_label_studio(work)
        port = free_port()
        backend = f"http://127.0.0.1:{port}"
        env = {**{k: v for k, v in os.environ.items() if k != "REDIS_URL"}, **ENGINE_ENV,
               "LABEL_STUDIO_URL": studio.url, "LABEL_STUDIO_API_KEY": TOKEN,
               "SAMIAM_STORAGE_HOSTS": f"127.0.0.1:{storage.port}"}
        with open(work / "samiam.log", "wb") as log:
            backend_process = subprocess.Popen(
                [str(Path(sys.executable).parent / "samiam"), "serve", "--port", str(port)], cwd=REPO, env=env,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(backend + "/health", 60, backend_process)
        yield {"studio": studio, "backend": backend, "moto": moto, "storage": storage, "env": env, "work": work}
    finally:
        if backend_process is not None:
            stop(backend_process)
        if studio is not None:
            stop(studio.process)
        storage.close()
        moto.stop()


def _project_on_s3(studio, endpoint: str, backend: str) -> tuple[int, int]:
    """A project whose one task comes from an S3 source storage at ``endpoint``, with ``backend``
    connected; (project id, task id)."""
    project = studio.api("POST", "/api/projects/", json={"title": "samiam cloud", "label_config": CONFIG}).json()["id"]
    storage = studio.api("POST", "/api/storages/s3", json={
        "project": project, "title": "moto", "bucket": BUCKET, "prefix": "haadf/", "regex_filter": r".*\.jpg",
        "use_blob_urls": True, "presign": True, "presign_ttl": 5, "s3_endpoint": endpoint, **AWS}).json()
    studio.api("POST", f"/api/storages/s3/{storage['id']}/sync")
    deadline, tasks = time.monotonic() + 60, []
    while not tasks and time.monotonic() < deadline:
        tasks = studio.api("GET", f"/api/tasks?project={project}").json()["tasks"]
        time.sleep(0.5)
    # the task API shows the URI resolved (Label Studio's /tasks/<id>/resolve/?fileuri=<base64>)
    assert [_stored_uri(t["data"]["image"]) for t in tasks] == [f"s3://{BUCKET}/{KEY}"], tasks
    studio.api("POST", "/api/ml", json={"url": backend, "project": project, "title": "samiam", "is_interactive": False})
    return project, tasks[0]["id"]


def _stored_uri(shown: str) -> str:
    """The storage URI behind a task URL as Label Studio's task API shows it."""
    fileuri = parse_qs(urlsplit(shown).query).get("fileuri", [""])[0]
    return base64.urlsafe_b64decode(fileuri).decode() if fileuri else shown


def _engine_materials(image: bytes, env: dict) -> np.ndarray:
    """The engine's materials for ``image`` under the backend's settings: (K, H, W) bool."""
    from samiam.labelstudio.model import SamiamModel
    from samiam.pipeline import Engine
    from samiam.settings import Settings

    settings = Settings.from_env(env)
    return Engine(settings).segment(image, SamiamModel(settings, "reference").settings_for(CONFIG)).materials


def test_a_task_from_an_s3_source_storage_is_predicted_and_stored(stack):
    from samiam.labelstudio.results import materials_from_results

    studio, storage = stack["studio"], stack["storage"]
    image = SAMPLE.read_bytes()
    stack["moto"].put(BUCKET, {KEY: image})
    project, task_id = _project_on_s3(studio, storage.url, stack["backend"])
    studio.api("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project}",
               json={"selectedItems": {"all": False, "included": [task_id]}})
    stored = studio.api("GET", f"/api/predictions?task={task_id}").json()
    log = (stack["work"] / "samiam.log").read_text()
    assert len(stored) == 1, f"Label Studio stored {len(stored)} predictions; samiam's log:\n{log[-3000:]}"
    assert stored[0]["model_version"] == studio.api("GET", f"/api/ml?project={project}").json()[0]["model_version"]
    masks, labels = materials_from_results(stored[0]["result"])
    expected = _engine_materials(image, stack["env"])
    assert len(expected) >= 1 and np.array_equal(masks, expected), "stored masks differ from the engine's"
    assert set(labels) <= {"Material A", "Material B"}
    states = requests.get(f"{stack['backend']}/jobs?project={project}", timeout=5).json()["counts"]
    assert states["answered"] == 1, states
    # samiam read the object once, by its presigned URL, without the key (Label Studio's own S3
    # calls, its listing during the sync, carry the storage's AWS signature)
    reads = [headers for _, path, headers, _ in storage.requests if path.startswith(f"/{BUCKET}/{KEY}?")]
    assert len(reads) == 1 and "Authorization" not in reads[0]
    assert all(TOKEN not in path and TOKEN not in str(headers) for _, path, headers, _ in storage.requests)
