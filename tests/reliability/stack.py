"""The real stack for fault-injection tests: private redis-server and mariadbd processes
that a test may kill and restart without disturbing anyone, a blackhole broker, Celery
worker processes sharing the test database, and helpers to upload and wait.

Counts: `scale(cheap, full)` gives the cheap count in `make test` and the full count
when RELIABILITY_FULL=1 (`make reliability`)."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from django.db import connection
from django_scopes import scope, scopes_disabled
from kombu import pools as kombu_pools
from PIL import Image

from config.celery_app import BROKER_SOCKET_TIMEOUTS
from config.celery_app import app as celery_app
from reliability.procs import OwnRedis, free_port, reachable, wait_port  # noqa: F401 - re-exported
from screening import services
from screening.models import FINAL_STATUSES, AiResult, Screening

REPO = Path(__file__).resolve().parents[2]
FILM = REPO / "tests" / "ml" / "fixtures" / "kermany_normal_IM-0003-0001.jpg"
START_TIMEOUT = 180
FINISH_TIMEOUT = 150
FULL = os.environ.get("RELIABILITY_FULL") == "1"


def scale(cheap: int, full: int) -> int:
    return full if FULL else cheap


def film_png(seed: int = 0) -> bytes:
    """The fixture film as a PNG with one pixel changed per seed: a distinct valid upload."""
    image = Image.open(FILM).convert("L")
    if seed:
        image.putpixel((seed % image.width, seed // image.width % image.height), seed % 256)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class OwnMariaDB:
    """A private mariadbd with its own data directory, port and socket (never the shared
    server on 3306), so a test may restart it mid-batch."""

    BINARIES = ("mariadb-install-db", "mariadbd")

    @classmethod
    def missing(cls) -> list[str]:
        """What the drill needs and this machine lacks: the server binaries, the driver."""
        missing = [b for b in cls.BINARIES if not (shutil.which(b) or Path("/usr/sbin", b).exists())]
        if importlib.util.find_spec("MySQLdb") is None:
            missing.append("mysqlclient (requirements/mysql.txt)")
        return missing

    def __init__(self, root: Path):
        self.root, self.port, self.proc = root, free_port(), None
        self.datadir, self.socket = root / "data", root / "mysqld.sock"
        self.log = root / "mariadbd.log"

    def install(self):
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={self.datadir}",
                        "--auth-root-authentication-method=normal",
                        "--skip-test-db", "--user=" + os.environ.get("USER", "root")],
                       check=True, capture_output=True, timeout=120)

    def start(self):
        binary = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        self.proc = subprocess.Popen(
            [binary, "--no-defaults", f"--datadir={self.datadir}", f"--port={self.port}", "--bind-address=127.0.0.1",
             f"--socket={self.socket}", f"--pid-file={self.root / 'mysqld.pid'}", "--skip-grant-tables",
             "--innodb-buffer-pool-size=64M", "--skip-log-bin", "--user=root", f"--log-error={self.log}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, True, 60, "mariadbd")

    def kill(self):
        """SIGKILL the server, whichever process started it (its pid file says)."""
        pidfile = self.root / "mysqld.pid"
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        if self.proc:
            self.proc.wait(30)
        wait_port(self.port, False, 30, "mariadbd")
        pidfile.unlink(missing_ok=True)

    @classmethod
    def attach(cls, root: Path, port: int) -> "OwnMariaDB":
        """The server another process started under `root` on `port`."""
        server = cls(root)
        server.port = port
        return server

    def url(self, name: str) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{name}"


class Blackhole:
    """A TCP listener that accepts connections and never answers: a half-open broker."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.held, self.stopped = [], False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self):
        self.stopped = True
        self.sock.close()
        for conn in self.held:
            conn.close()


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


def pick_broker(tmp: Path) -> SimpleNamespace:
    """Our own redis-server when the binary is installed, else the shared Redis (db 14,
    flushed first), else kombu's filesystem transport (SCREENING_TEST_BROKER=filesystem
    forces it)."""
    forced = os.environ.get("SCREENING_TEST_BROKER", "")
    if forced != "filesystem" and shutil.which("redis-server"):
        own = OwnRedis()
        own.start()
        return SimpleNamespace(kind="redis (own server)", url=own.url, dir="", own=own)
    if forced != "filesystem" and reachable(6379):
        import redis

        redis.Redis.from_url("redis://127.0.0.1:6379/14").flushdb()
        return SimpleNamespace(kind="redis (shared, db 14)", url="redis://127.0.0.1:6379/14", dir="", own=None)
    folder = tmp / "broker"
    folder.mkdir(exist_ok=True)
    return SimpleNamespace(kind="filesystem", url="filesystem://", dir=str(folder), own=None)


def worker_site(tmp: Path, django_db_blocker) -> SimpleNamespace:
    """What the workers a test starts share with it: a broker (`pick_broker`), a media
    folder under `tmp` and the test database's URL."""
    broker = pick_broker(tmp)
    media = tmp / "media"
    media.mkdir(exist_ok=True)
    with django_db_blocker.unblock():
        db_url = database_url()
    return SimpleNamespace(tmp=tmp, broker=broker, media=media, db_url=db_url)


