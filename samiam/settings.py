"""Every knob of the engine, named once, with the paper's defaults.

Settings are frozen dataclasses. They can be overridden per call (:meth:`Settings.replace`
with dotted names such as ``{"merging.materials": 3}``), per project (the service stores a dict
of the same form) or by environment variable (``SAMIAM_<SECTION>_<FIELD>``, e.g.
``SAMIAM_MERGING_CROP_SIZE=48``; see :meth:`Settings.from_env`).

Lengths on the specimen (crop side, island area and ring) are given twice: in nanometres
(the crop's bounds ``merging.crop_min_nm`` .. ``merging.crop_nm``, ``removal.island_nm``,
``removal.island_ring_nm``), used when
``image.scale`` is ``physical`` (not the default) and the image's scale is known
(:mod:`samiam.scale`: the file's pixel size, else the lattice period from the power spectrum),
and in pixels for a *reference* image side of 1024 px, as in the paper, scaled with
:func:`scale_to_image` (``image.scale`` ``reference``, and images of unknown scale).

Each threshold's docstring names the data that set it: the paper, synthetic *tuning* seeds
(``bench/seeds.py``: 0..999; the published synthetic numbers come from the evaluation seeds
1000..1019, on which nothing may be tuned), the samples, the tuning half of
``shared/data/particles`` (``bench/particles.py``; never its reporting half), or "not tuned".
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from samiam.errors import SettingsError, shown

REFERENCE_SIDE = 1024
"""Image side (px) at which pixel-valued defaults are given; they scale with sqrt(H*W)/1024."""


def scale_to_image(pixels_at_reference: float, height: int, width: int) -> float:
    """Scale a length given for a 1024 x 1024 image to an image of ``height`` x ``width``."""
    return pixels_at_reference * ((height * width) ** 0.5) / REFERENCE_SIDE


@dataclass(frozen=True)
class ImageSettings:
    max_pixels: int = 8192 * 8192
    """Refuse images with more pixels than this (decompression-bomb guard). A guard, not tuned."""
    stretch_percentiles: tuple[float, float] = (0.5, 99.5)
    """Percentiles mapped to 0 and 255 in the uint8 copy given to SAM. Not tuned: a usual display
    stretch."""
    scale: str = "reference"
    """How the booster's lengths (crop side, island area and ring) become pixels: ``physical``
    converts the nm settings with the image's scale (the file's pixel size, else the lattice
    period estimated from its power spectrum, else as ``reference``); ``reference`` scales the
    pixel settings given at the 1024 px reference side with the image size. ``bench/scale.py``
    (docs/benchmarks.md, "Physical scale": centred stacks at 2x zoom, the same field at twice the
    pixels) found neither rule dropping at 2x beyond the per-scene spread, and ``physical`` not
    better than ``reference`` (near-identical materials mixed up on a few scenes where the crop
    grew to ``merging.crop_min_nm``), so the rule the K estimator's thresholds were tuned with
    stays the default. Data: synthetic tuning seeds 100..115, 200..215 and 400..415
    (bench/seeds.py)."""
    period_nm: float = 0.28
    """Spacing in nm taken for the strongest lattice fringes when the file states no pixel size
    (``scale`` physical): perovskites' {110} fringes, a / sqrt(2) for a = 0.39-0.40 nm, the
    strongest in [001] projection. ``merging.crop_nm / period_nm`` is the crop side in fringes. From
    the crystallography of perovskites, not tuned."""


@dataclass(frozen=True)
class ProposalSettings:
    proposer: str = "auto"
    """``sam``, ``classical``, or ``auto`` (SAM when its checkpoint is present, else classical)."""
    model_type: str = "vit_l"
    checkpoint: str | None = None
    """Explicit checkpoint file; when None it is looked up by name in ``model_dir``."""
    model_dir: str = field(default_factory=lambda: os.environ.get(
        "SAMIAM_MODEL_DIR", os.path.join(os.path.expanduser("~"), ".cache", "samiam", "models")))
    verify_checksum: bool = True
    device: str = "auto"
    """``auto`` picks CUDA when available, else CPU."""
    points_per_side: int = 16
    """The paper's SAM+ setting (16 x 16 prompts), as are the other SAM knobs below."""
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    """The paper's (SAM's automatic mask generator default)."""
    stability_score_thresh: float = 0.92
    """The paper's (SAM's automatic mask generator default)."""
    crop_n_layers: int = 1
    crop_n_points_downscale_factor: int = 2
    min_mask_region_area: int = 0
    """SAM's own small-region clean-up (needs OpenCV); the booster's island rule does this job. The
    paper's (off)."""
    tiling: str = "off"
    """Propose per overlapping tile (:mod:`samiam.proposals.tiled`) instead of on the whole image:
    ``on``, ``off``, or ``auto``: tiles for SAM when the image is larger than one tile (SAM
    otherwise sees the image shrunk to 1024 px), never for the classical proposer. ``off`` by
    measurement (bench/large_images.py, docs/benchmarks.md "Large images"): at 4096 px, SAM's
    failures simulated per tile and merged across seams scored below one downscaled view after
    the booster, the classical proposer lost nothing untiled, and both stay under 6 GB at 8192 px
    untiled; the simulation cannot show what SAM gains from seeing atoms at full resolution, so
    try ``auto`` with a real checkpoint. Data: synthetic tuning seed 0 (4096 and 8192 px)."""
    tile_size: int = 1024
    """Side of a square tile in px (SAM's own input side); tiles at the image's edge are as large.
    Not tuned: SAM's input side."""
    tile_overlap: int = 128
    """Least overlap of neighbouring tiles in px; masks are matched across a seam inside it. Not
    tuned (tests/test_tiled.py checks seams on hand-made masks)."""
    seam_iou: float = 0.5
    """Two masks of neighbouring tiles are one region when the parts of them inside their tiles'
    overlap have at least this IoU; each mask is matched with at most one of the other tile. Not
    tuned (tests/test_tiled.py checks seams on hand-made masks)."""
    classical_segments: int = 48
    """Seeds of the weight-free proposer's regular watershed grid, per image (areas fenced in by a
    texture edge that no grid seed reaches get a seed of their own), before merging. Set by hand on
    synthetic tuning seeds 100..115 (512 and 1024 px)."""
    classical_window: float = 1.0
    """Gaussian sigma of the classical proposer's texture window, in lattice periods (the period is
    estimated from the image's power spectrum). Data: synthetic tuning seeds 100..115 (1024 px)."""
    classical_merge_t2: float = 20.0
    """Adjacent superpixels are merged while the mean, over their texture features, of the squared
    Welch t statistic of their difference is below this; each region counts one independent
    sample per texture-window area (4 pi sigma^2). Data: synthetic tuning seeds 100..115 (1024 px)."""
    classical_vacuum_level: float = 0.03
    """Vacuum is left out of the classical proposals: connected areas, at least a texture window
    large, where the intensity (smoothed over half a lattice period, in the image's stretched
    0..1 range) is below this. Z-contrast (HAADF, ADF) convention: vacuum is dark. 0 turns it off;
    it is off (gap bands too) for images their microscope file states to be bright field.
    Set by hand on synthetic tuning seeds 100..115 and 200..289 (512 and 1024 px)."""
    classical_gap_depth: float = 0.3
    """Thin dark bands along interfaces (gaps) are left out of the classical proposals: long thin
    valleys of the smoothed intensity deeper than this fraction of their surroundings (see
    ``samiam/proposals/unlabelled.py``). Above 1 turns it off. Set by hand on synthetic tuning seeds
    100..115 and 200..289 (512 and 1024 px)."""
    classical_work_side: int = 512
    """The classical proposer segments its texture maps downsampled to at most this many px per
    side. Not tuned: a bound on the work (bench/classical_speed.py)."""
    classical_max_window: float = 30.0
    """Largest Gaussian sigma of the classical proposer's texture window, in px at the 1024 px
    reference (scaled to the image like ``MergingSettings.crop_size``; half the booster's 60 px
    crop, so textures are not averaged over more than the booster compares). Images without a
    lattice (no peak in the power spectrum) use this window. Set from the booster's crop and checked
    on the MoO3 sample (samples/), not tuned on seeds."""
    classical_blob_contrast: float = 5.0
    """In an image without a lattice, a compact spot smaller than the texture window (a
    particle, a void) becomes a proposal of its own when its intensity, smoothed over half the
    window's period, differs from the local mean (over the window) by more than this many
    robust standard deviations of that difference. Set by hand on the MoO3 sample (samples/) and the
    particle scenes of tests/test_proposals_classical.py; not on shared/data/particles."""


