"""Shared plumbing of the end-to-end benchmarks (bench/pipeline.py, bench/api_scale.py): the
production stack on this machine (gunicorn + Celery on MariaDB and Redis, production
settings from the environment), a dedicated database and Redis DB, partner clients with
real OAuth2 tokens, percentiles and process-tree RSS sampling.

Nothing here is imported by the application; the scripts call `configure()` before
Django is set up so that the script itself talks to the same database as the stack."""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))


def add_stack_arguments(parser: argparse.ArgumentParser, *, database: str, redis_db: int, port: int) -> None:
    parser.add_argument("--db-server", default=os.environ.get("BENCH_DB_SERVER", "mysql://root@127.0.0.1:3306"),
                        help="MariaDB server URL without a database name (default: %(default)s)")
    parser.add_argument("--database", default=database, help="database created for the benchmark (%(default)s)")
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379"),
                        help="Redis server URL without a DB number (default: %(default)s)")
    parser.add_argument("--redis-db", type=int, default=redis_db,
                        help="Redis DB number used as broker and cache, flushed first (default: %(default)s)")
    parser.add_argument("--port", type=int, default=port, help="port of the gunicorn server (%(default)s)")
    # As the README's production command (`--workers 4`): four single-threaded processes on
    # two cores served 9 % more uploads than 2 x 4 threads, whose threads contend for the GIL.
    parser.add_argument("--web-workers", type=int, default=4, help="gunicorn worker processes (%(default)s)")
    parser.add_argument("--web-threads", type=int, default=1, help="threads per gunicorn worker (%(default)s)")
    parser.add_argument("--web-worker-class", choices=("sync", "gthread"), default="sync",
                        help="gunicorn worker class (%(default)s, as the production command; gthread when "
                             "--web-threads > 1)")


def stack_env(args, *, settings: str = "config.settings.production", media_root: str | None = None) -> dict:
    """The environment of every process of the stack (and of the script itself)."""
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": settings,
        "DJANGO_SECRET_KEY": "bench-" + "k" * 50,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": f"{args.db_server.rstrip('/')}/{args.database}",
        "CACHE_URL": f"{args.redis.rstrip('/')}/{args.redis_db}",
        "CELERY_BROKER_URL": f"{args.redis.rstrip('/')}/{args.redis_db}",
        # Plain HTTP on loopback: no TLS redirect (the cookies stay Secure; the clients send them).
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DJANGO_LOG_LEVEL": "WARNING",
        # The benchmark is the load: the per-client and per-hospital rate limits would refuse it.
        "API_THROTTLE_RATE": "1000000/min",
        "API_UPLOAD_THROTTLE_RATE": "1000000/min",
        "PYTHONPATH": str(ROOT),
    })
    if media_root:
        env["DJANGO_MEDIA_ROOT"] = media_root
    return env


def configure(env: dict) -> None:
    """Point this process at the stack's settings and set Django up."""
    os.environ.update(env)
    import django

    django.setup()


def server_connection(args):
    """A MySQLdb connection to the MariaDB server of `--db-server`, no database selected."""
    import MySQLdb

    url = urlparse(args.db_server)
    return MySQLdb.connect(host=url.hostname or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
                           passwd=url.password or "")


def create_database(args, *, drop: bool) -> None:
    conn = server_connection(args)
    cur = conn.cursor()
    if drop:
        cur.execute(f"DROP DATABASE IF EXISTS `{args.database}`")
    cur.execute(f"CREATE DATABASE IF NOT EXISTS `{args.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    conn.close()


def migrate(env: dict) -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)


def flush_redis(args) -> None:
    import redis

    redis.Redis.from_url(f"{args.redis.rstrip('/')}/{args.redis_db}").flushdb()


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def web_worker_class(args) -> str:
    return "gthread" if args.web_threads > 1 else args.web_worker_class


def web_description(args) -> str:
    """The gunicorn of the stack in words, for the benchmarks' output."""
    return f"gunicorn {args.web_workers} {web_worker_class(args)} workers x {args.web_threads} threads"


class Stack:
    """gunicorn (and optionally one Celery worker) started in their own process groups,
    stopped on exit."""

    def __init__(self, args, env: dict):
        self.args, self.env = args, env
        self.procs: dict[str, subprocess.Popen] = {}
        self.logdir = Path(tempfile.mkdtemp(prefix="bench-logs-"))

    def _start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(self.logdir / f"{name}.log", "wb")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[name] = proc
        return proc

    def start_web(self) -> subprocess.Popen:
        a = self.args
        proc = self._start("web", [
            str(VENV_BIN / "gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{a.port}",
            "--workers", str(a.web_workers), "--threads", str(a.web_threads),
            "--worker-class", web_worker_class(a),
            "--backlog", "2048", "--timeout", "120", "--log-level", "warning",
            # gthread: longer than the clients keep idle connections (common.HttpClient), as behind
            # a proxy. Sync workers close every connection after its response.
            "--keep-alive", "30",
        ])
        wait_for_port(a.port, proc)
        return proc

    def start_worker(self, *, concurrency: int = 1) -> subprocess.Popen:
        return self._start("worker", [
            str(VENV_BIN / "celery"), "-A", "config", "worker", "-Q", "inference", "--concurrency", str(concurrency),
            "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--hostname", "bench@%h",
        ])

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self.logdir, ignore_errors=True)


