"""process.py: a process named so that a reused pid is not taken for it, and workers that die with their parent."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import textwrap

import pytest

from tokenbridge.process import SUPERVISOR_ENV, ProcessId, is_alive, process_id, this_process

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_process_id_names_this_process_and_survives_its_text_form() -> None:
    me = this_process()
    assert me.pid == os.getpid() and me.start
    assert ProcessId.parse(str(me)) == me
    assert is_alive(str(me))


def test_is_alive_false_for_an_exited_process_a_reused_pid_and_garbage() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    named = process_id(child.pid)
    assert named is not None and is_alive(str(named))
    child.communicate(b"")
    assert not is_alive(str(named))
    assert not is_alive(str(ProcessId(os.getpid(), this_process().start + "0")))  # same pid, another start
    assert not is_alive("not a process")


def test_a_worker_dies_with_its_supervisor() -> None:
    """The worker side of `serve --workers N`: die_with_supervisor, then the parent is SIGKILLed."""
    worker = textwrap.dedent(
        """
        import sys, time
        from tokenbridge.process import die_with_supervisor
        die_with_supervisor()
        print("armed", flush=True)
        sys.stdin.read()  # until the test is done with us; the SIGTERM comes first
        """
    )
    supervisor = textwrap.dedent(
        f"""
        import os, subprocess, sys
        os.environ[{SUPERVISOR_ENV!r}] = str(os.getpid())
        child = subprocess.Popen([sys.executable, "-c", {worker!r}], stdin=subprocess.PIPE)
        print(child.pid, flush=True)
        sys.stdin.read()
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", supervisor], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    worker_pid = int(parent.stdout.readline())
    assert parent.stdout.readline().strip() == "armed"
    worker_fd = os.pidfd_open(worker_pid)
    try:
        parent.kill()
        parent.wait(30)
        assert select.select([worker_fd], [], [], 30)[0], "the worker outlived its supervisor"
    finally:
        os.close(worker_fd)
        parent.stdin.close()  # type: ignore[union-attr]
        parent.stdout.close()


def test_a_worker_whose_supervisor_is_already_gone_stops_at_once() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from tokenbridge.process import die_with_supervisor; die_with_supervisor()"],
        env={**os.environ, SUPERVISOR_ENV: "999999999"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "the supervisor (pid 999999999) is gone" in done.stderr
