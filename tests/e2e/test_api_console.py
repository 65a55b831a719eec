"""Issue 14, the server half of acceptance 1: a member edits every limit of its key and the next
request obeys it; `GET /api/models` lists what the caller may use, with routes; the admin tests a
channel (one real probe) and reads its health in words."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Gateway, serve_config
from tests.e2e.people import MESSAGES, Browser, accounts_config, admin, member
from tests.fakes.upstream import FakeUpstream
from tokenbridge.api.channels import verdict
from tokenbridge.upstream.probe import ProbeResult

DEAD_CHANNEL = """
[[channels]]
name = "dead"
base_url = "http://127.0.0.1:9/v1"
models = ["dead-1"]

[models."dead-1"]
input = 1.0
output = 1.0
"""


@pytest.fixture(scope="module")
def site(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    fake, url = upstream
    yield from serve_config(accounts_config(url) + DEAD_CHANNEL, tmp_path_factory, fake)


def chat(site: Gateway, secret: str, model: str = "fake-ok", **body: object) -> httpx.Response:
    return httpx.post(
        site.url + "/v1/chat/completions",
        json={"model": model, "messages": MESSAGES, **body},
        headers={"Authorization": f"Bearer {secret}"},
    )


def test_a_member_edits_every_limit_of_its_key_and_the_next_request_obeys(site: Gateway) -> None:
    with member(site, "editor", credit_usd="1") as browser:
        made = browser.create_key("edit-me")
        path, secret = f"/api/keys/{made['id']}", made["key"]
        assert chat(site, secret).status_code == 200
        expiry = time.time() + 86400
        every = {
            "models": ["echo-1", "fake-ok"], "expires_at": expiry, "rpm": 50, "tpm": 50_000,
            "spend_limit_usd": "0.5", "spend_limit_period": "day", "allow_ips": ["127.0.0.1/32"], "status": "active",
        }  # fmt: skip
        edited = browser.call("PATCH", path, json=every)
        assert edited.status_code == 200, edited.text
        key = edited.json()
        assert (key["models"], key["expires_at"], key["rpm"], key["tpm"]) == (["echo-1", "fake-ok"], expiry, 50, 50_000)
        assert (key["spend_limit_usd"], key["spend_period"], key["allow_ips"]) == ("0.50", "day", ["127.0.0.1/32"])
        assert browser.call("GET", path).json() == key
        assert chat(site, secret).status_code == 200
        assert chat(site, secret, model="fake-500").json()["error"]["code"] == "model_not_found"
        assert browser.call("PATCH", path, json={"rpm": 1}).json()["rpm"] == 1
        assert chat(site, secret).json()["error"]["code"] == "rate_limit_exceeded"  # one already this minute
        browser.call("PATCH", path, json={"rpm": None, "spend_limit_usd": "0.000001"})
        refused = chat(site, secret).json()["error"]
        assert refused["code"] == "insufficient_quota" and refused["message"].startswith("This key's spend limit")
        browser.call("PATCH", path, json={"spend_limit_usd": None, "allow_ips": ["10.0.0.0/8"]})
        assert chat(site, secret).json()["error"]["code"] == "ip_not_allowed"
        browser.call("PATCH", path, json={"allow_ips": [], "status": "disabled"})
        assert chat(site, secret).status_code == 401
        browser.call("PATCH", path, json={"status": "active", "expires_at": time.time() - 1})
        assert chat(site, secret).status_code == 401
        back = browser.call("PATCH", path, json={"expires_at": None, "models": []}).json()
        assert back["status"] == "active" and back["models"] == [] and chat(site, secret).status_code == 200
        ends = [r["end_reason"] for r in browser.call("GET", "/api/usage", params={"key": "edit-me"}).json()["data"]]
        assert ends.count("refused") == 4  # model, rate limit, spend limit, address; 401s have no row
        with member(site, "other-editor") as other:
            assert other.call("PATCH", path, json={"rpm": 5}).status_code == 404  # another's key: as if none
        assert browser.call("GET", path).json()["rpm"] is None


def test_models_lists_what_the_caller_may_use_with_routes(site: Gateway) -> None:
    with member(site, "chooser") as browser:
        models = {m["id"]: m for m in browser.call("GET", "/api/models").json()["data"]}
        assert {"echo-1", "fake-ok", "dead-1", "fake-native"} <= set(models)
        assert models["fake-ok"] == {
            "id": "fake-ok", "object": "model", "routes": ["chat", "completions", "responses", "embeddings", "messages"],
        }  # fmt: skip
        narrowed = browser.create_key("narrow", models=["echo-1"])
        by_key = site.api("GET", "/api/models", token=narrowed["key"]).json()["data"]
        assert [m["id"] for m in by_key] == ["echo-1"]
    assert httpx.get(site.url + "/api/models").status_code == 401
    assert {m["id"] for m in admin(site, "GET", "/api/models").json()["data"]} == set(models)


def test_the_admin_tests_a_channel_and_reads_its_health_in_words(site: Gateway) -> None:
    before = len(site.fake.requests_for("fake-ok"))
    working = admin(site, "POST", "/api/channels/fake/test")
    assert working.status_code == 200, working.text
    answer = working.json()
    assert (answer["channel"], answer["model"], answer["ok"], answer["status"]) == ("fake", "fake-ok", True, "ok")
    assert answer["verdict"].startswith("Working: the provider answered in ") and answer["latency_ms"] > 0
    assert len(site.fake.requests_for("fake-ok")) == before + 1  # one real request went out
    dead = admin(site, "POST", "/api/channels/dead/test").json()
    assert dead["ok"] is False and "could not be reached" in dead["status"]
    assert dead["verdict"] == "Cannot reach the provider: check the channel's base URL, and that the provider is up."
    missing = admin(site, "POST", "/api/channels/nope/test")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "channel_not_found"
    channels = {c["name"]: c for c in admin(site, "GET", "/api/channels").json()["data"]}
    assert channels["dead"]["health"] == "Working normally"  # a test does not move the breakers
    with member(site, "tester") as browser:
        assert browser.call("POST", "/api/channels/fake/test", json={}).status_code == 403
        assert browser.call("GET", "/api/channels").status_code == 403
    with Browser(site) as nobody:
        assert nobody.call("POST", "/api/channels/fake/test").status_code == 401


@pytest.mark.parametrize(
    ("status", "words"),
    [
        ("ok", "Working: the provider answered in 12 ms."),
        ("HTTP 401", "The provider refused this channel's credentials (HTTP 401): check its API key."),
        (
            "HTTP 404",
            "The provider does not know this channel's model or path (HTTP 404): check its base URL and models.",
        ),
        ("HTTP 429", "The provider is rate limiting this channel (HTTP 429): it works, but is busy or out of credit."),
        ("HTTP 503", "The provider has a problem of its own (HTTP 503): try again later."),
        ("timeout: no answer in 10.0s", "No answer in time (no answer in 10.0s): the provider is slow or unreachable."),
        ("channel 'c' did not answer in time", "No answer in time: the provider is slow or unreachable."),
        ("HTTP 418", "Failed: HTTP 418"),
    ],
)
def test_a_probes_verdict_is_in_words(status: str, words: str) -> None:
    assert verdict(ProbeResult("c", status == "ok", status, 12.3)) == words
