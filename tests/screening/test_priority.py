"""The inference pool's CPU priority (screening.priority): the process nice always, the
autogroup nice only when the group is the worker's alone. Each case runs in processes of
a new session, so no test changes the priority of the session running the suite."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not Path("/proc/self/autogroup").exists(),
                                reason="Linux autogroups only (the process nice is covered by the pipeline test)")

# A worker's main process that forks its pool child; the child lowers its priority and
# prints its process nice and its autogroup's. Under SESSION the main process runs below a
# session leader that also runs another program, as `make run` does.
WORKER = textwrap.dedent("""
    import os
    from screening.priority import lower_priority
    pid = os.fork()
    if pid == 0:
        lower_priority(7)
        print(os.getpriority(os.PRIO_PROCESS, 0), open("/proc/self/autogroup").read().split()[-1], flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
""")
SESSION = textwrap.dedent("""
    import subprocess, sys
    other = subprocess.Popen(["sleep", "60"])
    try:
        subprocess.run([sys.executable, "-c", sys.argv[1]], check=True)
    finally:
        other.kill()
""")


def run(script: str, *args: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True,
                         start_new_session=True, timeout=60, check=True).stdout
    process, group = out.split()
    return int(process), int(group)


def test_a_worker_in_a_session_of_its_own_lowers_its_group():
    assert run(WORKER) == (7, 7)


def test_a_worker_sharing_its_session_with_another_program_lowers_only_itself():
    assert run(SESSION, WORKER) == (7, 0)
