"""Coverage-guided fuzzing of the upload validator with atheris (libFuzzer).

    python -m reliability.fuzz_upload --seconds 300 --json var/reliability/fuzz.json

Every input goes through `screening.validation.validate_scan`; a refusal
(ValidationError) is the expected answer to garbage, anything else is a crash. The seed
corpus is a valid PNG, JPEG (baseline and progressive), 16-bit PNG and DICOM made here;
libFuzzer keeps what it finds in --corpus. Hangs: any input taking over --timeout
seconds. The summary (executions, crashes, hangs, corpus size) goes to --json."""

import argparse
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def seeds() -> dict[str, bytes]:
    import numpy as np
    from PIL import Image

    from tests.screening.conftest import chest, dicom_bytes, jpeg_bytes, png_bytes

    small = chest(48)
    out = io.BytesIO()
    Image.fromarray((small * 255).astype(np.uint8)).save(out, format="PNG", optimize=True)
    return {"seed.png": out.getvalue(), "seed16.png": png_bytes(small, bits=16),
            "seed.jpg": jpeg_bytes(small), "seed-progressive.jpg": jpeg_bytes(small, progressive=True),
            "seed.dcm": dicom_bytes(small)}


def fuzz(argv: list[str]) -> None:
    """Runs in the child: set Django up, instrument the validator and fuzz it."""
    import atheris

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    import django

    django.setup()
    from django.core.exceptions import ValidationError

    with atheris.instrument_imports(include=["screening", "ml"]):
        from screening.validation import validate_scan

    def one_input(data: bytes) -> None:
        try:
            validate_scan(data=data, filename="fuzz")
        except ValidationError:
            pass

    atheris.Setup(argv, one_input)
    atheris.Fuzz()


def run(seconds: int, corpus: Path, artifacts: Path, timeout: int) -> dict:
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    import django

    django.setup()
    for name, data in seeds().items():
        (corpus / name).write_bytes(data)
    before = {p.name for p in artifacts.iterdir()}
    argv = [sys.executable, "-m", "reliability.fuzz_upload", "--child", f"-max_total_time={seconds}",
            f"-timeout={timeout}", "-rss_limit_mb=3072", "-max_len=65536", "-print_final_stats=1",
            f"-artifact_prefix={artifacts}/", str(corpus)]
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, errors="replace",
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    elapsed = time.monotonic() - started
    log = proc.stdout + proc.stderr
    execs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
    new = sorted({p.name for p in artifacts.iterdir()} - before)
    crashes = [n for n in new if n.startswith(("crash-", "oom-"))]
    hangs = [n for n in new if n.startswith("timeout-")]
    return {"engine": "atheris (libFuzzer)", "seconds": round(elapsed, 1), "execs": int(execs[-1]) if execs else 0,
            "crashes": len(crashes), "hangs": len(hangs), "artifacts": new, "exit_code": proc.returncode,
            "corpus_size": sum(1 for _ in corpus.iterdir()), "log_tail": log[-1500:] if proc.returncode else ""}


def main() -> None:
    if "--child" in sys.argv:
        fuzz([a for a in sys.argv if a != "--child"])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--timeout", type=int, default=10, help="seconds one input may take (a hang)")
    parser.add_argument("--corpus", type=Path, default=REPO / "var" / "reliability" / "fuzz-corpus")
    parser.add_argument("--artifacts", type=Path, default=REPO / "var" / "reliability" / "fuzz-artifacts")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    summary = run(args.seconds, args.corpus, args.artifacts, args.timeout)
    line = (f"fuzz execs {summary['execs']} in {summary['seconds']} s; unique crashes {summary['crashes']}; "
            f"hangs {summary['hangs']}; corpus size {summary['corpus_size']}")
    print(f"FIGURE D9: {line}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"name": "D9", "line": line, **summary}, indent=1))
    sys.exit(1 if summary["crashes"] or summary["hangs"] else 0)


if __name__ == "__main__":
    main()
