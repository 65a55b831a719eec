"""Which routes a model serves (routing.py, SPEC §10): what its channels' kinds carry, narrowed by
`routes = [...]` in its [models."NAME"], worked out once at load; and a bad `routes` refused by its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenbridge import routing
from tokenbridge.routing import KIND_ROUTES, ROUTE_PATHS, ROUTES, carried
from tokenbridge.settings import ConfigError, Settings, parse_settings

CHANNELS = """
[[channels]]
name = "demo"
kind = "echo"
models = ["echo-1", "embed"]

[[channels]]
name = "low"
base_url = "http://127.0.0.1:9/v1"
models = ["chat-model", "embed"]

[[channels]]
name = "high"
base_url = "http://127.0.0.1:9/v1"
models = ["embed"]
priority = 5
"""
PRICES = """
[models."echo-1"]
input = 1
output = 2

[models."chat-model"]
input = 1
output = 2
{chat_routes}

[models."embed"]
input = 0.02
{embed_routes}
"""


def load(*, chat_routes: str = "", embed_routes: str = 'routes = ["embeddings"]') -> Settings:
    text = CHANNELS + PRICES.format(chat_routes=chat_routes, embed_routes=embed_routes)
    return parse_settings(text, Path("config.toml"), environ={})


def refusal(**routes: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(**routes)
    return str(info.value)


def test_routes_are_every_route_the_channels_carry_unless_narrowed() -> None:
    settings = load(chat_routes='routes = ["completions", "chat"]')
    assert settings.model_routes["echo-1"] == ROUTES == ("chat", "completions", "responses", "embeddings", "messages")
    assert settings.model_routes["chat-model"] == ("chat", "completions")  # in the routes' order, not the file's
    assert settings.model_routes["embed"] == ("embeddings",)


def test_carriers_are_the_channels_that_carry_each_route_in_the_order_they_are_tried() -> None:
    settings = load()
    assert [c.name for c in settings.carriers[("embeddings", "embed")]] == ["high", "demo", "low"]
    assert ("chat", "embed") not in settings.carriers  # narrowed away: mapping refuses it
    assert [c.name for c in settings.carriers[("chat", "chat-model")]] == ["low"]
    assert set(settings.carriers) == {(r, m) for m, routes in settings.model_routes.items() for r in routes}


def test_carried_is_the_union_of_the_kinds_less_what_the_model_leaves_out() -> None:
    assert carried([], None) == ()
    assert carried(["openai", "echo"], None) == ROUTES
    assert carried(["echo"], frozenset({"messages", "chat"})) == ("chat", "messages")


def test_every_route_has_a_path_and_every_kind_carries_only_known_routes() -> None:
    assert set(ROUTE_PATHS) == set(ROUTES)
    assert all(routes <= set(ROUTES) for routes in KIND_ROUTES.values())


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('routes = ["embeddings", "embed"]', 'models."embed".routes[1]: unknown route "embed"; the routes are '
         "chat, completions, responses, embeddings, messages"),
        ("routes = []", 'models."embed".routes: must list at least one route (leave it out for every route its '
         "channels carry)"),
        ('routes = "embeddings"', 'models."embed".routes: expected an array of strings, got string'),
        ("routes = [1]", 'models."embed".routes[0]: expected a string, got integer'),
        ('route = ["embeddings"]', 'models."embed".route: unknown key, did you mean "routes"?'),
    ],
)  # fmt: skip
def test_a_bad_routes_list_is_refused_naming_its_key(line: str, message: str) -> None:
    assert refusal(embed_routes=line).startswith(f"config.toml: {message}")


def test_a_route_no_channel_of_the_model_can_carry_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Today every kind carries every route; a kind that carries fewer (anthropic: messages and chat) must
    # not let a model be listed for what none of its channels can answer.
    monkeypatch.setattr(routing, "KIND_ROUTES", {"echo": frozenset(ROUTES), "openai": frozenset({"chat", "messages"})})
    assert refusal(chat_routes='routes = ["chat", "embeddings"]') == (
        'config.toml: models."chat-model".routes[1]: no channel serving it can carry "embeddings" (kinds: openai)'
    )
    assert load().model_routes["chat-model"] == ("chat", "messages")  # unnarrowed: what its channel carries
    assert load().model_routes["embed"] == ("embeddings",)  # the echo channel carries it, the others need not
