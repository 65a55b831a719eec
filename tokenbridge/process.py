"""Processes: who took a hold, whether it still lives, and workers that die with their supervisor.

A hold is released only once no process that took it is alive (issue 11, items 1 and 5). A pid
alone cannot say so: pids are reused. So a process is named by its pid plus what makes it unique
on this machine: the boot it runs in (`/proc/sys/kernel/random/boot_id`) and its start time in
clock ticks since that boot (field 22 of `/proc/<pid>/stat`). A pid that now names another process
(a later start, or another boot) is a dead owner. Without /proc (not Linux) only the pid is kept.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

SUPERVISOR_ENV = "TOKENBRIDGE_SUPERVISOR_PID"  # set by `serve --workers N` for its workers: the supervisor's pid
PR_SET_PDEATHSIG = 1  # linux/prctl.h
_STARTTIME_FIELD = 22  # of /proc/<pid>/stat, counted from 1 as proc(5) does


@dataclass(frozen=True, slots=True)
class ProcessId:
    pid: int
    start: str  # "<boot id>/<start time in ticks>", or "" where /proc is missing

    def __str__(self) -> str:
        return f"{self.pid}:{self.start}"

    @classmethod
    def parse(cls, text: str) -> ProcessId | None:
        pid, _, start = text.partition(":")
        return cls(int(pid), start) if pid.isdigit() else None


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def process_id(pid: int) -> ProcessId | None:
    """The process that has `pid` now, or None if none has."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc here: the pid is all there is to go by
        return ProcessId(pid, "") if _pid_exists(pid) else None
    # The command name (field 2) may hold spaces and parentheses: count the fields after its last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    return ProcessId(pid, f"{_boot_id()}/{fields[_STARTTIME_FIELD - 3]}")


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process, but alive
        return True
    return True


def this_process() -> ProcessId:
    found = process_id(os.getpid())
    assert found is not None
    return found


def is_alive(owner: str) -> bool:
    """Whether the process named `owner` (a `str(ProcessId)`) still runs. An unreadable name is dead."""
    wanted = ProcessId.parse(owner)
    return wanted is not None and process_id(wanted.pid) == wanted


def die_with_supervisor() -> None:
    """In a worker of `serve --workers N` (SUPERVISOR_ENV set): have the kernel send this process
    SIGTERM when its supervisor dies, so a worker never serves on alone. SIGTERM is a normal stop:
    the worker takes no new connection and its requests in flight finish and settle.

    Checked right after: a parent that died before the call would never trigger it (Linux only).
    """
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if not supervisor or not sys.platform.startswith("linux"):
        return
    parent_pid = int(supervisor)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:
        raise SystemExit(f"the supervisor (pid {parent_pid}) is gone; this worker stops")
