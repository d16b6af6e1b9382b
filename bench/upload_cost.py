"""Where the CPU of one scan upload goes, one request at a time (no contention).

    python bench/upload_cost.py [--uploads 60]

The production settings on MariaDB (a dedicated database, default `hospital_bench_upload`,
dropped and migrated first) and Redis (one DB number as broker and cache, flushed first);
no worker runs, so the screenings stay queued. The synthetic PNGs of bench/pipeline.py
are uploaded through the API by a partner client (OAuth2 bearer token), and the CPU time
of each part is measured in the same run, median of `--uploads`:

- `validate_scan` alone (the full decode, structure checks, preview and checksums);
- the whole upload request in this process (Django's test client: no HTTP server);
- the same request with validation already done (its result reused): Django, DRF, OAuth,
  throttles, the ORM, the stored files, the audited transaction and the publish;
- an authenticated status request, the fixed cost of an API request;
- the upload through gunicorn (one worker, one thread), one request at a time: the CPU the
  gunicorn worker spends per upload, HTTP included (a mean: its CPU time ticks in 10 ms).

Needs MariaDB and Redis (see README "Performance")."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common, pipeline  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_stack_arguments(p, database="hospital_bench_upload", redis_db=11, port=8773)
    p.add_argument("--uploads", type=int, default=60, help="requests measured per figure (%(default)s)")
    return p.parse_args()


def cpu_ms(fn, n: int) -> float:
    """Median CPU time of this process per call of `fn`, in ms (after two warm-up calls)."""
    for i in range(2):
        fn(i)
    times = []
    for i in range(n):
        t0 = time.process_time()
        fn(i)
        times.append(time.process_time() - t0)
    return 1000 * statistics.median(times)


def measure(args, media_root: str) -> dict:
    """The figures, in ms, by name."""
    images = pipeline.synthetic_pngs()
    env = common.stack_env(args, media_root=media_root)
    common.create_database(args, drop=True)
    common.configure(env)
    common.migrate(env)
    common.flush_redis(args)

    import psutil
    from django.test import Client
    from django_scopes import scopes_disabled

    from screening import services
    from screening.validation import validate_scan

    with scopes_disabled():
        hospital, partner, patients = pipeline.seed(len(images))
    bodies = [b"".join(pipeline.upload_body(patients[i], name, data)) for i, (name, data) in enumerate(images)]
    url = f"/api/v1/hospitals/{hospital.slug}/screenings/"
    client = Client(HTTP_HOST="127.0.0.1")
    base_url = f"http://127.0.0.1:{args.port}"
    figures = {}

    with common.Stack(argparse.Namespace(**{**vars(args), "web_workers": 1, "web_threads": 1}), env) as stack:
        web = stack.start_web()
        token = common.fetch_token(base_url, partner.client_id, partner.client_secret)
        auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

        def upload(i: int):
            response = client.generic("POST", url, bodies[i % len(bodies)], content_type=pipeline.UPLOAD_CONTENT_TYPE,
                                      **auth)
            assert response.status_code == 201, response.content[:300]
            return response.json()["id"]

        figures["validate_scan"] = cpu_ms(lambda i: validate_scan(data=images[i % len(images)][1], filename="x.png"),
                                          args.uploads)
        figures["upload, in process"] = cpu_ms(upload, args.uploads)
        status_url = f"{url}{upload(0)}/status/"

        def status(i: int):
            response = client.get(status_url, **auth)
            assert response.status_code == 200, response.content[:300]

        figures["status request, in process"] = cpu_ms(status, args.uploads)

        validated = {}  # by file name: one per image (a dict keyed by the bytes would hash 3 MB a request)

        def reused(*, data: bytes, filename: str):
            if filename not in validated:
                validated[filename] = validate_scan(data=data, filename=filename)
            return validated[filename]

        services.validate_scan, real = reused, services.validate_scan
        try:
            for i in range(len(images)):
                upload(i)
            figures["upload without validation, in process"] = cpu_ms(upload, args.uploads)
        finally:
            services.validate_scan = real

        [gunicorn] = psutil.Process(web.pid).children()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": pipeline.UPLOAD_CONTENT_TYPE}
        with common.HttpClient(base_url, headers=headers, timeout=60) as http:
            def over_http(i: int):
                response = http.post(url, content=bodies[i % len(bodies)])
                assert response.status_code == 201, response.text[:300]

            for i in range(2):
                over_http(i)
            # Another process's CPU time ticks in 10 ms steps (/proc): the mean over all uploads.
            worker = {"gunicorn": gunicorn.pid}
            before = common.cpu_seconds(worker)["gunicorn"]
            for i in range(args.uploads):
                over_http(i)
            figures["upload through gunicorn (its worker's CPU, mean)"] = (
                1000 * (common.cpu_seconds(worker)["gunicorn"] - before) / args.uploads)
    return figures


def main():
    args = parse_args()
    print(f"upload cost on {common.machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-media-") as media_root:  # the stored scans go with it
        figures = measure(args, media_root)
    print(f"CPU per request, median of {args.uploads} (ms):")
    for name, value in figures.items():
        print(f"  {name:50s} {value:6.1f}")
    print("SUMMARY upload cost: " + ", ".join(f"{name} {value:.1f} ms" for name, value in figures.items()))


if __name__ == "__main__":
    main()
