"""On-disk layout of a labelled synthetic benchmark.

::

    DIR/manifest.json              [{"name", "difficulty", "seed", "size", "materials", "defects"}, ...]
    DIR/images/<name>.png          8-bit grey micrograph (what ``samiam segment`` reads)
    DIR/gt/<name>/<k>_<material>.png   one 0/255 mask per material, k = 0..K-1 in manifest order
    DIR/proposals/<name>.npz       optional: ``masks`` (N, H, W) bool, simulated SAM+ proposals

Names look like ``d2_s0007`` (difficulty 2, seed 7). Material names may hold characters that are
unsafe in file names (``Pt/C``, ``La:SrTiO3``); the manifest keeps the true names and the files
use a sanitised form.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from samiam.errors import ImageNotFoundError
from samiam.synth.failures import FailureRates, simulate_sam_proposals
from samiam.synth.scenes import Scene, generate_scene

MANIFEST = "manifest.json"
IMAGES = "images"
"""Sub-folder of the micrographs."""


def scene_name(difficulty: int, seed: int) -> str:
    """``d<difficulty>_s<seed, 4 digits>``, e.g. ``d2_s0007``."""
    return f"d{difficulty}_s{seed:04d}"


def _safe(material: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", material)


def write_scene(out_dir: str | Path, name: str, scene: Scene, proposals: np.ndarray | None = None) -> dict:
    """Write one scene's image, ground-truth masks and (optionally) proposals; return its manifest entry.

    proposals: (N, H, W) bool or None.
    """
    out = Path(out_dir)
    (out / IMAGES).mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(scene.image * 255).astype(np.uint8)).save(out / IMAGES / f"{name}.png")
    gt_dir = out / "gt" / name
    gt_dir.mkdir(parents=True, exist_ok=True)
    for old in gt_dir.glob("*.png"):
        old.unlink()
    for k, (mask, material) in enumerate(zip(scene.materials, scene.names)):
        Image.fromarray(mask.astype(np.uint8) * 255).save(gt_dir / f"{k}_{_safe(material)}.png")
    if proposals is not None:
        (out / "proposals").mkdir(exist_ok=True)
        np.savez_compressed(out / "proposals" / f"{name}.npz", masks=proposals.astype(bool))
    return {"name": name, "difficulty": scene.difficulty, "seed": scene.seed, "size": scene.image.shape[0],
            "materials": list(scene.names), "defects": scene.defects}


def write_dataset(out_dir: str | Path, n: int, seed: int = 0, difficulties: Iterable[int] = (1, 2, 3),
                  size: int = 1024, proposals: bool = False, rates: FailureRates | None = None,
                  progress: bool = True) -> list[dict]:
    """Generate ``n`` scenes per difficulty (seeds ``seed .. seed+n-1``) into ``out_dir``.

    Returns the manifest (also written to ``out_dir/manifest.json``). With ``proposals`` the
    failure simulation's masks (seeded by the scene seed) are written too.
    """
    from tqdm import tqdm

    jobs = [(d, s) for d in difficulties for s in range(seed, seed + n)]
    manifest = []
    for difficulty, scene_seed in tqdm(jobs, desc="synth", unit="image", disable=not progress):
        scene = generate_scene(scene_seed, difficulty, size)
        masks = simulate_sam_proposals(scene, scene_seed, rates or FailureRates()) if proposals else None
        manifest.append(write_scene(out_dir, scene_name(difficulty, scene_seed), scene, masks))
    Path(out_dir, MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def images_folder(folder: str | Path) -> Path | None:
    """``folder/images`` when ``folder`` is a data set written by :func:`write_dataset` (it has a
    manifest and that sub-folder), else None."""
    folder = Path(folder)
    if (folder / MANIFEST).is_file() and (folder / IMAGES).is_dir():
        return folder / IMAGES
    return None


def read_manifest(data_dir: str | Path) -> list[dict]:
    """The manifest written by :func:`write_dataset`."""
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        raise ImageNotFoundError(f"no {MANIFEST} in {data_dir}; create a data set with `samiam synth --out DIR`")
    return json.loads(path.read_text())


def read_ground_truth(data_dir: str | Path, name: str) -> tuple[np.ndarray, list[str]]:
    """Ground truth of one scene: ``(materials (K, H, W) bool, names)`` in manifest order."""
    entries = {e["name"]: e for e in read_manifest(data_dir)}
    if name not in entries:
        raise ImageNotFoundError(f"{name!r} is not in {Path(data_dir) / MANIFEST}")
    names = entries[name]["materials"]
    gt_dir = Path(data_dir) / "gt" / name
    masks = []
    for k, material in enumerate(names):
        path = gt_dir / f"{k}_{_safe(material)}.png"
        if not path.is_file():
            raise ImageNotFoundError(f"ground-truth mask {path} is missing")
        masks.append(np.asarray(Image.open(path)) > 127)
    return np.stack(masks), list(names)


def read_proposals(data_dir: str | Path, name: str) -> np.ndarray:
    """Simulated proposals of one scene: ``(N, H, W) bool``."""
    path = Path(data_dir) / "proposals" / f"{name}.npz"
    if not path.is_file():
        raise ImageNotFoundError(f"{path} is missing; write it with `samiam synth --proposals`")
    with np.load(path) as data:
        return data["masks"].astype(bool)
