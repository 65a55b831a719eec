"""Request ids: ours for every request, never repeated (not by a forked worker either); the caller's when usable."""

from __future__ import annotations

import os
import sys
import warnings

import pytest

from tokenbridge.stages.intake import caller_request_id_from, new_request_id


def test_a_usable_caller_id_is_kept_and_an_unusable_one_dropped() -> None:
    assert caller_request_id_from({"headers": [(b"x-request-id", b"abc-123")]}) == "abc-123"
    assert caller_request_id_from({"headers": [(b"x-request-id", b"has space")]}) == ""
    assert caller_request_id_from({"headers": []}) == ""


def test_our_ids_do_not_repeat() -> None:
    ids = {new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000


def test_our_ids_cannot_be_guessed_from_the_last_one() -> None:
    # A caller who could read the next ids off the last one could count our traffic: not a visible counter.
    first, second = (new_request_id() for _ in range(2))
    assert first[:-8] != second[:-8] or int(second[-8:], 16) != int(first[-8:], 16) + 1


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork")
def test_a_forked_process_draws_its_own_prefix() -> None:
    parent = new_request_id()
    read, write = os.pipe()
    with warnings.catch_warnings():  # 3.12+ warns about fork with threads; the child only writes and exits
        warnings.simplefilter("ignore", DeprecationWarning)
        child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    theirs = os.read(read, 200).decode()
    os.close(read)
    assert theirs.startswith("req_") and theirs[:20] != parent[:20]
