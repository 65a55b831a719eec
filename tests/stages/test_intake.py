"""Request ids: ours for every request, never repeated (not by a forked worker either); the caller's when usable."""

from __future__ import annotations

import os
import sys
import time
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
    ours = new_request_id()  # the same place in the sequence as the child's: only the key tells them apart
    assert parent != ours and theirs.startswith("req_") and theirs[TIME_END:] != ours[TIME_END:]


TIME_END = len("req_") + 11  # the milliseconds, in hex


def test_our_ids_start_with_the_time_so_later_ones_sort_after() -> None:
    # The settle's inserts then land at the right edge of the request-id indexes (intake.py).
    before = int(time.time() * 1000)
    ids = [new_request_id() for _ in range(2_000)]
    after = int(time.time() * 1000)
    stamps = [int(i[len("req_") : TIME_END], 16) for i in ids]
    assert stamps == sorted(stamps) and before <= stamps[0] and stamps[-1] <= after
