"""The partner API, the FHIR facade and the portal at scale, on MariaDB through gunicorn.

    python bench/api_scale.py [--reuse] [--explain] [--clients 16] [--requests 320]
                              [--innodb-buffer-pool-mib MIB]

Seeds a dedicated database (default `hospital_bench_scale`; `--reuse` keeps one that is
already seeded) in bulk: 100 hospitals of unequal size (hospital i holds a share
proportional to 1/sqrt(i)), 100,000 patients with status histories and lab tests, and
500,000 screenings (their scans share one file name) with AI results and, for a third,
a review. Then serves it with gunicorn (production settings, Redis cache) and measures,
with `--clients` concurrent clients, each bound to one of the largest hospitals:

* the patient list filtered (`status`), searched by MRN (API) and by name (portal page);
* a patient's history; the screening list with `updated_since` (the last day);
* the FHIR Patient search (`_lastUpdated`); the dashboard page (a logged-in session).

For each: p50/p95 latency, the time spent in the database (p50), the CPU time of the
gunicorn workers per request (user + system over the run, divided by the requests) and
the part of it the garbage collector took (a mean), the CPU per request of MariaDB, Redis
and the load clients (this process), errors and database queries per request (a counting
middleware, bench/settings.py), and the pages MariaDB read into its InnoDB buffer pool per
request (its misses). The pool is compared with the database first; `--innodb-buffer-pool-mib`
sets it for the run (put back afterwards), and a pool that can hold every index is warmed.
Each request runs first with one client at a time (the service time), then with the concurrent clients.
`--explain` prints MariaDB's EXPLAIN and the time of every query that the API's, the FHIR
facade's and the portal's filters and orderings run, for each hospital measured, and of the
admin's changelists of a platform admin, and flags full scans of the big tables, joins sorted in
a temporary table and slow queries. Needs MariaDB and
Redis (see README "Performance")."""

from __future__ import annotations

import argparse
import datetime
import json
import random
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402

SLUG = "scale-{:03d}"
FAMILY = ["Smith", "Garcia", "Nguyen", "Kowalski", "Okafor", "Haddad", "Silva", "Muller", "Rossi", "Tanaka",
          "Dubois", "Ivanova", "Khan", "Larsen", "Moreau", "Novak", "Ortiz", "Petrov", "Quinn", "Sato"]
GIVEN = ["Ana", "Ben", "Chloe", "David", "Elif", "Farid", "Grace", "Hugo", "Ines", "Jon", "Kemal", "Lena",
         "Mateo", "Nora", "Omar", "Priya", "Rafael", "Sofia", "Tariq", "Yara"]
STATUSES = ["suspected"] * 30 + ["negative"] * 30 + ["infected"] * 12 + ["carrier"] * 10 + ["recovered"] * 16 + \
    ["deceased"] * 2
LABELS = ["covid", "pneumonia", "normal"]
CHUNK = 5000


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_stack_arguments(p, database="hospital_bench_scale", redis_db=12, port=8771)
    p.add_argument("--reuse", action="store_true", help="keep the seeded database when it holds the same sizes")
    p.add_argument("--hospitals", type=int, default=100)
    p.add_argument("--patients", type=int, default=100_000)
    p.add_argument("--screenings", type=int, default=500_000)
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (%(default)s)")
    p.add_argument("--requests", type=int, default=320, help="requests per endpoint, all clients together")
    p.add_argument("--explain", action="store_true",
                   help="print EXPLAIN and the time of the queries of every filter, for each hospital measured")
    p.add_argument("--innodb-buffer-pool-mib", type=int, metavar="MIB",
                   help="MariaDB's innodb_buffer_pool_size for the run, put back after it (default: the server's)")
    p.add_argument("--seed", type=int, default=7)
    return p.parse_args()


# --- seeding -------------------------------------------------------------------------------------

def seed_marker(args) -> str:
    return f"{args.hospitals}/{args.patients}/{args.screenings}"


def already_seeded(args) -> bool:
    from django.db import connection

    from hospitals.models import Hospital

    try:
        hospital = Hospital.objects.filter(slug=SLUG.format(1)).first()
    except Exception:  # noqa: BLE001 - no tables yet
        connection.close()
        return False
    return hospital is not None and hospital.name.endswith(f"[{seed_marker(args)}]")


def insert(table: str, columns: list[str], rows) -> None:
    """executemany in chunks: the driver sends one multi-row INSERT per chunk."""
    from django.db import connection

    sql = f"INSERT INTO `{table}` ({', '.join(f'`{c}`' for c in columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
    batch = []
    with connection.cursor() as cur:
        for row in rows:
            batch.append(row)
            if len(batch) >= CHUNK:
                cur.executemany(sql, batch)
                batch.clear()
        if batch:
            cur.executemany(sql, batch)


