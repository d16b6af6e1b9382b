"""Load on loopback (G1, G2, G4 of RELIABILITY.md): gunicorn with the production settings,
a real Celery worker running the shipped model, a private redis-server (broker, cache and
rate-limit counters), MariaDB when it is reachable on 3306 (a database of its own,
`hospital_load`), else SQLite. Locust drives `--users` partner systems of three hospitals
(reliability/locustfile.py) for `--seconds`: the first half alone (baseline), the second
half with one abusive client of a fourth hospital. Then it waits for the queue to drain.

    python -m reliability.load --seconds 120 --users 50 --json var/reliability/load.json

Reports latency percentiles per operation, errors, requests per second, peak web RSS,
upload-to-result times, the deepest queue, the drain time, the abusive client's 429s and
how much the other hospitals' p95 moved."""

from __future__ import annotations

import argparse
import csv
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from reliability.procs import OwnRedis, free_port, reachable, wait_port

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
HOSPITALS = 3
PATIENTS = 20
CLIENT_RATE = "60/min"  # per client: a normal user sends about 15 a minute, the abuser far more
USERS_PER_CLIENT = 1  # simulated users sharing one partner client
UPLOAD = "POST screenings/ (upload)"  # the locustfile's name for uploads



def seed(out: Path) -> None:
    """Runs inside Django (production settings): hospitals, patients, one API client per
    USERS_PER_CLIENT simulated users, and the abuser's hospital and client."""
    import django

    django.setup()
    import datetime

    from django_scopes import scope

    from hospitals.api.services import partner_client_create
    from hospitals.models import Hospital, Membership, Role, User
    from patients import services as patient_services

    clients = int(os.environ["LOAD_CLIENTS_COUNT"])
    admin = User.objects.create_user(email="load-admin@example.org", password=secrets.token_urlsafe(16))
    normal, pools = [], []
    for h in range(HOSPITALS + 1):
        slug = f"load-{h}" if h < HOSPITALS else "load-abuser"
        hospital = Hospital.objects.create(name=f"Load hospital {h}", slug=slug)
        with scope(hospital=hospital):
            Membership.objects.create(user=admin, hospital=hospital, role=Role.HOSPITAL_ADMIN)
            patients = [patient_services.patient_create(
                hospital=hospital, actor=admin, mrn=f"L{h}-{i:04d}", given_name=f"Given{i}", family_name=f"Load{h}",
                sex="female", birth_date=datetime.date(1970 + i % 40, 1 + i % 12, 1 + i % 28)).pk
                for i in range(PATIENTS)]
        pools.append((hospital, patients))
    scopes = ["read", "write", "screening:upload"]
    for u in range(clients):
        hospital, patients = pools[u % HOSPITALS]
        with scope(hospital=hospital):
            new = partner_client_create(hospital=hospital, name=f"load client {u}", scopes=scopes, actor=admin)
        normal.append({"slug": hospital.slug, "client_id": new.client_id, "client_secret": new.client_secret,
                       "patients": patients})
    hospital, patients = pools[-1]
    with scope(hospital=hospital):
        new = partner_client_create(hospital=hospital, name="abusive client", scopes=scopes, actor=admin)
    abuser = {"slug": hospital.slug, "client_id": new.client_id, "client_secret": new.client_secret,
              "patients": patients}
    out.write_text(json.dumps({"normal": normal, "abuser": abuser}))


def fetch_tokens(path: Path, host: str) -> None:
    """One OAuth2 client-credentials token per client, before the load starts (checking a
    hashed client secret is deliberately slow; partner systems reuse their token for an hour)."""
    import requests

    clients = json.loads(path.read_text())
    for credential in [*clients["normal"], clients["abuser"]]:
        response = requests.post(f"{host}/o/token/", data={"grant_type": "client_credentials"}, timeout=120,
                                 auth=(credential["client_id"], credential["client_secret"]),
                                 headers={"X-Forwarded-Proto": "https"})
        response.raise_for_status()
        credential["token"] = response.json()["access_token"]
    path.write_text(json.dumps(clients))


