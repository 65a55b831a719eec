"""Issue 14, acceptance 4 (server side): every error text a member can see, on every /api/* route
and in the quota refusals of /v1/*, is in words a customer understands: no CLI command, no config
key, no API field name, no backticks. `param` still names the field, for programs.

The walk is driven by the OpenAPI document: every operation, as a signed-in member and as a key's
secret, with a missing, broken and foreign body, each body field and each query field given values
of the wrong kind, and unknown path ids; then the refusals no schema shows (sign-in, throttling,
origin, codes, a revoked key, duplicates, the wallet, the key's spend limit, rate limits).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway
from tests.e2e.people import MESSAGES, Browser, admin, member, serve_accounts
from tests.fakes.upstream import FakeUpstream

WRONG_VALUES: tuple[Any, ...] = ({"x": 1}, -1, "zz-not-valid", None)
_SNAKE = re.compile(r"\b[a-z][a-z0-9]*_[a-z0-9_]+\b")  # spend_limit_usd, admin_token, max_tokens ...
_FORBIDDEN = ("`", "tokenbridge ", "config", "/api/", "null", "[]", "unix time in seconds")


def field_names(document: dict[str, Any]) -> set[str]:
    """Every name the API has for a field: the bodies' properties and the query parameters."""
    names: set[str] = set()
    for schema in document["components"]["schemas"].values():
        names.update(schema.get("properties", {}))
    for item in document["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict):
                names.update(p["name"] for p in operation.get("parameters", []))
    return names


def problems(message: str, fields: set[str]) -> list[str]:
    found = [f"has {bad!r}" for bad in _FORBIDDEN if bad in message]
    found += [f"has the name {word!r}" for word in _SNAKE.findall(message)]
    found += [f"quotes the field {f!r}" for f in fields if f"'{f}'" in message or f'"{f}"' in message]
    return found


class Walk:
    """Sends requests as one caller and keeps every error text that comes back."""

    def __init__(self, send: Callable[..., httpx.Response]) -> None:
        self.send = send
        self.seen: dict[str, tuple[int, str, str]] = {}  # message -> (status, code, where)

    def __call__(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        answer = self.send(method, path, **kwargs)
        if answer.status_code >= 400 and answer.headers.get("content-type", "").startswith("application/json"):
            error = answer.json()["error"]
            self.seen.setdefault(error["message"], (answer.status_code, error["code"], f"{method} {path} {kwargs}"))
        return answer


@pytest.fixture(scope="module")
def site(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from serve_accounts(upstream, tmp_path_factory, registration="invite")


def walk_document(walk: Walk, document: dict[str, Any]) -> None:
    for template, item in document["paths"].items():
        path = re.sub(r"\{[^}]+\}", "no-such-thing", template)
        for method, operation in item.items():
            if method == "parameters":
                continue
            verb = method.upper()
            walk(verb, path)
            for param in [*item.get("parameters", []), *operation.get("parameters", [])]:
                if param["in"] == "query":
                    for value in ("zz-not-valid", "-1"):
                        walk(verb, path, params={param["name"]: value})
            body = operation.get("requestBody")
            if body is None:
                continue
            walk(verb, path, content=b"{not json", headers={"content-type": "application/json"})
            walk(verb, path, json=[1, 2])
            walk(verb, path, json={"colour": "blue"})
            schema = body["content"]["application/json"]["schema"]
            name = schema["$ref"].rsplit("/", 1)[1]
            for field in document["components"]["schemas"][name].get("properties", {}):
                for value in WRONG_VALUES:
                    walk(verb, path, json={field: value})


def test_every_error_a_member_can_see_is_in_plain_words(site: Gateway) -> None:
    document = httpx.get(site.url + "/api/openapi.json").json()
    fields = field_names(document)
    with member(site, "words-member", credit_usd="0.001") as browser:
        key = browser.create_key("words-key", spend_limit_usd="0.0001", spend_limit_period="day", rpm=2)
        own = browser.create_key("words-edit")
        as_member = Walk(browser.call)
        holder = httpx.Client(base_url=site.url, headers={"Authorization": f"Bearer {key['key']}"}, timeout=20)
        as_key = Walk(holder.request)
        for walk in (as_member, as_key):
            walk_document(walk, document)
        for field, values in {
            "models": (["no-such-model"], "fake-ok", [1]),
            "rpm": (0, 1.5, "5", True),
            "tpm": (10**12,),
            "spend_limit_usd": ("0", "-2", "1e999", "0.0000000001", True),
            "spend_limit_period": ("week",),
            "allow_ips": (["300.1.1.1/8"], "10.0.0.0/8", ["10.0.0.0/99"]),
            "expires_at": (-5, 10**12, "tomorrow"),
            "status": ("revoked", "paused"),
        }.items():
            for value in values:
                refused = as_member("PATCH", f"/api/keys/{own['id']}", json={field: value})
                assert refused.status_code == 400 and refused.json()["error"]["param"] == field, (field, value)
        for body in ({"expires_in": "forever"}, {"expires_in": "99999999999d"}, {"name": "bad name!"}, {"name": 5}):
            assert as_member("POST", "/api/keys", json={"name": "k2", **body}).status_code == 400, body
        assert as_member("POST", "/api/keys", json={"name": "words-key"}).status_code == 409
        as_member("POST", f"/api/keys/{own['id']}/revoke", json={})
        assert as_member("PATCH", f"/api/keys/{own['id']}", json={"status": "active"}).status_code == 403
        for _ in range(11):
            as_member("POST", "/api/redeem", json={"code": "tbc-NOTACODE"})
        assert "too_many_attempts" in {code for _, code, _ in as_member.seen.values()}
        without_origin = Walk(lambda m, p, **kw: httpx.request(m, site.url + p, cookies=browser.http.cookies, **kw))
        without_origin("POST", "/api/keys", json={"name": "from-elsewhere"})
        without_origin("POST", "/api/keys", content=b"name=x", headers={"Origin": site.url})
        # The /v1/* refusals a holder meets: its wallet, the key's spend limit, a rate limit, a missing key.
        v1 = Walk(holder.request)
        chat = {"model": "fake-ok", "messages": MESSAGES}
        v1("POST", "/v1/chat/completions", json={**chat, "max_tokens": 1})
        v1("POST", "/v1/chat/completions", json={**chat, "max_tokens": 100_000})
        v1("POST", "/v1/chat/completions", json=chat)
        v1("POST", "/v1/chat/completions", json={**chat, "model": "no-such-model"})
        holder.close()
        poor = browser.create_key("words-poor")
        v1.send = lambda m, p, **kw: site.api(m, p, token=poor["key"], **kw)
        v1("POST", "/v1/chat/completions", json={**chat, "max_tokens": 100_000})
        v1.send = lambda m, p, **kw: site.api(m, p, token=None, **kw)
        v1("POST", "/v1/chat/completions", json=chat)
    anonymous = Walk(lambda m, p, **kw: httpx.request(m, site.url + p, headers={"Origin": site.url}, **kw))
    anonymous("GET", "/api/me")
    anonymous("GET", "/api/me", cookies={"tb_session": "not-a-session"})
    anonymous("POST", "/api/session", json={"name": "words-member", "password": "wrong password"})
    for _ in range(11):
        anonymous("POST", "/api/session", json={"name": "nobody-here", "password": "wrong password"})
    anonymous("POST", "/api/register", json={"name": "newcomer", "password": "long enough password"})
    anonymous("POST", "/api/register", json={"name": "newcomer", "password": "short", "invite_code": "x"})
    anonymous("POST", "/api/register", json={"name": "bad name!", "password": "long enough password"})

    walks = {"member": as_member, "key": as_key, "origin": without_origin, "v1": v1, "signed out": anonymous}
    seen = {message: (who, *where) for who, walk in walks.items() for message, where in walk.seen.items()}
    bad = {message: (where, problems(message, fields)) for message, where in seen.items() if problems(message, fields)}
    assert not bad, "\n".join(f"{message!r} {why} <- {where}" for message, (where, why) in bad.items())
    codes = {where[2] for where in seen.values()}
    assert {
        "invalid_request_error", "permission_denied", "key_not_found", "invalid_api_key", "origin_mismatch",
        "invalid_code", "too_many_attempts", "key_exists", "insufficient_quota", "rate_limit_exceeded",
        "invalid_credentials", "model_not_found",
    } <= codes, codes  # fmt: skip
    assert len(seen) > 50, len(seen)  # the walk met many different errors, not a handful
    assert [m for m in seen if m.startswith("Your balance is too low")], "the wallet's refusal was seen"
    assert [m for m in seen if m.startswith("This key's spend limit")], "the key limit's refusal was seen"


def test_the_admin_still_gets_its_errors_with_param(site: Gateway) -> None:
    refused = admin(site, "PATCH", "/api/keys/no-such-key", json={"rpm": 1})
    assert refused.status_code == 404 and refused.json()["error"]["param"] == "id"
    with Browser(site) as nobody:
        assert nobody.call("GET", "/api/usage").json()["error"]["code"] == "invalid_api_key"
