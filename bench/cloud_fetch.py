"""What reading a task's image through Label Studio's presign endpoint costs, against an upload.

One 1024 x 1024 PNG (a synthetic scene), fetched by the worker's fetcher
(:func:`samiam.labelstudio.storage.fetch_task_image`) ``--repeats`` times each way, on loopback:

* ``upload``: ``/data/upload/1/scene.png`` from the fake Label Studio (one request, with the key);
* ``s3 presigned``: ``s3://bucket/scene.png``: the fake Label Studio's presign endpoint answers
  303 to a presigned URL on a storage host in front of moto's S3 server (two requests);
* ``s3 streamed``: the same URI with presign off: "Label Studio" reads moto and streams the bytes.

Prints the median and 90th percentile per way and the presigned/upload ratio of medians.
Usage: ``python bench/cloud_fetch.py [--repeats 20]``
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fake_label_studio import TOKEN, CloudStorage, FakeLabelStudio
from moto_s3 import MotoS3, StorageHost, s3_client

from samiam.labelstudio.client import LabelStudioAccess
from samiam.labelstudio.storage import fetch_task_image
from samiam.synth import generate_scene

BUCKET = "bench"
SIZE = 1024


def _scene_png() -> bytes:
    """(SIZE, SIZE) synthetic scene as an 8-bit PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(generate_scene(1, 1, size=SIZE).image * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _timed(fetch, repeats: int) -> list[float]:
    fetch()  # warm-up: connections, token, imports
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        fetch()
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    png = _scene_png()
    with tempfile.TemporaryDirectory() as work:
        moto = MotoS3(Path(work) / "moto.log").start()
        storage, ls = StorageHost(moto), FakeLabelStudio()
        try:
            moto.put(BUCKET, {"scene.png": png})
            presigner, direct = s3_client(storage.url), s3_client(moto.url)
            uri = f"s3://{BUCKET}/scene.png"
            task_id = ls.add_task(1, {"image": uri})["id"]
            access = LabelStudioAccess(url=ls.url, api_key=TOKEN, storage_hosts=(f"127.0.0.1:{storage.port}",))
            storages = {presign: CloudStorage(
                f"s3://{BUCKET}/",
                lambda u: presigner.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "scene.png"}),
                lambda u: (direct.get_object(Bucket=BUCKET, Key="scene.png")["Body"].read(), "image/png"),
                presign) for presign in (True, False)}
            upload = ls.add_file("scene.png", png)
            ways = {}
            ways["upload"] = _timed(lambda: fetch_task_image(upload, task_id, access), args.repeats)
            for name, presign in (("s3 presigned", True), ("s3 streamed", False)):
                ls.cloud_storages[:] = [storages[presign]]
                assert fetch_task_image(uri, task_id, access) == png
                ways[name] = _timed(lambda: fetch_task_image(uri, task_id, access), args.repeats)
        finally:
            ls.close()
            storage.close()
            moto.stop()
    print(f"{platform.node()} {platform.processor() or platform.machine()}, PNG {SIZE}x{SIZE} = {len(png)} bytes, "
          f"{args.repeats} fetches each")
    for name, seconds in ways.items():
        ordered = sorted(seconds)
        print(f"{name:>13}: median {statistics.median(seconds) * 1e3:6.1f} ms, "
              f"p90 {ordered[int(0.9 * (len(ordered) - 1))] * 1e3:6.1f} ms")
    ratio = statistics.median(ways["s3 presigned"]) / statistics.median(ways["upload"])
    print(f"presigned / upload (medians): {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
