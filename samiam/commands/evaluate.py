"""``samiam evaluate --pred DIR --gt DIR``: the paper's metrics per difficulty class, per method."""

from __future__ import annotations

import argparse
from pathlib import Path

from samiam.errors import SamiamError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="score segmentations against ground truth with the paper's metrics",
        description="Scores prediction folders against ground truth (mIoU, recall, precision, F1, "
                    "boundary IoU, FPR, PQ; see docs/metrics.md), prints a table per difficulty class "
                    "and, with --out, writes scores.csv, summary.csv, performance.png and errors.png.")
    parser.add_argument("--pred", type=Path, action="append", required=True, metavar="DIR",
                        help="folder of NAME.labels.png label maps (from `samiam segment`) or NAME.npz "
                             "mask stacks (array 'masks', (N, H, W)); repeat to compare methods")
    parser.add_argument("--label", action="append", default=[], metavar="NAME",
                        help="name of each --pred in the table and charts (default: the folder name)")
    parser.add_argument("--gt", type=Path, required=True, metavar="PATH",
                        help="synthetic data set folder (manifest.json, gt/NAME/*.png) or a Label Studio "
                             "JSON export")
    parser.add_argument("--out", type=Path, metavar="DIR", help="write CSV files and charts here")
    parser.add_argument("--iou-threshold", type=float, metavar="TAU",
                        help="a prediction matches a ground-truth mask when IoU > TAU (default 0.05)")
    parser.add_argument("--weights", type=Path, metavar="FILE",
                        help='JSON per-label weights for the weighted variant, e.g. {"Pt/C": 10, "SrTiO3": 1}')
    parser.set_defaults(func=run)


def method_labels(folders: list[Path], labels: list[str]) -> list[str]:
    """One label per --pred folder: the given --label names, else the folder names."""
    if labels and len(labels) != len(folders):
        raise SamiamError(f"give one --label per --pred ({len(folders)}), or none; got {len(labels)}")
    labels = labels or [folder.resolve().name for folder in folders]
    if len(set(labels)) != len(labels):
        raise SamiamError(f"method labels must differ: {labels}; name them with --label")
    return labels


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from tqdm import tqdm

    from samiam import evaluate as ev
    from samiam.settings import MetricSettings

    labels = method_labels(args.pred, args.label)
    settings = MetricSettings()
    if args.iou_threshold is not None:
        if not 0 <= args.iou_threshold < 1:
            raise SamiamError(f"--iou-threshold must be in [0, 1); got {args.iou_threshold}")
        settings = dataclasses.replace(settings, iou_threshold=args.iou_threshold)
    predictions = {label: ev.find_predictions(folder) for label, folder in zip(labels, args.pred)}
    ground_truth = ev.read_ground_truth(args.gt)
    weights = ev.read_weights(args.weights) if args.weights else None
    evaluation = ev.evaluate(ground_truth, predictions, settings, weights,
                             progress=lambda items: tqdm(items, desc="evaluate", unit="image"))

    print(ev.format_table(evaluation))
    for label in labels:
        if evaluation.missing[label]:
            names = evaluation.missing[label]
            print(f"{label}: no prediction for {len(names)} of {len(ground_truth)} images, scored as empty "
                  f"(all metrics 0): {', '.join(names)}")
        if evaluation.unmatched[label]:
            print(f"{label}: ignored {len(evaluation.unmatched[label])} prediction files without ground "
                  f"truth: {', '.join(evaluation.unmatched[label])}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        written = [ev.write_csv(evaluation.rows, args.out / "scores.csv"),
                   ev.write_csv(evaluation.summary, args.out / "summary.csv")]
        try:
            written += ev.plot_summary(evaluation, args.out)
        except ImportError:
            print("matplotlib is not installed: no charts (pip install matplotlib)")
        print("wrote " + ", ".join(str(path) for path in written))
    return 0
