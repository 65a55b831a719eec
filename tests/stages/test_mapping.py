"""Channel order (stages/mapping.py): priority tiers first, then a weighted draw inside each tier."""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.stages.kit import ECHO_CHANNEL, Inner, make_call, run_stage, write_settings
from tokenbridge.errors import ModelNotFound
from tokenbridge.settings import Channel
from tokenbridge.stages.mapping import MappingMiddleware, weighted_order
from tokenbridge.upstream.breaker import Breakers


def channel(name: str, *, priority: int = 0, weight: int = 1) -> Channel:
    return Channel(
        name=name,
        kind="openai",
        base_url="http://127.0.0.1:9/v1",
        api_key="",
        models=("m",),
        model_map=MappingProxyType({}),
        priority=priority,
        weight=weight,
    )


def test_weighted_order_single_channel_returned_as_is() -> None:
    only = channel("only", weight=5)
    assert weighted_order([only], random.Random(1)) == (only,)


def test_weighted_order_single_channel_tiers_keep_their_order() -> None:
    high, middle, low = channel("high", priority=9), channel("middle", priority=5), channel("low", priority=-1)
    for seed in range(20):
        assert weighted_order([high, middle, low], random.Random(seed)) == (high, middle, low)


def test_weighted_order_empty_is_empty() -> None:
    assert weighted_order([], random.Random(1)) == ()


# Routes come sorted by priority, highest first (settings._routes); weights are at least 1 (config check).
_CHANNELS = st.lists(st.tuples(st.integers(-3, 3), st.integers(1, 10)), max_size=8).map(
    lambda specs: [
        channel(f"c{i}", priority=p, weight=w) for i, (p, w) in enumerate(sorted(specs, key=lambda spec: -spec[0]))
    ]
)


@settings(max_examples=200)
@given(_CHANNELS, st.randoms(use_true_random=False))
def test_weighted_order_respects_priority_tiers_always(channels: list[Channel], rng: random.Random) -> None:
    ordered = weighted_order(channels, rng)

    assert sorted(c.name for c in ordered) == sorted(c.name for c in channels)  # each once, none lost
    assert [c.priority for c in ordered] == [c.priority for c in channels]  # tiers stay where they were


DRAWS = 4000


def test_weighted_order_first_pick_share_follows_weights() -> None:
    heavy, light = channel("heavy", weight=3), channel("light", weight=1)
    rng = random.Random(20240601)

    firsts = Counter(weighted_order([light, heavy], rng)[0].name for _ in range(DRAWS))

    # The first pick is a Bernoulli(3/4) trial per draw: mean n·p = 3000, sigma = sqrt(n·p·(1−p)) ≈ 27.4.
    # Allowing 5 sigma (≈ 137) fails a correct implementation with probability < 1e-6, while a uniform
    # draw (expected 2000) or one ignoring weights in favour of config order (0 or 4000) is far outside.
    p = 3 / 4
    bound = 5 * math.sqrt(DRAWS * p * (1 - p))
    assert abs(firsts["heavy"] - DRAWS * p) <= bound
    assert firsts["heavy"] + firsts["light"] == DRAWS


def test_weighted_order_draw_happens_inside_each_tier() -> None:
    top_a, top_b = channel("top-a", priority=1, weight=1), channel("top-b", priority=1, weight=1)
    low_a, low_b = channel("low-a", priority=0, weight=1), channel("low-b", priority=0, weight=1)
    rng = random.Random(7)

    orders = Counter(tuple(c.name for c in weighted_order([top_a, top_b, low_a, low_b], rng)) for _ in range(400))

    # Both orders of each tier show up, and the low tier never comes first.
    assert set(orders) == {
        ("top-a", "top-b", "low-a", "low-b"),
        ("top-a", "top-b", "low-b", "low-a"),
        ("top-b", "top-a", "low-a", "low-b"),
        ("top-b", "top-a", "low-b", "low-a"),
    }


def test_weighted_order_same_seed_same_order() -> None:
    channels = [channel(f"c{i}", weight=i + 1) for i in range(5)]
    assert weighted_order(channels, random.Random(42)) == weighted_order(channels, random.Random(42))


# --- the stage: only channels that carry the call's route (routing.py) ----------------------------------------------


async def test_mapping_tries_only_channels_that_carry_the_route_and_names_the_routes_served(tmp_path: Path) -> None:
    channels = ECHO_CHANNEL + '[[channels]]\nname = "up"\nbase_url = "http://127.0.0.1:9/v1"\nmodels = ["m", "e"]\n'
    prices = '[models."e"]\ninput = 0.1\nroutes = ["embeddings"]\n'
    settings = write_settings(tmp_path, channels=channels + "\n" + prices)
    breakers = Breakers(settings.server.breaker, on_change=lambda change: None)
    stage = MappingMiddleware(Inner(), rng=random.Random(1), breakers=breakers)
    served = make_call(settings, body={"model": "e", "input": "x"}, route="embeddings")
    assert (await run_stage(stage, served)).error is None
    assert [c.name for c in served.candidates] == ["up"]
    both = make_call(settings, body={"model": "m", "input": "x"}, route="embeddings")
    assert (await run_stage(stage, both)).error is None and {c.name for c in both.candidates} == {"demo", "up"}
    refused = make_call(settings, body={"model": "e", "messages": []}, route="chat")
    result = await run_stage(stage, refused)
    assert isinstance(result.error, ModelNotFound) and result.status == 404 and refused.candidates == ()
    assert (
        result.error_json()["message"]
        == "The model 'e' is not served on /v1/chat/completions; it is served on /v1/embeddings."
    )
    unknown = make_call(settings, body={"model": "nobody", "input": "x"}, route="embeddings")
    assert isinstance((await run_stage(stage, unknown)).error, ModelNotFound)
