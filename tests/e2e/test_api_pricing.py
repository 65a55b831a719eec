"""Issue 13, acceptance 7: GET /api/pricing equals the config's prices times the viewer's group
multiplier, exactly, as decimal strings; public when `public_pricing`, else only signed in."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, Gateway
from tests.e2e.people import Browser, admin, member, serve_accounts
from tests.fakes.upstream import FakeUpstream

TERMS = {
    "input_usd_per_1m": "input",
    "cached_input_usd_per_1m": "cached_input",
    "output_usd_per_1m": "output",
    "cache_write_usd_per_1m": "cache_write",
}


@pytest.fixture(scope="module")
def public(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from serve_accounts(upstream, tmp_path_factory)


@pytest.fixture(scope="module")
def private(upstream: tuple[FakeUpstream, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    yield from serve_accounts(upstream, tmp_path_factory, public_pricing=False)


def expected(gateway: Gateway, group: str) -> dict[str, dict[str, Decimal]]:
    """From config.toml itself, in Decimal: each price as written, times the group's multiplier as written."""
    config = tomllib.loads(gateway.config.read_text(), parse_float=Decimal)
    multiplier = Decimal(str(config["groups"][group]["multiplier"]))
    served = {m for channel in config["channels"] for m in channel["models"]}
    prices = config["models"]
    return {
        model: {
            field: Decimal(prices[model].get(term, prices[model]["input"])) * multiplier
            for field, term in TERMS.items()
        }
        for model in served
    }


def shown(answer: httpx.Response) -> dict[str, dict[str, Decimal]]:
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    for row in data:
        for field in TERMS:
            assert isinstance(row[field], str) and "e" not in row[field].lower()  # a plain decimal string
    return {row["model"]: {field: Decimal(row[field]) for field in TERMS} for row in data}


def test_pricing_signed_out_is_the_default_groups_prices_exactly(public: Gateway) -> None:
    answer = httpx.get(public.url + "/api/pricing")
    assert shown(answer) == expected(public, "default")
    assert answer.json()["group"] == "default" and answer.json()["multiplier"] == "1"
    row = {r["model"]: r for r in answer.json()["data"]}["fake-ok"]
    assert (row["input_usd_per_1m"], row["cached_input_usd_per_1m"], row["output_usd_per_1m"]) == (
        "1.50",
        "0.50",
        "4.00",
    )


def test_pricing_signed_in_is_times_the_accounts_group_multiplier(public: Gateway) -> None:
    assert (
        admin(
            public, "POST", "/api/accounts", json={"name": "goldie", "password": "gold password", "group": "gold"}
        ).status_code
        == 201
    )
    with member(public, "plain") as plain:
        assert shown(plain.call("GET", "/api/pricing")) == expected(public, "default")
    with Browser(public) as gold:
        assert gold.sign_in("goldie", "gold password").status_code == 200
        answer = gold.call("GET", "/api/pricing")
        assert shown(answer) == expected(public, "gold")
        assert answer.json()["group"] == "gold" and answer.json()["multiplier"] == "0.8"
        row = {r["model"]: r for r in answer.json()["data"]}["fake-ok"]
        assert (row["input_usd_per_1m"], row["output_usd_per_1m"]) == ("1.20", "3.20")
        key = gold.create_key("gold-key")["key"]
    by_key = httpx.get(public.url + "/api/pricing", headers={"Authorization": f"Bearer {key}"})
    assert shown(by_key) == expected(public, "gold")  # a key sees its account's group


def test_pricing_is_only_for_the_signed_in_without_public_pricing(private: Gateway) -> None:
    refused = httpx.get(private.url + "/api/pricing")
    assert refused.status_code == 401
    signed_in = httpx.get(private.url + "/api/pricing", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert shown(signed_in) == expected(private, "default")


def test_pricing_says_the_routes_of_each_model_as_the_model_list_does(public: Gateway) -> None:
    priced = {row["model"]: row["routes"] for row in httpx.get(public.url + "/api/pricing").json()["data"]}
    listed = {
        model.id: model.model_extra["routes"] for model in public.client(public.create_key("router")).models.list()
    }
    assert priced == listed and priced
    assert all(
        routes and set(routes) <= {"chat", "completions", "responses", "embeddings", "messages"}
        for routes in priced.values()
    )
