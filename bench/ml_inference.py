"""Benchmark CXR inference on this machine, every serving backend side by side.

    python bench/ml_inference.py [--model DIR] [--image PATH] [--repeats N] [--backends keras,onnx]

For each backend (Keras in a compiled tf.function; ONNX Runtime on the model's
``model.onnx`` export), measured in interleaved rounds so that both see the same
machine load, it prints:

* p50/p95 latency at batch 1 of the model alone (prepared input), and of decode +
  preprocess + quality gate + model for a full-size image: by default a synthetic
  2500x2500 16-bit PNG made here, or the file given with --image;
* the same plus the Grad-CAM overlay (what the worker stores per screening), and the
  decode alone (common to both backends);
* throughput (images/s) of the model at batch 1, 8 and 32, and the CPU time per image
  (all threads: the work done, which other processes' load does not inflate);
* the model's FLOPs per image against this machine's measured float32 matmul GFLOP/s,
  i.e. the fraction of the physical limit each backend reaches;
* the largest difference in probabilities between the backends on the same inputs.

It ends with a one-line summary.
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

BATCHES = (1, 8, 32)


def percentiles(ts):
    a = np.asarray(ts) * 1000.0
    return float(np.percentile(a, 50)), float(np.percentile(a, 95))


def timed(fn, repeats: int, cpu: list | None = None) -> list[float]:
    """Wall-clock seconds of each call; the process CPU seconds (all threads) go to `cpu`."""
    ts = []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        ts.append(time.perf_counter() - t)
        if cpu is not None:
            cpu.append(time.process_time() - c)
    return ts


def interleaved(fns: dict, repeats: int, rounds: int = 5, cpu: dict | None = None) -> dict[str, list[float]]:
    """Time each function `repeats` times, in `rounds` alternating rounds (after one
    warm-up call each), so that every backend meets the same machine load."""
    for fn in fns.values():
        fn()
    out = {name: [] for name in fns}
    per_round = max(1, repeats // rounds)
    for _ in range(rounds):
        for name, fn in fns.items():
            out[name] += timed(fn, per_round, None if cpu is None else cpu.setdefault(name, []))
    return out


def synthetic_png(size: int = 2500, seed: int = 0) -> bytes:
    """A full-size 16-bit grayscale PNG of a chest-like picture (smooth body and lung
    fields, rib bands, noise so that PNG cannot compress it unrealistically well)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    body = np.exp(-(((x - 0.5) / 0.42) ** 6 + ((y - 0.55) / 0.55) ** 6))
    img = 0.15 + 0.55 * body
    for cx in (0.31, 0.69):
        img -= 0.38 * np.exp(-(((x - cx) / 0.14) ** 2 + ((y - 0.5) / 0.27) ** 2) ** 2)
    img += 0.25 * np.exp(-(((x - 0.5) / 0.07) ** 2 + ((y - 0.55) / 0.35) ** 2))
    img += 0.05 * (np.sin(y * 2 * np.pi * 9 + 9 * np.abs(x - 0.5)) > 0.6) * body
    img += rng.normal(0, 0.01, img.shape).astype(np.float32)
    buf = io.BytesIO()
    Image.fromarray((np.clip(img, 0, 1) * 65535).astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def matmul_gflops(n: int = 1024, seconds: float = 2.0) -> dict[str, tuple[float, float]]:
    """Float32 matmul rates of this machine, TensorFlow's (oneDNN/Eigen) and numpy's
    (BLAS), on all cores: (GFLOP/s of wall-clock time, GFLOP per CPU-second). Each is
    the best single 1024x1024 product over `seconds`: on a shared machine the best burst
    is the closest to the physical limit, and CPU time is not inflated by other load."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    ta, tb = tf.constant(a), tf.constant(b)
    f = tf.function(lambda a, b: tf.matmul(a, b))
    out = {}
    for name, fn in (("tensorflow", lambda: f(ta, tb).numpy()), ("numpy", lambda: a @ b)):
        fn()
        wall, cpu = [], []
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            timed(fn, 1, cpu)
            wall.append(time.perf_counter() - t0)
        walls = np.diff([0.0] + wall)
        out[name] = (2.0 * n**3 / min(walls) / 1e9, 2.0 * n**3 / max(min(cpu), 1e-9) / 1e9)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model directory (default: the shipped model or CXR_MODEL_DIR)")
    p.add_argument("--image", default=None, help="a full-size image to time end to end (default: synthetic PNG)")
    p.add_argument("--repeats", type=int, default=60)
    p.add_argument("--backends", default="keras,onnx")
    args = p.parse_args(argv)

    import keras
    import tensorflow as tf

    from ml.architecture import count_flops
    from ml.explain import explain
    from ml.inference import Predictor
    from ml.preprocessing import load_image_bytes

    preds = {}
    for backend in args.backends.split(","):
        t0 = time.perf_counter()
        preds[backend] = Predictor(args.model, backend=backend)
        print(f"{backend:5s}: model {preds[backend].name} {preds[backend].version} from {preds[backend].model_dir} "
              f"loaded in {1000 * (time.perf_counter() - t0):.0f} ms")
    first = next(iter(preds.values()))
    import onnxruntime

    devices = [d.device_type for d in tf.config.list_physical_devices()]
    print(f"keras {keras.__version__} (backend {keras.backend.backend()}, tensorflow {tf.__version__}), "
          f"onnxruntime {onnxruntime.__version__}; devices {devices}; "
          f"{os.cpu_count()} CPU threads visible; load average {os.getloadavg()[0]:.1f}")
    s = first.image_size
    rng = np.random.default_rng(0)

    # Same inputs, same probabilities: prepared random inputs and the full-size image.
    if args.image:
        data, label = Path(args.image).read_bytes(), Path(args.image).name
    else:
        data, label = synthetic_png(), "synthetic 16-bit PNG"
    with Image.open(io.BytesIO(data)) as im:
        dims = f"{im.size[0]}x{im.size[1]} {im.format} {im.mode}"
    x = rng.random((32, s, s, 1), dtype=np.float32)
    probs = {b: pr.predict_probs(x) for b, pr in preds.items()}
    full = {b: pr.predict_batch([data], quality_gate=False)[0] for b, pr in preds.items()}
    diff = max(float(np.abs(probs[a] - probs[b]).max()) for a in probs for b in probs)
    diff = max([diff] + [abs(full[a].probabilities[c] - full[b].probabilities[c])
                         for a in full for b in full for c in full[a].probabilities])
    same = len({(r.label, r.decision) for r in full.values()}) == 1
    print(f"same inputs: max abs difference in probabilities between backends {diff:.1e} "
          f"(33 inputs; tolerance 1e-4); same label and decision on the full-size image: {same}")

    print(f"\nlatency at batch 1 (p50 / p95 ms); full-size image: {label}, {dims}, {len(data) / 1e6:.1f} MB")
    x1 = x[:1]
    model_only = interleaved({b: (lambda pr=pr: pr._run(x1)) for b, pr in preds.items()}, args.repeats)
    end_to_end = interleaved({b: (lambda pr=pr: pr.predict_batch([data])) for b, pr in preds.items()},
                             max(10, args.repeats // 3))
    decoded = load_image_bytes(data)

    def worker_path(pr):  # what the worker does per scan: decode, predict, heatmap overlay
        d = pr.decode(data)
        explain(pr, d, class_name=pr.predict_batch([d])[0].label or "normal")

    with_cam = interleaved({b: (lambda pr=pr: worker_path(pr)) for b, pr in preds.items()},
                           max(10, args.repeats // 3))
    status = {b: pr.predict_batch([decoded])[0] for b, pr in preds.items()}
    summary = {}
    for b in preds:
        m, e, c = percentiles(model_only[b]), percentiles(end_to_end[b]), percentiles(with_cam[b])
        summary[b] = {"model_p50": m[0], "e2e_p50": e[0], "e2e_p95": e[1]}
        print(f"  {b:5s} model only {m[0]:7.2f} / {m[1]:7.2f}   decode+preprocess+gate+model {e[0]:7.1f} / "
              f"{e[1]:7.1f}   + heatmap overlay {c[0]:7.1f} / {c[1]:7.1f}   (status {status[b].status}; "
              f"stages {status[b].timings_ms})")
    dec = percentiles(timed(lambda: load_image_bytes(data), 10))
    print(f"  decode alone (both backends): {dec[0]:.1f} / {dec[1]:.1f} ms")
    ref = first.model
    from ml.explain import gradcam

    grad = percentiles(timed(lambda: gradcam(ref, x[0], 0), 10))
    print(f"  Grad-CAM through gradients (keras, for comparison with the forward-pass maps): "
          f"{grad[0]:.1f} / {grad[1]:.1f} ms")

    flops = count_flops(ref)
    rates = matmul_gflops()
    peak = max(w for w, _ in rates.values())
    per_cpu = max(c for _, c in rates.values())
    print(f"\nthroughput at {flops / 1e6:.1f} MFLOPs/image ({ref.count_params():,} parameters): images/s, GFLOP/s "
          f"and share of the {peak:.0f} GFLOP/s matmul peak; CPU time per image (all threads; other load does "
          f"not inflate it) and the share of the matmul's {per_cpu:.0f} GFLOP per CPU-second it reaches")
    for n in BATCHES:
        xb = x[:n]
        cpu: dict[str, list[float]] = {}
        ts = interleaved({b: (lambda pr=pr: pr._run(xb)) for b, pr in preds.items()}, max(10, 320 // n), cpu=cpu)
        cells = []
        for b in preds:
            ips = n / float(np.median(ts[b]))
            cpu_ms = 1000 * float(np.median(cpu[b])) / n
            summary[b][f"ips_{n}"], summary[b][f"cpu_{n}"] = ips, cpu_ms
            cells.append(f"{b} {ips:6.0f}/s ({flops * ips / 1e9:5.1f}; {100 * flops * ips / 1e9 / peak:3.0f}%) "
                         f"CPU {cpu_ms:4.2f} ms ({100 * flops / (cpu_ms / 1000) / 1e9 / per_cpu:3.0f}%)")
        print(f"  batch {n:2d}: " + "   ".join(cells))
    print("measured float32 matmul (best 1024x1024 product, all cores): "
          + ", ".join(f"{k} {w:.1f} GFLOP/s, {c:.1f} GFLOP per CPU-second" for k, (w, c) in rates.items()))

    # The verdict goes by CPU time per image at batch 1 (the work; wall-clock figures on a
    # shared machine depend on what else runs) and is checked against the latency p50.
    best = min(summary, key=lambda b: summary[b]["cpu_1"])
    agrees = best == min(summary, key=lambda b: summary[b]["model_p50"])
    parts = [f"{b}: model p50 {v['model_p50']:.2f} ms, full-size p50 {v['e2e_p50']:.0f} ms, "
             f"{v['ips_1']:.0f}/{v['ips_8']:.0f}/{v['ips_32']:.0f} img/s at 1/8/32 "
             f"(CPU {v['cpu_1']:.1f}/{v['cpu_8']:.1f}/{v['cpu_32']:.1f} ms/image), "
             f"{100 * flops / (min(v['cpu_1'], v['cpu_8'], v['cpu_32']) / 1000) / 1e9 / per_cpu:.0f}% of the "
             f"matmul rate per CPU-second"
             for b, v in summary.items()]
    print(f"\nSUMMARY ml_inference: {'; '.join(parts)}; max abs diff {diff:.1e}; "
          f"least CPU per image at batch 1: {best} ({'also' if agrees else 'not'} the lowest latency p50 in this run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
