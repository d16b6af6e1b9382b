"""Evaluate a model on a manifest.

    python -m ml.evaluate --manifest data/holdout.csv            # shipped model, table
    python -m ml.evaluate --manifest data/holdout.csv --model runs/x --json

Every image goes through the same preprocessing and the same calibrated
model as in production (:class:`ml.inference.Predictor`, sha256-checked).
The quality gate is *not* applied, so every row counts; how many rows the
gate would have refused is reported separately (``gate_refused``).

Output keys: ``n``, ``accuracy`` (of the label the product shows),
``macro_auc``, ``covid_auc`` (covid vs rest), ``ece`` (top-label expected
calibration error, 15 bins), ``per_class`` (sensitivity, specificity, auc, n
per label, at the shipped threshold), ``by_source`` and ``by_age_group``
(the same figures per group), ``operating_points`` (COVID sensitivity and
specificity at a range of thresholds and at the shipped one).  A figure the
manifest cannot support is null.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ml.card import CLASSES, COVID
from ml.data import read_manifest
from ml.metrics import OPERATING_THRESHOLDS, operating_points, summarize
from ml.preprocessing import ImageError, load_image, prepare
from ml.quality import check_image


def evaluate(manifest, model_dir=None, batch_size: int = 64, progress: bool = False) -> dict:
    from ml.inference import Predictor

    predictor = Predictor(model_dir, warmup=False)
    records = read_manifest(manifest)
    size = predictor.image_size
    probs, ys, sources, ages = [], [], [], []
    unreadable, refused = [], 0
    batch, batch_meta = [], []

    def flush():
        if batch:
            probs.append(predictor.predict_probs(np.stack(batch), batch_size))
            for y, s, a in batch_meta:
                ys.append(y)
                sources.append(s)
                ages.append(a)
            batch.clear()
            batch_meta.clear()

    for i, r in enumerate(records):
        try:
            decoded = load_image(r.path)
        except ImageError as exc:
            unreadable.append({"path": str(r.path), "error": str(exc)})
            continue
        refused += 0 if check_image(decoded).ok else 1
        batch.append(prepare(decoded, size))
        batch_meta.append((r.y, r.source, r.age_group or "unknown"))
        if len(batch) >= batch_size:
            flush()
        if progress and (i + 1) % 500 == 0:
            print(f"  {i + 1}/{len(records)}", file=sys.stderr, flush=True)
    flush()
    p = np.concatenate(probs) if probs else np.zeros((0, len(CLASSES)))
    y = np.array(ys, dtype=int)
    report = summarize(y, p, predictor.threshold,
                       {"by_source": np.array(sources), "by_age_group": np.array(ages)})
    report = {
        **report,
        "operating_points": operating_points(y, p[:, COVID],
                                             (*OPERATING_THRESHOLDS, predictor.threshold)),
        "model": {"name": predictor.name, "version": predictor.version,
                  "sha256": predictor.sha256, "dir": str(predictor.model_dir)},
        "manifest": str(manifest),
        "unreadable": unreadable,
        "gate_refused": refused,
    }
    return report


def _f(v) -> str:
    return "   -  " if v is None else f"{v:6.3f}"


def format_table(report: dict) -> str:
    lines = [
        f"model {report['model']['name']} {report['model']['version']} "
        f"(sha256 {report['model']['sha256'][:12]}...), threshold {report['threshold']:.4f}",
        f"n={report['n']}  accuracy={_f(report['accuracy']).strip()}  "
        f"macro_auc={_f(report['macro_auc']).strip()}  covid_auc={_f(report['covid_auc']).strip()}  "
        f"ece={_f(report['ece']).strip()}",
        "",
        f"{'group':28s} {'class':10s} {'n':>5s} {'sens':>6s} {'spec':>6s} {'auc':>6s}",
    ]

    def block(name, rep):
        for c in CLASSES:
            m = rep["per_class"][c]
            lines.append(f"{name:28s} {c:10s} {m['n']:5d} {_f(m['sensitivity'])} "
                         f"{_f(m['specificity'])} {_f(m['auc'])}")
        name_ = "" if name == "all" else name
        lines.append(f"{name_:28s} {'(all)':10s} {rep['n']:5d} acc {_f(rep['accuracy'])}  "
                     f"macro_auc {_f(rep['macro_auc'])}  ece {_f(rep['ece'])}")

    block("all", report)
    for key in ("by_source", "by_age_group"):
        for g, rep in report.get(key, {}).items():
            lines.append("")
            block(f"{key[3:]}={g}", rep)
    lines.append("")
    lines.append("COVID vs rest:  threshold   sensitivity  specificity")
    for op in report.get("operating_points", []):
        mark = "  (shipped)" if op["threshold"] == report["threshold"] else ""
        lines.append(f"{'':16s}{op['threshold']:9.4f}   {_f(op['sensitivity'])}       "
                     f"{_f(op['specificity'])}{mark}")
    if report.get("unreadable"):
        lines.append(f"\n{len(report['unreadable'])} unreadable image(s) skipped")
    lines.append(f"quality gate would refuse {report.get('gate_refused', 0)} image(s) (counted above)")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ml.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args(argv)
    report = evaluate(Path(args.manifest), args.model, args.batch_size, progress=not args.json)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
