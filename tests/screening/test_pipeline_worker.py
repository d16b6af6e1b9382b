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
import os
import signal
import time
from pathlib import Path

import pytest
from django.utils import timezone
from django_scopes import scopes_disabled

from screening import services
from screening.models import Screening, ScreeningStatus
from tests.reliability.stack import (FILM, FINISH_TIMEOUT, Worker, film_png, percentile, point_publisher,
                                     results_of, scale, tally, upload, wait_final, worker_site)

MAX_ATTEMPTS = 3
DELAY_SECONDS = 1.5
KILLS = scale(3, 20)
OUTAGE_SECONDS = scale(4, 60)


def poison_bytes() -> bytes:
    """The fixture film as a PNG: a valid upload, and the scan the worker crashes on."""
    return film_png()


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker, screening_model_dir, tmp_path_factory):
    site = worker_site(tmp_path_factory.mktemp("pipeline"), django_db_blocker)
    broker = site.broker
    proc = Worker(tmp=site.tmp, broker=broker, db_url=site.db_url, model_dir=screening_model_dir, media=site.media,
                  SCREENING_MAX_ATTEMPTS=MAX_ATTEMPTS, SCREENING_TEST_DELAY_SECONDS=DELAY_SECONDS,
                  SCREENING_TEST_CRASH_SHA256=hashlib.sha256(poison_bytes()).hexdigest())
    proc.start()
    yield proc
    proc.stop()
    if broker.own:
        broker.own.stop()


@pytest.fixture
def pipeline(worker, flushable_audit, world, settings):
    """A test wired to the worker: same broker, same MEDIA_ROOT, same attempt limit."""
    from types import SimpleNamespace

    settings.MEDIA_ROOT = worker.media
    settings.SCREENING_MAX_ATTEMPTS = MAX_ATTEMPTS
    point_publisher(worker.broker.url, worker.broker.dir)
    yield SimpleNamespace(worker=worker, world=world)
    point_publisher("memory://")


def test_upload_reaches_done_with_a_result_and_heatmap(pipeline, figure):
    screening = upload(pipeline.world, FILM.read_bytes())
    final = wait_final([screening.pk], pipeline.worker)[screening.pk]
    results = results_of(screening.pk)
    assert (final.status, final.attempts, final.reason) == (ScreeningStatus.DONE, 1, "")
    assert len(results) == 1 and results[0].label in {"covid", "pneumonia", "normal"}
    assert results[0].heatmap.name and (Path(pipeline.worker.media) / results[0].heatmap.name).stat().st_size > 0
    assert results[0].input_sha256 == hashlib.sha256(FILM.read_bytes()).hexdigest()
    # The pool runs at a lower CPU priority than the worker's parent (SCREENING_WORKER_NICE).
    parent = os.getpriority(os.PRIO_PROCESS, pipeline.worker.pid)
    assert [os.getpriority(os.PRIO_PROCESS, pid) for pid in pipeline.worker.pool()] == [min(parent + 10, 19)]
    group = Path(f"/proc/{pipeline.worker.pid}/autogroup")
    if group.exists():  # Linux: the worker runs as a session of its own, so its whole group yields
        assert group.read_text().split()[-1] == "10"
    figure("E pipeline", f"broker {pipeline.worker.broker.kind}; upload -> {final.status} ({results[0].label})")


def test_the_worker_keeps_its_database_connection_from_one_screening_to_the_next(pipeline):
    """Celery would close the worker's connection after every task; it is kept instead
    (checked as web requests check theirs), so screening one scan after another opens no
    new MariaDB connection. SQLite opens a file, not a server connection: nothing to count."""
    from django.db import connection

    if connection.vendor != "mysql":
        pytest.skip("counts MariaDB server connections; the SQLite run has none")

    def opened() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SHOW GLOBAL STATUS LIKE 'Connections'")
            return int(cursor.fetchone()[1])

    wait_final([upload(pipeline.world, FILM.read_bytes(), "warm-up.png").pk], pipeline.worker)
    before = opened()
    for i in range(4):
        screening = upload(pipeline.world, FILM.read_bytes(), f"film-{i}.png")
        assert wait_final([screening.pk], pipeline.worker)[screening.pk].status == ScreeningStatus.DONE
    # At most one: a connection of the worker that reached CONN_MAX_AGE meanwhile.
    assert opened() - before <= 1


