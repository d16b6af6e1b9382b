"""The inference pool's CPU priority, where the worker shares a machine with the web server.

`os.nice` orders the processes of one scheduling group. Linux also groups processes by
session (autogroups, on by default), and a worker started as a service of its own (systemd,
supervisord, a process manager, `setsid`) is a session of its own: between its group and
the web server's, each group's own nice decides, and a process's nice does nothing. So
the group's nice is raised too, but only when the group holds nothing but this worker
(its main process and pool), never a program that shares its session, such as the
development server under `make run`, which the process nice already puts first."""

import os
from pathlib import Path

PROC = Path("/proc")


def _autogroup(pid: str) -> tuple[str, int]:
    """("/autogroup-145", 0) from "/autogroup-145 nice 0"."""
    name, _, nice = (PROC / pid / "autogroup").read_text().split()
    return name, int(nice)


def _parent(pid: str) -> int:
    """The parent process id, from /proc/PID/stat (after the command name in parentheses)."""
    return int((PROC / pid / "stat").read_text().rpartition(")")[2].split()[1])


def group_is_own(group: str) -> bool:
    """Whether every process in autogroup `group` (this process's) is this process, its
    parent or a child of its parent (the worker's main process and its pool)."""
    worker = {os.getpid(), os.getppid()}
    for proc in PROC.iterdir():
        if not proc.name.isdigit() or int(proc.name) in worker:
            continue
        try:
            if _autogroup(proc.name)[0] == group and _parent(proc.name) not in worker:
                return False
        except (OSError, ValueError):  # ended meanwhile, or not readable
            continue
    return True


def lower_priority(nice: int) -> None:
    """Add `nice` to this process's nice value and, where its autogroup is the worker's
    alone, raise the group's nice to at least `nice`."""
    if nice <= 0:
        return
    os.nice(nice)
    try:
        group, current = _autogroup("self")
        if current < nice and group_is_own(group):
            (PROC / "self" / "autogroup").write_text(str(min(nice, 19)))
    except (OSError, ValueError):  # not Linux, or a kernel without autogroups
        return
