"""Combine models trained on the same split into one averaged model.

    python -m ml.train --manifest M --out runs/a                   # --init-seed defaults to --seed
    python -m ml.train --manifest M --out runs/b --init-seed 2345  # same patients, another network
    python -m ml.ensemble --manifest M --members runs/a runs/b --out runs/ab

The members must come from the same manifest (sha256), split (seed,
validation fraction, limit), hold-out sources, input size and preprocessing
version, so that no member has trained on the ensemble's validation
patients.  The ensemble (:func:`ml.architecture.make_ensemble`) averages the
members' logits; it is then calibrated, thresholded, given its
out-of-distribution statistics and written with its card exactly as
:mod:`ml.train` writes a single model.  Each member trains within the time
limit on its own (on its own machine, if there are several).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ml import card as cardlib
from ml.train import DEFAULT_CACHE, TARGET_SENSITIVITY, load_split, log, write_artifact


def _same(cards: list[dict], what: str, key) -> object:
    """The members' common value of ``key(card)``; refuses members that differ."""
    values = [key(c) for c in cards]
    if any(v != values[0] for v in values[1:]):
        raise SystemExit(f"the members differ in {what}: {values}")
    return values[0]


def ensemble(args: argparse.Namespace) -> Path:
    from ml.architecture import count_flops, make_ensemble
    from ml.data import manifest_sha256
    from ml.inference import load_keras_model

    t_start = time.time()
    cards = [cardlib.read_card(d) for d in args.members]
    split = _same(cards, "their split (seed, validation fraction, limit, sizes)",
                  lambda c: {k: c["split"].get(k) for k in ("seed", "val_fraction", "limit", "n_train", "n_val")})
    if _same(cards, "their training manifest", lambda c: c["training_manifest_sha256"]) \
            != manifest_sha256(args.manifest):
        raise SystemExit(f"{args.manifest} is not the manifest the members were trained on (sha256 differs)")
    args.holdout_sources = _same(cards, "their hold-out sources", lambda c: sorted(c.get("holdout_sources") or []))
    size, _, _ = _same(cards, "their input size and preprocessing version",
                       lambda c: (c["input_size"], c["preprocessing_version"]))[0]
    args.image_size, args.seed = size, split["seed"]
    args.val_fraction, args.limit = split["val_fraction"], split["limit"]

    data = load_split(args)
    if (len(data.tr_idx), len(data.va_idx)) != (split["n_train"], split["n_val"]):
        raise SystemExit("the manifest no longer splits as it did for the members")
    members = [load_keras_model(Path(d), c) for d, c in zip(args.members, cards)]
    model = make_ensemble(members, name=args.name)
    flops = count_flops(model)
    log(f"ensemble of {len(members)}: {model.count_params():,} parameters, {flops / 1e6:.1f} MFLOPs/image")
    training = {"ensemble_of": [
        {"dir": str(d), "name": c.get("name"), "weights_sha256": c["weights_sha256"],
         "temperature": c["temperature"],
         **{k: v for k, v in c.get("training", {}).items() if k != "history"}}
        for d, c in zip(args.members, cards)],
        "combination": "mean of the members' logits (before their temperatures), then one temperature"}
    return write_artifact(model, args, data, {"name": args.name, "architecture": "cxrnet-ensemble",
                                              "training": training, "flops_per_image": flops},
                          t_start)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ml.ensemble", description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True, help="the manifest the members were trained on")
    p.add_argument("--members", nargs="+", required=True, help="two or more model directories")
    p.add_argument("--out", required=True)
    p.add_argument("--name", default="cxrnet", help="model name written to the card")
    p.add_argument("--target-sensitivity", type=float, default=TARGET_SENSITIVITY,
                   help="COVID sensitivity the threshold keeps on validation")
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    args = p.parse_args(argv)
    if len(args.members) < 2:
        p.error("--members needs two or more model directories")
    if args.cache_dir in ("", "none"):
        args.cache_dir = None
    return args


def main(argv=None) -> int:
    ensemble(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