def film_png(target: Path) -> None:
    """The CC BY 4.0 fixture film, upscaled to 1024 x 1024 (a realistic upload size)."""
    from PIL import Image

    image = Image.open(REPO / "tests" / "ml" / "fixtures" / "kermany_normal_IM-0003-0001.jpg").convert("L")
    image.resize((1024, 1024), Image.Resampling.BICUBIC).save(target, format="PNG")


class Sampler(threading.Thread):
    """Every second: the inference queue's depth and the web server's total RSS."""

    def __init__(self, redis_url: str, web_pid: int):
        super().__init__(daemon=True)
        import psutil
        import redis

        self.redis, self.web = redis.Redis.from_url(redis_url), psutil.Process(web_pid)
        self.max_depth, self.max_rss_mb, self.stopped = 0, 0.0, False

    def run(self):
        while not self.stopped:
            try:
                self.max_depth = max(self.max_depth, self.redis.llen("inference"))
                procs = [self.web, *self.web.children(recursive=True)]
                self.max_rss_mb = max(self.max_rss_mb, sum(p.memory_info().rss for p in procs) / 2**20)
            except Exception:  # noqa: BLE001 - a sample missed while a process restarts
                pass
            time.sleep(1)


class Database:
    """Raw DB-API access to the load database (the runner itself does not load Django)."""

    def __init__(self, url: str):
        self.url = url

    def query(self, sql: str) -> list[tuple]:
        if self.url.startswith("sqlite:///"):
            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"))
        else:
            import MySQLdb

            conn = MySQLdb.connect(host="127.0.0.1", port=3306, user="root", database=self.url.rsplit("/", 1)[1])
        try:
            cur = conn.cursor()
            cur.execute(sql)
            return list(cur.fetchall())
        finally:
            conn.close()


def _num(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):  # "N/A" where an operation had no request
        return 0.0


def stats(path: Path) -> dict[str, dict]:
    rows = {}
    with open(path) as fh:
        for row in csv.DictReader(fh):
            rows[row["Name"]] = {
                "requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
                "p50_ms": _num(row["50%"]), "p95_ms": _num(row["95%"]), "p99_ms": _num(row["99%"]),
                "rps": _num(row["Requests/s"])}
    return rows


