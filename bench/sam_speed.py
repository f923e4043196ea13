"""Time SAM+ (the automatic mask generator) and the booster on one synthetic 1024 x 1024 micrograph.

No official checkpoint can be fetched on the development machines, so this benchmark saves a
*randomly initialised* SAM of the requested size as a checkpoint file and loads it through
samiam's real path (``SamProposer``: registry, ``torch.load``, generator) with checksum
verification off. Random weights give the same compute per prompt as real ones, but a
different number of surviving masks; so the generator is run twice, with the paper's
thresholds (0.88 / 0.92) and with all thresholds at 0 (every prompt's masks survive: the
worst case for the generator's bookkeeping and for the booster).

    python bench/sam_speed.py --models vit_b vit_l vit_h      # on a GPU host
    python bench/sam_speed.py --models vit_b --points 8       # a quick CPU look

Prints one line per (model, thresholds) with encoder time, full generate time (samiam's
``FastMaskGenerator`` through ``SamProposer.propose``), masks, booster time and peak memory (GPU:
torch.cuda.max_memory_allocated; CPU: ru_maxrss). With ``--generator upstream fast`` (the
default) it also times segment-anything's own ``generate`` path on the same model (upstream_s)
and checks that both give the same masks and scores (same).
"""

from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch


def random_checkpoint(model_type: str, folder: Path) -> Path:
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    path = folder / f"random_{model_type}.pth"
    torch.save(sam_model_registry[model_type](checkpoint=None).state_dict(), path)
    return path


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    from samiam.booster import merge_masks, remove_masks
    from samiam.booster.embedders import make_embedder
    from samiam.io import load_micrograph
    from samiam.proposals.sam import SamProposer, as_proposals
    from samiam.settings import Settings
    from samiam.synth import generate_scene

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vit_b", "vit_l", "vit_h"])
    parser.add_argument("--points", type=int, default=16, help="points per side (paper: 16)")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--generator", nargs="+", choices=["upstream", "fast"], default=["upstream", "fast"],
                        help="which mask generators to time (fast: samiam's, upstream: segment-anything's)")
    args = parser.parse_args()

    scene = generate_scene(seed=1, difficulty=1, size=args.size)
    import io

    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray((scene.image * 255).astype(np.uint8)).save(buffer, "PNG")
    micrograph = load_micrograph(buffer.getvalue())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    card = torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu"
    print(f"# {time.strftime('%Y-%m-%d')} device={device} ({card}) torch={torch.__version__} "
          f"image={args.size}x{args.size} points_per_side={args.points} random weights")
    print("model  thresholds  load_s  encoder_s  generate_s  upstream_s  same  masks  removal_s  merging_s  peak_MB")
    base = Settings()
    embedder = make_embedder(base.merging)
    with tempfile.TemporaryDirectory() as folder:
        for model_type in args.models:
            checkpoint = random_checkpoint(model_type, Path(folder))
            for label, iou, stability in (("paper", 0.88, 0.92), ("zero", 0.0, 0.0)):
                settings = replace(base.proposals, model_type=model_type, checkpoint=str(checkpoint),
                                   verify_checksum=False, points_per_side=args.points,
                                   pred_iou_thresh=iou, stability_score_thresh=stability)
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                started = time.perf_counter()
                proposer = SamProposer(settings)
                load_s = time.perf_counter() - started
                predictor = proposer._generator.predictor
                with torch.inference_mode():
                    predictor.set_image(micrograph.rgb)  # warm-up (cuDNN autotune, allocator)
                    _sync(device)
                    started = time.perf_counter()
                    predictor.set_image(micrograph.rgb)
                    _sync(device)
                    encoder_s = time.perf_counter() - started
                upstream = upstream_s = generate_s = None
                if "upstream" in args.generator:
                    started = time.perf_counter()
                    with torch.inference_mode():
                        upstream = as_proposals(proposer._generator.upstream_arrays(micrograph.rgb))
                    _sync(device)
                    upstream_s = time.perf_counter() - started
                if "fast" in args.generator:
                    started = time.perf_counter()
                    proposals = proposer.propose(micrograph)
                    _sync(device)
                    generate_s = time.perf_counter() - started
                same = "-" if upstream is None or generate_s is None else (
                    "yes" if np.array_equal(upstream.masks, proposals.masks)
                    and np.array_equal(upstream.scores, proposals.scores) else "NO")
                proposals = proposals if generate_s is not None else upstream
                started = time.perf_counter()
                removal = remove_masks(proposals.masks, micrograph.grey, base.removal)
                removal_s = time.perf_counter() - started
                kept = np.flatnonzero(removal.keep)
                started = time.perf_counter()
                merge_masks(micrograph.grey, proposals.masks[kept], proposals.scores[kept], base.merging, embedder)
                merging_s = time.perf_counter() - started
                print(f"{model_type:6} {label:10} {load_s:7.2f} {encoder_s:9.3f} {_seconds(generate_s):>10} "
                      f"{_seconds(upstream_s):>11} {same:>5} {len(proposals.masks):6d} "
                      f"{removal_s:9.3f} {merging_s:9.3f} {peak_memory_mb(device):8.0f}")
                del proposer, predictor, proposals, upstream
                if device == "cuda":
                    torch.cuda.empty_cache()


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
