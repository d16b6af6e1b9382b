"""`make reliability`: every reliability and security figure in one JSON report.

    python -m reliability.run            # the long tier (RELIABILITY_FULL=1): kill loops at 20,
                                         # fuzzing and load for minutes
    python -m reliability.run --quick    # the cheap tier's counts, short fuzzing and load

Steps: the pytest files that report figures (every test file using the `figure`
fixture, found by reading tests/, plus the referenced tests of rows D10, F3 and F5) with
TEST_FIGURES_FILE set, on MariaDB when it is reachable on 127.0.0.1:3306 (a database of
its own) else SQLite; the atheris fuzzer (reliability/fuzz_upload.py); the locust load
(reliability/load.py); pip-audit. Writes var/reliability/report.json and prints one
summary line. Exit status 1 when a test failed or a figure that must be 0 is not."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from reliability.procs import reachable

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "var" / "reliability"
# Tests the report refers to rather than re-implements: the golden preprocessing set (D10),
# the model hash check (F5), the audit trail's triggers and verifier (F3).
REFERENCED = {
    "D10": ["tests/ml/test_preprocessing.py::test_golden_tensors_agree",
            "tests/ml/test_preprocessing.py::test_golden_same_prediction"],
    "F5": ["tests/ml/test_train_inference.py::test_tampered_model_is_refused",
           "tests/ml/test_train_inference.py::test_shipped_model_and_card"],
    "F3 suite": ["tests/hospitals/test_audit.py"],
}
# Keys of a figure's values that must be 0 (or False) for the report to pass.
MUST_BE_ZERO = {"lost", "duplicates", "errors", "stored", "accepted", "crashes", "hangs", "outside", "mutable",
                "unrestricted", "inline_html", "bad_headers", "concurrent", "hung", "remaining", "leaks", "served",
                "inferred", "left", "restarts", "failed", "retries", "below_minimum", "non_utc",
                "row_count_mismatches", "checksum_mismatches", "audit_problems", "vulnerabilities_with_fix",
                "missing_results", "executions", "violations", "bypass", "throttle_bypass", "honoured", "unaudited",
                "missing_fields", "mismatches", "missing", "changed", "distinguishable", "unscoped"}
DEFAULT_AUDIT = ("pip-audit -r requirements/base.txt -r requirements/ml.txt -r requirements/production.txt "
                 "--progress-spinner off --format json")



def figure_files() -> list[str]:
    """Every test file that reports figures."""
    found = []
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        if re.search(r"\bfigure\(", path.read_text(errors="replace")):
            found.append(str(path.relative_to(REPO)))
    return found


def run_pytest(targets: list[str], figures: Path, junit: Path, env: dict, extra: list[str]) -> dict:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", f"--junitxml={junit}",
                           "-o", "junit_logging=no", *extra, *targets],
                          cwd=REPO, env={**env, "TEST_FIGURES_FILE": str(figures)}, capture_output=True, text=True)
    (OUT / "pytest.log").write_text(proc.stdout + proc.stderr)
    return {**junit_outcome(junit), "exit_code": proc.returncode, "seconds": round(time.monotonic() - started)}


def junit_outcome(junit: Path) -> dict:
    outcome = {"passed": 0, "failed": 0, "skipped": 0, "failures": [], "skips": []}
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            name = f"{case.get('classname')}::{case.get('name')}"
            if case.find("failure") is not None or case.find("error") is not None:
                outcome["failed"] += 1
                node = case.find("failure") if case.find("failure") is not None else case.find("error")
                outcome["failures"].append({"test": name, "message": (node.get("message") or "")[:500]})
            elif case.find("skipped") is not None:
                outcome["skipped"] += 1
                outcome["skips"].append({"test": name, "reason": (case.find("skipped").get("message") or "")[:300]})
            else:
                outcome["passed"] += 1
    return outcome


def referenced_outcomes(junit: Path) -> dict:
    cases = {}
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            path = case.get("classname", "").replace(".", "/") + ".py"
            ok = case.find("failure") is None and case.find("error") is None and case.find("skipped") is None
            cases.setdefault(path, []).append((case.get("name"), ok))
    result = {}
    for row, targets in REFERENCED.items():
        passed = total = 0
        for target in targets:
            path, _, name = target.partition("::")
            for case_name, ok in cases.get(path, []):
                if not name or case_name == name or case_name.startswith(name + "["):
                    total += 1
                    passed += ok
        result[row] = {"line": f"referenced tests passed {passed}/{total} ({', '.join(targets)})",
                       "passed": passed, "total": total}
    return result


def pip_audit(command: str) -> dict:
    started = time.monotonic()
    proc = subprocess.run(shlex.split(command), cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}"})
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {"line": f"pip-audit did not run ({(proc.stderr or proc.stdout).strip()[-300:]})", "ran": False,
                "command": command}
    deps = data.get("dependencies", data if isinstance(data, list) else [])
    skipped = [d["name"] for d in deps if d.get("skip_reason")]
    vulns = [(d["name"], d["version"], v) for d in deps for v in d.get("vulns", [])]
    with_fix = [x for x in vulns if x[2].get("fix_versions")]
    listed = ", ".join(f"{n} {ver} {v['id']}" for n, ver, v in vulns[:10])
    line = (f"packages audited {len(deps) - len(skipped)} of {len(deps)}; known vulnerabilities {len(vulns)}; with a "
            f"fix available {len(with_fix)}" + (f" ({listed})" if listed else ""))
    if skipped:  # pip-audit says "No known vulnerabilities found" even when it could look nothing up
        line += f"; NOT AUDITED {len(skipped)} (the vulnerability service did not answer for them)"
    return {"line": line, "ran": True, "command": command, "packages": len(deps), "not_audited": len(skipped),
            "vulnerabilities": len(vulns), "vulnerabilities_with_fix": len(with_fix),
            "seconds": round(time.monotonic() - started)}


def read_figures(path: Path) -> dict[str, dict]:
    figures = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                figures[entry.pop("name")] = entry
    return figures


def violations(figures: dict[str, dict]) -> list[str]:
    bad = []
    for name, values in figures.items():
        for key, value in values.items():
            if key in MUST_BE_ZERO and isinstance(value, (int, float)) and not isinstance(value, bool) and value:
                bad.append(f"{name}: {key} = {value}")
    return bad


def load_figures(figures: dict, path: Path) -> None:
    if not path.exists():
        figures["G1"] = {"line": "load run did not complete (see var/reliability/load)", "errors": 1}
        return
    load = json.loads(path.read_text())
    for name, line in load.pop("figures").items():
        figures[name] = {"line": line}
    figures["G1"].update(error_rate=load["error_rate"], errors=load["normal_baseline"]["failures"]
                         + load["normal_with_abuser"]["failures"])
    figures["G4"].update(p95_change_pct=load["other_hospitals_p95_change_pct"],
                         throttle_bypass=int(not load["abuse_within_limit"]))
    figures["G details"] = {"line": "see load", "load": load}


def markdown(report: dict) -> str:
    """The figures as a table for the README's "Security and reliability" section."""
    c = report["conditions"]
    rows = [f"| {name} | {values.get('line', '').replace('|', '/')} |"
            for name, values in report["figures"].items() if name != "G details"]
    return (f"Figures of `make reliability` ({report['tier']} tier, {report['generated_at']}, {c['database']}, "
            f"{c['cpus']} shared cores, fuzzing {c['fuzz_seconds']} s, load {c['load_users']} users for "
            f"{c['load_seconds']} s; tests {report['tests']['passed']} passed, {report['tests']['failed']} failed, "
            f"{report['tests']['skipped']} not run):\n\n| row | figure |\n|---|---|\n" + "\n".join(rows) + "\n")


