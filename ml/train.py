"""Train a chest X-ray classifier and write ``model.keras`` + ``card.json``.

    python -m ml.train --manifest ../shared/data/cxr/manifest.csv --out runs/cxrnet
    python -m ml.train --manifest ... --arch baseline --out runs/baseline

Steps: read the manifest; split patients (never files) into train and
validation, stratified by label and source; decode every image once through
:mod:`ml.preprocessing` (cached as a numpy array); train with X-ray-suitable
augmentation, class weights and early stopping on the validation loss; fit a
temperature on validation; choose the COVID threshold that keeps validation
COVID sensitivity >= the target; fit the out-of-distribution statistics of
the embedding; write the model, the card and the OOD statistics.

This module is training-only: the web process and the worker never import it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from ml import card as cardlib  # noqa: E402
from ml.card import CLASSES, COVID  # noqa: E402
from ml.data import load_arrays, manifest_sha256, patient_split, read_manifest, write_manifest  # noqa: E402
from ml.metrics import choose_threshold, fit_temperature, softmax, summarize  # noqa: E402
from ml.preprocessing import PREPROCESSING_VERSION  # noqa: E402

MODEL_VERSION = "1.0.0"
DEFAULT_CACHE = Path(os.environ.get("CXR_CACHE_DIR", Path.cwd() / ".cache" / "ml"))


def log(msg: str) -> None:
    print(f"[{_dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


# --------------------------------------------------------------------------
# Augmentation (training only; never part of the saved model)
# --------------------------------------------------------------------------


def make_augmenter(seed: int, strength: float = 1.0):
    """Augmentations that keep an X-ray an X-ray.

    Small rotations, shifts and zooms mimic patient positioning; brightness,
    contrast and gamma mimic exposure and detector response; blur and noise
    mimic resolution and quantum noise.  No horizontal flips: the heart is on
    the left, and laterality markers are part of the picture.
    """
    import keras
    from keras import layers

    s = strength

    class RandomGamma(layers.Layer):
        """x ** gamma with log(gamma) ~ U(-r, r), per image."""

        def __init__(self, r, seed=None, **kw):
            super().__init__(**kw)
            self.r = r
            self.seed_gen = keras.random.SeedGenerator(seed)

        def call(self, x, training=None):
            if not training:
                return x
            n = keras.ops.shape(x)[0]
            g = keras.ops.exp(keras.random.uniform((n, 1, 1, 1), -self.r, self.r, seed=self.seed_gen))
            return keras.ops.power(keras.ops.clip(x, 1e-6, 1.0), g)

    class RandomBlurNoise(layers.Layer):
        """Per image: a 3x3 blur with probability 1/3, then Gaussian noise of a
        random amplitude; the result is clipped to [0, 1]."""

        def __init__(self, sigma, seed=None, **kw):
            super().__init__(**kw)
            self.sigma = sigma
            self.seed_gen = keras.random.SeedGenerator(seed)

        def call(self, x, training=None):
            if not training:
                return x
            ops = keras.ops
            n = ops.shape(x)[0]
            k = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32) / 16.0
            blurred = ops.depthwise_conv(x, ops.convert_to_tensor(k[:, :, None, None]), padding="same")
            use = ops.cast(keras.random.uniform((n, 1, 1, 1), seed=self.seed_gen) < 1 / 3, x.dtype)
            x = use * blurred + (1 - use) * x
            amp = keras.random.uniform((n, 1, 1, 1), 0, self.sigma, seed=self.seed_gen)
            x = x + amp * keras.random.normal(ops.shape(x), seed=self.seed_gen)
            return ops.clip(x, 0.0, 1.0)

    class Clip01(layers.Layer):
        def call(self, x):
            return keras.ops.clip(x, 0.0, 1.0)

    return keras.Sequential([
        layers.RandomRotation(0.03 * s, fill_mode="constant", seed=seed),  # ~ +/-11 degrees
        layers.RandomTranslation(0.06 * s, 0.06 * s, fill_mode="constant", seed=seed + 1),
        layers.RandomZoom((-0.15 * s, 0.1 * s), fill_mode="constant", seed=seed + 2),
        layers.RandomContrast(0.3 * s, value_range=(0, 1), seed=seed + 3),
        layers.RandomBrightness(0.12 * s, value_range=(0, 1), seed=seed + 4),
        Clip01(),
        RandomGamma(0.35 * s, seed=seed + 5),
        RandomBlurNoise(0.03 * s, seed=seed + 6),
    ], name="augment")


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------


def class_weights(y: np.ndarray) -> dict[int, float]:
    """Inverse-frequency class weights normalised to a mean of 1."""
    counts = np.bincount(y, minlength=len(CLASSES)).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / (len(CLASSES) * np.maximum(counts, 1)), 0.0)
    return {i: float(v) for i, v in enumerate(w)}


class EpochLogger:
    """Prints one line per epoch (Keras' own progress bar is off)."""

    def __new__(cls, total_epochs: int):
        import keras

        class _Cb(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.time()

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                parts = " ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items())
                                 if isinstance(v, (int, float)) and k != "learning_rate")
                log(f"epoch {epoch + 1}/{total_epochs} {parts} ({time.time() - self.t0:.0f}s)")

        return _Cb()


def predict_numpy(model, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
    out = []
    for i in range(0, len(x), batch_size):
        out.append(np.asarray(model(x[i:i + batch_size].astype(np.float32), training=False)))
    return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)


def fit_ood(train_emb: np.ndarray, val_emb: np.ndarray, quantile: float = 0.995,
            margin: float = 1.25) -> dict:
    """Mahalanobis-distance statistics of the penultimate embedding.

    A shrunk covariance (towards its mean eigenvalue) keeps the inverse stable
    when there are few images.  The cut-off is the ``quantile`` of the
    validation distances times ``margin``: in-distribution chests pass, while
    pictures far from every training image are refused.
    """
    mu = train_emb.mean(axis=0)
    d = train_emb - mu
    cov = d.T @ d / max(1, len(d) - 1)
    dim = cov.shape[0]
    shrink = 0.1 if len(d) > 10 * dim else 0.5
    cov = (1 - shrink) * cov + shrink * (np.trace(cov) / dim + 1e-6) * np.eye(dim)
    prec = np.linalg.inv(cov)
    dv = val_emb - mu
    dist = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", dv, prec, dv), 0))
    cutoff = float(np.quantile(dist, quantile) * margin) if len(dist) else float("inf")
    return {"mean": mu.astype(np.float32), "precision": prec.astype(np.float32),
            "cutoff": np.float32(cutoff),
            "val_quantiles": np.quantile(dist, [0.5, 0.9, 0.99]).astype(np.float32) if len(dist) else np.zeros(3, np.float32)}


def train(args: argparse.Namespace) -> Path:
    import keras

    from ml.architecture import build, count_flops, with_temperature

    t_start = time.time()
    keras.utils.set_random_seed(args.seed)
    gpus = []
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if args.deterministic:
            tf.config.experimental.enable_op_determinism()
        gpus = tf.config.list_physical_devices("GPU")
    elif keras.backend.backend() == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
    elif keras.backend.backend() == "torch":
        import torch

        gpus = list(range(torch.cuda.device_count()))
    log(f"keras {keras.__version__} backend={keras.backend.backend()} "
        f"devices={'GPU x%d' % len(gpus) if gpus else 'CPU'}")

    records = read_manifest(args.manifest, limit=args.limit, seed=args.seed)
    holdout = []
    if args.holdout_sources:
        # Whole sources kept out of training *and* validation: an estimate of
        # how the model does on a hospital it has never seen.
        held = set(args.holdout_sources)
        holdout = [r for r in records if r.source in held]
        records = [r for r in records if r.source not in held]
        log(f"holding out {len(holdout)} images from {', '.join(sorted(held))}")
    tr_idx, va_idx = patient_split(records, args.val_fraction, seed=args.seed)
    if not va_idx or not tr_idx:
        raise SystemExit("manifest too small for a patient-disjoint split")
    log(f"{len(records)} images: {len(tr_idx)} train / {len(va_idx)} validation "
        f"({len({records[i].patient_id for i in va_idx})} validation patients)")

    size = args.image_size
    x_all = load_arrays(records, size, cache_dir=args.cache_dir)
    y_all = np.array([r.y for r in records])
    src_all = np.array([r.source for r in records])
    age_all = np.array([r.age_group or "unknown" for r in records])
    x_tr, y_tr = x_all[tr_idx].astype(np.float32), y_all[tr_idx]
    x_va, y_va = x_all[va_idx].astype(np.float32), y_all[va_idx]
    log(f"decoded in {time.time() - t_start:.0f}s; train counts "
        + ", ".join(f"{c}={int((y_tr == i).sum())}" for i, c in enumerate(CLASSES)))

    model = build(args.arch, size)
    flops = count_flops(model)
    log(f"{args.arch}: {model.count_params():,} parameters, {flops / 1e6:.1f} MFLOPs/image")
    trainer = keras.Sequential([keras.Input((size, size, 1)),
                                make_augmenter(args.seed, args.augment), model], name="trainer")
    steps = int(np.ceil(len(x_tr) / args.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(
        args.lr * 0.1, decay_steps=max(1, args.epochs * steps - steps), alpha=0.02,
        warmup_target=args.lr, warmup_steps=steps)
    trainer.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=args.weight_decay),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
    )
    y_va_1 = y_va
    cw = class_weights(y_tr)
    log("class weights " + ", ".join(f"{CLASSES[k]}={v:.2f}" for k, v in cw.items()))
    callbacks = [EpochLogger(args.epochs),
                 keras.callbacks.EarlyStopping(monitor="val_loss", patience=args.patience,
                                               restore_best_weights=True, verbose=0)]
    if args.time_budget:
        callbacks.append(_TimeBudget(t_start, args.time_budget * 60))
    hist = trainer.fit(x_tr, y_tr, validation_data=(x_va, y_va_1), epochs=args.epochs,
                       batch_size=args.batch_size, class_weight=cw, shuffle=True,
                       callbacks=callbacks, verbose=0)
    epochs_run = len(hist.history.get("loss", []))
    best_epoch = int(np.argmin(hist.history["val_loss"])) + 1 if hist.history.get("val_loss") else epochs_run
    log(f"training stopped after {epochs_run} epochs (best epoch {best_epoch})")

    # ---- calibration and operating point on validation -------------------
    p_raw = predict_numpy(model, x_va)
    logits = np.log(np.clip(p_raw, 1e-12, 1.0))
    temperature = fit_temperature(logits, y_va)
    p_cal = softmax(logits / temperature)
    threshold = choose_threshold(p_cal[:, COVID], y_va == COVID, args.target_sensitivity)
    groups = {"by_source": src_all[va_idx], "by_age_group": age_all[va_idx]}
    val_metrics = summarize(y_va, p_cal, threshold, groups)
    raw_ece = summarize(y_va, p_raw, threshold)["ece"]
    log(f"temperature {temperature:.3f} (ECE {raw_ece:.4f} -> {val_metrics['ece']:.4f}); "
        f"threshold {threshold:.4f}")

    final = with_temperature(model, temperature)

    # ---- out-of-distribution statistics of the embedding -----------------
    emb_model = keras.Model(final.input, final.get_layer("embedding").output)
    rng = np.random.default_rng(args.seed)
    sub = rng.permutation(len(x_tr))[: min(len(x_tr), 4000)]
    ood = fit_ood(predict_numpy(emb_model, x_tr[sub]), predict_numpy(emb_model, x_va))

    # ---- write the artifact -----------------------------------------------
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_manifest([records[i] for i in va_idx], out / "val_manifest.csv")
    holdout_metrics = None
    if holdout:
        write_manifest(holdout, out / "holdout_manifest.csv")
        x_ho = load_arrays(holdout, size, cache_dir=args.cache_dir, progress=False).astype(np.float32)
        y_ho = np.array([r.y for r in holdout])
        p_ho = softmax(np.log(np.clip(predict_numpy(model, x_ho), 1e-12, 1.0)) / temperature)
        holdout_metrics = summarize(y_ho, p_ho, threshold,
                                    {"by_source": np.array([r.source for r in holdout])})
        log("held-out sources: covid sensitivity "
            f"{holdout_metrics['per_class']['covid']['sensitivity']}, n={len(holdout)}")
    model_path = out / cardlib.MODEL_FILE
    final.save(model_path)
    np.savez(out / cardlib.OOD_FILE, **ood)
    elapsed = time.time() - t_start
    card = {
        "name": args.name or args.arch,
        "version": MODEL_VERSION,
        "architecture": args.arch,
        "classes": list(CLASSES),
        "input_size": [size, size, 1],
        "input_range": [0.0, 1.0],
        "preprocessing_version": PREPROCESSING_VERSION,
        "threshold": threshold,
        "target_sensitivity": args.target_sensitivity,
        "temperature": temperature,
        "temperature_in_model": True,
        "decision_rule": "covid if P(covid) >= threshold, else the likelier of pneumonia and normal",
        "weights_file": cardlib.MODEL_FILE,
        "weights_sha256": cardlib.sha256_file(model_path),
        "ood_file": cardlib.OOD_FILE,
        "ood_sha256": cardlib.sha256_file(out / cardlib.OOD_FILE),
        "ood_cutoff": float(ood["cutoff"]),
        "training_manifest": Path(args.manifest).name,
        "training_manifest_sha256": manifest_sha256(args.manifest),
        "split": {"method": "patient-disjoint, stratified by label and source",
                  "seed": args.seed, "val_fraction": args.val_fraction,
                  "n_train": len(tr_idx), "n_val": len(va_idx), "limit": args.limit},
        "training": {"epochs_max": args.epochs, "epochs_run": epochs_run, "best_epoch": best_epoch,
                     "batch_size": args.batch_size, "lr": args.lr, "augment": args.augment,
                     "class_weights": {CLASSES[k]: v for k, v in cw.items()},
                     "seconds": round(elapsed, 1), "history": {k: [round(float(v), 5) for v in vs]
                                                               for k, vs in hist.history.items()}},
        "validation": val_metrics,
        "holdout_sources": sorted(args.holdout_sources or []),
        "holdout": holdout_metrics,
        "validation_ece_uncalibrated": raw_ece,
        "parameters": int(final.count_params()),
        "flops_per_image": flops,
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "intended_use": "Screening aid for frontal chest X-rays; not a diagnosis.",
    }
    cardlib.write_card(out, card)
    log(f"wrote {model_path} ({model_path.stat().st_size / 1e6:.1f} MB) and card.json "
        f"in {elapsed / 60:.1f} min")
    print(json.dumps({k: val_metrics[k] for k in ("n", "accuracy", "macro_auc", "covid_auc", "ece")}))
    return out


class _TimeBudget:
    """Stops training when the wall-clock budget is nearly spent."""

    def __new__(cls, t_start: float, seconds: float):
        import keras

        class _Cb(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.time()

            def on_epoch_end(self, epoch, logs=None):
                per_epoch = time.time() - self.t0
                if time.time() - t_start + per_epoch > seconds:
                    log("time budget reached; stopping")
                    self.model.stop_training = True

        return _Cb()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ml.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True, help="CSV with path,label,patient_id,source,...")
    p.add_argument("--out", default=None, help="output directory (default .cache/ml/runs/<arch>-<time>)")
    p.add_argument("--arch", choices=("cxrnet", "baseline"), default="cxrnet")
    p.add_argument("--name", default=None, help="model name written to the card")
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--augment", type=float, default=1.0, help="augmentation strength (0 = off)")
    p.add_argument("--patience", type=int, default=5, help="early-stopping patience (epochs)")
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--target-sensitivity", type=float, default=0.97,
                   help="COVID sensitivity the threshold must keep on validation (>= 0.95)")
    p.add_argument("--holdout-sources", nargs="*", default=[],
                   help="sources excluded from training and validation, evaluated at the end")
    p.add_argument("--limit", type=int, default=None, help="use a stratified subset of N images")
    p.add_argument("--time-budget", type=float, default=55.0,
                   help="stop training after this many minutes (0 = none)")
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    p.add_argument("--no-deterministic", dest="deterministic", action="store_false")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = str(Path(".cache") / "ml" / "runs" / f"{args.arch}-{_dt.datetime.now():%Y%m%d-%H%M%S}")
    if args.cache_dir in ("", "none"):
        args.cache_dir = None
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
