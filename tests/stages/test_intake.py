"""Request ids: the caller's when usable, else ours, never repeated (not by a forked worker either)."""

from __future__ import annotations

import os
import sys
import warnings

import pytest

from tokenbridge.stages.intake import request_id_from


def test_a_usable_caller_id_is_kept_and_an_unusable_one_replaced() -> None:
    assert request_id_from({"headers": [(b"x-request-id", b"abc-123")]}) == "abc-123"
    ours = request_id_from({"headers": [(b"x-request-id", b"has space")]})
    assert ours.startswith("req_") and ours != "has space"


def test_our_ids_do_not_repeat() -> None:
    ids = {request_id_from({"headers": []}) for _ in range(10_000)}
    assert len(ids) == 10_000


def test_our_ids_cannot_be_guessed_from_the_last_one() -> None:
    # A caller who could name the next ids could claim them with X-Request-ID (ids are unique across
    # the database) and make other callers' requests fail: the ids must not be a visible counter.
    first, second = (request_id_from({"headers": []}) for _ in range(2))
    assert first[:-8] != second[:-8] or int(second[-8:], 16) != int(first[-8:], 16) + 1


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork")
def test_a_forked_process_draws_its_own_prefix() -> None:
    parent = request_id_from({"headers": []})
    read, write = os.pipe()
    with warnings.catch_warnings():  # 3.12+ warns about fork with threads; the child only writes and exits
        warnings.simplefilter("ignore", DeprecationWarning)
        child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        os.write(write, request_id_from({"headers": []}).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    theirs = os.read(read, 200).decode()
    os.close(read)
    assert theirs.startswith("req_") and theirs[:20] != parent[:20]
