"""The screening pipeline against a real broker and a real Celery worker process
(`celery -A config worker --pool prefork --concurrency 1`), sharing the test database.

Broker: a private redis-server started for this module when the binary is installed (a
real Redis that this test may stop and restart without disturbing anyone); otherwise
the shared Redis on 127.0.0.1:6379, database 14, flushed first; otherwise kombu's
filesystem transport, which is also what `make run` uses without a broker. Set
SCREENING_TEST_BROKER=filesystem to force the last. The worker runs the shipped model
when ml/artifacts has one, else a tiny model trained for these tests.

Test hooks in screening/tasks.py (inert unless set): the worker sleeps
SCREENING_TEST_DELAY_SECONDS before inference so a kill lands mid-job, and SIGKILLs
itself on the scan whose sha256 is SCREENING_TEST_CRASH_SHA256 (the poison file)."""

from __future__ import annotations

import datetime
import hashlib
import io
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.db import connection
from kombu import pools as kombu_pools
from django.utils import timezone
from django_scopes import scope, scopes_disabled
from PIL import Image

from config.celery_app import app as celery_app
from screening import services
from screening.models import AiResult, FINAL_STATUSES, Screening, ScreeningStatus

from .conftest import FILM, REPO

MAX_ATTEMPTS = 3
DELAY_SECONDS = 1.5
START_TIMEOUT = 180
FINISH_TIMEOUT = 150


def poison_bytes() -> bytes:
    """The fixture film as a PNG: a valid upload, and the scan the worker crashes on."""
    out = io.BytesIO()
    Image.open(FILM).convert("L").save(out, format="PNG")
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class OwnRedis:
    """A throw-away redis-server (no persistence) that a test can stop and restart."""

    def __init__(self, port: int):
        self.port, self.proc = port, None

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not reachable(self.port):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def pick_broker(tmp: Path) -> SimpleNamespace:
    forced = os.environ.get("SCREENING_TEST_BROKER", "")
    if forced != "filesystem" and shutil.which("redis-server"):
        own = OwnRedis(free_port())
        own.start()
        return SimpleNamespace(kind="redis (own server)", url=f"redis://127.0.0.1:{own.port}/0", dir="", own=own)
    if forced != "filesystem" and reachable(6379):
        import redis

        redis.Redis.from_url("redis://127.0.0.1:6379/14").flushdb()
        return SimpleNamespace(kind="redis (shared, db 14)", url="redis://127.0.0.1:6379/14", dir="", own=None)
    folder = tmp / "broker"
    folder.mkdir()
    return SimpleNamespace(kind="filesystem", url="filesystem://", dir=str(folder), own=None)


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"mysql://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 3306}/{db['NAME']}"


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker, screening_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    broker = pick_broker(tmp)
    media = tmp / "media"
    media.mkdir()
    with django_db_blocker.unblock():
        db_url = database_url()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "DATABASE_URL": db_url,
           "TEST_MEDIA_ROOT": str(media), "TEST_CELERY_BROKER_URL": broker.url, "TEST_CELERY_BROKER_DIR": broker.dir,
           "CXR_MODEL_DIR": str(screening_model_dir), "SCREENING_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
           "SCREENING_TEST_DELAY_SECONDS": str(DELAY_SECONDS),
           "SCREENING_TEST_CRASH_SHA256": hashlib.sha256(poison_bytes()).hexdigest(),
           "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    log_path = tmp / "worker.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "celery"), "-A", "config", "worker", "-Q", "inference,default",
         "--pool", "prefork", "--concurrency", "1", "--loglevel", "INFO", "-n", f"pipeline-test-{os.getpid()}@%h"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while " ready." not in log_path.read_text():
        assert proc.poll() is None, "the worker exited:\n" + log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, "the worker did not start:\n" + log_path.read_text()[-3000:]
        time.sleep(0.2)
    yield SimpleNamespace(proc=proc, pid=proc.pid, log=log_path, broker=broker, media=media)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    log.close()
    if broker.own:
        broker.own.stop()


def point_publisher(url: str, folder: str = "") -> None:
    """Make this process publish to `url` (the test settings' memory:// otherwise)."""
    options = {"socket_timeout": 5, "socket_connect_timeout": 3}
    if folder:
        options.update(data_folder_in=folder, data_folder_out=folder, store_processed=False)
    celery_app.conf.broker_url = url
    celery_app.conf.broker_transport_options = options
    # Forget the connection and producer pools made for the previous URL.
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    kombu_pools.reset()


@pytest.fixture
def pipeline(worker, flushable_audit, world, settings):
    """A test wired to the worker: same broker, same MEDIA_ROOT, same attempt limit."""
    settings.MEDIA_ROOT = worker.media
    settings.SCREENING_MAX_ATTEMPTS = MAX_ATTEMPTS
    point_publisher(worker.broker.url, worker.broker.dir)
    yield SimpleNamespace(worker=worker, world=world)
    point_publisher("memory://")


def upload(world, data: bytes, name: str = "film.jpg") -> Screening:
    with scope(hospital=world.hospital):
        return services.scan_upload(patient=world.patient, data=data, filename=name, actor=world.uploader)


def wait_final(ids, worker, timeout=FINISH_TIMEOUT) -> dict[int, Screening]:
    deadline = time.monotonic() + timeout
    while True:
        with scopes_disabled():
            rows = Screening.objects.in_bulk(ids)
        if all(s.status in FINAL_STATUSES for s in rows.values()):
            return rows
        assert time.monotonic() < deadline, (
            f"not final after {timeout} s: {[(s.pk, s.status, s.attempts) for s in rows.values()]}\n"
            + worker.log.read_text()[-4000:])
        time.sleep(0.2)