@dataclass(frozen=True)
class RemovalSettings:
    """Thresholds of the paper's mask-removal rules (Algorithm 1), as fractions."""

    child_inside: float = 0.90
    """B is a child of A when more than this fraction of B lies inside A (and not vice versa). The
    paper's."""
    tiny_child: float = 0.05
    """A child covering less than this fraction of its parent is removed (tiny child). The paper's."""
    compound_covered: float = 0.70
    """A parent whose non-tiny children cover more than this fraction of it is removed (compound).
    The paper's."""
    redundant_overlap: float = 0.90
    """Two masks each more than this fraction inside the other are redundant; the larger is kept.
    The paper's."""
    island_area: float = 3600.0
    """Masks smaller than this many pixels (at the 1024 px reference; the paper's 60 px chip
    squared) that are no mask's child are islands and removed, when their surroundings are
    unsegmented (see ``island_surrounded``). The paper's."""
    island_ring: float = 8.0
    """Width in px (at the 1024 px reference) of the ring around a small mask whose coverage by
    other masks tells an island from a particle. Not tuned: chosen with ``island_surrounded``."""
    island_nm: float = 2.0
    """``island_area`` on the specimen (``image.scale`` physical): masks smaller than a square of
    this side in nm are island candidates (the reference's 60 px square at the synthetic scenes'
    0.26-0.38 Angstrom per px is 1.6-2.3 nm). Converted from ``island_area``, not tuned."""
    island_ring_nm: float = 0.25
    """``island_ring`` on the specimen, in nm (``image.scale`` physical; 8 px at 0.32 Angstrom/px).
    Converted from ``island_ring``, not tuned."""
    island_surrounded: float = 1.0
    """A small mask is an island only when less than this fraction of its ring is covered by
    other masks: the paper's "island within a greater surrounding region that was not
    segmented". With 1.0 only a small mask completely ringed by segmented regions (a
    nanoparticle cut out of its support) stays; 0.5 gave the same particles but kept noise
    islands in narrow gap bands, lowering synthetic d1 mIoU from 78 to 58 (bench/quality.py
    --quick). Data: synthetic tuning seeds 0..2 (512 px; they were evaluation seeds then) and the
    MoO3 sample."""
    population_contrast: float = 1.0
    """A tiny child or island is distinct from its surroundings when its mean grey value lies at
    least this many robust noise standard deviations of the ring around it (``island_ring``) above
    (or below) the ring's median (:func:`samiam.booster.removal.ring_contrast`). Set on the tuning
    half of ``shared/data/particles`` (Cu*, PtCo*, PtW*; per-box Otsu particle masks,
    :mod:`samiam.box_proposals`) against noise islands made the same way in boxes placed off the
    particles (``bench/booster_particles.py --contrast``, 15 images, 2048 px ones at 1024): 1.0
    keeps a median 96 % of the particles' area (51-100 % per image) and passes a median 18 % of
    those noise islands (the bright half of a box of support: a hard case); 0.75 keeps 99 % and
    passes 28 %, 1.5 keeps 89 % (36-100 %) and passes 2 %."""
    population_spread: float = 10.0
    """Members of a population are at most this many times as distinct as its median member
    (far stronger ones, a hot pixel cluster, are not like the others). On the tuning half above
    the strongest particle is at most 7.6 times the median (PtW7)."""
    population_members: int = 10
    """Fewest alike candidates that make a population (a material) instead of noise islands.
    Not tuned on data: every image of the particles set holds at least 30 particles, and a handful
    of noise islands of one sign must not become a material."""