def table(model) -> str:
    return model._meta.db_table


def seed(args) -> dict:
    """Bulk rows straight into the tables (ids assigned here, in time order); on MariaDB with
    unique and foreign-key checks off for this connection while it runs."""
    from django.db import connection

    mysql = connection.vendor == "mysql"  # the test suite also seeds SQLite
    if mysql:
        with connection.cursor() as cur:
            cur.execute("SET SESSION unique_checks=0, foreign_key_checks=0")
    try:
        return _seed(args, connection)
    finally:
        if mysql:
            with connection.cursor() as cur:
                cur.execute("SET SESSION unique_checks=1, foreign_key_checks=1")


def _seed(args, connection) -> dict:
    from django.db import transaction
    from django_scopes import scopes_disabled

    from hospitals.models import Hospital, Membership, Role, User
    from patients.models import LabTest, Patient, StatusChange
    from screening.models import AiResult, Review, Scan, Screening

    rng = random.Random(args.seed)
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    start = now - datetime.timedelta(days=365)
    t0 = time.perf_counter()
    with scopes_disabled(), transaction.atomic():
        hospitals = Hospital.objects.bulk_create(
            Hospital(name=f"Scale hospital {i}", slug=SLUG.format(i)) for i in range(1, args.hospitals + 1))
        users = User.objects.bulk_create(
            User(email=f"clinician@{h.slug}.bench", first_name="Bench", last_name=h.slug, password="!")
            for h in hospitals)
        Membership.objects.bulk_create(Membership(user=u, hospital=h, role=Role.CLINICIAN)
                                       for u, h in zip(users, hospitals))
    hospital_ids = [h.pk for h in hospitals]
    user_ids = [u.pk for u in users]
    weights = [1 / (i + 1) ** 0.5 for i in range(len(hospitals))]
    print(f"  hospitals and users: {time.perf_counter() - t0:.1f} s", flush=True)

    # Patients, in registration order; each hospital numbers its MRNs.
    t = time.perf_counter()
    patient_hospital = rng.choices(range(len(hospitals)), weights=weights, k=args.patients)
    mrn_next = defaultdict(int)
    patient_rows, patient_status, patient_created = [], [], []
    span = (now - start).total_seconds()
    for n, h in enumerate(patient_hospital):
        mrn_next[h] += 1
        created = start + datetime.timedelta(seconds=span * n / args.patients)
        status = rng.choice(STATUSES)
        since = (created + datetime.timedelta(days=rng.randint(0, 20))).date()
        updated = min(now, created + datetime.timedelta(days=rng.randint(0, 30)))
        patient_rows.append((n + 1, hospital_ids[h], f"M{mrn_next[h]:07d}", rng.choice(GIVEN), rng.choice(FAMILY),
                             rng.choice(["female", "male"]), datetime.date(1940 + rng.randint(0, 65), 1 + n % 12,
                                                                           1 + n % 28),
                             "", "", "", "", status, since, created, updated, user_ids[h]))
        patient_status.append(status)
        patient_created.append(created)
    insert(table(Patient), ["id", "hospital_id", "mrn", "given_name", "family_name", "sex", "birth_date", "phone",
                            "email", "address", "national_id", "status", "status_since", "created_at", "updated_at",
                            "created_by_id"], patient_rows)
    print(f"  {args.patients} patients: {time.perf_counter() - t:.1f} s", flush=True)

    # Status histories: the registration entry, and the way to the current status; a lab
    # test behind every confirmed status.
    t = time.perf_counter()
    changes, labs = [], []
    for n, h in enumerate(patient_hospital):
        pid, status, created = n + 1, patient_status[n], patient_created[n]
        changes.append((hospital_ids[h], pid, "", "suspected", created.date(), "Registered", "clinician", None,
                        user_ids[h], created))
        path = {"suspected": [], "negative": ["negative"], "infected": ["infected"], "carrier": ["carrier"],
                "recovered": ["infected", "recovered"], "deceased": ["infected", "deceased"]}[status]
        previous, at = "suspected", created
        for step in path:
            at = at + datetime.timedelta(days=rng.randint(1, 10))
            lab_id = None
            if step in ("infected", "carrier", "negative"):
                labs.append((len(labs) + 1, hospital_ids[h], pid, "rt_pcr",
                             "negative" if step == "negative" else "positive", at.date(), "", user_ids[h], at))
                lab_id = len(labs)
            changes.append((hospital_ids[h], pid, previous, step, at.date(), "Bench", "clinician", lab_id,
                            user_ids[h], at))
            previous = step
    insert(table(LabTest), ["id", "hospital_id", "patient_id", "test_type", "result", "sample_date", "notes",
                            "recorded_by_id", "recorded_at"], labs)
    changes.sort(key=lambda c: c[-1])
    insert(table(StatusChange), ["hospital_id", "patient_id", "from_status", "to_status", "effective_date", "reason",
                                 "source", "lab_test_id", "changed_by_id", "changed_at"], changes)
    print(f"  {len(changes)} status changes, {len(labs)} lab tests: {time.perf_counter() - t:.1f} s", flush=True)

    # Screenings in upload order, each with its scan (one shared file), an AI result
    # (98 %) and, for a third of those, a review.
    t = time.perf_counter()
    sha = "0" * 64
    model_sha = "ab" * 32
    scans, screenings, results, reviews = [], [], [], []
    for n in range(args.screenings):
        pid = rng.randrange(args.patients) + 1
        h = patient_hospital[pid - 1]
        hid, uid = hospital_ids[h], user_ids[h]
        created = start + datetime.timedelta(seconds=span * n / args.screenings)
        sid = n + 1
        scans.append((sid, hid, pid, uid, created, "scans/bench/tiny.png", "derived/bench/tiny.png", "", "",
                      "film.png", 68, sha, "png", 1, 1, 8, "", "", "", None))
        finished = created + datetime.timedelta(seconds=rng.randint(2, 60))
        status = "done" if rng.random() < 0.98 else rng.choice(["cannot_assess", "failed", "queued"])
        # The last value, the reading queue's key, is set below for a result nobody reviews.
        screenings.append([sid, hid, pid, sid, status, 1, "", "", "bench", created, created, created,
                           None if status == "queued" else finished, None])
        if status != "done":
            continue
        covid = rng.random()
        label = "covid" if covid >= 0.5 else rng.choice(LABELS[1:])
        probs = json.dumps({"covid": round(covid, 4), "pneumonia": round((1 - covid) / 2, 4),
                            "normal": round((1 - covid) / 2, 4)})
        results.append((sid, hid, pid, sid, probs, label, covid, covid >= 0.5,
                        "covid_suspected" if covid >= 0.5 else "covid_not_suspected", 0.5, "cxrnet", "1.0.0",
                        model_sha, "pp-3", sha, "", "{}", "{}", "bench", finished))
        if rng.random() < 0.33:
            reviews.append((hid, pid, sid, sid, "confirm", label, label == "covid", "Bench review", uid,
                            finished + datetime.timedelta(hours=rng.randint(1, 48))))
        else:
            screenings[-1][-1] = covid
    insert(table(Scan), ["id", "hospital_id", "patient_id", "uploaded_by_id", "uploaded_at", "file", "preview",
                         "decoded", "decoded_sha256", "original_filename", "size_bytes", "sha256", "format",
                         "width", "height", "bit_depth", "view_position", "study_uid", "series_uid",
                         "duplicate_of_id"], scans)
    print(f"  {len(scans)} scans: {time.perf_counter() - t:.1f} s", flush=True)
    insert(table(Screening), ["id", "hospital_id", "patient_id", "scan_id", "status", "attempts", "reason", "task_id",
                              "worker", "created_at", "enqueued_at", "started_at", "finished_at", "review_priority"],
           screenings)
    print(f"  {len(screenings)} screenings: {time.perf_counter() - t:.1f} s", flush=True)
    insert(table(AiResult), ["id", "hospital_id", "patient_id", "screening_id", "probabilities", "label",
                             "covid_probability", "covid_positive", "decision", "threshold", "model_name",
                             "model_version", "model_sha256", "preprocessing_version", "input_sha256", "heatmap",
                             "quality", "timings_ms", "worker", "created_at"], results)
    print(f"  {len(results)} AI results: {time.perf_counter() - t:.1f} s", flush=True)
    reviews.sort(key=lambda r: r[-1])
    insert(table(Review), ["hospital_id", "patient_id", "screening_id", "result_id", "decision", "clinical_label",
                           "radiological_signs", "reason", "reviewer_id", "reviewed_at"], reviews)
    with connection.cursor() as cur:
        for model in (Patient, StatusChange, LabTest, Scan, Screening, AiResult, Review):
            cur.execute(f"ANALYZE TABLE `{table(model)}`" if connection.vendor == "mysql"
                        else f'ANALYZE "{table(model)}"')
            cur.fetchall()
    print(f"  {len(reviews)} reviews, tables analysed: {time.perf_counter() - t:.1f} s", flush=True)
    # The marker --reuse looks for goes in last: a seeding that failed part-way is redone.
    with scopes_disabled():
        Hospital.objects.filter(pk=hospital_ids[0]).update(name=f"Scale hospital 1 [{seed_marker(args)}]")
    return {"seconds": time.perf_counter() - t0}


