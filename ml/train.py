"""Train a chest X-ray classifier and write ``model.keras`` + ``card.json``.

    python -m ml.train --manifest ../shared/data/cxr/manifest.csv --out runs/cxrnet
    python -m ml.train --manifest ... --arch baseline --out runs/baseline

Steps: read the manifest; split patients (never files) into train and
validation, stratified by label and source; decode every image once through
:mod:`ml.preprocessing` (cached as a numpy array); train with X-ray-suitable
augmentation, batches drawn balanced over classes (and, optionally, over
sources within a class), and early stopping on the validation loss; fit a
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

MODEL_VERSION = "4.0.0"
#: the COVID sensitivity the threshold keeps on validation: a margin over the
#: 0.95 target for the sampling error of new patients
TARGET_SENSITIVITY = 0.96
DEFAULT_CACHE = Path(os.environ.get("CXR_CACHE_DIR", Path.cwd() / ".cache" / "ml"))


def log(msg: str) -> None:
    print(f"[{_dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


# --------------------------------------------------------------------------
# Augmentation (training only; never part of the saved model)
# --------------------------------------------------------------------------


def make_augmenter(seed: int, strength: float = 1.0):
    """Augmentations that keep an X-ray an X-ray but blur the source's signature.

    Rotations, shifts and zooms with a little aspect change mimic patient
    positioning and other crops; random bars along the borders and a patch
    over one corner mimic collimation and hide the burnt-in text, laterality
    markers and frame edges that differ between hospitals; a round trip
    through half the resolution, blur and noise mimic other detectors and
    redistributed copies.  Preprocessing equalises the histogram, which makes
    any monotone tone curve a no-op, so exposure changes (contrast,
    brightness, gamma) stay mild.  No horizontal flips: the heart is on the
    left.
    """
    import keras
    from keras import layers

    s = strength
    ops = keras.ops

    class RandomGamma(layers.Layer):
        """x ** gamma with log(gamma) ~ U(-r, r), per image."""

        def __init__(self, r, seed=None, **kw):
            super().__init__(**kw)
            self.r = r
            self.seed_gen = keras.random.SeedGenerator(seed)

        def call(self, x, training=None):
            if not training:
                return x
            n = ops.shape(x)[0]
            g = ops.exp(keras.random.uniform((n, 1, 1, 1), -self.r, self.r, seed=self.seed_gen))
            return ops.power(ops.clip(x, 1e-6, 1.0), g)

    class RandomBorderMask(layers.Layer):
        """Per image: each border, with probability 1/2, covered by a bar up
        to ``frac`` of the side, and with probability 1/2 one corner covered
        by a patch of 5-22% of the side; both filled with one random grey."""

        def __init__(self, frac, seed=None, **kw):
            super().__init__(**kw)
            self.frac = frac
            self.seed_gen = keras.random.SeedGenerator(seed)

        def call(self, x, training=None):
            if not training or not self.frac:
                return x
            n, h, w = ops.shape(x)[0], x.shape[1], x.shape[2]
            rows = ops.reshape((ops.arange(h, dtype="float32") + 0.5) / h, (1, h, 1, 1))
            cols = ops.reshape((ops.arange(w, dtype="float32") + 0.5) / w, (1, 1, w, 1))

            def rand(lo=0.0, hi=1.0):
                return keras.random.uniform((n, 1, 1, 1), lo, hi, seed=self.seed_gen)

            def bar(coord, far):
                width = rand(0.0, self.frac) * ops.cast(rand() < 0.5, "float32")
                edge = (1.0 - coord) if far else coord
                return ops.cast(edge < width, "float32")

            border = ops.maximum(ops.maximum(bar(rows, False), bar(rows, True)),
                                 ops.maximum(bar(cols, False), bar(cols, True)))
            bottom, right = ops.cast(rand() < 0.5, "float32"), ops.cast(rand() < 0.5, "float32")
            r = bottom * (1.0 - rows) + (1.0 - bottom) * rows
            c = right * (1.0 - cols) + (1.0 - right) * cols
            corner = (ops.cast(r < rand(0.05, 0.22), "float32") * ops.cast(c < rand(0.05, 0.22), "float32")
                      * ops.cast(rand() < 0.5, "float32"))
            m = ops.maximum(border, corner)
            return m * rand() + (1.0 - m) * x

    class RandomBlurNoise(layers.Layer):
        """Per image: a round trip through half the resolution with
        probability 1/4, a 3x3 blur with probability 1/3, then Gaussian noise
        of a random amplitude; the result is clipped to [0, 1]."""

        def __init__(self, sigma, seed=None, **kw):
            super().__init__(**kw)
            self.sigma = sigma
            self.seed_gen = keras.random.SeedGenerator(seed)

        def call(self, x, training=None):
            if not training:
                return x
            n, h, w = ops.shape(x)[0], x.shape[1], x.shape[2]
            small = ops.image.resize(x, (h // 2, w // 2), interpolation="bilinear", antialias=True)
            coarse = ops.image.resize(small, (h, w), interpolation="bilinear")
            use = ops.cast(keras.random.uniform((n, 1, 1, 1), seed=self.seed_gen) < 1 / 4, x.dtype)
            x = use * coarse + (1 - use) * x
            k = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32) / 16.0
            blurred = ops.depthwise_conv(x, ops.convert_to_tensor(k[:, :, None, None]), padding="same")
            use = ops.cast(keras.random.uniform((n, 1, 1, 1), seed=self.seed_gen) < 1 / 3, x.dtype)
            x = use * blurred + (1 - use) * x
            amp = keras.random.uniform((n, 1, 1, 1), 0, self.sigma, seed=self.seed_gen)
            x = x + amp * keras.random.normal(ops.shape(x), seed=self.seed_gen)
            return ops.clip(x, 0.0, 1.0)

    class Clip01(layers.Layer):
        def call(self, x):
            return ops.clip(x, 0.0, 1.0)

    return keras.Sequential([
        layers.RandomRotation(0.03 * s, fill_mode="constant", seed=seed),  # ~ +/-11 degrees
        layers.RandomTranslation(0.06 * s, 0.06 * s, fill_mode="constant", seed=seed + 1),
        layers.RandomZoom((-0.25 * s, 0.1 * s), (-0.25 * s, 0.1 * s), fill_mode="constant",
                          seed=seed + 2),  # independent factors: aspect changes too
        RandomBorderMask(0.12 * s, seed=seed + 7),
        layers.RandomContrast(0.15 * s, value_range=(0, 1), seed=seed + 3),
        layers.RandomBrightness(0.05 * s, value_range=(0, 1), seed=seed + 4),
        Clip01(),
        RandomGamma(0.15 * s, seed=seed + 5),
        RandomBlurNoise(0.03 * s, seed=seed + 6),
    ], name="augment")


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------


def balanced_weights(y: np.ndarray, sources: np.ndarray, power: float = 0.5) -> np.ndarray:
    """Per-image sampling weights, balanced over classes and, within a class,
    over sources.

    Every class gets the same total weight.  Within a class, each source's
    share is proportional to ``n ** power`` (0.5: the square root of its image
    count) rather than to ``n``: a large single-hospital collection no longer
    drowns the small multi-hospital ones, so "which source" stops being the
    cheapest answer, while a handful of images is not repeated into
    memorisation (``power=0`` would weight every source equally, ``1`` is
    plain class weighting).  Above 1 the largest source of a class is drawn
    more than its share: with this data, ``2`` gives the adult NIH normals
    (the normals that look most like the adult COVID-19 films) three times
    the draws of the easy paediatric ones.  Normalised to a mean of 1.
    """
    y = np.asarray(y)
    sources = np.asarray(sources)
    w = np.zeros(len(y), dtype=np.float64)
    classes = np.unique(y)
    for c in classes:
        in_c = y == c
        srcs, counts = np.unique(sources[in_c], return_counts=True)
        shares = counts.astype(np.float64) ** power
        shares /= shares.sum()
        for s, n, share in zip(srcs, counts, shares):
            w[in_c & (sources == s)] = share / len(classes) / n
    return w * (len(y) / w.sum()) if len(y) else w


def balanced_batches(x: np.ndarray, y: np.ndarray, weights: np.ndarray, batch_size: int,
                     steps: int, seed: int):
    """Training batches drawn with replacement with probabilities
    proportional to ``weights`` (see :func:`balanced_weights`), ``steps``
    batches per epoch, redrawn each epoch from a seeded generator.  Drawing
    rather than weighting the loss spends the compute on the images that
    count: a large source's images are seen less often instead of being seen
    every epoch at a small weight."""
    import keras

    p = np.asarray(weights, dtype=np.float64) / np.sum(weights)

    class _Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.on_epoch_end()

        def __len__(self):
            return steps

        def on_epoch_end(self):
            self.order = self.rng.choice(len(y), size=steps * batch_size, p=p)

        def __getitem__(self, i):
            idx = np.sort(self.order[i * batch_size:(i + 1) * batch_size])
            return x[idx].astype(np.float32), y[idx]

    return _Batches()


def weight_table(y: np.ndarray, sources: np.ndarray, w: np.ndarray) -> dict:
    """Share of the total weight per class and per (class, source)."""
    total = w.sum()
    out = {}
    for k, c in enumerate(CLASSES):
        in_c = y == k
        out[c] = {"share": round(float(w[in_c].sum() / total), 4),
                  "sources": {str(s): round(float(w[in_c & (sources == s)].sum() / total), 4)
                              for s in sorted(set(sources[in_c].tolist()))}}
    return out


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

    from ml.architecture import build, count_flops

    t_start = time.time()
    keras.utils.set_random_seed(args.init_seed)
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

    data = load_split(args)
    tr_idx, va_idx, x_va, y_va = data.tr_idx, data.va_idx, data.x_va, data.y_va
    x_tr, y_tr = data.x_all[tr_idx], data.y_all[tr_idx]
    src_all, size = data.src_all, args.image_size

    model = build(args.arch, size)
    if args.init_from:
        # A warm restart: start from a trained model's weights (same architecture).
        start = keras.models.load_model(Path(args.init_from) / cardlib.MODEL_FILE,
                                        compile=False, safe_mode=True)
        for layer in model.layers:
            if layer.weights:
                layer.set_weights(start.get_layer(layer.name).get_weights())
        log(f"weights initialised from {args.init_from}")
    flops = count_flops(model)
    log(f"{args.arch}: {model.count_params():,} parameters, {flops / 1e6:.1f} MFLOPs/image")
    trainer = keras.Sequential([keras.Input((size, size, 1)),
                                make_augmenter(args.init_seed, args.augment), model], name="trainer")
    w_tr = balanced_weights(y_tr, src_all[tr_idx], args.source_balance)
    w_va = balanced_weights(y_va, src_all[va_idx], args.source_balance)
    weights = weight_table(y_tr, src_all[tr_idx], w_tr)
    log("sampling shares " + "; ".join(
        f"{c} {v['share']:.2f} (" + ", ".join(f"{s} {x:.2f}" for s, x in v["sources"].items()) + ")"
        for c, v in weights.items()))
    steps = int(np.ceil((args.epoch_images or len(x_tr)) / args.batch_size))
    batches = balanced_batches(x_tr, y_tr, w_tr, args.batch_size, steps, args.init_seed)
    schedule = keras.optimizers.schedules.CosineDecay(
        args.lr * 0.1, decay_steps=max(1, args.epochs * steps - steps), alpha=0.02,
        warmup_target=args.lr, warmup_steps=steps)
    trainer.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=args.weight_decay),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
    )
    callbacks = [EpochLogger(args.epochs),
                 keras.callbacks.EarlyStopping(monitor="val_loss", patience=args.patience,
                                               restore_best_weights=True, verbose=0)]
    if args.time_budget:
        callbacks.append(_TimeBudget(t_start, args.time_budget * 60))
    hist = trainer.fit(batches, validation_data=(x_va, y_va, w_va),
                       validation_batch_size=128, epochs=args.epochs, callbacks=callbacks, verbose=0)
    epochs_run = len(hist.history.get("loss", []))
    best_epoch = int(np.argmin(hist.history["val_loss"])) + 1 if hist.history.get("val_loss") else epochs_run
    log(f"training stopped after {epochs_run} epochs (best epoch {best_epoch})")

    training = {"seed": args.init_seed, "epochs_max": args.epochs, "epochs_run": epochs_run,
                "best_epoch": best_epoch, "batch_size": args.batch_size, "lr": args.lr, "augment": args.augment,
                "init_from": _start_summary(args.init_from),
                "source_balance": args.source_balance, "epoch_images": steps * args.batch_size,
                "sampling_shares": weights, "seconds": round(time.time() - t_start, 1),
                "history": {k: [round(float(v), 5) for v in vs] for k, vs in hist.history.items()}}
    return write_artifact(model, args, data, {"name": args.name or args.arch, "architecture": args.arch,
                                              "training": training, "flops_per_image": flops}, t_start)


class Split:
    """The images of a manifest split as :func:`ml.data.patient_split` splits
    them, decoded once (cached), with hold-out sources set aside; the
    validation images as float32 once, for training and calibration alike."""

    def __init__(self, records, tr_idx, va_idx, ho_idx, x_all):
        self.records, self.tr_idx, self.va_idx, self.ho_idx, self.x_all = records, tr_idx, va_idx, ho_idx, x_all
        self.y_all = np.array([r.y for r in records])
        self.src_all = np.array([r.source for r in records])
        self.age_all = np.array([r.age_group or "unknown" for r in records])
        self.x_va, self.y_va = x_all[va_idx].astype(np.float32), self.y_all[va_idx]


def load_split(args: argparse.Namespace) -> Split:
    t0 = time.time()
    records = read_manifest(args.manifest, limit=args.limit, seed=args.seed)
    tr_idx, va_idx = patient_split(records, args.val_fraction, seed=args.seed)
    ho_idx = []
    if args.holdout_sources:
        # Whole sources kept out of training *and* validation: an estimate of
        # how the model does on a hospital it has never seen.  They are
        # removed after the split, so the other sources' validation patients
        # are the same as without a hold-out.
        held = set(args.holdout_sources)
        ho_idx = [i for i, r in enumerate(records) if r.source in held]
        tr_idx = [i for i in tr_idx if records[i].source not in held]
        va_idx = [i for i in va_idx if records[i].source not in held]
        log(f"holding out {len(ho_idx)} images from {', '.join(sorted(held))}")
    if not va_idx or not tr_idx:
        raise SystemExit("manifest too small for a patient-disjoint split")
    log(f"{len(tr_idx) + len(va_idx)} images: {len(tr_idx)} train / {len(va_idx)} validation "
        f"({len({records[i].patient_id for i in va_idx})} validation patients)")
    data = Split(records, tr_idx, va_idx, ho_idx, load_arrays(records, args.image_size, cache_dir=args.cache_dir))
    y_tr = data.y_all[tr_idx]
    log(f"decoded in {time.time() - t0:.0f}s; train counts "
        + ", ".join(f"{c}={int((y_tr == i).sum())}" for i, c in enumerate(CLASSES)))
    return data


def write_artifact(model, args: argparse.Namespace, data: Split, fields: dict, t_start: float) -> Path:
    """Calibrate ``model`` (its softmax at temperature 1) on validation, choose
    the COVID threshold, fit the out-of-distribution statistics, score the
    hold-out sources and write ``model.keras``, ``ood.npz`` and ``card.json``
    (``fields`` adds the name, architecture and training entries)."""
    import keras

    from ml.architecture import with_temperature

    records, tr_idx, va_idx, ho_idx = data.records, data.tr_idx, data.va_idx, data.ho_idx
    x_va, y_va = data.x_va, data.y_va

    # ---- calibration and operating point on validation -------------------
    p_raw = predict_numpy(model, x_va)
    logits = np.log(np.clip(p_raw, 1e-12, 1.0))
    temperature = fit_temperature(logits, y_va)
    p_cal = softmax(logits / temperature)
    threshold = choose_threshold(p_cal[:, COVID], y_va == COVID, args.target_sensitivity)
    groups = {"by_source": data.src_all[va_idx], "by_age_group": data.age_all[va_idx]}
    val_metrics = summarize(y_va, p_cal, threshold, groups)
    raw_ece = summarize(y_va, p_raw, threshold)["ece"]
    log(f"temperature {temperature:.3f} (ECE {raw_ece:.4f} -> {val_metrics['ece']:.4f}); "
        f"threshold {threshold:.4f}")

    final = with_temperature(model, temperature)

    # ---- out-of-distribution statistics of the embedding -----------------
    emb_model = keras.Model(final.input, final.get_layer("embedding").output)
    # up to 4000 training images, indexed straight out of x_all (no copy of the training set)
    sub = np.asarray(tr_idx)[np.random.default_rng(args.seed).permutation(len(tr_idx))[:4000]]
    ood = fit_ood(predict_numpy(emb_model, data.x_all[sub]), predict_numpy(emb_model, x_va))

    # ---- write the artifact -----------------------------------------------
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_manifest([records[i] for i in va_idx], out / "val_manifest.csv")
    holdout_metrics = None
    if ho_idx:
        write_manifest([records[i] for i in ho_idx], out / "holdout_manifest.csv")
        p_ho = softmax(np.log(np.clip(predict_numpy(model, data.x_all[ho_idx]), 1e-12, 1.0)) / temperature)
        holdout_metrics = summarize(data.y_all[ho_idx], p_ho, threshold, {"by_source": data.src_all[ho_idx]})
        log("held-out sources: covid sensitivity "
            f"{holdout_metrics['per_class']['covid']['sensitivity']}, n={len(ho_idx)}")
    model_path = out / cardlib.MODEL_FILE
    final.save(model_path)
    np.savez(out / cardlib.OOD_FILE, **ood)
    size = args.image_size
    card = {
        "name": fields["name"],
        "version": MODEL_VERSION,
        "architecture": fields["architecture"],
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
                  "holdout_sources_removed_after_split": bool(ho_idx),
                  "seed": args.seed, "val_fraction": args.val_fraction,
                  "n_train": len(tr_idx), "n_val": len(va_idx), "limit": args.limit},
        "training": fields["training"],
        "validation": val_metrics,
        "holdout_sources": sorted(args.holdout_sources or []),
        "holdout": holdout_metrics,
        "validation_ece_uncalibrated": raw_ece,
        "parameters": int(final.count_params()),
        "flops_per_image": fields["flops_per_image"],
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "intended_use": "Screening aid for frontal chest X-rays; not a diagnosis.",
    }
    cardlib.write_card(out, card)
    elapsed = time.time() - t_start
    log(f"wrote {model_path} ({model_path.stat().st_size / 1e6:.1f} MB) and card.json "
        f"in {elapsed / 60:.1f} min")
    print(json.dumps({k: val_metrics[k] for k in ("n", "accuracy", "macro_auc", "covid_auc", "ece")}))
    return out


def _start_summary(model_dir) -> dict | None:
    """What a warm restart started from: its card's training entry, without the history."""
    if not model_dir:
        return None
    start = cardlib.read_card(model_dir)
    return {"name": start.get("name"), "weights_sha256": start.get("weights_sha256"),
            **{k: v for k, v in start.get("training", {}).items() if k != "history"}}


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
    p.add_argument("--epochs", type=int, default=80)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=1234,
                   help="seed of the split, the initial weights, the draws and the augmentation")
    p.add_argument("--init-seed", type=int, default=None,
                   help="another seed for the weights, draws and augmentation only: "
                        "the same validation patients, a different network")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--augment", type=float, default=0.6, help="augmentation strength (0 = off)")
    p.add_argument("--patience", type=int, default=20, help="early-stopping patience (epochs)")
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--source-balance", type=float, default=2.0,
                   help="within a class, each source is drawn ~ n**this (1 = class balance only, "
                        "2 = the largest source of a class favoured)")
    p.add_argument("--epoch-images", type=int, default=4096,
                   help="images drawn per epoch (0 = as many as training images)")
    p.add_argument("--target-sensitivity", type=float, default=TARGET_SENSITIVITY,
                   help="COVID sensitivity the threshold must keep on validation (>= 0.95)")
    p.add_argument("--holdout-sources", nargs="*", default=[],
                   help="sources excluded from training and validation, evaluated at the end")
    p.add_argument("--limit", type=int, default=None, help="use a stratified subset of N images")
    p.add_argument("--time-budget", type=float, default=55.0,
                   help="stop training after this many minutes (0 = none)")
    p.add_argument("--init-from", default=None,
                   help="model directory whose weights start the training (warm restart)")
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    p.add_argument("--no-deterministic", dest="deterministic", action="store_false")
    args = p.parse_args(argv)
    if args.out is None:
        args.out = str(Path(".cache") / "ml" / "runs" / f"{args.arch}-{_dt.datetime.now():%Y%m%d-%H%M%S}")
    if args.init_seed is None:
        args.init_seed = args.seed
    if args.cache_dir in ("", "none"):
        args.cache_dir = None
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