def test_sigkill_of_the_pool_child_mid_inference_loses_nothing(pipeline, figure):
    """E1. Each kill lands while a screening is claimed and sleeping before inference;
    the message comes back (acks_late + reject_on_worker_lost) and is claimed again.
    Recovery: from the kill until that screening is done."""
    ids = [upload(pipeline.world, FILM.read_bytes(), f"film-{i}.jpg").pk for i in range(KILLS)]
    killed, kill_times, deadline = [], {}, time.monotonic() + FINISH_TIMEOUT + 10 * KILLS
    recovery, pending = [], set()
    while len(killed) < len(ids) or pending:
        assert time.monotonic() < deadline, pipeline.worker.tail()
        with scopes_disabled():
            states = dict(Screening.objects.filter(pk__in=ids).values_list("pk", "status"))
        for pk in list(pending):
            if states[pk] in ("done", "failed", "rejected", "cannot_assess"):
                recovery.append(time.monotonic() - kill_times[pk])
                pending.discard(pk)
        victim = next((pk for pk in ids if states[pk] == ScreeningStatus.RUNNING and pk not in killed), None)
        pool = pipeline.worker.pool()
        if victim is None or not pool:
            time.sleep(0.05)
            continue
        landed = False
        for pid in pool:
            try:
                os.kill(pid, signal.SIGKILL)
                landed = True
            except ProcessLookupError:  # it exited after the listing: look again
                pass
        if not landed:
            continue
        killed.append(victim)
        kill_times[victim] = time.monotonic()
        pending.add(victim)
    wait_final(ids, pipeline.worker)
    t = tally(ids)
    figure("E1", f"kills {len(killed)}; screenings lost {t.lost}; duplicate results {t.duplicates}; "
                 f"max redeliveries per screening {t.max_attempts - 1}; recovery time p95 "
                 f"{percentile(recovery, 95):.1f} s (max {max(recovery):.1f} s)",
           kills=len(killed), lost=t.lost, duplicates=t.duplicates, max_redeliveries=t.max_attempts - 1,
           recovery_p95_s=round(percentile(recovery, 95), 2), recovery_max_s=round(max(recovery), 2))
    assert len(killed) == KILLS and t.lost == 0 and t.duplicates == 0 and t.missing_results == 0
    assert all(t.rows[pk].attempts == 2 for pk in killed)


def test_broker_down_at_upload_time_nothing_is_lost_after_the_sweep(pipeline, figure):
    """E4. With our own redis-server the broker really stops for OUTAGE_SECONDS while
    uploads go on: they succeed (the publish fails fast and is logged), the rows stay
    queued; Redis comes back empty and the sweeper re-enqueues them. Without a stoppable
    broker (shared Redis or the filesystem transport) this process publishes to a closed
    port instead, which is the same failure seen from the upload."""
    from tests.reliability.stack import free_port

    broker = pipeline.worker.broker
    if broker.own:
        broker.own.stop()
    else:
        point_publisher(f"redis://127.0.0.1:{free_port()}/0")
    latencies, ids, errors = [], [], 0
    outage_started = time.monotonic()
    i = 0
    while time.monotonic() - outage_started < OUTAGE_SECONDS or i < 3:
        started = time.monotonic()
        try:
            ids.append(upload(pipeline.world, FILM.read_bytes(), f"outage-{i}.jpg").pk)
        except Exception:  # noqa: BLE001 - counted: an upload that fails during the outage
            errors += 1
        latencies.append(time.monotonic() - started)
        i += 1
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    with scopes_disabled():
        assert set(Screening.objects.filter(pk__in=ids).values_list("status", flat=True)) == {ScreeningStatus.QUEUED}
    if broker.own:
        broker.own.start()
    point_publisher(broker.url, broker.dir)
    recovered_at = time.monotonic()
    later = timezone.now() + datetime.timedelta(seconds=pipeline_settings_stale() + 1)
    swept = services.screening_sweep(now=later)
    wait_final(ids, pipeline.worker, timeout=FINISH_TIMEOUT + 5 * len(ids))
    drain = time.monotonic() - recovered_at
    t = tally(ids)
    figure("E4", f"outage {OUTAGE_SECONDS} s; uploads during outage {len(ids)}; failed uploads {errors}; "
                 f"max upload latency {max(latencies):.2f} s; never enqueued after the sweep "
                 f"{len(ids) - swept}; lost {t.lost}; time to drain after recovery {drain:.1f} s",
           outage_s=OUTAGE_SECONDS, uploads=len(ids), errors=errors, swept=swept, lost=t.lost,
           duplicates=t.duplicates, max_upload_latency_s=round(max(latencies), 2), drain_s=round(drain, 1))
    assert errors == 0 and swept == len(ids) and t.lost == 0 and t.duplicates == 0 and t.missing_results == 0


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
                 f"requeue loop stops: {'yes' if later.attempts == final.attempts else 'no'}",
           attempts=final.attempts, max_attempts=MAX_ATTEMPTS, loop_stops=later.attempts == final.attempts)
    assert (final.status, final.attempts) == (ScreeningStatus.FAILED, MAX_ATTEMPTS)
    assert f"Gave up after {MAX_ATTEMPTS} attempts" in final.reason
    assert later.attempts == MAX_ATTEMPTS and later.status == ScreeningStatus.FAILED
    assert results_of(screening.pk) == []
