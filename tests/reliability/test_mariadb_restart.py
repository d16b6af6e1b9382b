"""E9: MariaDB restarts in the middle of a batch. Never the shared server: this starts a
private mariadbd (own data directory, port and socket), then runs
tests/reliability/mariadb_restart_case.py in a pytest of its own whose database is on that
server; that case uploads a batch, kills the server mid-batch and starts it again, and
reports the figure. Without the MariaDB binaries (a machine without mariadb-server) the
report says the drill was not run."""

import os
import subprocess
import sys

import pytest

from .stack import REPO, OwnMariaDB


def test_mariadb_restart_mid_batch_loses_nothing(tmp_path, figure):
    missing = OwnMariaDB.missing()
    if missing:
        figure("E9", f"not run: {', '.join(missing)} not installed (the MariaDB restart drill needs mariadb-server and mysqlclient)",
               run=False)
        pytest.skip(f"E9 needs {', '.join(missing)}; the report lists it as not run")
    server = OwnMariaDB(tmp_path / "mariadb")
    server.root.mkdir()
    server.install()
    server.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--create-db",
             "tests/reliability/mariadb_restart_case.py"],
            cwd=REPO, capture_output=True, text=True, timeout=900,
            env={**os.environ, "DATABASE_URL": server.url("hospital_e9"), "E9_MARIADB_ROOT": str(server.root),
                 "E9_MARIADB_PORT": str(server.port)})
    finally:
        server.kill()
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