def locust(workdir: Path, env: dict, host: str, users: int, seconds: int, tag: str, classes: list[str]) -> dict:
    prefix = workdir / tag
    subprocess.run([str(BIN / "locust"), "-f", str(REPO / "reliability" / "locustfile.py"), "--headless",
                    "--host", host, "-u", str(users), "-r", str(max(1, users // 5)), "-t", f"{seconds}s",
                    "--csv", str(prefix), "--only-summary", "--stop-timeout", "10", *classes],
                   cwd=REPO, env=env, check=False, stdout=open(f"{prefix}.log", "w"), stderr=subprocess.STDOUT,
                   timeout=seconds + 120)
    return stats(Path(f"{prefix}_stats.csv"))


def aggregate(rows: dict[str, dict], *, abuse: bool) -> dict:
    """Totals over the normal operations (or the abusive one); percentiles are the
    request-weighted mean of each operation's percentile (locust keeps no merged series
    for a subset)."""
    chosen = {k: v for k, v in rows.items() if k != "Aggregated" and k.startswith("abuse") == abuse}
    n = sum(v["requests"] for v in chosen.values()) or 1
    return {"requests": sum(v["requests"] for v in chosen.values()),
            "failures": sum(v["failures"] for v in chosen.values()),
            "rps": round(sum(v["rps"] for v in chosen.values()), 1),
            **{q: round(sum(v[q] * v["requests"] for v in chosen.values()) / n) for q in ("p50_ms", "p95_ms",
                                                                                           "p99_ms")}}


def run(seconds: int, users: int, workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    redis_server = OwnRedis()
    redis_server.start()
    use_mariadb = reachable(3306)
    if use_mariadb:
        import MySQLdb

        conn = MySQLdb.connect(host="127.0.0.1", port=3306, user="root")
        conn.cursor().execute("DROP DATABASE IF EXISTS hospital_load")
        conn.cursor().execute("CREATE DATABASE hospital_load CHARACTER SET utf8mb4")
        conn.close()
        db_url = "mysql://root@127.0.0.1:3306/hospital_load"
    else:
        (workdir / "load.sqlite3").unlink(missing_ok=True)
        db_url = f"sqlite:///{workdir / 'load.sqlite3'}"
    media = workdir / "media"
    port = free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.production",
           "DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
           "DATABASE_URL": db_url, "CACHE_URL": f"redis://127.0.0.1:{redis_server.port}/1",
           "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis_server.port}/0", "DJANGO_SECURE_SSL_REDIRECT": "false",
           "DJANGO_BEHIND_TLS_PROXY": "true", "DJANGO_MEDIA_ROOT": str(media), "API_THROTTLE_RATE": CLIENT_RATE,
           "API_UPLOAD_THROTTLE_RATE": "600/min", "DJANGO_LOG_LEVEL": "WARNING", "TF_CPP_MIN_LOG_LEVEL": "3",
           "LOAD_CLIENTS_COUNT": str(max(1, users // USERS_PER_CLIENT)), "LOAD_CLIENTS": str(workdir / "clients.json"),
           "LOAD_FILM": str(workdir / "film.png"), "LOAD_ABUSE_OUT": str(workdir / "abuse.json")}
    procs = []
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=REPO, env=env, check=True,
                       capture_output=True)
        subprocess.run([sys.executable, "-m", "reliability.load", "--seed", str(workdir / "clients.json")], cwd=REPO,
                       env=env, check=True, capture_output=True)
        film_png(workdir / "film.png")
        web = subprocess.Popen([str(BIN / "gunicorn"), "config.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2", "-k",
                                "gthread", "--threads", "8", "--timeout", "60", "--keep-alive", "30"],
                               cwd=REPO, env=env,
                               stdout=open(workdir / "web.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(web)
        worker = subprocess.Popen([str(BIN / "celery"), "-A", "config", "worker", "-Q", "inference,default",
                                   "--concurrency", "1", "--loglevel", "WARNING", "-n", f"load-{os.getpid()}@%h"],
                                  cwd=REPO, env=env, stdout=open(workdir / "worker.log", "w"),
                                  stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(worker)
        wait_port(port, True, 90, "gunicorn")
        sampler = Sampler(env["CELERY_BROKER_URL"], web.pid)
        sampler.start()
        host = f"http://127.0.0.1:{port}"
        fetch_tokens(workdir / "clients.json", host)
        started = time.monotonic()
        baseline = locust(workdir, env, host, users, seconds // 2, "baseline", ["HospitalUser"])
        abused = locust(workdir, env, host, users + 1, seconds - seconds // 2, "abused",
                        ["HospitalUser", "AbusiveClient"])
        load_end = time.monotonic()
        db = Database(db_url)
        drain_deadline = load_end + 600
        while time.monotonic() < drain_deadline:
            left = db.query("SELECT COUNT(*) FROM screening_screening WHERE status IN ('queued', 'running')")[0][0]
            if not left:
                break
            time.sleep(2)
        drain_s = time.monotonic() - load_end
        sampler.stopped = True
        rows = db.query("SELECT status, created_at, finished_at FROM screening_screening")
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
        redis_server.stop()
    durations = sorted((_dt(f) - _dt(c)).total_seconds() for s, c, f in rows if f is not None and s == "done")
    outcomes = {status: sum(1 for s, _, _ in rows if s == status) for status in {s for s, _, _ in rows}}
    abuse = json.loads((workdir / "abuse.json").read_text()) if (workdir / "abuse.json").exists() else {}
    normal_a, normal_b = aggregate(baseline, abuse=False), aggregate(abused, abuse=False)
    # The rate limiter lets a new client spend its `rate` at once, then at most `rate` a minute
    # (hospitals/api/throttling.py), so over the phase at most this many 200s
    allowed = int(CLIENT_RATE.split("/")[0]) * (1 + (seconds - seconds // 2) / 60)
    return {
        "database": "MariaDB" if use_mariadb else "SQLite", "users": users, "seconds": seconds,
        "web": "gunicorn 2 workers x 8 threads, keep-alive 30 s", "worker": "celery prefork x1",
        "upload": "1024 x 1024 PNG",
        "operations": {**{f"baseline {k}": v for k, v in baseline.items()},
                       **{f"abused {k}": v for k, v in abused.items()}},
        "normal_baseline": normal_a, "normal_with_abuser": normal_b,
        "error_rate": round((normal_a["failures"] + normal_b["failures"])
                            / max(1, normal_a["requests"] + normal_b["requests"]), 4),
        "uploads": baseline.get(UPLOAD, {}), "uploads_abused": abused.get(UPLOAD, {}),
        "peak_web_rss_mb": round(sampler.max_rss_mb), "max_queue_depth": sampler.max_depth,
        "screenings_done": len(durations), "screenings_left": left, "screening_outcomes": outcomes,
        "drain_s": round(drain_s, 1),
        "upload_to_result_p50_s": round(_pct(durations, 50), 1),
        "upload_to_result_p95_s": round(_pct(durations, 95), 1),
        "abuse": abuse, "abuse_allowed_max": round(allowed),
        "abuse_within_limit": abuse.get("ok", 0) <= allowed and abuse.get("other", 0) == 0,
        "other_hospitals_p95_change_pct": round(
            100 * (normal_b["p95_ms"] - normal_a["p95_ms"]) / max(1, normal_a["p95_ms"]), 1),
        "wall_s": round(time.monotonic() - started, 1),
    }


def _dt(value):
    import datetime

    return value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(str(value))


def _pct(values, q):
    if not values:
        return 0.0
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


def lines(report: dict) -> dict[str, str]:
    a, b, up = report["normal_baseline"], report["normal_with_abuser"], report["uploads"]
    return {
        "G1": f"{report['users']} users, {report['seconds']} s, {report['database']}: all operations p50/p95/p99 "
              f"{a['p50_ms']}/{a['p95_ms']}/{a['p99_ms']} ms; upload p50/p95/p99 {up.get('p50_ms')}/"
              f"{up.get('p95_ms')}/{up.get('p99_ms')} ms; error rate {100 * report['error_rate']:.2f} %; "
              f"RPS {a['rps']}; peak web RSS {report['peak_web_rss_mb']} MB",
        "G2": f"upload->result p50/p95 {report['upload_to_result_p50_s']}/{report['upload_to_result_p95_s']} s over "
              f"{report['screenings_done']} screenings done (all: {report['screening_outcomes']}); max queue depth "
              f"{report['max_queue_depth']}; drain time after "
              f"load stops {report['drain_s']} s (left {report['screenings_left']})",
        "G4": f"abusive client ({CLIENT_RATE}): {report['abuse'].get('sent', 0)} requests, "
              f"{report['abuse'].get('ok', 0)} answered 200 (at most {report['abuse_allowed_max']} allowed), "
              f"{report['abuse'].get('throttled', 0)} answered 429: requests over the limit answered 429 "
              f"{'100 %' if report['abuse_within_limit'] else 'NOT all'}; other hospitals' p95 {a['p95_ms']} -> "
              f"{b['p95_ms']} ms ({report['other_hospitals_p95_change_pct']:+.1f} %)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--workdir", type=Path, default=REPO / "var" / "reliability" / "load")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--seed", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed:
        seed(args.seed)
        return
    report = run(args.seconds, args.users, args.workdir)
    figures = lines(report)
    for name, line in figures.items():
        print(f"FIGURE {name}: {line}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"figures": figures, **report}, indent=1, default=str))


if __name__ == "__main__":
    main()