@dataclass
class RssSampler:
    """Peak RSS of process trees, sampled every `interval` seconds in a thread: per process
    (the largest single one, e.g. one gunicorn worker or the Celery pool child) and per
    tree (everything the group holds)."""

    roots: dict[str, int]
    interval: float = 0.25
    peak_process: dict[str, int] = field(default_factory=dict)
    peak_tree: dict[str, int] = field(default_factory=dict)
    peak_children: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        while not self._stop.is_set():
            for name, pid in self.roots.items():
                try:
                    root = psutil.Process(pid)
                    procs = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    continue
                rss = []
                for p in procs:
                    try:
                        rss.append((p.pid, p.memory_info().rss))
                    except psutil.NoSuchProcess:
                        pass
                children = [r for p, r in rss if p != pid]
                self.peak_process[name] = max(self.peak_process.get(name, 0), max((r for _, r in rss), default=0))
                self.peak_children[name] = max(self.peak_children.get(name, 0), max(children, default=0))
                self.peak_tree[name] = max(self.peak_tree.get(name, 0), sum(r for _, r in rss))
            self._stop.wait(self.interval)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()


def cpu_seconds(groups: dict[str, int | str]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each group: a pid with its whole process
    tree, or every process of that name (e.g. `mariadbd`). Differences of two calls give
    what each part of the stack spent in between."""
    import psutil

    out = {}
    for name, root in groups.items():
        if isinstance(root, int):
            try:
                parent = psutil.Process(root)
                procs = [parent, *parent.children(recursive=True)]
            except psutil.NoSuchProcess:
                procs = []
        else:
            procs = [p for p in psutil.process_iter(["name"]) if p.info["name"] == root]
        total = 0.0
        for proc in procs:
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        out[name] = total
    return out


def stack_cpu_seconds(groups: dict[str, int | str]) -> dict[str, float]:
    """`cpu_seconds` of the groups and, as "load clients", this process's own CPU time: the
    benchmark's client threads, which share the cores with the stack they measure."""
    return {**cpu_seconds(groups), "load clients": time.process_time()}


def mib(n: int) -> float:
    return n / 2**20


def percentile(values, q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; NaN for no values."""
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")


def fetch_token(base_url: str, client_id: str, secret: str) -> str:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    with HttpClient(base_url, timeout=30) as http:
        response = http.post("/o/token/", content=b"grant_type=client_credentials",
                             headers={"Authorization": f"Basic {basic}",
                                      "Content-Type": "application/x-www-form-urlencoded"})
    if response.status_code != 200:
        raise SystemExit(f"token request: {response.status_code} {response.text[:300]}")
    return response.json()["access_token"]


# What a failed request raises: the connection refused, reset or timed out, or a broken reply.
HTTP_ERRORS = (OSError, http.client.HTTPException)


@dataclass
class Response:
    status_code: int
    headers: http.client.HTTPMessage  # case-insensitive .get()
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)


class HttpClient:
    """One keep-alive HTTP/1.1 connection per load client, on the standard library: the load
    generators share the cores with the stack they measure, and this costs them a fraction
    of the CPU of a full-featured client. A body may be a list of parts, sent one after the
    other (a scan is not copied into a joined multipart body). A connection idle for longer
    than `keepalive` seconds is dropped before the server would close it, so no request is
    ever sent on a connection the server is closing."""

    def __init__(self, base_url: str, *, headers: dict | None = None, timeout: float = 60, keepalive: float = 5.0):
        url = urlparse(base_url)
        self.host, self.port = url.hostname, url.port
        self.headers, self.timeout, self.keepalive = dict(headers or {}), timeout, keepalive
        self._conn: http.client.HTTPConnection | None = None
        self._last = 0.0

    def request(self, method: str, path: str, *, content: bytes | list[bytes] | None = None,
                headers: dict | None = None) -> Response:
        if self._conn is not None and time.monotonic() - self._last > self.keepalive:
            self.close()
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        all_headers, body = {**self.headers, **(headers or {})}, None
        if content is not None:
            body = content if isinstance(content, list) else [content]
            all_headers["Content-Length"] = str(sum(len(part) for part in body))
        try:
            self._conn.request(method, path, body=body, headers=all_headers)
            reply = self._conn.getresponse()
            response = Response(reply.status, reply.headers, reply.read())
        except BaseException:
            self.close()
            raise
        self._last = time.monotonic()
        if reply.will_close:
            self.close()
        return response

    def get(self, path: str, **kwargs) -> Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> Response:
        return self.request("POST", path, **kwargs)

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def machine() -> str:
    """What the figures came from: CPU model, cores, load."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores ({model}), load average {load}"


class QueryCountMiddleware:
    """Benchmarks only (bench/settings.py): the number of database queries of the request
    and the milliseconds spent in them, in `X-Bench-Queries` and `X-Bench-DB-ms` headers,
    and the CPU milliseconds of the garbage collector's runs during it in `X-Bench-GC-ms`
    (exact with one request at a time per process: gunicorn's sync workers)."""

    def __init__(self, get_response):
        import gc

        self.get_response = get_response
        self.gc_seconds, self._gc_started = 0.0, 0.0
        gc.callbacks.append(self._time_gc)

    def _time_gc(self, phase, info):
        if phase == "start":
            self._gc_started = time.thread_time()
        else:
            self.gc_seconds += time.thread_time() - self._gc_started

    def __call__(self, request):
        from django.db import connection

        count, seconds, gc_before = [0], [0.0], self.gc_seconds

        def counter(execute, sql, params, many, context):
            count[0] += 1
            t0 = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                seconds[0] += time.perf_counter() - t0

        with connection.execute_wrapper(counter):
            response = self.get_response(request)
        response["X-Bench-Queries"] = str(count[0])
        response["X-Bench-DB-ms"] = f"{seconds[0] * 1000:.1f}"
        response["X-Bench-GC-ms"] = f"{(self.gc_seconds - gc_before) * 1000:.3f}"
        return response
