"""The proxy's pure helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from tokenbridge.upstream.proxy import retry_after_s


@pytest.mark.parametrize(("value", "seconds"), [("7", 7.0), ("0.5", 0.5), ("-3", 0.0), (None, None), ("", None),
                                                ("soon", None), ("inf", None), ("nan", None),
                                                ("Wed, 21 Oct 2015 07:28:00", None)])  # fmt: skip
def test_proxy_retry_after_reads_seconds_and_refuses_what_it_cannot_read(
    value: str | None, seconds: float | None
) -> None:
    assert retry_after_s(value) == seconds


def test_proxy_retry_after_reads_an_http_date() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    seconds = retry_after_s(later)
    assert seconds is not None and 100 < seconds <= 120
    assert retry_after_s(format_datetime(datetime(2015, 10, 21, tzinfo=UTC), usegmt=True)) == 0.0  # past: now