# --- credentials -----------------------------------------------------------------------------------

def credentials(args, base_url: str, hospitals) -> list[dict]:
    """A partner client (read scope) and a portal session per hospital."""
    from django.conf import settings
    from django.test import Client
    from django_scopes import scope, scopes_disabled

    from hospitals.api.services import partner_client_create
    from hospitals.models import User

    out = []
    for hospital in hospitals:
        with scopes_disabled():
            user = User.objects.get(email=f"clinician@{hospital.slug}.bench")
        with scope(hospital=hospital):
            new = partner_client_create(hospital=hospital, name="Bench sync", scopes=["read"], actor=user)
        portal = Client(HTTP_HOST="127.0.0.1")
        portal.force_login(user, backend="hospitals.backends.ModelBackend")
        out.append({"hospital": hospital, "token": common.fetch_token(base_url, new.client_id, new.client_secret),
                    "cookie": f"{settings.SESSION_COOKIE_NAME}={portal.cookies[settings.SESSION_COOKIE_NAME].value}"})
    return out


def endpoints(cred: dict, rng: random.Random) -> dict[str, tuple[str, bool]]:
    """name -> (path, portal session?) for one client, with this request's random ids."""
    from django_scopes import scopes_disabled

    from patients.models import Patient

    hospital = cred["hospital"]
    slug = hospital.slug
    if "patients" not in cred:
        with scopes_disabled():
            cred["patients"] = list(Patient.objects.filter(hospital=hospital).values_list("id", "mrn"))
    pid, mrn = rng.choice(cred["patients"])
    day = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    month = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)).strftime("%Y-%m-%d")
    api = f"/api/v1/hospitals/{slug}"
    return {
        "patients?status": (f"{api}/patients/?status=infected", False),
        "patients?mrn": (f"{api}/patients/?mrn={mrn}", False),
        "portal patients?q": (f"/h/{slug}/patients/?q={rng.choice(FAMILY)}", True),
        "patient history": (f"{api}/patients/{pid}/history/", False),
        "screenings?updated_since": (f"{api}/screenings/?updated_since={day}", False),
        "FHIR Patient?_lastUpdated": (f"/fhir/{slug}/Patient?_lastUpdated=ge{month}", False),
        "dashboard": (f"/h/{slug}/", True),
    }


