"""Issue 13, acceptance 6 (the HTTP half): 50 codes made and answered once, as JSON and as CSV that
`csv` reads; two accounts racing for one code get one credit and one `invalid_code`; used,
disabled, expired and unknown codes answer the same; failed redeems are throttled."""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Gateway
from tests.e2e.people import Browser, admin, member, serve_accounts
from tests.fakes.upstream import FakeUpstream
from tokenbridge.store.codes import create_codes


@pytest.fixture(scope="module")
def gateway(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from serve_accounts(upstream, tmp_path_factory, trusted_proxies=["127.0.0.1"])


def make_codes(gateway: Gateway, amount_usd: str, count: int = 1) -> list[dict[str, str]]:
    made = admin(gateway, "POST", "/api/codes", json={"amount_usd": amount_usd, "count": count})
    assert made.status_code == 201, made.text
    return list(made.json()["data"])


def test_fifty_codes_are_answered_once_as_json_and_as_csv_that_csv_reads(gateway: Gateway) -> None:
    made = admin(gateway, "POST", "/api/codes", json={"amount_usd": "2.5", "count": 50, "note": "=launch"})
    assert made.status_code == 201, made.text
    data = made.json()["data"]
    codes = [row["code"] for row in data]
    assert len(set(codes)) == 50 and all(c.startswith("tbc-") and len(c) >= 24 for c in codes)
    rows = list(csv.DictReader(io.StringIO(made.json()["csv"], newline="")))
    assert [r["code"] for r in rows] == codes and {r["amount_usd"] for r in rows} == {"2.50"}
    assert {r["note"] for r in rows} == {"'=launch"}  # a spreadsheet shows it as text, not a formula
    listed = admin(gateway, "GET", "/api/codes?status=unused").json()["data"]
    assert {c["id"] for c in listed} >= {row["id"] for row in data}
    assert not any("code" in c for c in listed)  # the codes themselves are never shown again
    as_csv = admin(gateway, "POST", "/api/codes?format=csv", json={"amount_usd": "1", "count": 3})
    assert as_csv.status_code == 201 and as_csv.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(as_csv.text, newline="")))
    assert table[0] == ["code", "id", "prefix", "amount_usd", "expires_at", "note"] and len(table) == 4
    assert all(row[0].startswith(row[2]) for row in table[1:])  # the prefix is the code's start


def test_two_accounts_racing_for_one_code_get_one_credit_and_one_invalid_code(gateway: Gateway) -> None:
    [code] = make_codes(gateway, "4")
    racers = [member(gateway, "racer-a"), member(gateway, "racer-b")]
    start = threading.Barrier(2)
    answers: dict[str, httpx.Response] = {}

    def redeem(browser: Browser) -> None:
        start.wait()
        answers[browser.name] = browser.call("POST", "/api/redeem", json={"code": code["code"]})

    threads = [threading.Thread(target=redeem, args=(b,)) for b in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(a.status_code for a in answers.values())
    assert statuses == [200, 400], {n: a.text for n, a in answers.items()}
    [winner] = [n for n, a in answers.items() if a.status_code == 200]
    [loser] = [n for n, a in answers.items() if a.status_code == 400]
    assert answers[winner].json() == {
        "balance_usd": "4.00", "balance_nano_usd": 4 * 10**9, "amount_usd": "4.00", "amount_nano_usd": 4 * 10**9,
    }  # fmt: skip
    assert answers[loser].json()["error"]["code"] == "invalid_code"
    for browser in racers:
        ledger = browser.call("GET", "/api/ledger").json()["data"]
        if browser.name == winner:
            assert [(r["kind"], r["amount_usd"], r["code"]) for r in ledger] == [("redeem", "4.00", code["prefix"])]
        else:
            assert ledger == [] and browser.call("GET", "/api/me").json()["account"]["balance_nano_usd"] == 0
        browser.http.close()
    [listed] = [c for c in admin(gateway, "GET", "/api/codes").json()["data"] if c["id"] == code["id"]]
    assert listed["status"] == "used" and listed["redeemed_by"] == winner


def test_used_disabled_expired_and_unknown_codes_answer_the_same(gateway: Gateway) -> None:
    used, disabled = make_codes(gateway, "1", count=2)
    _, expired = gateway.db_run(lambda db: create_codes(db, amount=10**9, count=1, expires_at=time.time() - 1))[0]
    assert admin(gateway, "POST", f"/api/codes/{disabled['id']}/disable").json()["status"] == "disabled"
    again = admin(gateway, "POST", f"/api/codes/{disabled['id']}/disable")
    assert again.status_code == 200  # disabling twice is no error
    with member(gateway, "prober") as browser:
        browser.http.headers["X-Forwarded-For"] = "198.51.100.20"
        assert browser.call("POST", "/api/redeem", json={"code": used["code"]}).status_code == 200
        answers = [
            browser.call("POST", "/api/redeem", json={"code": code})
            for code in (used["code"], disabled["code"], expired, "tbc-" + "A" * 24)
        ]
        assert {a.status_code for a in answers} == {400}
        assert all(a.json() == answers[0].json() for a in answers), [a.text for a in answers]
        assert answers[0].json()["error"]["code"] == "invalid_code"
        redeemed = admin(gateway, "POST", f"/api/codes/{used['id']}/disable")
        assert redeemed.status_code == 409 and redeemed.json()["error"]["code"] == "code_used"


def test_failed_redeems_are_throttled_like_sign_ins(gateway: Gateway) -> None:
    [good] = make_codes(gateway, "1")
    with member(gateway, "guesser") as browser:
        browser.http.headers["X-Forwarded-For"] = "198.51.100.21"
        guesses = [browser.call("POST", "/api/redeem", json={"code": f"tbc-GUESS{i}"}).status_code for i in range(10)]
        assert guesses == [400] * 10
        throttled = browser.call("POST", "/api/redeem", json={"code": good["code"]})
        assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
        assert browser.call("GET", "/api/me").json()["account"]["balance_nano_usd"] == 0


def test_only_a_signed_in_account_redeems_and_only_the_admin_makes_codes(gateway: Gateway) -> None:
    [code] = make_codes(gateway, "1")
    assert admin(gateway, "POST", "/api/redeem", json={"code": code["code"]}).status_code == 403  # no wallet
    with member(gateway, "not-admin") as browser:
        assert browser.call("POST", "/api/codes", json={"amount_usd": "1"}).status_code == 403
        assert browser.call("GET", "/api/codes").status_code == 403
