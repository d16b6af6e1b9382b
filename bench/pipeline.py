"""The screening pipeline end to end through the production stack on this machine.

    python bench/pipeline.py [--duration 60] [--clients 50] [--images DIR]

gunicorn serves `config.wsgi` with production settings on MariaDB (a dedicated database,
default `hospital_bench`, dropped and migrated first) and Redis (one DB number as broker
and cache, flushed first); one Celery worker consumes the `inference` queue. A hospital,
a partner client (OAuth2 client credentials, scopes `read` and `screening:upload`) and a
patient per client are seeded. Then `--clients` concurrent clients upload scans through
the API for `--duration` seconds, each waiting for its screening to end before it uploads
the next, as a partner notified by the `screening.completed` webhook would (the script
watches the database for them; `--poll-api S` makes the clients poll the status endpoint
every S seconds instead): a saturation test, the stack is never idle. These clients start
one after another over `--ramp` seconds (fifty partners do not send at the same instant),
and the measured window opens when the last has started. `--rate R` paces
the same clients instead: together they send R uploads a second on a fixed schedule
(client i every clients/R seconds, staggered), whether or not earlier results are back,
as modalities sending films as they are taken would; this shows the latency of an upload
when the stack is busy but not overloaded. Images: the PNG/JPEG/DICOM files of `--images`, else four
synthetic chest-like 8-bit PNGs of full size generated here.

Reports upload latency p50/p95/p99 and error rate, upload->result latency p50/p95 (from
the time the upload was sent to the screening's `finished_at`), results per second
(screenings finished inside the window / window), the largest queue depth (Redis LLEN of
`inference`, sampled, and screenings waiting in the database), and the peak RSS of the
web workers and the Celery worker. Before the stack starts, the same images go through
`ml.inference.get_predictor()` (decoding included) at batch 1 and batch 8 in this
process: the ratio pipeline results/s / best raw results/s is what the web and queue
stack cost. Needs MariaDB and Redis (see README "Performance")."""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402

TARGETS = {"ratio": 0.8, "upload_p95_ms": 300.0, "worker_rss_mib": 1024.0, "web_rss_mib": 200.0}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_stack_arguments(p, database="hospital_bench", redis_db=13, port=8772)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of uploads (%(default)s)")
    p.add_argument("--clients", type=int, default=50, help="concurrent clients (%(default)s)")
    p.add_argument("--images", type=Path, help="folder of PNG/JPEG/DICOM scans (default: synthetic PNGs)")
    p.add_argument("--poll-api", type=float, default=0.0, metavar="S",
                   help="clients poll the status endpoint every S seconds (default: notified, no polling)")
    p.add_argument("--rate", type=float, default=0.0, metavar="R",
                   help="paced: R uploads/s from all clients together (default: each client waits for its result)")
    p.add_argument("--ramp", type=float, default=5.0, metavar="S",
                   help="clients that wait for their result start one after another over S seconds, and the "
                        "measured window opens after them (%(default)s)")
    p.add_argument("--raw-seconds", type=float, default=15.0, help="seconds per raw Predictor measurement")
    p.add_argument("--drain-timeout", type=float, default=300.0, help="longest wait for the last screenings")
    p.add_argument("--worker-concurrency", type=int, default=1, help="Celery pool processes (%(default)s)")
    return p.parse_args()


# --- images -----------------------------------------------------------------------------------------

def synthetic_pngs() -> list[tuple[str, bytes]]:
    """Four chest-like 8-bit grayscale PNGs of full size (about 2000-2600 px a side): a
    bright mediastinum and spine, two darker lungs crossed by ribs, film noise."""
    import numpy as np
    from PIL import Image

    out = []
    for seed, (w, h) in enumerate([(2048, 2048), (2500, 2048), (1800, 2200), (2200, 2600)]):
        rng = np.random.default_rng(seed)
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        xn, yn = x / w, y / h
        body = np.exp(-(((xn - 0.5) / 0.42) ** 6 + ((yn - 0.55) / 0.55) ** 6))
        img = 30 + 150 * body
        for cx in (0.32 + 0.01 * seed, 0.68 - 0.01 * seed):
            lung = np.exp(-(((xn - cx) / 0.13) ** 2 + ((yn - 0.48) / 0.26) ** 2) ** 1.5)
            ribs = 0.5 + 0.5 * np.sin(yn * 60 + 8 * (xn - cx) ** 2)
            img -= lung * (90 - 18 * ribs)
        img += 60 * np.exp(-(((xn - 0.5) / 0.05) ** 2)) * (yn > 0.15)
        img += rng.normal(0, 4, img.shape)
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="L").save(buf, format="PNG")
        out.append((f"synthetic-{seed}.png", buf.getvalue()))
    return out


