"""Benchmark CXR inference on this machine.

    python bench/ml_inference.py [--model DIR] [--image PATH] [--repeats N]

Prints:
* p50/p95 latency at batch 1 of the model alone (prepared input), and of
  decode + preprocess + quality gate + model for a full-size 2500x2500 PNG
  (and the given --image, by default a full-size sample if one is available);
* throughput (images/s) of the model at batch 1, 8 and 32;
* the model's FLOPs per image against this machine's measured float32 matmul
  GFLOP/s, i.e. the fraction of the physical limit the model reaches.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "samples" / "covid_1_actualmed.png"


def percentiles(ts):
    a = np.asarray(ts) * 1000.0
    return float(np.percentile(a, 50)), float(np.percentile(a, 95))


def timeit(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return ts


def synthetic_png(size=2500, seed=0) -> bytes:
    """A full-size 8-bit PNG: a real sample upscaled if available, else a
    synthetic chest-like image (smooth blobs plus noise, so PNG cannot
    compress it unrealistically well)."""
    if SAMPLE.exists():
        im = Image.open(SAMPLE).convert("L").resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(im, dtype=np.int16)
    else:
        yy, xx = np.mgrid[0:size, 0:size] / size
        lungs = np.exp(-(((xx - 0.3) / 0.12) ** 2 + ((yy - 0.5) / 0.25) ** 2)) + \
            np.exp(-(((xx - 0.7) / 0.12) ** 2 + ((yy - 0.5) / 0.25) ** 2))
        arr = (200 - 120 * lungs).astype(np.int16)
    rng = np.random.default_rng(seed)
    arr = np.clip(arr + rng.normal(0, 3, arr.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def matmul_gflops(n=1024, seconds=2.0) -> float:
    """Peak-ish float32 GFLOP/s of this machine measured with a TF matmul."""
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    f = tf.function(lambda a, b: tf.matmul(a, b))
    f(a, b).numpy()
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        f(a, b).numpy()
        reps += 1
    dt = time.perf_counter() - t0
    return 2.0 * n**3 * reps / dt / 1e9


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None)
    p.add_argument("--image", default=None, help="an extra full-size image to time end-to-end")
    p.add_argument("--repeats", type=int, default=50)
    args = p.parse_args(argv)

    import keras
    import tensorflow as tf

    from ml.architecture import count_flops
    from ml.inference import Predictor

    t0 = time.perf_counter()
    pred = Predictor(args.model)
    print(f"model {pred.name} {pred.version} from {pred.model_dir} "
          f"(load {1000 * (time.perf_counter() - t0):.0f} ms); keras {keras.__version__} "
          f"backend {keras.backend.backend()}, devices "
          f"{[d.device_type for d in tf.config.list_physical_devices()]}, "
          f"{os.cpu_count()} CPU threads visible")
    s = pred.image_size
    rng = np.random.default_rng(0)

    x1 = rng.random((1, s, s, 1), dtype=np.float32)
    p50, p95 = percentiles(timeit(lambda: pred._run(x1), args.repeats))
    print(f"model only, batch 1:                      p50 {p50:6.2f} ms   p95 {p95:6.2f} ms")

    png = synthetic_png()
    res = pred.predict_batch([png])[0]
    p50, p95 = percentiles(timeit(lambda: pred.predict_batch([png]), max(10, args.repeats // 2)))
    print(f"decode+preprocess+model, 2500x2500 PNG:   p50 {p50:6.2f} ms   p95 {p95:6.2f} ms  "
          f"({len(png) / 1e6:.1f} MB file; status {res.status}; stages {res.timings_ms})")
    extra = Path(args.image) if args.image else (SAMPLE if SAMPLE.exists() else None)
    if extra and extra.exists():
        data = extra.read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            dims = f"{im.size[0]}x{im.size[1]} {im.format}"
        p50, p95 = percentiles(timeit(lambda: pred.predict_batch([data]), max(10, args.repeats // 2)))
        print(f"decode+preprocess+model, {extra.name} ({dims}): p50 {p50:6.2f} ms   p95 {p95:6.2f} ms")

    flops = count_flops(pred.model)
    best = 0.0
    for b in (1, 8, 32):
        xb = rng.random((b, s, s, 1), dtype=np.float32)
        reps = max(5, 200 // b)
        ts = timeit(lambda: pred._run(xb), reps)
        ips = b / float(np.median(ts))
        best = max(best, ips)
        print(f"throughput batch {b:2d}: {ips:8.1f} images/s  ({flops * ips / 1e9:6.2f} GFLOP/s)")
    gf = matmul_gflops()
    print(f"model: {flops / 1e6:.1f} MFLOPs/image, {pred.model.count_params():,} parameters")
    print(f"measured float32 matmul: {gf:.1f} GFLOP/s; best model throughput reaches "
          f"{flops * best / 1e9:.2f} GFLOP/s = {100 * flops * best / 1e9 / gf:.0f}% of it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
