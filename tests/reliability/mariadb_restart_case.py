"""The inner half of E9 (run by test_mariadb_restart.py against a private mariadbd; not
collected by the suite itself: the file name does not start with test_). A worker
screens a batch while the database server is killed and started again."""

import os
import re
import time
from pathlib import Path

from django.db import connection
from django_scopes import scopes_disabled

from screening.models import Screening

from .stack import (OwnMariaDB, Worker, database_url, film_png, pick_broker, point_publisher, scale, tally, upload,
                    wait_final)

BATCH = scale(8, 50)
DOWN_SECONDS = 5
SWEEP_AGE = 30


def test_restart_mid_batch(flushable_audit, world, settings, screening_model_dir, tmp_path, figure):
    server = OwnMariaDB.attach(Path(os.environ["E9_MARIADB_ROOT"]), int(os.environ["E9_MARIADB_PORT"]))
    broker = pick_broker(tmp_path)
    media = tmp_path / "media"
    media.mkdir()
    settings.MEDIA_ROOT = media
    # As deployed: beat runs the sweeper, which takes back what a task could not finish or
    # retry while the database was away (short ages here so the test does not wait minutes).
    worker = Worker(tmp=tmp_path, broker=broker, db_url=database_url(), model_dir=screening_model_dir, media=media,
                    beat=True, SCREENING_TEST_DELAY_SECONDS=0.3, SCREENING_MAX_ATTEMPTS=8,
                    SCREENING_STALE_QUEUED_SECONDS=SWEEP_AGE, SCREENING_STALE_RUNNING_SECONDS=SWEEP_AGE,
                    SCREENING_SWEEP_INTERVAL_SECONDS=3)
    worker.start()
    point_publisher(broker.url, broker.dir)
    try:
        ids = [upload(world, film_png(1000 + i), f"batch-{i}.png").pk for i in range(BATCH)]
        deadline = time.monotonic() + 300
        while True:  # a few done, the rest still to do: mid-batch
            with scopes_disabled():
                done = Screening.objects.filter(pk__in=ids, status="done").count()
            if done >= max(1, BATCH // 4):
                break
            assert time.monotonic() < deadline, worker.tail()
            time.sleep(0.1)
        connection.close()
        server.kill()
        killed_at = time.monotonic()
        time.sleep(DOWN_SECONDS)
        server.start()
        connection.close()
        rows = wait_final(ids, worker, timeout=600)
        recovered = time.monotonic() - killed_at
        t = tally(ids)
        log = worker.tail(2_000_000)
        retries = len(re.findall(r"retrying|Retry in", log))
        failed_tasks = len(re.findall(r"raised unexpected", log))
        figure("E9", f"MariaDB killed and restarted (down {DOWN_SECONDS} s) with {BATCH - done} of {BATCH} "
                     f"screenings to go: lost {t.lost}; duplicates {t.duplicates}; retries used {retries}; time to "
                     f"recover (kill -> batch done) {recovered:.1f} s; max attempts {t.max_attempts}; tasks that failed "
                     f"on the outage and were taken back by the sweeper {failed_tasks}",
               run=True, batch=BATCH, lost=t.lost, duplicates=t.duplicates, retries_used=retries,
               recovery_s=round(recovered, 1), swept_tasks=failed_tasks)
        assert t.lost == 0 and t.duplicates == 0 and t.missing_results == 0, (
            [(r.pk, r.status, r.reason) for r in rows.values() if r.status != "done"], worker.tail())
    finally:
        worker.stop(timeout=30)
        point_publisher("memory://")
        if broker.own:
            broker.own.stop()