def load_images(folder: Path | None) -> list[tuple[str, bytes]]:
    if folder is None:
        return synthetic_pngs()
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".dcm"))
    if not files:
        raise SystemExit(f"no PNG, JPEG or DICOM files in {folder}")
    return [(p.name, p.read_bytes()) for p in files]


# --- raw predictor -----------------------------------------------------------------------------------

def raw_throughput(images, seconds: float) -> dict[int, float]:
    """Images/s of get_predictor().predict_batch on the file bytes (decode, preprocess,
    quality gate, model), at batch 1 and batch 8."""
    from ml.inference import get_predictor

    predictor = get_predictor()
    data = [d for _, d in images]
    predictor.predict_batch(data[:1])  # warm-up
    out = {}
    for batch in (1, 8):
        n, i, t0 = 0, 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            items = [data[(i + k) % len(data)] for k in range(batch)]
            predictor.predict_batch(items)
            n, i = n + batch, i + batch
        out[batch] = n / (time.perf_counter() - t0)
    return out


# --- stack set-up ------------------------------------------------------------------------------------

BOUNDARY = "bench-" + "b" * 26
UPLOAD_CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def upload_body(patient: int, name: str, data: bytes) -> list[bytes]:
    """The multipart/form-data upload request in three parts, sent one after the other
    (common.HttpClient): the scan's bytes are not copied into a joined body."""
    return [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="patient"\r\n\r\n{patient}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f'Content-Type: application/octet-stream\r\n\r\n'.encode(),
        data, f"\r\n--{BOUNDARY}--\r\n".encode()]


def seed(clients: int):
    """A hospital, its admin, a partner client and one patient per load client."""
    import datetime

    from django_scopes import scope

    from hospitals.api.services import partner_client_create
    from hospitals.models import Hospital, Membership, Role, User
    from patients import services as patient_services

    hospital = Hospital.objects.create(name="Bench General", slug="bench-general")
    admin = User.objects.create_user(email="admin@bench.invalid", password=None)
    with scope(hospital=hospital):
        Membership.objects.create(user=admin, hospital=hospital, role=Role.HOSPITAL_ADMIN)
        new = partner_client_create(hospital=hospital, name="Bench PACS", scopes=["read", "screening:upload"],
                                    actor=admin)
        patients = [patient_services.patient_create(hospital=hospital, actor=admin, mrn=f"B{i:05d}",
                                                    given_name="Bench", family_name=f"Patient {i}", sex="unknown",
                                                    birth_date=datetime.date(1970, 1, 1)).pk
                    for i in range(clients)]
    return hospital, new, patients


class Watcher:
    """Samples the queue (Redis LLEN of `inference`, screenings queued in the database)
    and tells the clients which of their screenings ended (like the webhook would)."""

    def __init__(self, args, hospital):
        import redis

        self.redis = redis.Redis.from_url(f"{args.redis.rstrip('/')}/{args.redis_db}")
        self.hospital = hospital
        self.max_llen = 0
        self.max_backlog = 0
        self.final: dict[int, float] = {}
        # One event per awaited screening: a client wakes only when its own one has ended.
        self.waiting: dict[int, threading.Event] = {}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        from django.db import connection

        from screening.models import FINAL_STATUSES, Screening, ScreeningStatus

        # Plain statements: the watcher shares the cores with the stack it measures, and the
        # ORM's compiling of these two queries cost it 2 ms of CPU a poll (20 polls a second).
        table, final = Screening._meta.db_table, sorted(FINAL_STATUSES)
        queued_sql = f"SELECT COUNT(*) FROM {table} WHERE hospital_id = %s AND status = %s"
        while not self._stop.is_set():
            self.max_llen = max(self.max_llen, self.redis.llen("inference"))
            with self.lock:
                waiting = list(self.waiting)
            with connection.cursor() as cursor:
                cursor.execute(queued_sql, [self.hospital.pk, ScreeningStatus.QUEUED])
                [backlog] = cursor.fetchone()
                done = []
                if waiting:
                    # Asked by id: ids are taken before their uploads commit, so a screening with
                    # a smaller id than one already seen final can still be to come.
                    cursor.execute(f"SELECT id FROM {table} WHERE id IN ({', '.join(['%s'] * len(waiting))}) "
                                   f"AND status IN ({', '.join(['%s'] * len(final))})", [*waiting, *final])
                    done = [pk for (pk,) in cursor.fetchall()]
            self.max_backlog = max(self.max_backlog, backlog)
            now = time.time()
            with self.lock:
                for pk in done:
                    self.final.setdefault(pk, now)
                    self.waiting.pop(pk).set()
            self._stop.wait(0.05)
        connection.close()

    def wait_final(self, pk: int, deadline: float) -> bool:
        with self.lock:
            if pk in self.final:
                return True
            ended = self.waiting.setdefault(pk, threading.Event())
        return ended.wait(max(0.0, deadline - time.time()))

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()