@dataclass(frozen=True)
class MergingSettings:
    crops_per_mask: int = 10
    """Not tuned (the skeleton's default)."""
    crop_size: int = 60
    """Crop side in px at the 1024 px reference size. The paper's."""
    crop_min_nm: float = 0.75
    """Shortest crop side on the specimen, in nm (``image.scale`` physical): at higher
    magnifications the crop (``crop_size``'s share of the field) grows to this, 2 perovskite
    cells, 2.7 of the fringes of ``image.period_nm`` (:func:`samiam.scale.crop_px`). 1.0 nm
    grew the crops at 2x on the synthetic scenes and mixed up near-identical materials
    (bench/scale.py, docs/benchmarks.md "Physical scale"). Data: synthetic tuning seeds 100..115
    (bench/scale.py)."""
    crop_nm: float = 2.0
    """Longest crop side on the specimen, in nm (``image.scale`` physical): at lower
    magnifications the crop shrinks to this, 5 perovskite cells, 7 fringes; the reference's 60 px
    at the synthetic scenes' 0.26-0.38 Angstrom per px is 1.6-2.3 nm. A crop of fixed nm at 2x
    magnification lost 6 points of mIoU (materials merged for want of crops, bench/scale.py). Data:
    synthetic tuning seeds 100..115 (bench/scale.py)."""
    crop_inside: float = 0.90
    """A crop belongs to a mask when at least this fraction of it lies inside the mask. The paper's."""
    materials: int | None = None
    """Number of materials K when known; None estimates it per image."""
    max_materials: int = 6
    """Not tuned (the skeleton's default)."""
    embedder: str = "default"
    embedder_checkpoint: str | None = None
    seed: int = 0
    k_estimator: str = "auto"
    """How K is estimated when ``materials`` is None: ``silhouette`` (best KMeans silhouette over
    crops, K = 1 below ``min_silhouette``), ``separation`` (masks grouped by a test on their
    crops' intensity statistics, ``same_material_t2``, plus a step test where two groups meet,
    ``step_ratio``), ``separation_all`` (the same test over every grid crop of each mask, not a
    sample of ``crops_per_mask``), or ``auto``: ``separation_all`` for the classical proposer's
    masks (few, large, disjoint) and ``separation`` for SAM's and given ones (many, overlapping),
    the better for each in ``bench/k_estimation.py`` and ``bench/quality.py``. Both keep one
    lattice with a thickness gradient (``samples/lsfo_lattice_haadf.jpg``) whole. Data: synthetic
    tuning seeds 100..115 and 200..229, and the LSFO sample."""
    min_silhouette: float = 0.575
    """``silhouette`` estimator: if no k >= 2 reaches this silhouette score on the crop features,
    the image holds one material (K = 1). Set by ``bench/embedder_choice.py`` (the threshold that
    gets K right most often on synthetic scenes with the default embedder). Data: synthetic tuning
    seeds 0..5 (512 and 1024 px; they were evaluation seeds then)."""
    same_material_t2: float = 5.0
    """``separation`` estimator: two groups of masks are one material while the mean, over the
    intensity features of their crops (mean, std, percentiles), of the squared Welch t statistic
    of their difference is below this (about 1 for crops of one texture; it grows with the number
    of crops for a real difference). Set by ``bench/k_estimation.py`` on tuning scenes (seeds
    >= 100, 512 and 1024 px): 4-6 are equally good there, 5 is the middle. Data: synthetic tuning
    seeds 100..107."""
    min_group_crops: int = 5
    """``separation`` estimator: only masks with at least this many crops can found a material of
    their own; smaller masks join the nearest material (a few crops near a mask's edge give a
    noisy, biased mean). Set by ``bench/k_estimation.py`` with ``same_material_t2``. Data: synthetic
    tuning seeds 100..107."""
    step_ratio: float = 0.65
    """``separation`` estimator: two adjacent groups of masks are one material when the difference
    of the intensity features of their crops close to where they meet, projected on the
    difference of the whole groups, is less than this fraction of it with two standard errors to
    spare (a brightness gradient, not a step; a step gives about 1). Set by
    ``bench/k_estimation.py`` on tuning scenes (seeds 100..107, 512 px) with the LSFO sample: the
    synthetic scores are the same for 0.6-0.7; 0.6 split LSFO, and the larger the value, the
    more difficulty-3 steps seen from mixed masks pass for gradients. Data: synthetic tuning seeds
    100..107 and the LSFO sample."""
    step_reach: float = 0.5
    """``separation`` estimator: a crop counts as close to another group when it lies within this
    many crop sides of a grid crop that touches it. Set with ``step_ratio``: 1 splits LSFO
    more often and merges more difficulty-1 scenes than 0.5. Data: synthetic tuning seeds 100..107
    and the LSFO sample."""