class BufferPool:
    """MariaDB's InnoDB buffer pool, which holds the pages queries read: its size against the
    benchmark database's data and indexes, set for the run when `--innodb-buffer-pool-mib`
    asks (and put back after it), warmed by reading every index of the database once when
    it can hold them all (a server that has been up, or that reloaded its pool at start-up as
    MariaDB does by default, serves from a warm pool), and its misses: pages it had to read in."""

    def __init__(self, args):
        self.conn = common.server_connection(args)
        self.conn.autocommit(True)
        self.database = args.database
        self.wanted = args.innodb_buffer_pool_mib
        self.before = self.size_mib()

    def _row(self, sql: str, params=()):
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone()

    def size_mib(self) -> int:
        return int(self._row("SELECT @@GLOBAL.innodb_buffer_pool_size")[0]) // 2**20

    def database_mib(self) -> float:
        (size,) = self._row("SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables "
                            "WHERE table_schema = %s", (self.database,))
        return int(size) / 2**20

    def misses(self) -> int:
        """Pages read into the pool since the server started (`Innodb_buffer_pool_reads`)."""
        return int(self._row("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_reads'")[1])

    def resize(self, mib: int, timeout: float = 300) -> None:
        """MariaDB 10.11 resizes before the SET returns; servers that resize in the background
        report their progress in `Innodb_buffer_pool_resize_status` until "Completed ..."."""
        self._row("SET GLOBAL innodb_buffer_pool_size = %s", (mib * 2**20,))
        deadline = time.monotonic() + timeout
        while self.size_mib() != mib or self._resize_status() not in ("", "Completed"):
            if time.monotonic() > deadline:
                raise SystemExit(f"the InnoDB buffer pool did not reach {mib} MiB in {timeout:.0f} s")
            time.sleep(0.2)

    def _resize_status(self) -> str:
        row = self._row("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_resize_status'")
        return row[1].split(" ", 1)[0] if row else ""

    def warm(self) -> int:
        """Read every index of every table of the database once; returns how many."""
        with self.conn.cursor() as cur:
            cur.execute("SELECT table_name, index_name FROM information_schema.statistics "
                        "WHERE table_schema = %s GROUP BY table_name, index_name", (self.database,))
            indexes = cur.fetchall()
            for table_name, index_name in indexes:
                cur.execute(f"SELECT COUNT(*) FROM `{self.database}`.`{table_name}` FORCE INDEX (`{index_name}`)")
                cur.fetchall()
        return len(indexes)

    def __enter__(self):
        if self.wanted and self.wanted != self.before:
            self.resize(self.wanted)
        size, data = self.size_mib(), self.database_mib()
        print(f"MariaDB InnoDB buffer pool {size} MiB"
              + (f" for this run ({self.before} MiB before it)" if size != self.before else "")
              + f"; {self.database} holds {data:.0f} MiB of data and indexes", flush=True)
        if size >= data:
            t0 = time.perf_counter()
            print(f"  warmed: {self.warm()} indexes read in {time.perf_counter() - t0:.1f} s", flush=True)
        else:
            print(f"  the pool holds at most {100 * size / data:.0f} % of it: requests read pages in from the "
                  f"operating system (MariaDB's CPU below includes it); --innodb-buffer-pool-mib sets it for "
                  f"the run", flush=True)
        return self

    def __exit__(self, *exc):
        if self.size_mib() != self.before:
            self.resize(self.before)
        self.conn.close()