def run_load(args, base_url: str, token: str, slug: str, patients: list[int], images, watcher: Watcher,
             t_end: float, drain_end: float, ramp: float = 0.0) -> list[dict]:
    records: list[dict] = []
    lock = threading.Lock()

    def client(i: int):
        headers = {"Authorization": f"Bearer {token}", "Content-Type": UPLOAD_CONTENT_TYPE}
        interval = args.clients / args.rate if args.rate else 0.0
        due = time.time() + interval * i / args.clients
        time.sleep(ramp * i / args.clients)  # fifty partners do not all send at the same instant
        with common.HttpClient(base_url, headers=headers, timeout=120) as http:
            k = i
            while time.time() < t_end:
                if interval:
                    time.sleep(max(0.0, due - time.time()))
                    due += interval
                    if due - interval >= t_end:
                        break
                name, data = images[k % len(images)]
                k += 1
                content = upload_body(patients[i], name, data)
                sent = time.time()
                t0 = time.perf_counter()
                try:
                    r = http.post(f"/api/v1/hospitals/{slug}/screenings/", content=content)
                    status, pk = r.status_code, (r.json().get("id") if r.status_code == 201 else None)
                    error = "" if status == 201 else f"{status} {r.text[:200]}"
                except common.HTTP_ERRORS as exc:
                    status, pk, error = None, None, repr(exc)
                rec = {"sent": sent, "latency_ms": (time.perf_counter() - t0) * 1000, "status": status, "pk": pk,
                       "error": error}
                with lock:
                    records.append(rec)
                if interval:
                    continue
                if pk is None:
                    time.sleep(0.5)
                    continue
                if args.poll_api:
                    while time.time() < drain_end:
                        time.sleep(args.poll_api)
                        s = http.get(f"/api/v1/hospitals/{slug}/screenings/{pk}/status/")
                        if s.status_code == 200 and s.json()["is_final"]:
                            break
                else:
                    watcher.wait_final(pk, drain_end)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return records


