"""The files ``samiam segment --report`` adds: a figure per image, and for the run a summary CSV
and a size histogram per particle material across its images.

* ``NAME.report.png``: the overlay beside the particle size histogram and a table of every
  material's measurements (:mod:`samiam.measure`);
* ``measurements.csv`` (in ``--out``): one row per image and material, columns :data:`CSV_COLUMNS`;
* ``MATERIAL.UNIT.sizes.png`` (in ``--out``): the diameters of one particle material over all
  images measured in that unit. A material is known by its name where the project gave one, else
  by its number (``material_1``): numbers are per image (largest first), so pooling by number
  assumes the images show the same materials.

Figures are drawn with matplotlib's Agg canvas (no pyplot, no display needed).
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from samiam.measure import MaterialMeasurement, Measurements
from samiam.outputs import PALETTE, SIZES_SUFFIX

SUMMARY_CSV = "measurements.csv"
CSV_COLUMNS = ("image", "material", "name", "kind", "area_fraction", "count", "median_diameter",
               "mean_thickness", "roughness", "unit")
"""Columns of :data:`SUMMARY_CSV`; a value a material's kind does not have is left empty."""
FIGURE_HEIGHT_IN = 5.0
"""Height of the per-image figure in inches (at :data:`DPI`); its width follows the overlay."""
DPI = 100
HISTOGRAM_BINS = "auto"
"""numpy's bin rule for the size histograms."""


def write_report(path: Path, overlay: np.ndarray, measurements: Measurements, title: str) -> None:
    """Write the figure of one image: ``overlay: (H, W, 3) uint8`` RGB, its histogram and table."""
    height, width = overlay.shape[:2]
    overlay_width = FIGURE_HEIGHT_IN * width / height
    figure = Figure(figsize=(overlay_width + 2 * FIGURE_HEIGHT_IN, FIGURE_HEIGHT_IN), dpi=DPI,
                    layout="constrained")
    image_axes, histogram_axes, table_axes = figure.subplots(
        1, 3, width_ratios=(overlay_width, FIGURE_HEIGHT_IN, FIGURE_HEIGHT_IN))
    image_axes.imshow(overlay)
    image_axes.set_axis_off()
    image_axes.set_title(title)
    _draw_sizes(histogram_axes, [(material, material.index) for material in measurements.materials],
                measurements.unit)
    _draw_table(table_axes, measurements)
    _save(figure, path)


def write_run_report(out_dir: Path, measured: list[tuple[str, Measurements]]) -> list[Path]:
    """Write :data:`SUMMARY_CSV` and the size histograms for ``measured``, (image name,
    measurements) pairs, into ``out_dir``; returns the paths written."""
    out_dir = Path(out_dir)
    paths = [out_dir / SUMMARY_CSV]
    with paths[0].open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        writer.writerows(csv_row(image, material, measurements.unit)
                         for image, measurements in measured for material in measurements.materials)
    pooled: dict[tuple[str, str], list[MaterialMeasurement]] = defaultdict(list)
    for _, measurements in measured:
        for material in measurements.materials:
            if material.kind == "particles":
                pooled[material_label(material), measurements.unit].append(material)
    for (label, unit), materials in pooled.items():
        figure = Figure(figsize=(6, 4), dpi=DPI, layout="constrained")
        axes = figure.subplots()
        _draw_sizes(axes, [(material, materials[0].index) for material in materials], unit)
        axes.set_title(f"{label}: {len(materials)} images")
        paths.append(out_dir / f"{_file_stem(label)}.{unit}{SIZES_SUFFIX}")
        _save(figure, paths[-1])
    return paths


def csv_row(image: str, material: MaterialMeasurement, unit: str) -> list[object]:
    """The :data:`CSV_COLUMNS` of one material of one image (``unit``: its lengths' unit)."""
    particles, layer = material.particles, material.layer
    diameters = particles.diameters if particles else None
    return [image, material.index, material.name or "", material.kind, f"{material.area_fraction:.6g}",
            particles.count if particles else "", _number(diameters.median if diameters else None),
            _number(layer.thickness if layer else None), _number(layer.roughness if layer else None), unit]


def material_label(material: MaterialMeasurement) -> str:
    """A material's name, else ``material k``."""
    return material.name or f"material {material.index}"


def _draw_sizes(axes, materials: list[tuple[MaterialMeasurement, int]], unit: str) -> None:
    """Histogram the diameters of the particle materials among ``materials``, (measurement,
    colour number) pairs, pooled by :func:`material_label`; a note when there are none."""
    pooled: dict[str, list[float]] = defaultdict(list)
    colours: dict[str, int] = {}
    for material, colour in materials:
        if material.kind == "particles" and material.particles.diameters is not None:
            pooled[material_label(material)] += material.particles.diameters.values
            colours.setdefault(material_label(material), colour)
    if not pooled:
        axes.text(0.5, 0.5, "no measured particles", ha="center", va="center", transform=axes.transAxes)
        axes.set_axis_off()
        return
    edges = np.histogram_bin_edges(np.concatenate(list(pooled.values())), HISTOGRAM_BINS)
    for label, values in pooled.items():
        axes.hist(values, edges, color=PALETTE[(colours[label] - 1) % len(PALETTE)] / 255, alpha=0.7,
                  label=f"{label} (n = {len(values)})")
    axes.set_xlabel(f"equivalent-circle diameter ({unit})")
    axes.set_ylabel("particles")
    axes.legend()


def _draw_table(axes, measurements: Measurements) -> None:
    """A table of every material's measurements."""
    unit = measurements.unit
    rows = []
    for material in measurements.materials:
        particles, layer = material.particles, material.layer
        diameters = particles.diameters if particles else None
        rows.append([
            f"{material.index} {material.name or ''}".strip(), material.kind,
            f"{100 * material.area_fraction:.1f}",
            f"{particles.count} (+{particles.edge_cut} cut)" if particles else "",
            f"{diameters.median:.3g} ± {diameters.std:.2g}" if diameters else "",
            f"{layer.thickness:.3g} ± {layer.thickness_std:.2g}" if layer else "",
            f"{layer.roughness:.2g}" if layer else ""])
    axes.set_axis_off()
    if not rows:
        axes.text(0.5, 0.5, "no materials", ha="center", va="center", transform=axes.transAxes)
        return
    table = axes.table(cellText=rows, loc="center", colLabels=[
        "material", "kind", "area %", "count", f"median d ({unit})", f"thickness ({unit})",
        f"roughness ({unit})"])
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width(range(len(rows[0])))
    table.scale(1, 1.4)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _file_stem(label: str) -> str:
    """``label`` as a file name: runs of characters other than letters, digits, ``-`` and ``_``
    become ``_`` (``Pt/C`` -> ``Pt_C``, ``material 1`` -> ``material_1``)."""
    return re.sub(r"[^\w-]+", "_", label).strip("_") or "material"


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.savefig(path)
