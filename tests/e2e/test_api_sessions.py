"""Issue 13, acceptance 5: the session cookie's attributes; sign-out and a password change end a
session; unknown name and wrong password answer alike; the 11th failure in 15 minutes is a 429;
a cookie-authenticated write without JSON and a same-origin Origin is refused.

The gateway trusts 127.0.0.1 as a proxy, so each test claims an address of its own with
X-Forwarded-For and the throttle's per-address counts of one test never reach another's."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Gateway
from tests.e2e.people import PASSWORD, Browser, admin, member, serve_accounts
from tests.fakes.upstream import FakeUpstream


@pytest.fixture(scope="module")
def gateway(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from serve_accounts(upstream, tmp_path_factory, session_days=3, trusted_proxies=["127.0.0.1"])


@pytest.fixture(scope="module")
def untrusting(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from serve_accounts(upstream, tmp_path_factory)  # no trusted proxies


def attributes(set_cookie: str) -> dict[str, str]:
    parts = [part.strip() for part in set_cookie.split(";")]
    return {name.lower(): value for name, _, value in (part.partition("=") for part in parts[1:])}


def test_session_cookie_is_httponly_samesite_strict_and_secure_only_over_https(
    gateway: Gateway, untrusting: Gateway
) -> None:
    admin(gateway, "POST", "/api/accounts", json={"name": "cookie", "password": PASSWORD})
    with Browser(gateway, headers={"X-Forwarded-For": "198.51.100.1"}) as browser:
        answer = browser.sign_in("cookie")
        assert answer.status_code == 200, answer.text
        cookie = answer.headers["set-cookie"]
        token = cookie.split(";")[0].removeprefix("tb_session=")
        assert len(token) >= 43  # 32 random bytes, URL-safe base64
        assert attributes(cookie) == {"path": "/api", "max-age": str(3 * 86400), "httponly": "", "samesite": "Strict"}
    https = {"X-Forwarded-For": "198.51.100.1", "X-Forwarded-Proto": "https", "Origin": "https://" + gateway.url[7:]}
    with Browser(gateway, headers=https) as proxied:
        assert "secure" in attributes(proxied.sign_in("cookie").headers["set-cookie"])  # a trusted proxy's https
    admin(untrusting, "POST", "/api/accounts", json={"name": "cookie", "password": PASSWORD})
    with Browser(untrusting, headers={"X-Forwarded-Proto": "https"}) as claimed:
        assert "secure" not in attributes(claimed.sign_in("cookie").headers["set-cookie"])  # anyone's claim


def test_sign_out_deletes_the_session_server_side(gateway: Gateway) -> None:
    browser = member(gateway, "leaver")
    with browser:
        token = browser.session
        assert browser.call("GET", "/api/me").json()["account"]["name"] == "leaver"
        out = browser.call("DELETE", "/api/session", headers={"Content-Type": "application/json"})
        assert out.status_code == 200 and "max-age=0" in out.headers["set-cookie"].lower()
    replayed = httpx.get(gateway.url + "/api/me", cookies={"tb_session": token})  # the old cookie, kept by hand
    assert replayed.status_code == 401


def test_a_password_change_ends_every_session_of_the_account(gateway: Gateway) -> None:
    first, second = member(gateway, "changer"), Browser(gateway)
    with first, second:
        assert second.sign_in("changer").status_code == 200  # a second session of the same account
        assert (
            admin(gateway, "PATCH", "/api/accounts/changer", json={"password": "a brand new password"}).status_code
            == 200
        )
        for browser in (first, second):
            assert browser.call("GET", "/api/me").status_code == 401
        assert first.sign_in("changer").status_code == 401  # the old password
        assert first.sign_in("changer", "a brand new password").status_code == 200


def test_unknown_name_and_wrong_password_answer_the_same(gateway: Gateway) -> None:
    admin(gateway, "POST", "/api/accounts", json={"name": "known", "password": PASSWORD})
    with Browser(gateway, headers={"X-Forwarded-For": "198.51.100.2"}) as browser:
        wrong = browser.sign_in("known", "not the password")
        unknown = browser.sign_in("nobody-at-all", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"]["code"] == "invalid_credentials"
    assert "set-cookie" not in wrong.headers and "set-cookie" not in unknown.headers


def test_the_11th_failure_for_a_name_in_15_minutes_is_a_429_even_with_the_right_password(gateway: Gateway) -> None:
    admin(gateway, "POST", "/api/accounts", json={"name": "target", "password": PASSWORD})
    with Browser(gateway, headers={"X-Forwarded-For": "198.51.100.3"}) as browser:
        statuses = [browser.sign_in("TARGET" if i % 2 else "target", f"guess-{i}").status_code for i in range(10)]
        assert statuses == [401] * 10  # the name counts case-insensitively, as accounts are
        throttled = browser.sign_in("target")
    assert throttled.status_code == 429 and throttled.json()["error"]["code"] == "too_many_attempts"
    assert 1 <= int(throttled.headers["retry-after"]) <= 15 * 60
    with Browser(gateway, headers={"X-Forwarded-For": "198.51.100.4"}) as elsewhere:
        assert elsewhere.sign_in("target").status_code == 429  # per name, from any address


def test_30_failures_from_one_address_throttle_every_name_from_it(gateway: Gateway) -> None:
    admin(gateway, "POST", "/api/accounts", json={"name": "bystander", "password": PASSWORD})
    with Browser(gateway, headers={"X-Forwarded-For": "198.51.100.5"}) as sprayer:
        assert {sprayer.sign_in(f"spray-{i}", "guess").status_code for i in range(30)} == {401}
        assert sprayer.sign_in("bystander").status_code == 429
    with Browser(gateway, headers={"X-Forwarded-For": "198.51.100.6"}) as other:
        assert other.sign_in("bystander").status_code == 200  # another address is not throttled


def test_a_cookie_write_needs_json_and_a_same_origin_origin(gateway: Gateway) -> None:
    browser = member(gateway, "writer")
    with browser:
        cookies = {"tb_session": browser.session}
        url = gateway.url + "/api/keys"
        for headers, content in [
            ({"Content-Type": "application/json"}, b'{"name": "no-origin"}'),
            ({"Content-Type": "application/json", "Origin": "https://evil.example"}, b'{"name": "evil"}'),
            ({"Content-Type": "text/plain", "Origin": gateway.url}, b'{"name": "form"}'),
            ({"Content-Type": "application/x-www-form-urlencoded", "Origin": gateway.url}, b"name=form"),
        ]:
            refused = httpx.post(url, headers=headers, content=content, cookies=cookies)
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"]["code"] == "origin_mismatch"
        assert browser.call("GET", "/api/keys").json()["data"] == []  # nothing was made
        assert browser.create_key("same-origin")["name"] == "same-origin"
        reads = httpx.get(url, cookies=cookies)  # a read needs no Origin
        assert reads.status_code == 200 and [k["name"] for k in reads.json()["data"]] == ["same-origin"]
    with Browser(gateway, headers={"Origin": "https://evil.example", "X-Forwarded-For": "198.51.100.7"}) as evil:
        assert evil.sign_in("writer").status_code == 403  # a sign-in posted from another site's page


def test_behind_a_trusted_proxy_the_origin_is_the_one_the_browser_sees(gateway: Gateway) -> None:
    admin(gateway, "POST", "/api/accounts", json={"name": "proxied", "password": PASSWORD})
    forwarded = {"X-Forwarded-For": "198.51.100.8", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "gw.example"}
    with Browser(gateway, headers={**forwarded, "Origin": "https://gw.example"}) as browser:
        signed_in = browser.sign_in("proxied")
        assert signed_in.status_code == 200 and "secure" in attributes(signed_in.headers["set-cookie"])
        # The cookie is Secure: the test's plain-http client would not send it, the proxy's https one does.
        cookie = {"Cookie": signed_in.headers["set-cookie"].split(";")[0]}
        made = browser.call("POST", "/api/keys", json={"name": "through-proxy"}, headers=cookie)
        assert made.status_code == 201, made.text
        plain = browser.call("POST", "/api/keys", json={"name": "plain"}, headers={**cookie, "Origin": gateway.url})
        assert plain.status_code == 403 and plain.json()["error"]["code"] == "origin_mismatch"


def test_disabling_an_account_ends_its_sessions_and_its_keys(gateway: Gateway) -> None:
    browser = member(gateway, "paused", credit_usd="1")
    with browser:
        secret = browser.create_key("paused-key")["key"]
        assert admin(gateway, "PATCH", "/api/accounts/paused", json={"status": "disabled"}).status_code == 200
        assert browser.call("GET", "/api/me").status_code == 401
        assert httpx.get(gateway.url + "/api/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
        refused = browser.sign_in("paused")
        assert refused.status_code == 403 and "set-cookie" not in refused.headers
        assert browser.sign_in("paused", "not the password").status_code == 401  # no hint without the password
        assert admin(gateway, "PATCH", "/api/accounts/paused", json={"status": "active"}).status_code == 200
        assert browser.sign_in("paused").status_code == 200