def main():
    args = parse_args()
    print(f"pipeline on {common.machine()}", flush=True)
    images = load_images(args.images)
    sizes = ", ".join(f"{len(d) / 2**20:.1f} MB" for _, d in images)
    print(f"images: {len(images)} ({'synthetic PNG' if args.images is None else args.images}; {sizes})", flush=True)

    media = tempfile.mkdtemp(prefix="bench-media-")
    env = common.stack_env(args, media_root=media)
    common.create_database(args, drop=True)
    common.configure(env)
    common.migrate(env)
    common.flush_redis(args)

    print(f"raw Predictor ({args.raw_seconds:.0f} s per batch size) ...", flush=True)
    raw = raw_throughput(images, args.raw_seconds)
    print("  " + "  ".join(f"batch {b}: {v:.2f} images/s" for b, v in raw.items()), flush=True)

    from django.db.models import Count
    from django_scopes import scope, scopes_disabled

    from screening.models import Screening

    with scopes_disabled():
        hospital, client, patients = seed(args.clients)
    base_url = f"http://127.0.0.1:{args.port}"
    with common.Stack(args, env) as stack:
        web = stack.start_web()
        worker = stack.start_worker(concurrency=args.worker_concurrency)
        token = common.fetch_token(base_url, client.client_id, client.client_secret)
        rss = common.RssSampler({"web": web.pid, "worker": worker.pid}).start()
        watcher = Watcher(args, hospital).start()
        # Warm-up: one screening through the whole path (the worker loads the model).
        warm = run_load(argparse.Namespace(**{**vars(args), "clients": 1, "rate": 0.0}), base_url, token, hospital.slug,
                        patients, images, watcher, time.time() + 5, time.time() + 300)
        if not warm or warm[0]["pk"] is None or warm[0]["pk"] not in watcher.final:
            print(stack.log_tail("web"), stack.log_tail("worker"), sep="\n")
            raise SystemExit(f"warm-up screening did not finish: {warm}")
        print(f"stack up: {common.web_description(args)}, Celery worker "
              f"concurrency {args.worker_concurrency}; {args.clients} clients for {args.duration:.0f} s, "
              f"{f'paced at {args.rate:g} uploads/s' if args.rate else 'each waiting for its result'} ...",
              flush=True)
        watcher.max_llen = watcher.max_backlog = 0
        groups = {"web": web.pid, "worker": worker.pid, "mariadb": "mariadbd", "redis": "redis-server"}
        cpu_before = common.stack_cpu_seconds(groups)
        ramp = 0.0 if args.rate else args.ramp
        t_begin = time.time()
        t_start = t_begin + ramp  # the measured window: every client is running
        t_end = t_start + args.duration
        records = run_load(args, base_url, token, hospital.slug, patients, images, watcher, t_end,
                           t_end + args.drain_timeout, ramp)
        cpu_after = common.stack_cpu_seconds(groups)
        cpu_used = {k: v - cpu_before[k] for k, v in cpu_after.items()}
        watcher.stop()
        rss.stop()
        with scope(hospital=hospital):
            rows = {s.pk: s for s in Screening.objects.filter(created_at__gte=_dt(t_begin))}
            outcomes = dict(Screening.objects.filter(created_at__gte=_dt(t_begin)).values_list("status")
                            .annotate(n=Count("id")).order_by())
        worker_log = stack.log_tail("worker", 10)
        web_log = stack.log_tail("web", 10)
    shutil.rmtree(media, ignore_errors=True)

    uploads = [r for r in records if r["sent"] >= t_start]
    ok = [r for r in uploads if r["status"] == 201]
    errors = [r for r in uploads if r["status"] != 201]
    lat = [r["latency_ms"] for r in uploads]
    finished = [(r, rows[r["pk"]]) for r in ok if r["pk"] in rows and rows[r["pk"]].finished_at is not None]
    e2e = [(s.finished_at.timestamp() - r["sent"]) for r, s in finished]
    ended = [s for s in rows.values() if s.finished_at is not None]  # since the first client started
    in_window = [s for s in ended if t_start <= s.finished_at.timestamp() <= t_end]
    results_per_s = len(in_window) / args.duration
    best_raw = max(raw.values())
    ratio = results_per_s / best_raw if best_raw else float("nan")
    web_rss = common.mib(rss.peak_children.get("web", 0))
    worker_rss = common.mib(rss.peak_tree.get("worker", 0))

    print(f"uploads: {len(uploads)} ({len(uploads) / args.duration:.2f}/s), errors {len(errors)} "
          f"({100 * len(errors) / max(len(uploads), 1):.1f} %)" + (f", first: {errors[0]['error']}" if errors else ""))
    print(f"upload latency: p50 {common.percentile(lat, 50):.0f} ms  p95 {common.percentile(lat, 95):.0f} ms  "
          f"p99 {common.percentile(lat, 99):.0f} ms")
    print(f"upload->result: p50 {common.percentile(e2e, 50):.1f} s  p95 {common.percentile(e2e, 95):.1f} s "
          f"({len(finished)} of {len(ok)} finished; outcomes {outcomes})")
    print(f"results/s: {results_per_s:.2f} (finished inside the {args.duration:.0f} s window"
          + (f", which opened once the clients had started over {ramp:g} s)" if ramp else ")"))
    print("raw Predictor: " + ", ".join(f"batch {b} {v:.2f}/s" for b, v in raw.items())
          + f"; pipeline / best raw = {ratio:.2f}")
    print(f"CPU per screening (ms, {len(ended)} screenings, from the first upload until the last ended): "
          + ", ".join(f"{k} {1000 * v / max(len(ended), 1):.0f}" for k, v in cpu_used.items()))
    print(f"largest queue depth: Redis LLEN inference {watcher.max_llen}, queued in the database "
          f"{watcher.max_backlog}")
    print(f"peak RSS: web worker {web_rss:.0f} MiB (largest gunicorn worker; all web "
          f"{common.mib(rss.peak_tree.get('web', 0)):.0f} MiB), Celery worker {worker_rss:.0f} MiB "
          f"(main + pool; pool child {common.mib(rss.peak_children.get('worker', 0)):.0f} MiB)")
    if len(finished) < len(ok):
        print("worker log tail:\n" + worker_log)
    if errors:
        print("web log tail:\n" + web_log)
    upload_p95 = common.percentile(lat, 95)
    # Paced, results/s is the offered rate: the ratio target applies to the saturated run only.
    met = {} if args.rate else {f"ratio {ratio:.2f} >= {TARGETS['ratio']}": ratio >= TARGETS["ratio"]}
    met |= {
        f"upload p95 {upload_p95:.0f} ms <= 300": upload_p95 <= TARGETS["upload_p95_ms"],
        f"errors {len(errors)} = 0": not errors,
        f"worker RSS {worker_rss:.0f} MiB <= 1024": worker_rss <= TARGETS["worker_rss_mib"],
        f"web worker RSS {web_rss:.0f} MiB <= 200": web_rss <= TARGETS["web_rss_mib"],
    }
    mode = f"paced {args.rate:g}/s" if args.rate else "saturated"
    print(f"SUMMARY pipeline ({mode}): " + f"{results_per_s:.2f} results/s vs raw {best_raw:.2f}/s; "
          + "; ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in met.items()))


def _dt(ts: float):
    import datetime

    return datetime.datetime.fromtimestamp(ts, datetime.UTC)


if __name__ == "__main__":
    main()
