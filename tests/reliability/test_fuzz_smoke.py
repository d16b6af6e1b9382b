"""D9 in `make test`: a few seconds of the atheris harness that `make reliability` runs
for minutes (reliability/fuzz_upload.py), from the same seed corpus."""

import json
import subprocess
import sys

from tests.reliability.stack import REPO


def test_fuzzing_the_upload_validator_finds_no_crash_or_hang(tmp_path, figure):
    summary_path = tmp_path / "fuzz.json"
    proc = subprocess.run(
        [sys.executable, "-m", "reliability.fuzz_upload", "--seconds", "5", "--corpus", str(tmp_path / "corpus"),
         "--artifacts", str(tmp_path / "artifacts"), "--json", str(summary_path)],
        cwd=REPO, capture_output=True, text=True, timeout=180)
    summary = json.loads(summary_path.read_text())
    figure("D9 smoke", summary["line"], **{k: summary[k] for k in ("execs", "crashes", "hangs", "corpus_size")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary["execs"] > 100 and summary["crashes"] == 0 and summary["hangs"] == 0