def run_tests_and_fuzz(args, env, extra, database, full, fuzz_seconds, figures_path, junit):
    """The fuzzer runs beside the tests (its figure is a count, not a latency); the load
    runs alone afterwards."""
    figures_path.unlink(missing_ok=True)
    targets = sorted(set(figure_files()) | {t.split("::")[0] for ts in REFERENCED.values() for t in ts})
    print(f"reliability: fuzzing the upload validator for {fuzz_seconds} s, meanwhile pytest on {database}, "
          f"{len(targets)} files ({'full' if full else 'quick'} tier)", flush=True)
    (OUT / "fuzz.json").unlink(missing_ok=True)
    fuzzer = subprocess.Popen([sys.executable, "-m", "reliability.fuzz_upload", "--seconds", str(fuzz_seconds),
                               "--json", str(OUT / "fuzz.json")], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    return run_pytest(targets, figures_path, junit, env, extra), fuzzer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="cheap-tier counts, short fuzzing and load")
    parser.add_argument("--fuzz-seconds", type=int)
    parser.add_argument("--load-seconds", type=int)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--audit-command", default=os.environ.get("RELIABILITY_AUDIT_COMMAND", DEFAULT_AUDIT))
    parser.add_argument("--skip-load", action="store_true", help="(for a machine without the time for it)")
    parser.add_argument("--out", type=Path, default=OUT / "report.json")
    parser.add_argument("--assemble", action="store_true",
                        help="run nothing but pip-audit: build the report from the last run's outputs under "
                             "var/reliability (figures.jsonl, junit.xml, fuzz.json, load.json)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    full = not args.quick
    fuzz_seconds = args.fuzz_seconds or (600 if full else 30)
    load_seconds = args.load_seconds or (240 if full else 60)
    started = time.monotonic()
    env = {**os.environ, "RELIABILITY_FULL": "1" if full else "0"}
    extra = []
    database = "SQLite"
    if reachable(3306):
        env["DATABASE_URL"] = os.environ.get("RELIABILITY_DATABASE_URL", "mysql://root@127.0.0.1:3306/hospital_rel")
        extra.append("--create-db")
        database = "MariaDB"
    figures_path, junit = OUT / "figures.jsonl", OUT / "junit.xml"
    if args.assemble:
        tests = junit_outcome(junit)
        fuzzer = None
    else:
        tests, fuzzer = run_tests_and_fuzz(args, env, extra, database, full, fuzz_seconds, figures_path, junit)
    figures = read_figures(figures_path)
    for row, outcome in referenced_outcomes(junit).items():
        figures[row] = outcome
    if fuzzer is not None:
        fuzzer.wait()
    if (OUT / "fuzz.json").exists():
        fuzz = json.loads((OUT / "fuzz.json").read_text())
        figures["D9"] = {k: v for k, v in fuzz.items() if k not in ("name", "log_tail")}

    if args.assemble:
        load_figures(figures, OUT / "load.json")
    elif not args.skip_load:
        print(f"reliability: load, {args.users} users for {load_seconds} s", flush=True)
        (OUT / "load.json").unlink(missing_ok=True)
        subprocess.run([sys.executable, "-m", "reliability.load", "--seconds", str(load_seconds), "--users",
                        str(args.users), "--json", str(OUT / "load.json")], cwd=REPO, env=env, capture_output=True)
        load_figures(figures, OUT / "load.json")

    print("reliability: pip-audit", flush=True)
    figures["D8 pip-audit"] = pip_audit(args.audit_command)

    not_run = [s["test"] + ": " + s["reason"] for s in tests["skips"]]
    bad = violations(figures)
    report = {
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "tier": "full" if full else "quick",
        "conditions": {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
                       "database": database, "fuzz_seconds": fuzz_seconds, "load_seconds": load_seconds,
                       "load_users": args.users, "note": "shared machine; other work ran at the same time"},
        "tests": tests, "not_run": not_run, "must_be_zero_violations": bad,
        "figures": dict(sorted(figures.items())), "wall_seconds": round(time.monotonic() - started),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str))
    args.out.with_suffix(".md").write_text(markdown(report))
    for name, values in sorted(figures.items()):
        if name != "G details":
            print(f"  {name}: {values.get('line', '')}")
    ok = tests["failed"] == 0 and not bad
    print(f"reliability ({report['tier']}, {database}, {os.cpu_count()} cpus): {len(figures)} figures; tests "
          f"{tests['passed']} passed, {tests['failed']} failed, {tests['skipped']} not run; must-be-zero figures "
          f"{'all 0' if not bad else 'NOT 0: ' + '; '.join(bad[:5])}; {figures['D8 pip-audit']['line']}; "
          f"report {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