@dataclass(frozen=True)
class NamingSettings:
    """How material masks get the project's own label names from prototypes learned from
    annotations (:mod:`samiam.booster.prototypes`, :mod:`samiam.booster.naming`)."""

    mode: str = "auto"
    """``cluster``: cluster as without prototypes, then name each material by its nearest label
    (one to one, Hungarian); ``supervised``: once every label of the project has prototypes,
    classify each mask's crops by their nearest label instead of clustering (paper 5.2);
    ``auto``: ``supervised`` for the classical proposer's masks, ``cluster`` for SAM's and given
    ones, the better of the two for each in ``bench/naming.py`` (regions named right after two
    corrected images: SAM-like 96.0 vs 85.8 %, classical 79.2 vs 64.1 %). Data: bench/naming.py's
    synthetic series 0..5 (``samiam.synth.series``; no evaluation range of its own)."""
    far_distance: float = 6.0
    """A material farther than this from the label it is paired with (mean over its crops of the
    distance to the label's nearest exemplars, in units of the label's spread) gets no confident
    name: the config's next unused label, scored at most ``unnamed_score``. In ``bench/naming.py``
    (512 px series, 1-10 images learned) 98 % of rightly paired materials lie within 6 (within 3:
    89 %), while a material the project never labelled lies beyond 6 in only 15-18 % of cases
    (difficulty 1-2) and never for near-identical lattices (difficulty 3): the threshold protects
    against clear novelties only. Data: bench/naming.py's synthetic series 0..5."""
    unnamed_score: float = 0.05
    """Score of a region whose name was not recognised (at most this). Not tuned."""
    crops_per_label: int = 32
    """Crops drawn inside each labelled region of an annotated image to learn from, and inside
    each material to name it (more than ``merging.crops_per_mask``: 10 named 94 % of the regions
    of difficulty-2 series right in ``bench/naming.py``, 32 named 97 %). Data: bench/naming.py's
    synthetic series 0..5."""
    exemplars_per_label: int = 256
    """Exemplar embeddings kept per label (a uniform reservoir sample of every crop seen). Not
    tuned: a bound on the memory per label."""