class Worker:
    """`celery -A config worker` (prefork) on the given broker and database, started in
    its own session so a test can kill the parent, a pool child or the whole group."""

    def __init__(self, *, tmp: Path, broker: SimpleNamespace, db_url: str, model_dir: Path, media: Path,
                 concurrency: int = 1, beat: bool = False, **env):
        self.tmp, self.broker, self.media, self.concurrency, self.beat = tmp, broker, media, concurrency, beat
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "DATABASE_URL": db_url,
                    "TEST_MEDIA_ROOT": str(media), "TEST_CELERY_BROKER_URL": broker.url,
                    "TEST_CELERY_BROKER_DIR": broker.dir, "CXR_MODEL_DIR": str(model_dir),
                    "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1",
                    **{k: str(v) for k, v in env.items()}}
        self.proc, self.starts, self.log = None, 0, tmp / "worker.log"

    def start(self) -> float:
        """Start (or restart) and wait until it is ready; returns the seconds it took."""
        self.starts += 1
        started = time.monotonic()
        with open(self.log, "a") as log:
            log.write(f"\n==== start {self.starts}\n")
        mark = self.log.stat().st_size
        argv = [str(REPO / ".venv" / "bin" / "celery"), "-A", "config", "worker", "-Q", "inference,default",
                "--pool", "prefork", "--concurrency", str(self.concurrency), "--loglevel", "INFO",
                "-n", f"reliability-{os.getpid()}-{id(self)}@%h"]
        if self.beat:
            argv += ["--beat", "--schedule", str(self.tmp / "beat-schedule")]
        self.proc = subprocess.Popen(argv, cwd=REPO, env=self.env, stdout=open(self.log, "a"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while " ready." not in self.log.read_text()[mark:]:
            assert self.proc.poll() is None, "the worker exited:\n" + self.tail()
            assert time.monotonic() < deadline, "the worker did not start:\n" + self.tail()
            time.sleep(0.1)
        # Ready means the pool children exist; wait until each has loaded the model.
        while len(children(self.proc.pid)) < self.concurrency:
            assert time.monotonic() < deadline, "no pool children:\n" + self.tail()
            time.sleep(0.1)
        return time.monotonic() - started

    @property
    def pid(self) -> int:
        return self.proc.pid

    def pool(self) -> list[int]:
        """The pool children (the beat process, when embedded, is a child too: skip it). A child
        that exits between the listing and the read of its command line (a pool process just
        killed, or replaced) is left out."""
        pool = []
        for pid in children(self.proc.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "beat" not in cmdline:
                pool.append(pid)
        return pool

    def kill_all(self):
        """SIGKILL the parent and every child at once: a node that dies."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, timeout: float = 60):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text()[-n:] if self.log.exists() else ""


def point_publisher(url: str, folder: str = "") -> None:
    """Make this process publish to `url` (the test settings' memory:// otherwise)."""
    options = dict(BROKER_SOCKET_TIMEOUTS)
    if folder:
        options.update(data_folder_in=folder, data_folder_out=folder, store_processed=False)
    celery_app.conf.broker_url = url
    celery_app.conf.broker_transport_options = options
    # Forget the connection and producer pools made for the previous URL.
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    kombu_pools.reset()


def upload(world, data: bytes, name: str = "film.png") -> Screening:
    with scope(hospital=world.hospital):
        return services.scan_upload(patient=world.patient, data=data, filename=name, actor=world.uploader)


def wait_final(ids, worker: Worker, timeout: float = FINISH_TIMEOUT) -> dict[int, Screening]:
    deadline = time.monotonic() + timeout
    while True:
        with scopes_disabled():
            rows = Screening.objects.in_bulk(ids)
        if all(s.status in FINAL_STATUSES for s in rows.values()):
            return rows
        assert time.monotonic() < deadline, (
            f"not final after {timeout} s: {[(s.pk, s.status, s.attempts) for s in rows.values()]}\n" + worker.tail())
        time.sleep(0.1)


def results_of(screening_id: int) -> list[AiResult]:
    with scopes_disabled():
        return list(AiResult.objects.filter(screening_id=screening_id))


def tally(ids) -> SimpleNamespace:
    """lost (not done), duplicates (results beyond one), max attempts over the screenings."""
    with scopes_disabled():
        rows = Screening.objects.in_bulk(ids)
        counts = {pk: AiResult.objects.filter(screening_id=pk).count() for pk in ids}
    return SimpleNamespace(lost=sum(1 for s in rows.values() if s.status != "done"),
                           duplicates=sum(max(0, c - 1) for c in counts.values()),
                           missing_results=sum(1 for c in counts.values() if c == 0),
                           max_attempts=max((s.attempts for s in rows.values()), default=0), rows=rows)


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
