"""Time smart-tool clicks from request to response through the service: gunicorn web tier ->
Redis -> ``samiam worker`` (random-weight SAM through the real loading path) -> answer.

    python bench/click_service.py                      # ViT-B, 1024 px, 10 cached clicks
    python bench/click_service.py --model vit_h --clicks 20   # on a GPU host

Starts (and stops, by PID) redis-server, gunicorn (1 process), one worker and the fake Label
Studio serving the image (``bench/service_stack.py``). A random ``--model`` checkpoint is saved
and the worker loads it as it loads a real one (registry, ``torch.load``; only the checksum
check is off): random weights cost the same compute per click. Each click is one interactive
``/predict`` (``params.context`` with one smart keypoint at a random place), as Label Studio
sends them. The first click on the image runs SAM's image encoder; the later ones find the
embedding cached on the same worker. Prints the first click, the cached clicks' p50 / p95, the
share of a first click the cache saves (encoder-free share), and where a cached click's time
goes: image download + decode + hash on the worker, SAM's prompt decoder, and the rest
(web tier, Redis, queue hop, JSON and RLE of the answer).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from click_latency import scene_png
from sam_speed import random_checkpoint
from service_stack import ServiceStack

CONFIG = """<View><Image name="image" value="$image"/>
<BrushLabels name="tag" toName="image"><Label value="A"/><Label value="B"/></BrushLabels>
<KeyPointLabels name="click" toName="image" smart="true"><Label value="A"/></KeyPointLabels></View>"""


def click(stack: ServiceStack, url: str, size: int, x: float, y: float) -> tuple[float, dict]:
    """One interactive /predict at pixel (x, y); (seconds, the answer's ``samiam`` entry)."""
    keypoint = {"type": "keypointlabels", "original_width": size, "original_height": size, "is_positive": True,
                "value": {"x": 100 * x / size, "y": 100 * y / size, "keypointlabels": ["A"]}}
    body = {"tasks": [{"id": 1, "data": {"image": url}, "project": 1}], "label_config": CONFIG,
            "project": "1.1700000000", "params": {"context": {"result": [keypoint]}}}
    started = time.perf_counter()
    response = stack.session.post(stack.url + "/predict", json=body, timeout=600)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"click answered {response.status_code}: {response.text[:300]}")
    return elapsed, response.json()["results"][0]["samiam"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b", choices=["vit_b", "vit_l", "vit_h"])
    parser.add_argument("--clicks", type=int, default=10, help="clicks after the first on the same image")
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = random_checkpoint(args.model, Path(folder))
        env = {"SAMIAM_PROPOSALS_PROPOSER": "sam", "SAMIAM_PROPOSALS_MODEL_TYPE": args.model,
               "SAMIAM_PROPOSALS_CHECKPOINT": str(checkpoint), "SAMIAM_PROPOSALS_VERIFY_CHECKSUM": "false",
               "SAMIAM_CLICK_DEADLINE_S": "600"}
        with ServiceStack(workers=1, env=env, web_processes=1) as stack:
            url = stack.label_studio.add_file("scene.png", scene_png(args.size))
            rng = np.random.default_rng(0)
            first, first_answer = click(stack, url, args.size, *rng.uniform(0, args.size, 2))
            cached = [click(stack, url, args.size, *rng.uniform(0, args.size, 2)) for _ in range(args.clicks)]
    seconds = np.array([elapsed for elapsed, _ in cached])
    assert first_answer["encoder_ran"] and not any(answer["encoder_ran"] for _, answer in cached)
    worker = {name: np.median([answer["timings_ms"].get(name, 0.0) for _, answer in cached])
              for name in ("fetch_ms", "decoder_ms", "total_ms")}
    p50 = np.median(seconds) * 1e3
    print(f"# {time.strftime('%Y-%m-%d')} device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"image={args.size}x{args.size} model={args.model} random weights, request -> response through "
          f"gunicorn + Redis + 1 worker")
    print(f"first click (encoder ran):      {first * 1e3:8.0f} ms "
          f"(worker: encoder {first_answer['timings_ms'].get('encoder_ms', 0):.0f} ms)")
    print(f"cached clicks, {args.clicks:>3}:             p50 {p50:6.0f} ms   p95 {np.percentile(seconds, 95) * 1e3:6.0f} ms")
    print(f"encoder-free share:             {1 - p50 / (first * 1e3):8.1%} of a first click saved by the cache")
    print(f"cached click, worker side p50:  total {worker['total_ms']:.0f} ms = download {worker['fetch_ms']:.0f} ms "
          f"+ decode/hash/region {worker['total_ms'] - worker['fetch_ms'] - worker['decoder_ms']:.0f} ms "
          f"+ SAM decoder {worker['decoder_ms']:.0f} ms; web tier + Redis + queue {p50 - worker['total_ms']:.0f} ms")


if __name__ == "__main__":
    main()