@dataclass(frozen=True)
class MetricSettings:
    """Knobs of the paper's evaluation (``samiam evaluate``); not part of the engine's settings."""

    iou_threshold: float = 0.05
    """A prediction matches a ground-truth mask when their IoU is strictly above this (the authors'
    ``--iou_thresh``). The paper's."""
    boundary_ratio: float = 0.02
    """Boundary band width as a fraction of the image diagonal (Cheng et al. 2021; the paper's 2 %).
    The paper's."""
    pq_iou_threshold: float = 0.5
    """Panoptic quality counts a pair as a true positive when its IoU is strictly above this
    (Kirillov et al. 2019). From Kirillov et al., not tuned."""


@dataclass(frozen=True)
class MeasureSettings:
    """How :mod:`samiam.measure` tells particles and layers apart (``samiam segment --report``);
    not part of the engine's settings."""

    min_particle_px: int = 10
    """Connected components smaller than this many pixels are specks, neither counted nor measured
    (an equivalent-circle diameter of 3.6 px). Not tuned on data: chosen by geometry
    (tests/test_measure.py draws discs and bands); only the particles set's tuning half may tune
    these (bench/particles.py)."""
    min_particles: int = 5
    """A particle material has at least this many components (of at least ``min_particle_px``) ...
    Not tuned on data (as ``min_particle_px``)."""
    max_particle_fraction: float = 0.01
    """... whose median area is at most this fraction of the image (a disc of 11 % of the shorter
    side of a square image) ... Not tuned on data (as ``min_particle_px``)."""
    min_solidity: float = 0.8
    """... and whose median solidity (area over convex hull area) is at least this: compact blobs
    (a disc: 1, an ellipse: 1, a plus sign of bars a fifth as wide as long: 0.53). Not tuned on data
    (as ``min_particle_px``)."""
    min_layer_share: float = 0.9
    """A layer is one band: its largest component holds at least this share of the material's area,
    reaches two opposite image sides ... Not tuned on data (as ``min_particle_px``)."""
    min_measured_length: float = 0.5
    """... and at least this share of its length along the band can be measured (cross-sections
    that do not touch the image border): a band cut by the border all along (a substrate filling
    the bottom of the image) has no thickness to measure. Not tuned on data (as
    ``min_particle_px``)."""


