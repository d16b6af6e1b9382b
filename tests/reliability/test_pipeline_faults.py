"""Rows E2, E3, E5, E6, E7, E10, E11 and E12 of RELIABILITY.md (E1, E4 and E8 are in
tests/screening/test_pipeline_worker.py; E9 in test_mariadb_restart.py), and the worker
half of D6/D7: real Celery worker processes on a private redis-server, sharing the test
database. Each test starts the worker it needs (a fault-injection hook, a short time
limit or visibility timeout) and stops it. Counts scale with RELIABILITY_FULL=1."""

from __future__ import annotations

import datetime
import os
import re
import signal
import shutil
import time
from types import SimpleNamespace

import pytest
from django.utils import timezone
from django_scopes import scopes_disabled

from config.celery_app import BROKER_SOCKET_TIMEOUTS
from screening import services
from screening.models import Screening, ScreeningStatus

from .stack import (Blackhole, Worker, film_png, percentile, point_publisher, results_of, scale, tally, upload,
                    wait_final, worker_site)

MAX_ATTEMPTS = 3
NODE_KILLS = scale(2, 20)
SIGTERMS = scale(1, 10)
DICOM_SAMPLE = scale(6, 1000)
STALE_SECONDS = 15
SWEEP_SECONDS = 2


@pytest.fixture(scope="module")
def base(django_db_setup, django_db_blocker, screening_model_dir, tmp_path_factory):
    """The broker (a private redis-server when installed), the media folder and the
    database URL every worker of this module shares."""
    site = worker_site(tmp_path_factory.mktemp("faults"), django_db_blocker)
    site.model_dir = screening_model_dir
    yield site
    if site.broker.own:
        site.broker.own.stop()


@pytest.fixture
def stack(base, flushable_audit, world, settings):
    """start(**env) starts a worker with extra environment; all are stopped afterwards."""
    settings.MEDIA_ROOT = base.media
    settings.SCREENING_MAX_ATTEMPTS = MAX_ATTEMPTS
    point_publisher(base.broker.url, base.broker.dir)
    started = []

    def start(concurrency=1, beat=False, **env):
        folder = base.tmp / f"worker-{len(started)}-{time.monotonic_ns()}"
        folder.mkdir()
        worker = Worker(tmp=folder, broker=base.broker, db_url=base.db_url, model_dir=base.model_dir,
                        media=base.media, concurrency=concurrency, beat=beat, SCREENING_MAX_ATTEMPTS=MAX_ATTEMPTS,
                        **env)
        started.append(worker)
        worker.start()
        return worker

    yield SimpleNamespace(start=start, world=world, base=base)
    for worker in started:
        worker.stop(timeout=30)
    point_publisher("memory://")