def results_of(screening_id: int) -> list[AiResult]:
    with scopes_disabled():
        return list(AiResult.objects.filter(screening_id=screening_id))


def test_upload_reaches_done_with_a_result_and_heatmap(pipeline, figure):
    screening = upload(pipeline.world, FILM.read_bytes())
    final = wait_final([screening.pk], pipeline.worker)[screening.pk]
    results = results_of(screening.pk)
    assert (final.status, final.attempts, final.reason) == (ScreeningStatus.DONE, 1, "")
    assert len(results) == 1 and results[0].label in {"covid", "pneumonia", "normal"}
    assert results[0].heatmap.name and (Path(pipeline.worker.media) / results[0].heatmap.name).stat().st_size > 0
    assert results[0].input_sha256 == hashlib.sha256(FILM.read_bytes()).hexdigest()
    figure("E pipeline", f"broker {pipeline.worker.broker.kind}; upload -> {final.status} ({results[0].label})")


def test_sigkill_of_the_pool_child_mid_inference_loses_nothing(pipeline, figure):
    """Each kill lands while a screening is claimed and sleeping before inference; the
    message comes back (acks_late + reject_on_worker_lost) and is claimed again."""
    screenings = [upload(pipeline.world, FILM.read_bytes(), f"film-{i}.jpg") for i in range(3)]
    ids = [s.pk for s in screenings]
    killed, deadline = [], time.monotonic() + FINISH_TIMEOUT
    while len(killed) < len(ids):
        assert time.monotonic() < deadline, pipeline.worker.log.read_text()[-4000:]
        with scopes_disabled():
            running = Screening.objects.filter(pk__in=ids, status=ScreeningStatus.RUNNING).exclude(pk__in=killed)
            victim = running.first()
        pool = children(pipeline.worker.pid)
        if victim is None or not pool:
            time.sleep(0.05)
            continue
        for pid in pool:
            os.kill(pid, signal.SIGKILL)
        killed.append(victim.pk)
    rows = wait_final(ids, pipeline.worker)
    lost = sum(1 for s in rows.values() if s.status != ScreeningStatus.DONE)
    duplicates = sum(max(0, len(results_of(pk)) - 1) for pk in ids)
    redeliveries = max(s.attempts for s in rows.values()) - 1
    figure("E1", f"kills {len(killed)}; screenings lost {lost}; duplicate results {duplicates}; "
                 f"max redeliveries {redeliveries}", kills=len(killed), lost=lost, duplicates=duplicates,
           max_redeliveries=redeliveries)
    assert len(killed) == 3 and lost == 0 and duplicates == 0
    assert all(len(results_of(pk)) == 1 for pk in ids)
    assert all(rows[pk].attempts == 2 for pk in killed)


def test_broker_down_at_upload_time_nothing_is_lost_after_the_sweep(pipeline, figure):
    """With our own redis-server the broker really stops: uploads still succeed (the
    publish fails fast and is logged), the rows stay queued; Redis comes back empty and
    the sweeper re-enqueues them. Without a stoppable broker (shared Redis or the
    filesystem transport) this process publishes to a closed port instead, which is the
    same failure seen from the upload; the worker keeps its broker."""
    broker = pipeline.worker.broker
    if broker.own:
        broker.own.stop()
    else:
        point_publisher(f"redis://127.0.0.1:{free_port()}/0")
    latencies, screenings = [], []
    for i in range(3):
        started = time.monotonic()
        screenings.append(upload(pipeline.world, FILM.read_bytes(), f"outage-{i}.jpg"))
        latencies.append(time.monotonic() - started)
    ids = [s.pk for s in screenings]
    with scopes_disabled():
        assert set(Screening.objects.filter(pk__in=ids).values_list("status", flat=True)) == {ScreeningStatus.QUEUED}
    if broker.own:
        broker.own.start()
    point_publisher(broker.url, broker.dir)
    later = timezone.now() + datetime.timedelta(seconds=pipeline_settings_stale() + 1)
    swept = services.screening_sweep(now=later)
    rows = wait_final(ids, pipeline.worker)
    lost = sum(1 for s in rows.values() if s.status != ScreeningStatus.DONE)
    figure("E4", f"uploads during outage {len(ids)}; failed uploads 0; max upload latency {max(latencies):.2f} s; "
                 f"re-enqueued by the sweeper {swept}; lost {lost}", uploads=len(ids), swept=swept, lost=lost,
           max_upload_latency_s=round(max(latencies), 2))
    assert swept == len(ids) and lost == 0
    assert all(len(results_of(pk)) == 1 for pk in ids)


def pipeline_settings_stale() -> int:
    from django.conf import settings

    return settings.SCREENING_STALE_QUEUED_SECONDS


def test_poison_file_ends_failed_after_the_maximum_attempts(pipeline, figure):
    screening = upload(pipeline.world, poison_bytes(), "poison.png")
    final = wait_final([screening.pk], pipeline.worker)[screening.pk]
    time.sleep(2 * DELAY_SECONDS)  # a requeue loop would claim it again in this time
    with scopes_disabled():
        later = Screening.objects.get(pk=screening.pk)
    figure("E8", f"attempts before terminal state {final.attempts} (max {MAX_ATTEMPTS}); "
                 f"requeue loop stops: {'yes' if later.attempts == final.attempts else 'no'}")
    assert (final.status, final.attempts) == (ScreeningStatus.FAILED, MAX_ATTEMPTS)
    assert f"Gave up after {MAX_ATTEMPTS} attempts" in final.reason
    assert later.attempts == MAX_ATTEMPTS and later.status == ScreeningStatus.FAILED
    assert results_of(screening.pk) == []
