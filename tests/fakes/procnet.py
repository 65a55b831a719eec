"""Which process holds which loopback TCP connection, read from Linux's /proc (no psutil, no `ss`).

Used to show that a `serve --workers 2` test really spread its connections over both workers.
"""

from __future__ import annotations

import os
import select
from collections import Counter
from pathlib import Path


def children(pid: int) -> list[int]:
    """Direct children of `pid` (the uvicorn supervisor's workers)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(p) for p in text)
    return found


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed while we looked
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _established_on(port: int) -> dict[int, int]:
    """inode -> remote port of the ESTABLISHED sockets whose local port is `port`."""
    found: dict[int, int] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
        if state == "01" and int(local.split(":")[1], 16) == port:
            found[inode] = int(remote.split(":")[1], 16)
    return found


def connections_by_process(pids: list[int], port: int) -> Counter[int]:
    """How many established connections to `port` each of `pids` holds right now."""
    established = _established_on(port)
    return Counter({pid: len(_socket_inodes(pid) & established.keys()) for pid in pids})


def owner_of_client_port(pids: list[int], server_port: int, client_port: int) -> int | None:
    """The process among `pids` that accepted the connection coming from `client_port`."""
    inodes = {inode for inode, remote in _established_on(server_port).items() if remote == client_port}
    for pid in pids:
        if _socket_inodes(pid) & inodes:
            return pid
    return None


def wait_exited(pid: int, timeout_s: float) -> bool:
    """Wait for a process that is not our child to exit (a pidfd becomes readable when it does)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout_s)[0])
    finally:
        os.close(fd)