def wait_status(pk: int, status: str, worker: Worker, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with scopes_disabled():
            if Screening.objects.filter(pk=pk, status=status).exists():
                return
        assert time.monotonic() < deadline, f"screening {pk} never {status}\n" + worker.tail()
        time.sleep(0.05)


# --- D6 / D7 through the worker ----------------------------------------------------------------


def test_accepted_dicom_corpus_ends_done_or_rejected(stack, figure):
    """D6: the pydicom test files that pass upload validation, through the worker: each
    ends done, cannot_assess or rejected, in one attempt (no retry of a deterministic
    error), and the pool child never dies. D7: the heatmaps carry no PHI."""
    from .test_uploads import crafted_dicom, phi_found, phi_uploads, pydicom_corpus

    worker = stack.start()
    pool_before = set(worker.pool())
    ids = []
    candidates = [(p.name, p.read_bytes()) for p in pydicom_corpus()] + list(crafted_dicom().items())
    for name, data in candidates:
        if len(ids) >= DICOM_SAMPLE:
            break
        try:
            ids.append(upload(stack.world, data, name).pk)
        except Exception:  # noqa: BLE001 - refused at upload: test_uploads.py counts those
            continue
    phi_ids = [upload(stack.world, data, f"phi.{kind}").pk for kind, data in phi_uploads().items()]
    rows = wait_final(ids + phi_ids, worker, timeout=120 + 10 * len(ids))
    states = {pk: rows[pk].status for pk in ids}
    crashes = len(pool_before - set(worker.pool()))
    retried = sum(1 for pk in ids if rows[pk].attempts > 1)
    heatmaps = phi_left = 0
    for pk in ids + phi_ids:
        for result in results_of(pk):
            if result.heatmap:
                heatmaps += 1
                with result.heatmap.open("rb") as fh:
                    phi_left += len(phi_found(fh.read()))
    counts = {s: list(states.values()).count(s) for s in sorted(set(states.values()))}
    figure("D6 worker", f"DICOM corpus accepted at upload {len(ids)}; terminal states {len(ids)}/{len(ids)} "
                        f"({', '.join(f'{k} {v}' for k, v in counts.items())}); worker crashes {crashes}; "
                        f"retries on deterministic errors {retried}",
           corpus=len(ids), terminal=len(ids), crashes=crashes, retries=retried, states=counts)
    figure("D7 heatmaps", f"derivatives scanned {heatmaps}; PHI fields remaining {phi_left}",
           scanned=heatmaps, remaining=phi_left)
    assert set(states.values()) <= {"done", "cannot_assess", "rejected"}, states
    assert crashes == 0 and retried == 0 and phi_left == 0 and heatmaps >= 1


# --- E2 / E3: the whole worker dies, or is stopped for a deploy -------------------------------


def test_whole_worker_killed_then_restarted_loses_nothing(stack, figure):
    """E2. SIGKILL to the worker's whole process group (parent, pool child, embedded beat)
    while a screening is running; a fresh worker starts. The running row is found by the
    sweeper (beat every SWEEP_SECONDS, stale after STALE_SECONDS) or the broker's
    visibility timeout, whichever comes first."""
    visibility = 20
    worker = stack.start(beat=True, SCREENING_TEST_DELAY_SECONDS=1.5, SCREENING_STALE_RUNNING_SECONDS=STALE_SECONDS,
                         SCREENING_STALE_QUEUED_SECONDS=STALE_SECONDS, SCREENING_SWEEP_INTERVAL_SECONDS=SWEEP_SECONDS,
                         TEST_CELERY_TRANSPORT_OPTIONS=f'{{"visibility_timeout": {visibility}, '
                                                       '"unacked_restore_interval": 1, "unacked_restore_throttle": 1}')
    ids, recovery, restarts = [], [], []
    for i in range(NODE_KILLS):
        pk = upload(stack.world, film_png(100 + i), f"node-{i}.png").pk
        ids.append(pk)
        wait_status(pk, ScreeningStatus.RUNNING, worker)
        worker.kill_all()
        killed_at = time.monotonic()
        restarts.append(worker.start())
        wait_final([pk], worker, timeout=visibility + STALE_SECONDS + 120)
        recovery.append(time.monotonic() - killed_at)
    t = tally(ids)
    bound = visibility + SWEEP_SECONDS + max(restarts)
    figure("E2", f"kills {NODE_KILLS}; lost {t.lost}; duplicates {t.duplicates}; recovery time max "
                 f"{max(recovery):.1f} s (p95 {percentile(recovery, 95):.1f} s; worker restart max "
                 f"{max(restarts):.1f} s; bound visibility {visibility} s + sweep {SWEEP_SECONDS} s + restart)",
           kills=NODE_KILLS, lost=t.lost, duplicates=t.duplicates, recovery_max_s=round(max(recovery), 1),
           recovery_p95_s=round(percentile(recovery, 95), 1), restart_max_s=round(max(restarts), 1))
    assert t.lost == 0 and t.duplicates == 0 and t.missing_results == 0
    assert max(recovery) <= bound + 30


def test_sigterm_during_processing_finishes_or_requeues(stack, figure):
    """E3. A deploy: SIGTERM while a screening is running. Celery's warm shutdown lets the
    running task finish; whatever it could not finish comes back after the restart."""
    worker = stack.start(SCREENING_TEST_DELAY_SECONDS=3)
    ids, finished_in_window = [], 0
    for i in range(SIGTERMS):
        pk = upload(stack.world, film_png(200 + i), f"deploy-{i}.png").pk
        queued_behind = upload(stack.world, film_png(300 + i), f"deploy-next-{i}.png").pk
        ids += [pk, queued_behind]
        wait_status(pk, ScreeningStatus.RUNNING, worker)
        worker.proc.send_signal(signal.SIGTERM)
        worker.proc.wait(120)
        with scopes_disabled():
            finished_in_window += Screening.objects.get(pk=pk).status == ScreeningStatus.DONE
        worker.start()
    rows = wait_final(ids, worker)
    t = tally(ids)
    figure("E3", f"SIGTERMs {SIGTERMS}; lost {t.lost}; duplicates {t.duplicates}; running tasks finished within "
                 f"the soft window {finished_in_window}/{SIGTERMS}; queued ones requeued and done "
                 f"{sum(rows[p].status == 'done' for p in ids[1::2])}/{SIGTERMS}",
           sigterms=SIGTERMS, lost=t.lost, duplicates=t.duplicates, finished_in_window=finished_in_window)
    assert t.lost == 0 and t.duplicates == 0 and finished_in_window == SIGTERMS


# --- E5 / E6: a broker that hangs, a publish that may or may not have happened ------------------


def test_half_open_broker_does_not_hang_uploads(stack, figure):
    """E5. The broker URL points at a listener that accepts and never answers. Uploads
    return within the configured socket timeouts and the rows stay queued for the sweeper."""
    hole = Blackhole()
    point_publisher(f"redis://127.0.0.1:{hole.port}/0")
    latencies, ids = [], []
    try:
        for i in range(3):
            started = time.monotonic()
            ids.append(upload(stack.world, film_png(400 + i), f"half-open-{i}.png").pk)
            latencies.append(time.monotonic() - started)
    finally:
        hole.close()
        point_publisher(stack.base.broker.url, stack.base.broker.dir)
    with scopes_disabled():
        states = set(Screening.objects.filter(pk__in=ids).values_list("status", flat=True))
    timeouts = BROKER_SOCKET_TIMEOUTS["socket_timeout"] + BROKER_SOCKET_TIMEOUTS["socket_connect_timeout"]
    bound = 3 * timeouts + 2  # the publish and its two quick retries, each bounded by the socket timeouts
    hung = sum(1 for lat in latencies if lat > bound)
    figure("E5", f"uploads against a half-open broker {len(ids)}; max latency {max(latencies):.1f} s "
                 f"(socket timeouts {BROKER_SOCKET_TIMEOUTS['socket_connect_timeout']} s connect + "
                 f"{BROKER_SOCKET_TIMEOUTS['socket_timeout']} s read, bound {bound} s); hung requests {hung}",
           uploads=len(ids), max_latency_s=round(max(latencies), 1), bound_s=bound, hung=hung)
    assert hung == 0 and states == {ScreeningStatus.QUEUED}


def test_ambiguous_publish_runs_the_screening_once(stack, figure):
    """E6. The publish reached the broker but the caller saw an error, so the sweeper
    publishes the same screening again (twice here): one inference, one result."""
    worker = stack.start(SCREENING_TEST_DELAY_SECONDS=1)
    screenings = [upload(stack.world, film_png(500 + i), f"ambiguous-{i}.png") for i in range(3)]
    for screening in screenings:
        services._enqueue(screening)
        services._enqueue(screening)
    ids = [s.pk for s in screenings]
    wait_final(ids, worker)
    time.sleep(2)  # let the extra deliveries arrive and be answered
    t = tally(ids)
    extra = worker.tail(200_000).count("'not claimable'")
    runs = sum(r.attempts for r in t.rows.values())
    figure("E6", f"screenings {len(ids)} published 3 times each; inferences run {runs}; "
                 f"extra deliveries refused by the claim {extra}; duplicate result rows {t.duplicates}",
           screenings=len(ids), runs=runs, refused=extra, duplicates=t.duplicates)
    assert t.lost == 0 and t.duplicates == 0 and all(r.attempts == 1 for r in t.rows.values())


# --- E7: a task outlives the broker's visibility timeout ---------------------------------------


def test_redelivery_after_the_visibility_timeout_does_not_run_twice(stack, figure):
    """E7. Visibility timeout 4 s, restore sweep every second, a task that takes over 10 s,
    two pool children: Redis hands the message out again while the first run goes on.
    The claim must keep the second delivery from running the screening concurrently."""
    worker = stack.start(concurrency=2, SCREENING_TEST_DELAY_SECONDS=10, SCREENING_BATCH_MAX=1,
                         TEST_CELERY_TRANSPORT_OPTIONS='{"visibility_timeout": 4, "unacked_restore_interval": 1, '
                                                       '"unacked_restore_throttle": 1}')
    pk = upload(stack.world, film_png(600), "slow.png").pk
    wait_final([pk], worker, timeout=180)
    time.sleep(3)
    log = worker.tail(500_000)
    with scopes_disabled():
        row = Screening.objects.get(pk=pk)
    task_id = row.task_id
    deliveries = len(re.findall(rf"Task screening\.run\[{re.escape(task_id)}\] received", log))
    concurrent = row.attempts - 1
    figure("E7", f"visibility timeout 4 s, task 10+ s: deliveries {deliveries}; concurrent executions of one "
                 f"screening {concurrent}; results {len(results_of(pk))}",
           deliveries=deliveries, concurrent=concurrent, results=len(results_of(pk)))
    assert deliveries >= 2, "the broker did not redeliver; the test proves nothing\n" + worker.tail()
    assert concurrent == 0 and row.status == ScreeningStatus.DONE and len(results_of(pk)) == 1


# --- E10 / E11: the device runs out of memory; inference hangs --------------------------------


def test_injected_out_of_memory_errors_are_recovered_without_restarts(stack, figure):
    """E10. SCREENING_TEST_OOM_TIMES=N: the first N predict calls of the pool child raise
    ResourceExhaustedError. Each screening is retried (smaller batch, then backoff) and
    ends done, or failed once the attempt limit is reached; the child never restarts."""
    injections = 2
    worker = stack.start(SCREENING_TEST_OOM_TIMES=injections)
    pool_before = set(worker.pool())
    ids = [upload(stack.world, film_png(700 + i), f"oom-{i}.png").pk for i in range(3)]
    rows = wait_final(ids, worker, timeout=240)
    t = tally(ids)
    failed = sum(1 for r in rows.values() if r.status == ScreeningStatus.FAILED)
    restarts = len(pool_before - set(worker.pool()))
    seen = worker.tail(500_000).count("injected out-of-memory error")
    figure("E10", f"OOM injections {injections} (seen in the log {min(seen, injections)}); screenings {len(ids)}: "
                  f"recovered {len(ids) - failed}, marked failed {failed}; lost {t.lost - failed}; duplicates "
                  f"{t.duplicates}; worker restarts {restarts}",
           injections=injections, recovered=len(ids) - failed, failed=failed, restarts=restarts,
           duplicates=t.duplicates)
    assert restarts == 0 and t.duplicates == 0 and failed == 0 and seen >= 1


def test_hung_inference_is_stopped_by_the_time_limit(stack, figure, monkeypatch):
    """E11. Inference that never returns (the delay hook sleeps an hour) under a 4 s soft /
    8 s hard time limit: the screening ends failed with the reason, the worker goes on.
    (The publisher puts the task's limits in the message, so both sides get them.)"""
    from screening.tasks import screening_run

    monkeypatch.setattr(screening_run, "soft_time_limit", 4)
    monkeypatch.setattr(screening_run, "time_limit", 8)
    monkeypatch.setattr(screening_run, "_exec_options", None)  # Celery caches the publishing options
    worker = stack.start(SCREENING_TEST_DELAY_SECONDS=3600,
                         TEST_CELERY_TASK_ANNOTATIONS='{"screening.run": {"soft_time_limit": 4, "time_limit": 8}}')
    started = time.monotonic()
    pk = upload(stack.world, film_png(800), "hung.png").pk
    row = wait_final([pk], worker, timeout=60)[pk]
    took = time.monotonic() - started
    alive = worker.proc.poll() is None and bool(worker.pool())
    figure("E11", f"hung tasks terminated within limit: {'yes' if took < 8 + 5 else 'no'} ({took:.1f} s, soft "
                  f"limit 4 s, hard 8 s); status = {row.status} ({row.reason}); worker alive: {alive}",
           terminated=took < 13, seconds=round(took, 1), status=row.status, worker_alive=alive)
    assert row.status == ScreeningStatus.FAILED and "took too long" in row.reason and alive and took < 13


# --- E12: the sweeper ------------------------------------------------------------------------------


def queued_ids(broker_url: str) -> list[int]:
    """The screening ids waiting on the `inference` queue of a Redis broker."""
    import base64
    import json

    import redis

    client = redis.Redis.from_url(broker_url)
    ids = []
    for raw in client.lrange("inference", 0, -1):
        body = json.loads(base64.b64decode(json.loads(raw)["body"]))
        ids.append(body[1]["screening_id"])
    return ids


def test_one_sweep_requeues_every_stuck_screening(base, db, world, settings, figure):
    """E12. Rows left queued (never published, or published to a broker that lost them)
    and running (their worker died without a trace) past the stale ages: one sweep puts
    every one of them back on the real broker's queue; a fresh row is left alone."""
    from django.test import TestCase

    if not base.broker.url.startswith("redis://"):
        pytest.skip("reading the queue back needs Redis; the pipeline tests cover the filesystem broker")
    import redis

    redis.Redis.from_url(base.broker.url).delete("inference")
    point_publisher(base.broker.url)
    try:
        now = timezone.now()
        stuck = []
        for i in range(6):
            pk = upload(world, film_png(900 + i), f"stuck-{i}.png").pk
            old = now - datetime.timedelta(seconds=settings.SCREENING_STALE_RUNNING_SECONDS + 60 * (i + 1))
            with scopes_disabled():
                rows = Screening.objects.filter(pk=pk)
                if i % 3 == 0:
                    rows.update(enqueued_at=old)
                elif i % 3 == 1:
                    rows.update(status="running", started_at=old, task_id="lost-worker")
                else:
                    rows.update(enqueued_at=None)
            stuck.append(pk)
        fresh = upload(world, film_png(950), "fresh.png").pk
        with TestCase.captureOnCommitCallbacks(execute=True):
            swept = services.screening_sweep()
        published = queued_ids(base.broker.url)
        with scopes_disabled():
            ages = [(timezone.now() - s.enqueued_at).total_seconds() / 60
                    for s in Screening.objects.filter(status__in=["queued", "running"])]
            left = Screening.objects.filter(pk__in=stuck).exclude(status="queued", enqueued_at__gte=now).count()
    finally:
        point_publisher("memory://")
    figure("E12", f"stuck rows {len(stuck)} (queued and running past the stale age); stuck after one sweep {left}; "
                  f"re-published {len(set(published) & set(stuck))}; fresh rows touched {published.count(fresh)}; "
                  f"max age of a non-terminal screening after the sweep {max(ages):.1f} min",
           stuck=len(stuck), left=left, republished=len(set(published) & set(stuck)), max_age_min=round(max(ages), 1))
    assert swept == len(stuck) and left == 0 and sorted(published) == sorted(stuck)
