"""Issue 13, acceptance 4: a key with `allow_ips` refuses a caller outside them with 403
`ip_not_allowed`; X-Forwarded-For is believed only from `[accounts] trusted_proxies`."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import Gateway
from tests.e2e.people import MESSAGES, admin, serve_accounts
from tests.fakes.upstream import FakeUpstream


@pytest.fixture(scope="module")
def direct(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from serve_accounts(upstream, tmp_path_factory)  # no proxy is trusted


@pytest.fixture(scope="module")
def proxied(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from serve_accounts(upstream, tmp_path_factory, trusted_proxies=["127.0.0.0/8"])


def key_with(gateway: Gateway, name: str, allow_ips: list[str]) -> str:
    made = admin(gateway, "POST", "/api/keys", json={"name": name, "credit_usd": "1", "allow_ips": allow_ips})
    assert made.status_code == 201, made.text
    assert made.json()["allow_ips"] == allow_ips
    return str(made.json()["key"])


def chat(gateway: Gateway, secret: str, forwarded_for: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    client = gateway.client(secret, default_headers=headers)
    try:
        client.chat.completions.create(model="fake-ok", messages=MESSAGES)
    except openai.PermissionDeniedError as exc:
        assert exc.code == "ip_not_allowed", exc
        return 403
    return 200


def test_allow_ips_refuses_a_caller_outside_them_with_403_ip_not_allowed(direct: Gateway) -> None:
    outside = key_with(direct, "office-only", ["10.20.0.0/16"])
    assert chat(direct, outside) == 403  # the caller is 127.0.0.1
    for path in ("/v1/models", "/v1/me", "/api/me", "/api/usage"):  # every route the key's secret opens
        answer = direct.api("GET", path, token=outside)
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "ip_not_allowed", path
    counted = httpx.post(
        direct.url + "/v1/messages/count_tokens",
        headers={"x-api-key": outside},
        json={"model": "fake-ok", "messages": [{"role": "user", "content": "hi"}]},
    )  # Anthropic's shape on that route: a permission_error
    assert counted.status_code == 403 and counted.json()["error"]["type"] == "permission_error", counted.text
    rows = admin(direct, "GET", "/api/usage?key=office-only").json()["data"]  # refused before any hold: cost 0
    assert [(r["status"], r["end_reason"], r["cost_nano_usd"]) for r in rows] == [(403, "refused", 0)]
    assert chat(direct, key_with(direct, "loopback", ["127.0.0.1/32"])) == 200


def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(direct: Gateway) -> None:
    secret = key_with(direct, "claims", ["10.20.0.0/16"])
    assert chat(direct, secret, forwarded_for="10.20.3.4") == 403


def test_x_forwarded_for_from_a_trusted_proxy_is_the_callers_address(proxied: Gateway) -> None:
    secret = key_with(proxied, "behind-proxy", ["10.20.0.0/16", "2001:db8::/32"])
    assert chat(proxied, secret, forwarded_for="10.20.3.4") == 200
    assert chat(proxied, secret, forwarded_for="2001:db8::7") == 200
    assert chat(proxied, secret, forwarded_for="10.21.0.1") == 403
    assert chat(proxied, secret) == 403  # no header: the proxy itself (127.0.0.1) is the caller
    # What the caller wrote itself stands left of what the proxy appended: only the proxy's entry counts.
    assert chat(proxied, secret, forwarded_for="10.20.3.4, 192.0.2.1") == 403


def test_allow_ips_is_editable_and_bad_cidrs_are_400(direct: Gateway) -> None:
    secret = key_with(direct, "editable", ["10.20.0.0/16"])
    key_id = admin(direct, "GET", "/api/keys?account=editable").json()["data"][0]["id"]
    refused = admin(direct, "PATCH", f"/api/keys/{key_id}", json={"allow_ips": ["not-a-cidr"]})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "allow_ips"
    assert chat(direct, secret) == 403
    opened = admin(direct, "PATCH", f"/api/keys/{key_id}", json={"allow_ips": []})
    assert opened.status_code == 200 and opened.json()["allow_ips"] == []
    assert chat(direct, secret) == 200  # the edit counts from the very next request