@dataclass(frozen=True)
class Settings:
    image: ImageSettings = field(default_factory=ImageSettings)
    proposals: ProposalSettings = field(default_factory=ProposalSettings)
    removal: RemovalSettings = field(default_factory=RemovalSettings)
    merging: MergingSettings = field(default_factory=MergingSettings)
    naming: NamingSettings = field(default_factory=NamingSettings)

    def replace(self, overrides: Mapping[str, Any]) -> Settings:
        """Return new settings with dotted-name overrides, e.g. ``{"merging.materials": 3}``.

        Values given as strings are converted to the field's type; other values must have it
        (see :func:`_coerce`). Unknown names and values of the wrong type raise
        :class:`SettingsError`.
        """
        sections: dict[str, dict[str, Any]] = {}
        section_names = {f.name for f in dataclasses.fields(self)}
        for name, value in overrides.items():
            section_name, _, field_name = name.partition(".")
            section = getattr(self, section_name) if field_name and section_name in section_names else None
            if section is None:
                raise SettingsError(f"unknown setting {shown(name)}; names look like 'merging.materials'")
            fields = {f.name: f for f in dataclasses.fields(section)}
            if field_name not in fields:
                raise SettingsError(
                    f"unknown setting {shown(name)}; {section_name} has {', '.join(sorted(fields))}")
            hint = typing.get_type_hints(type(section))[field_name]
            sections.setdefault(section_name, {})[field_name] = _coerce(name, value, hint)
        return dataclasses.replace(self, **{
            s: dataclasses.replace(getattr(self, s), **v) for s, v in sections.items()})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults overridden by ``SAMIAM_<SECTION>_<FIELD>`` environment variables."""
        environ = os.environ if environ is None else environ
        base = cls()
        overrides = {}
        for section in dataclasses.fields(base):
            for f in dataclasses.fields(getattr(base, section.name)):
                key = f"SAMIAM_{section.name}_{f.name}".upper()
                if key in environ:
                    overrides[f"{section.name}.{f.name}"] = environ[key]
        return base.replace(overrides)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (JSON-serialisable) of every setting."""
        return dataclasses.asdict(self)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """``value`` as a value of the field type ``hint`` (e.g. ``int | None``), or SettingsError.

    Text (from the environment, or a request) is parsed; any other value (a JSON value from a
    request) must already have the field's type: a bool is no number, a list stands for a tuple,
    floats must be finite. ``None``, ``"none"``, ``"null"`` and ``""`` set an optional field to None.
    """
    kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if isinstance(value, str) and (type(None) in kinds or str not in kinds):
        text = value.strip()
        if type(None) in kinds and text.lower() in ("", "none", "null"):
            return None
        if str not in kinds:
            value = _parse_text(text, kinds)
    for kind in kinds:
        if _is_instance(value, kind):
            return _as_kind(value, kind)
    raise SettingsError(f"setting {name!r}: {shown(value)} is not {' or '.join(map(_type_name, kinds))}")


def _parse_text(text: str, kinds: tuple) -> Any:
    """``text`` read as the first of ``kinds`` it parses as; unchanged when none fits."""
    for kind in kinds:
        try:
            if kind is bool and text.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return text.lower() in ("1", "true", "yes", "on")
            if kind in (int, float):
                return kind(text)
            if typing.get_origin(kind) is tuple:
                return tuple(float(part) for part in text.split(","))
        except ValueError:
            continue
    return text


def _is_instance(value: Any, kind: Any) -> bool:
    if kind is type(None):
        return value is None
    if typing.get_origin(kind) is tuple:
        items, (item_kind, *rest) = value, typing.get_args(kind)
        return isinstance(items, (tuple, list)) and (rest == [Ellipsis] or len(items) == 1 + len(rest)) \
            and all(_is_instance(item, item_kind) for item in items)
    if isinstance(value, bool):
        return kind is bool
    if kind is int:  # numpy integers too
        return isinstance(value, numbers.Integral)
    if kind is float:
        return isinstance(value, numbers.Real) and math.isfinite(value)
    return isinstance(value, kind)


def _as_kind(value: Any, kind: Any) -> Any:
    if kind in (int, float):
        return kind(value)
    if typing.get_origin(kind) is tuple:
        return tuple(_as_kind(item, typing.get_args(kind)[0]) for item in value)
    return value


def _type_name(kind: Any) -> str:
    names = {type(None): "None", bool: "a boolean", int: "an integer", float: "a finite number", str: "text"}
    if typing.get_origin(kind) is tuple:
        return f"a list of {len(typing.get_args(kind))} numbers"
    return names.get(kind, str(kind))
