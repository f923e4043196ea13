"""Time one click-to-fix answer (``samiam.interactive.Clicker``) on a synthetic 1024 x 1024 micrograph.

A randomly initialised SAM of each requested size is saved as a checkpoint and loaded through
samiam's real path (``SamProposer``: registry, ``torch.load``), as in ``bench/sam_speed.py``;
random weights cost the same compute per click as real ones. For each model it times the first
click on an image (SAM's image encoder + prompt decoder) and ``--clicks`` further clicks on the
same image (cached embedding: decoder only), and prints the median, the 95th percentile and the
encoder-free share (how much of a first click the cache saves). The weight-free path (no
checkpoint) is timed too: its first click runs the booster segmentation, later ones reuse it.

These are engine times; ``bench/click_service.py`` measures the same clicks from request to
response through the web tier, Redis and a worker.

    python bench/click_latency.py --models vit_b vit_l vit_h     # on a GPU host
    python bench/click_latency.py --models vit_b --clicks 10     # CPU
"""

from __future__ import annotations

import argparse
import io
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sam_speed import random_checkpoint


def scene_png(size: int) -> bytes:
    """The synthetic ``size`` x ``size`` micrograph of the benchmark as 8-bit PNG bytes."""
    from PIL import Image

    from samiam.synth import generate_scene

    scene = generate_scene(seed=1, difficulty=1, size=size)
    buffer = io.BytesIO()
    Image.fromarray((scene.image * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _micrograph(size: int):
    from samiam.io import load_micrograph

    return load_micrograph(scene_png(size))


def _time_clicks(clicker, micrograph, clicks: int, seed: int = 0) -> tuple[float, list[float]]:
    """Seconds of the first click and of each of ``clicks`` later clicks at random points."""
    from samiam.interactive import Prompt

    rng = np.random.default_rng(seed)
    height, width = micrograph.shape
    times = []
    for _ in range(clicks + 1):
        prompt = Prompt.from_points([(rng.uniform(0, width), rng.uniform(0, height))], [1])
        started = time.perf_counter()
        clicker.click(micrograph, prompt)  # returns numpy arrays: the GPU work has finished
        times.append(time.perf_counter() - started)
    return times[0], times[1:]


def _row(name: str, first: float, later: list[float]) -> str:
    median, p95 = np.median(later), np.percentile(later, 95)
    return f"{name:<12} {first * 1e3:>10.0f} {median * 1e3:>10.1f} {p95 * 1e3:>10.1f} {1 - median / first:>12.1%}"


def main() -> None:
    from samiam.interactive import Clicker
    from samiam.pipeline import Engine
    from samiam.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["vit_b", "vit_l", "vit_h"])
    parser.add_argument("--clicks", type=int, default=20, help="clicks after the first, per image")
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()

    micrograph = _micrograph(args.size)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    card = torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu"
    print(f"# {time.strftime('%Y-%m-%d')} device={device} ({card}) torch={torch.__version__} "
          f"threads={torch.get_num_threads()} image={args.size}x{args.size} random weights")
    print(f"{'path':<12} {'first_ms':>10} {'cached_p50':>10} {'cached_p95':>10} {'cache_saves':>12}")
    with tempfile.TemporaryDirectory() as folder:
        for model_type in args.models:
            checkpoint = random_checkpoint(model_type, Path(folder))
            settings = Settings().replace({
                "proposals.proposer": "sam", "proposals.model_type": model_type,
                "proposals.checkpoint": str(checkpoint), "proposals.verify_checksum": False})
            first, later = _time_clicks(Clicker(Engine(settings).load()), micrograph, args.clicks)
            print(_row(f"sam-{model_type}", first, later), flush=True)
            checkpoint.unlink()
    weight_free = Clicker(Engine(Settings().replace({"proposals.proposer": "classical"})))
    first, later = _time_clicks(weight_free, micrograph, args.clicks)
    print(_row("weight-free", first, later))


if __name__ == "__main__":
    main()