def measure(args, base_url: str, creds: list[dict], web_pid: int, pool: BufferPool) -> dict:
    names = list(endpoints(creds[0], random.Random(0)))
    groups = {"web": web_pid, "mariadb": "mariadbd", "redis": "redis-server"}
    out = {}
    for name in names:
        latencies, queries, db_ms, gc_ms, errors = [], [], [], [], []
        lock = threading.Lock()
        per_client = max(1, args.requests // args.clients)

        def client(i: int):
            cred = creds[i % len(creds)]
            rng = random.Random(i)
            headers_api = {"Authorization": f"Bearer {cred['token']}"}
            headers_portal = {"Cookie": cred["cookie"]}
            with common.HttpClient(base_url, timeout=60) as http:
                for _ in range(per_client):
                    path, portal = endpoints(cred, rng)[name]
                    t0 = time.perf_counter()
                    try:
                        r = http.get(path, headers=headers_portal if portal else headers_api)
                        ok = r.status_code == 200
                    except common.HTTP_ERRORS as exc:
                        r, ok = None, False
                        with lock:
                            errors.append(repr(exc))
                    dt = time.perf_counter() - t0
                    with lock:
                        latencies.append(dt * 1000)
                        if r is not None:
                            queries.append(int(r.headers.get("X-Bench-Queries", -1)))
                            db_ms.append(float(r.headers.get("X-Bench-DB-ms", "nan")))
                            gc_ms.append(float(r.headers.get("X-Bench-GC-ms", "nan")))
                            if not ok:
                                errors.append(f"{r.status_code} {path}")

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        t0, cpu0, misses0 = time.perf_counter(), common.stack_cpu_seconds(groups), pool.misses()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall, cpu = time.perf_counter() - t0, common.stack_cpu_seconds(groups)
        misses = (pool.misses() - misses0) / max(len(latencies), 1)
        out[name] = {"p50": common.percentile(latencies, 50), "p95": common.percentile(latencies, 95),
                     "db_p50": common.percentile(db_ms, 50), "gc_ms": sum(gc_ms) / max(len(gc_ms), 1),
                     "n": len(latencies), "errors": len(errors),
                     "rps": len(latencies) / wall,
                     "cpu_ms": {k: (v - cpu0[k]) * 1000 / max(len(latencies), 1) for k, v in cpu.items()},
                     "pool_misses": misses, "queries": sorted(set(queries)),
                     "first_error": errors[0] if errors else ""}
        r = out[name]
        print(f"  {name:28s} p50 {r['p50']:7.1f} ms  p95 {r['p95']:7.1f} ms  (database p50 {r['db_p50']:6.1f} ms)  "
              f"{r['rps']:6.1f} req/s  web CPU {r['cpu_ms']['web']:5.1f} ms/request (GC {r['gc_ms']:4.2f}; MariaDB "
              f"{r['cpu_ms']['mariadb']:.1f}, Redis {r['cpu_ms']['redis']:.1f}, load clients "
              f"{r['cpu_ms']['load clients']:.1f}; pages read into the pool {r['pool_misses']:.1f})  "
              f"queries/request {','.join(map(str, r['queries']))}  errors {r['errors']}"
              + (f" ({r['first_error']})" if r["errors"] else ""), flush=True)
    return out


# --- EXPLAIN ---------------------------------------------------------------------------------------

BIG_TABLES = ("patients_", "screening_")


def explain_paths(cred: dict) -> list[str]:
    from django_scopes import scopes_disabled

    from screening.models import Screening

    slug = cred["hospital"].slug
    api = f"/api/v1/hospitals/{slug}"
    since = "2026-01-01T00:00:00Z"
    pid, mrn = cred["patients"][0]
    with scopes_disabled():
        sid = Screening.objects.filter(hospital=cred["hospital"]).values_list("pk", flat=True).first()
    paths = [f"{api}/patients/?{q}" for q in (
        "", "status=infected", f"mrn={mrn}", f"updated_since={since}", f"created_after={since}",
        f"created_before={since}", "status_since_after=2026-01-01", "ordering=updated_at", "ordering=-created_at")]
    paths += [f"{api}/status-changes/?{q}" for q in (
        "", f"patient={pid}", "to_status=infected", "source=clinician", f"changed_since={since}",
        "effective_after=2026-01-01", "effective_before=2025-06-01", "ordering=-changed_at")]
    paths += [f"{api}/lab-tests/?{q}" for q in (
        "", f"patient={pid}", "test_type=rt_pcr", "result=positive", "sample_after=2026-01-01", "sample_before=2025-06-01",
        f"recorded_since={since}", "ordering=-sample_date", "ordering=recorded_at")]
    paths += [f"{api}/screenings/?{q}" for q in (
        "", f"patient={pid}", "status=queued", "status=done", "label=covid", f"created_after={since}",
        f"created_before={since}", f"finished_since={since}", f"updated_since={since}", "ordering=-created_at")]
    paths += [f"{api}/ai-results/?{q}" for q in (
        "", f"patient={pid}", f"screening={sid}", "label=normal", "covid_positive=true", f"created_since={since}",
        "ordering=-covid_probability", "ordering=created_at")]
    paths += [f"{api}/reviews/?{q}" for q in (
        "", f"patient={pid}", f"screening={sid}", "decision=override", "clinical_label=covid", f"reviewed_since={since}",
        "ordering=-reviewed_at")]
    paths += [f"{api}/patients/{pid}/history/"]
    fhir = f"/fhir/{slug}"
    paths += [f"{fhir}/Patient?{q}" for q in ("", f"identifier={mrn}", "_lastUpdated=ge2026-01", f"_id={pid}")]
    paths += [f"{fhir}/Observation?{q}" for q in ("", f"patient={pid}", "date=ge2026-01", "_lastUpdated=lt2025-06")]
    paths += [f"{fhir}/DiagnosticReport?{q}" for q in (f"patient={pid}", "date=ge2026-01")]
    paths += [f"{fhir}/Media?{q}" for q in ("", f"patient={pid}")]
    paths += [f"{fhir}/Condition?{q}" for q in ("", f"patient={pid}", "clinical-status=active")]
    paths += [f"{fhir}/Device"]
    paths += [f"/h/{slug}/", f"/h/{slug}/patients/", f"/h/{slug}/patients/?q=Smith",
              f"/h/{slug}/patients/?status=infected",
              f"/h/{slug}/screenings/", f"/h/{slug}/screenings/?status=queued", f"/h/{slug}/screenings/review/"]
    return paths


SLOW_QUERY_MS = 5.0
# The admin's changelists of the big tables, as a platform admin sees them: every hospital's rows.
ADMIN_PATHS = [f"/admin/{name}/" for name in (
    "patients/patient", "patients/statuschange", "patients/labtest", "screening/scan", "screening/screening",
    "screening/airesult", "screening/review", "hospitals/auditevent")]


def explain(creds: list[dict]) -> dict[str, int]:
    """Run each path in this process for every hospital measured and EXPLAIN and time (the
    median of three runs) its SELECTs. Prints the largest hospital's plans, then for each
    query the hospital where it ran slowest, with its plan where it differs (MariaDB picks a
    plan from each hospital's statistics); then the same for the admin's changelists
    (ADMIN_PATHS), once as a platform admin and once as the largest hospital's admin. Returns
    the counts of full scans of the big tables, of joins sorted in a temporary table (a plan
    that starts from a small table, then reads and sorts every row of the hospital for a
    page) and of queries slower than SLOW_QUERY_MS."""
    import statistics

    from allauth.account.authentication import AUTHENTICATION_METHODS_SESSION_KEY
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django_scopes import scopes_disabled

    from hospitals.models import Membership, Role, User

    def session(user, *, second_factor: bool = False) -> Client:
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(user, backend="hospitals.backends.ModelBackend")
        if second_factor:  # as allauth records a TOTP code typed at sign-in
            stored = client.session
            stored[AUTHENTICATION_METHODS_SESSION_KEY] = [{"method": "mfa", "type": "totp", "at": time.time()}]
            stored["account_authentication_methods_user"] = str(user.pk)
            stored.save()
        return client

    def clients(cred: dict) -> dict[str, Client]:
        return {"api": Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {cred['token']}"),
                "portal": session(User.objects.get(email=f"clinician@{cred['hospital'].slug}.bench"))}

    def plans(client: Client, path: str) -> tuple[float, int, list[tuple[str, list[dict], float]]]:
        """(the page's time in ms, its queries, (SQL, EXPLAIN rows, time in ms) of each SELECT
        on a big table)."""
        client.get(path)  # the page once before it is timed
        with CaptureQueriesContext(connection) as ctx:
            t0 = time.perf_counter()
            status = client.get(path).status_code
            page_ms = (time.perf_counter() - t0) * 1000
        assert status == 200, f"{path}: {status}"
        out = []
        for q in ctx.captured_queries:
            sql = q["sql"]
            if not sql.lstrip().upper().startswith("SELECT") or not any(t in sql for t in BIG_TABLES):
                continue
            with connection.cursor() as cur:
                cur.execute("EXPLAIN " + sql)
                cols = [c[0] for c in cur.description]
                rows = [dict(zip(cols, r)) for r in cur.fetchall()]
                times = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    cur.execute(sql)
                    cur.fetchall()
                    times.append((time.perf_counter() - t0) * 1000)
            out.append((sql, rows, statistics.median(times)))
        return page_ms, len(ctx.captured_queries), out

    def shape(rows: list[dict]) -> tuple:
        return tuple((r.get("table"), r.get("type"), r.get("key"), r.get("Extra") or "") for r in rows)

    def problems(rows: list[dict], ms: float) -> list[str]:
        out = ["full scan" for r in rows if r.get("type") == "ALL" and str(r.get("table") or "").startswith(BIG_TABLES)
               and int(str(r.get("rows") or 0).split()[0]) > 1000]  # "924 (7%)" with a rowid filter
        if len(rows) > 1 and "Using temporary" in (rows[0].get("Extra") or ""):
            out.append("sorted join")
        if ms > SLOW_QUERY_MS:
            out.append("slow")
        return out

    def show(sql: str, rows: list[dict], ms: float, found: list[str]) -> None:
        print(f"   {sql[:220]}{'...' if len(sql) > 220 else ''}  ({ms:.1f} ms)")
        for r in rows:
            print(f"     {r.get('select_type')}: {r.get('table')} type={r.get('type')} key={r.get('key')} "
                  f"rows={r.get('rows')} {r.get('Extra') or ''}")
        for problem in found:
            print(f"     <-- {problem.upper()}")

    def client_for(cred_clients: dict[str, Client], path: str) -> Client:
        return cred_clients["portal" if path.startswith("/h/") else "api"]

    counts = {"full scan": 0, "sorted join": 0, "slow": 0}
    paths = [explain_paths(cred) for cred in creds]
    each = [clients(cred) for cred in creds]
    platform_admin, _ = User.objects.get_or_create(email="platform-admin@bench.test",
                                                   defaults={"is_staff": True, "is_superuser": True})
    hospital_admin, _ = User.objects.get_or_create(email=f"admin@{creds[0]['hospital'].slug}.bench",
                                                   defaults={"is_staff": True})
    with scopes_disabled():
        Membership.objects.get_or_create(user=hospital_admin, hospital=creds[0]["hospital"],
                                         defaults={"role": Role.HOSPITAL_ADMIN})
    admins = {"a platform admin": session(platform_admin, second_factor=True),
              "the largest hospital's admin": session(hospital_admin, second_factor=True)}
    admin_pages = [(who, path) for who in admins for path in ADMIN_PATHS]
    for n, path in enumerate(paths[0] + admin_pages):
        if isinstance(path, tuple):
            who, path = path
            page_ms, n_queries, first = plans(admins[who], path)
            path = f"{path} as {who}"
            others = []
        else:
            page_ms, n_queries, first = plans(client_for(each[0], path), path)
            others = [(cred["hospital"].slug, plans(client_for(c, their[n]), their[n])[2])
                      for cred, c, their in zip(creds[1:], each[1:], paths[1:])]
        print(f"\n== {path}  (the page {page_ms:.0f} ms in process, {n_queries} queries)")
        for i, (sql, rows, ms) in enumerate(first):
            found = problems(rows, ms)
            show(sql, rows, ms, found)
            worst = max(((slug, *queries[i]) for slug, queries in others if i < len(queries)),
                        key=lambda o: o[3], default=None)
            if worst is not None:
                slug, sql_w, rows_w, ms_w = worst
                found_w = problems(rows_w, ms_w)
                print(f"     slowest of the other {len(others)} hospitals: {slug}, {ms_w:.1f} ms"
                      + (", planned otherwise:" if shape(rows_w) != shape(rows) else ""))
                if shape(rows_w) != shape(rows) or found_w:
                    show(sql_w, rows_w, ms_w, found_w)
                found = set(found) | set(found_w)
            for problem in found:
                counts[problem] += 1
    return counts


# --- main ------------------------------------------------------------------------------------------

def main():
    args = parse_args()
    print(f"api_scale on {common.machine()}", flush=True)
    env = common.stack_env(args, settings="bench.settings")
    common.create_database(args, drop=False)
    common.configure(env)
    if args.reuse and already_seeded(args):
        print(f"reusing {args.database} ({seed_marker(args)})", flush=True)
        common.migrate(env)  # migrations added since it was seeded
        seeded = None
    else:
        common.create_database(args, drop=True)
        from django.db import connection

        connection.close()
        common.migrate(env)
        print(f"seeding {args.database}: {args.hospitals} hospitals, {args.patients} patients, "
              f"{args.screenings} screenings", flush=True)
        seeded = seed(args)
        print(f"seeded in {seeded['seconds']:.0f} s", flush=True)
    common.flush_redis(args)

    from django.db.models import Count
    from django_scopes import scopes_disabled

    from hospitals.models import Hospital

    with scopes_disabled():
        largest = list(Hospital.objects.filter(slug__startswith="scale-").annotate(n=Count("patients"))
                       .order_by("-n")[:args.clients])
    base_url = f"http://127.0.0.1:{args.port}"
    with BufferPool(args) as pool, common.Stack(args, env) as stack:
        web = stack.start_web()
        creds = credentials(args, base_url, largest)
        with scopes_disabled():
            sizes = [(h.slug, h.n) for h in largest]
        print(f"{args.clients} clients over the {len(largest)} largest hospitals ({sizes[0][1]} .. {sizes[-1][1]} "
              f"patients each); {common.web_description(args)}; "
              f"{args.requests} requests per endpoint", flush=True)
        for cred in creds:  # the patients' ids, for the requests' random choices
            endpoints(cred, random.Random(0))
        print("warm-up:", flush=True)
        measure(argparse.Namespace(**{**vars(args), "requests": args.clients * 2}), base_url, creds, web.pid, pool)
        print("one client at a time (the service time, largest hospital):", flush=True)
        alone = measure(argparse.Namespace(**{**vars(args), "clients": 1, "requests": 20}), base_url, creds, web.pid,
                        pool)
        print(f"{args.clients} concurrent clients:", flush=True)
        results = measure(args, base_url, creds, web.pid, pool)
        bad_plans = None
        if args.explain:
            with scopes_disabled():
                bad_plans = explain(creds)
            print(f"\nfull scans of big tables: {bad_plans['full scan']}; joins sorted in a temporary table: "
                  f"{bad_plans['sorted join']}; queries over {SLOW_QUERY_MS:.0f} ms: {bad_plans['slow']}")
    worst = max(results.items(), key=lambda kv: kv[1]["p95"])
    missed = [name for name, r in results.items() if r["p95"] > 50 or r["errors"]]
    worst_alone = max(alone.items(), key=lambda kv: kv[1]["p95"])
    print(f"\nSUMMARY api_scale: worst p95 {worst[1]['p95']:.1f} ms ({worst[0]}) with {args.clients} clients, "
          f"{worst_alone[1]['p95']:.1f} ms ({worst_alone[0]}) alone; "
          f"{'all p95 <= 50 ms' if not missed else 'over 50 ms or errors: ' + ', '.join(missed)}; "
          f"queries/request {max(max(r['queries'] or [0]) for r in results.values())} at most"
          + (f"; full scans {bad_plans['full scan']}, sorted joins {bad_plans['sorted join']}, slow queries "
             f"{bad_plans['slow']}" if bad_plans is not None else ""))


if __name__ == "__main__":
    main()
