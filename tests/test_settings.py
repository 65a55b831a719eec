"""config.toml loading (SPEC §3): the happy path, and one test per refusal with its exact message."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import pytest

from tokenbridge.money import Price
from tokenbridge.settings import Channel, ConfigError, Group, Settings, load_settings, parse_settings

# SPEC §3, verbatim except for the two [models] tables it needs: the SPEC example serves "echo-1" and
# "gpt-4o" without pricing them, which is itself a refusal (see test_parse_settings_refuses_spec_example_as_printed).
SPEC_EXAMPLE = """\
[server]
host = "127.0.0.1"
port = 8080
database = "tokenbridge.db"            # relative to this file
admin_token = "${TOKENBRIDGE_ADMIN_TOKEN:-}"   # admin HTTP API; empty = admin API off

[[channels]]
name = "demo"
kind = "echo"                          # built in, answered inside the process: no base_url, no secret
models = ["echo-1"]

[[channels]]
name = "openai"
base_url = "https://api.openai.com/v1"
api_key = "${OPENAI_API_KEY}"          # ${VAR} / ${VAR:-default} read the environment; never logged
models = ["gpt-4o-mini", "gpt-4o"]     # public model names this channel serves
model_map = { "gpt-4o-mini" = "gpt-4o-mini-2024-07-18" }   # public -> upstream name
priority = 10                          # higher is tried first
weight = 3                             # share among channels of equal priority
completions = "chat"                   # "chat": /v1/completions via the shim; "native": pass through

[models."gpt-4o-mini"]                 # USD per 1M tokens
input = 0.15
output = 0.60
cached_input = 0.075

[groups.default]
multiplier = 1.0                       # pricing multiplier for keys of this group
"""
EXTRA_PRICES = """
[models."gpt-4o"]
input = 2.5
output = 10

[models."echo-1"]
input = 0
output = 0
"""
OPENAI_KEY = "sk-test-openai-0123456789"

# The smallest valid file; refusal tests append to it or replace parts of it.
ECHO_PRICE = '[models."echo-1"]\ninput = 0\noutput = 0\n'
MINIMAL = '[[channels]]\nname = "demo"\nkind = "echo"\nmodels = ["echo-1"]\n\n' + ECHO_PRICE
CONFIG = Path("config.toml")
SHIPPED = Path(__file__).resolve().parents[1] / "config.toml"


def parse(text: str, environ: dict[str, str] | None = None, path: Path = CONFIG) -> Settings:
    return parse_settings(text, path, environ=environ or {})


def refusal(text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, environ)
    return str(info.value)


def openai_channel(body: str, name: str = "openai") -> str:
    """A minimal valid config with a second, openai-kind channel made of `body` (TOML key/values)."""
    return f'{MINIMAL}\n[[channels]]\nname = "{name}"\n{body}\n'


def spec_settings(environ: dict[str, str] | None = None) -> Settings:
    env = {"OPENAI_API_KEY": OPENAI_KEY} if environ is None else environ
    return parse(SPEC_EXAMPLE + EXTRA_PRICES, env, Path("/srv/tb/config.toml"))


# --- happy path ---------------------------------------------------------------------------------------------------


def test_parse_settings_reads_channels_in_config_order_for_spec_example() -> None:
    settings = spec_settings()
    demo, openai = settings.channels
    assert demo == Channel(
        name="demo", kind="echo", base_url="", api_key="", models=("echo-1",), model_map={}, weight=1, priority=0
    )
    assert (openai.name, openai.kind, openai.base_url, openai.api_key) == (
        "openai",
        "openai",
        "https://api.openai.com/v1",
        OPENAI_KEY,
    )
    assert (openai.models, openai.priority, openai.weight, openai.completions) == (
        ("gpt-4o-mini", "gpt-4o"),
        10,
        3,
        "chat",
    )


def test_parse_settings_converts_prices_to_nano_for_spec_example() -> None:
    prices = spec_settings().prices
    assert prices["gpt-4o-mini"] == Price(input=150_000_000, output=600_000_000, cached_input=75_000_000)
    assert prices["gpt-4o"] == Price(input=2_500_000_000, output=10_000_000_000, cached_input=2_500_000_000)
    assert prices["echo-1"] == Price(input=0, output=0, cached_input=0)


def test_channel_upstream_model_uses_model_map_when_mapped() -> None:
    openai = spec_settings().channels[1]
    assert dict(openai.model_map) == {"gpt-4o-mini": "gpt-4o-mini-2024-07-18"}
    assert openai.upstream_model("gpt-4o-mini") == "gpt-4o-mini-2024-07-18"
    assert openai.upstream_model("gpt-4o") == "gpt-4o"


def test_parse_settings_resolves_database_against_config_dir_when_relative() -> None:
    settings = spec_settings()
    assert settings.path == Path("/srv/tb/config.toml")
    assert settings.server.database == Path("/srv/tb/tokenbridge.db")


def test_parse_settings_keeps_database_when_absolute() -> None:
    settings = parse('[server]\ndatabase = "/var/lib/tb.db"\n' + MINIMAL, path=Path("/srv/tb/config.toml"))
    assert settings.server.database == Path("/var/lib/tb.db")


def test_parse_settings_applies_defaults_when_keys_absent() -> None:
    settings = parse(MINIMAL, path=Path("/etc/tb/config.toml"))
    server = settings.server
    assert (server.host, server.port, server.admin_token) == ("127.0.0.1", 8080, "")
    assert server.database == Path("/etc/tb/tokenbridge.db")
    assert (server.max_body_bytes, server.default_max_tokens, server.max_attempts) == (4 * 1024 * 1024, 4096, 3)
    assert server.demo_credit == 1_000_000_000
    (demo,) = settings.channels
    assert (demo.priority, demo.weight, demo.completions, demo.enabled) == (0, 1, "chat", True)
    assert (demo.connect_timeout_s, demo.first_byte_timeout_s, demo.idle_timeout_s) == (5.0, 60.0, 60.0)
    assert dict(settings.groups) == {"default": Group(multiplier=Fraction(1))}


def test_parse_settings_reads_every_server_key_when_set() -> None:
    server = parse(
        '[server]\nhost = "0.0.0.0"\nport = 0\nmax_body_bytes = 1024\ndefault_max_tokens = 16\n'
        "demo_credit_usd = 0.25\nmax_attempts = 1\n" + MINIMAL
    ).server
    assert (server.host, server.port, server.max_body_bytes, server.default_max_tokens) == ("0.0.0.0", 0, 1024, 16)
    assert (server.demo_credit, server.max_attempts) == (250_000_000, 1)


def test_parse_settings_reads_channel_timeouts_when_int_or_float() -> None:
    settings = parse(
        openai_channel(
            'base_url = "http://127.0.0.1:11434/v1/"\nmodels = ["echo-1"]\n'
            "connect_timeout = 2\nfirst_byte_timeout = 0.5\nidle_timeout = 30"
        )
    )
    local = settings.channels[1]
    assert (local.connect_timeout_s, local.first_byte_timeout_s, local.idle_timeout_s) == (2.0, 0.5, 30.0)
    assert isinstance(local.connect_timeout_s, float)
    assert local.base_url == "http://127.0.0.1:11434/v1"  # trailing "/" stripped
    assert local.api_key == ""  # a local server needs no key


def test_parse_settings_sorts_routes_by_priority_when_channels_share_a_model() -> None:
    channels = "".join(
        f'[[channels]]\nname = "{name}"\nbase_url = "https://{name}.example/v1"\nmodels = ["echo-1"]\n'
        f"priority = {priority}\n\n"
        for name, priority in [("low", -1), ("a", 5), ("high", 10), ("b", 5)]
    )
    settings = parse(MINIMAL + "\n" + channels)
    assert [c.name for c in settings.routes["echo-1"]] == ["high", "a", "b", "demo", "low"]


def test_parse_settings_leaves_disabled_channel_out_of_routes_when_enabled_false() -> None:
    settings = parse(
        openai_channel('base_url = "https://x.example"\nmodels = ["echo-1", "only-here"]\nenabled = false')
        + '[models."only-here"]\ninput = 1\noutput = 1\n'
    )
    assert [c.name for c in settings.channels] == ["demo", "openai"]
    assert settings.channels[1].enabled is False
    assert [c.name for c in settings.routes["echo-1"]] == ["demo"]
    assert "only-here" not in settings.routes
    assert "only-here" in settings.prices


def test_parse_settings_routes_every_enabled_model_for_spec_example() -> None:
    routes = spec_settings().routes
    assert {model: [c.name for c in chs] for model, chs in routes.items()} == {
        "echo-1": ["demo"],
        "gpt-4o-mini": ["openai"],
        "gpt-4o": ["openai"],
    }


def test_parse_settings_expands_env_default_when_variable_unset_or_empty() -> None:
    text = openai_channel('base_url = "https://${HOST:-api.example}/v1"\napi_key = "${KEY:-none}"\nmodels = ["echo-1"]')
    assert parse(text).channels[1].base_url == "https://api.example/v1"
    assert parse(text, {"KEY": ""}).channels[1].api_key == "none"
    set_ = parse(text, {"HOST": "h.example", "KEY": "k"}).channels[1]
    assert (set_.base_url, set_.api_key) == ("https://h.example/v1", "k")


def test_parse_settings_expands_env_in_every_string_when_embedded() -> None:
    text = (
        MINIMAL.replace('["echo-1"]', '["${M}"]').replace('"demo"', '"demo-${N}"')
        + '[models."e"]\ninput = 1\noutput = 1'
    )
    settings = parse(text, {"M": "e", "N": "1"})
    assert (settings.channels[0].name, settings.channels[0].models) == ("demo-1", ("e",))


def test_parse_settings_leaves_env_values_unexpanded_when_they_contain_references() -> None:
    text = openai_channel('base_url = "https://x.example"\napi_key = "${KEY}"\nmodels = ["echo-1"]')
    assert parse(text, {"KEY": "a${B}c"}).channels[1].api_key == "a${B}c"


def test_parse_settings_gives_empty_admin_token_when_spec_default_unset() -> None:
    assert spec_settings().server.admin_token == ""
    env = {"OPENAI_API_KEY": OPENAI_KEY, "TOKENBRIDGE_ADMIN_TOKEN": "adm"}
    assert spec_settings(env).server.admin_token == "adm"


def test_settings_repr_hides_secrets_when_set() -> None:
    env = {"OPENAI_API_KEY": OPENAI_KEY, "TOKENBRIDGE_ADMIN_TOKEN": "admin-secret-42"}
    settings = spec_settings(env)
    for text in (repr(settings.channels[1]), str(settings.channels[1]), repr(settings), repr(settings.server)):
        assert OPENAI_KEY not in text
        assert "admin-secret-42" not in text
    assert "gpt-4o-mini-2024-07-18" in repr(settings.channels[1])


def test_settings_group_falls_back_to_default_when_name_unknown() -> None:
    settings = parse(MINIMAL + "[groups.vip]\nmultiplier = 1.2\n[groups.default]\nmultiplier = 2\n")
    assert settings.group("vip") == Group(multiplier=Fraction(6, 5))  # exact, not the binary float
    assert settings.group("nobody") == Group(multiplier=Fraction(2))


def test_parse_settings_adds_default_group_when_only_others_configured() -> None:
    settings = parse(MINIMAL + "[groups.vip]\nmultiplier = 0.5\n")
    assert settings.groups["default"] == Group(multiplier=Fraction(1))
    assert settings.group("vip").multiplier == Fraction(1, 2)


def test_channel_hash_works_when_used_as_dict_key() -> None:
    a, b = spec_settings().channels[1], spec_settings().channels[1]
    assert a == b
    assert {a: 1}[b] == 1


def test_load_settings_reads_file_when_path_given_as_str(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(SPEC_EXAMPLE + EXTRA_PRICES, encoding="utf-8")
    settings = load_settings(str(config), environ={"OPENAI_API_KEY": OPENAI_KEY})
    assert settings.path == config.resolve()
    assert settings.server.database == tmp_path.resolve() / "tokenbridge.db"
    assert settings.channels[1].api_key == OPENAI_KEY


def test_load_settings_uses_os_environ_when_environ_omitted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TB_TEST_MODEL", "echo-1")
    config = tmp_path / "config.toml"
    config.write_text(MINIMAL.replace('["echo-1"]', '["${TB_TEST_MODEL}"]'), encoding="utf-8")
    assert load_settings(config).channels[0].models == ("echo-1",)


def test_load_settings_serves_echo_when_shipped_config_has_no_secrets() -> None:
    settings = load_settings(SHIPPED, environ={})
    assert [c.kind for c in settings.routes["echo-1"]] == ["echo"]


def test_parse_settings_accepts_shipped_examples_when_uncommented() -> None:
    head, marker, examples = SHIPPED.read_text(encoding="utf-8").partition("# --- Real channels")
    uncommented = re.sub(r"(?m)^# ?(?=[\[a-z])", "", examples)
    env = {"OPENAI_API_KEY": "a", "OPENROUTER_API_KEY": "b", "DEEPSEEK_API_KEY": "c"}
    settings = parse(head + marker + uncommented, env)
    assert len(settings.channels) > 1
    assert all(model in settings.prices for channel in settings.channels for model in channel.models)


# --- refusals: file and syntax ------------------------------------------------------------------------------------


def test_load_settings_refuses_when_file_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_settings(missing)
    assert str(info.value) == f"{missing}: cannot read the config file: No such file or directory"


def test_load_settings_refuses_when_not_utf8(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes(b'[server]\nhost = "\xff"\n')
    with pytest.raises(ConfigError, match=r"config\.toml: not valid UTF-8 \(byte 17\)$"):
        load_settings(config)


def test_parse_settings_refuses_with_line_number_when_toml_invalid() -> None:
    assert refusal("[server]\nport = 8080\n\nhost = \n") == "config.toml: line 4: Invalid value (column 8)"


def test_parse_settings_refuses_with_last_line_number_when_file_ends_early() -> None:
    assert refusal("[server]\nport = 1\n[groups") == (
        "config.toml: line 3: Expected ']' at the end of a table declaration (at the end of the file)"
    )


def test_parse_settings_refuses_with_line_number_when_key_repeated() -> None:
    assert refusal("[server]\nport = 1\nport = 2\n").startswith("config.toml: line 3: ")


# --- refusals: unknown keys ----------------------------------------------------------------------------------------


def test_parse_settings_refuses_unknown_server_key_with_suggestion() -> None:
    message = refusal("[server]\nprot = 8080\n" + MINIMAL)
    assert message.startswith('config.toml: server.prot: unknown key, did you mean "port"? (known: host, port, ')
    assert "max_attempts, watch_config, breaker_failures" in message


def test_parse_settings_refuses_unknown_top_level_table() -> None:
    assert refusal(MINIMAL + "[upstreams]\nx = 1\n") == (
        "config.toml: upstreams: unknown key (known: server, channels, models, groups, accounts)"
    )


def test_parse_settings_refuses_unknown_channel_key_naming_channel() -> None:
    message = refusal(openai_channel('base_url = "https://x.example"\nmodels = ["echo-1"]\npriorty = 1'))
    assert message.startswith('config.toml: channels[1] (openai).priorty: unknown key, did you mean "priority"?')


def test_parse_settings_refuses_unknown_price_key() -> None:
    assert refusal(MINIMAL + "cached = 0\n").startswith(
        'config.toml: models."echo-1".cached: unknown key, did you mean "cached_input"? (known: input, output'
    )


def test_parse_settings_refuses_unknown_group_key() -> None:
    assert refusal(MINIMAL + "[groups.vip]\nmultiplyer = 2\n").startswith(
        'config.toml: groups.vip.multiplyer: unknown key, did you mean "multiplier"?'
    )


# --- refusals: types and ranges ------------------------------------------------------------------------------------


def test_parse_settings_refuses_wrong_type_naming_expected_and_got() -> None:
    text = MINIMAL.replace('kind = "echo"', 'kind = "echo"\npriority = "high"')
    assert refusal(text) == "config.toml: channels[0] (demo).priority: expected an integer, got string"


def test_parse_settings_refuses_bool_when_integer_expected() -> None:
    assert refusal("[server]\nport = true\n" + MINIMAL) == "config.toml: server.port: expected an integer, got boolean"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[server]\nport = 70000\n" + MINIMAL, "server.port: must be <= 65535, got 70000"),
        ("[server]\nmax_attempts = 0\n" + MINIMAL, "server.max_attempts: must be >= 1, got 0"),
        ("[server]\nmax_body_bytes = 0\n" + MINIMAL, "server.max_body_bytes: must be >= 1, got 0"),
        ('[server]\nhost = ""\n' + MINIMAL, "server.host: must not be empty"),
        ("[server]\nhost = 1\n" + MINIMAL, "server.host: expected a string, got integer"),
        ("[server]\ndemo_credit_usd = -1\n" + MINIMAL, "server.demo_credit_usd: must be >= 0, got -1"),
        ('server = "x"\n' + MINIMAL, "server: expected a table, got string"),
        (MINIMAL.replace('demo"\n', 'demo"\nweight = 0\n'), "channels[0] (demo).weight: must be >= 1, got 0"),
        (
            MINIMAL.replace('demo"\n', 'demo"\nenabled = 1\n'),
            "channels[0] (demo).enabled: expected a boolean (true or false), got integer",
        ),
        (
            MINIMAL.replace('demo"\n', 'demo"\nidle_timeout = 0\n'),
            "channels[0] (demo).idle_timeout: must be > 0, got 0",
        ),
        (
            MINIMAL.replace('demo"\n', 'demo"\nconnect_timeout = "5s"\n'),
            "channels[0] (demo).connect_timeout: expected a number, got string",
        ),
        (
            MINIMAL.replace('demo"\n', 'demo"\nfirst_byte_timeout = inf\n'),
            "channels[0] (demo).first_byte_timeout: must be a finite number, got inf",
        ),
        (MINIMAL + "[groups.vip]\nmultiplier = 0\n", "groups.vip.multiplier: must be > 0, got 0"),
        (MINIMAL + "[groups]\nvip = 2\n", "groups.vip: expected a table, got integer"),
        (MINIMAL.replace("input = 0", 'input = "0.1"'), 'models."echo-1".input: expected a number, got string'),
        (
            MINIMAL.replace('["echo-1"]', '"echo-1"'),
            "channels[0] (demo).models: expected an array of strings, got string",
        ),
        (
            MINIMAL.replace('["echo-1"]', '["echo-1", 2]'),
            "channels[0] (demo).models[1]: expected a string, got integer",
        ),
        (MINIMAL.replace('["echo-1"]', '["echo-1", ""]'), "channels[0] (demo).models[1]: must not be empty"),
        ("channels = 1\n" + ECHO_PRICE, "channels: expected an array of tables ([[channels]]), got integer"),
        ("channels = [1]\n" + ECHO_PRICE, "channels[0]: expected a table, got integer"),
    ],
)
def test_parse_settings_refuses_value_naming_key_when_out_of_range_or_mistyped(text: str, expected: str) -> None:
    assert refusal(text) == f"config.toml: {expected}"


# --- refusals: channels ---------------------------------------------------------------------------------------------


def test_parse_settings_refuses_when_no_channels() -> None:
    expected = "config.toml: no [[channels]]: add at least one (see the shipped config.toml)"
    assert refusal(ECHO_PRICE) == expected
    assert refusal("channels = []\n" + ECHO_PRICE) == expected


def test_parse_settings_refuses_channel_without_models() -> None:
    expected = "config.toml: channels[1] (openai).models: must list at least one model"
    assert refusal(openai_channel('base_url = "https://x.example"')) == expected
    assert refusal(openai_channel('base_url = "https://x.example"\nmodels = []')) == expected


def test_parse_settings_refuses_model_served_but_not_priced() -> None:
    message = refusal(openai_channel('base_url = "https://x.example"\nmodels = ["echo-1", "gpt-4o"]'))
    assert message == (
        'config.toml: channels[1] (openai).models: "gpt-4o" is served but not priced: add [models."gpt-4o"]'
    )


def test_parse_settings_refuses_spec_example_as_printed() -> None:
    message = refusal(SPEC_EXAMPLE, {"OPENAI_API_KEY": OPENAI_KEY})
    assert message == 'config.toml: channels[0] (demo).models: "echo-1" is served but not priced: add [models."echo-1"]'


def test_parse_settings_refuses_duplicate_channel_names() -> None:
    message = refusal(openai_channel('base_url = "https://x.example"\nmodels = ["echo-1"]', name="demo"))
    assert message == 'config.toml: channels[1] (demo).name: duplicate channel name "demo" (also channels[0])'


def test_parse_settings_refuses_duplicate_model_within_channel() -> None:
    message = refusal(MINIMAL.replace('["echo-1"]', '["echo-1", "echo-1"]'))
    assert message == 'config.toml: channels[0] (demo).models: "echo-1" is listed twice'


def test_parse_settings_refuses_channel_without_name() -> None:
    assert refusal(MINIMAL.replace('name = "demo"\n', "")) == "config.toml: channels[0].name: required"
    assert refusal(MINIMAL.replace('"demo"', '""')) == "config.toml: channels[0].name: must not be empty"


def test_parse_settings_refuses_unknown_kind() -> None:
    message = refusal(MINIMAL.replace('"echo"', '"gemini"'))
    assert message == 'config.toml: channels[0] (demo).kind: must be one of "openai", "anthropic", "echo", got "gemini"'


def test_parse_settings_refuses_unknown_completions() -> None:
    message = refusal(openai_channel('base_url = "https://x.example"\nmodels = ["echo-1"]\ncompletions = "legacy"'))
    assert message == 'config.toml: channels[1] (openai).completions: must be one of "chat", "native", got "legacy"'


@pytest.mark.parametrize("key", ["base_url", "api_key"])
def test_parse_settings_refuses_echo_channel_with_upstream_key(key: str) -> None:
    message = refusal(MINIMAL.replace('kind = "echo"', f'kind = "echo"\n{key} = "https://x.example"'))
    assert message == (
        f'config.toml: channels[0] (demo).{key}: not allowed for kind "echo" (answered inside the process): remove it'
    )


def test_parse_settings_refuses_openai_channel_without_base_url() -> None:
    message = refusal(openai_channel('models = ["echo-1"]'))
    assert message == (
        'config.toml: channels[1] (openai).base_url: required for kind "openai" (e.g. "https://api.openai.com/v1")'
    )


def test_parse_settings_reads_an_anthropic_channel_and_refuses_one_without_base_url() -> None:
    body = 'kind = "anthropic"\napi_key = "sk-ant-x"\nmodels = ["echo-1"]'
    channel = parse(openai_channel(f'{body}\nbase_url = "https://api.anthropic.com/v1/"', "claude")).channels[1]
    assert (channel.kind, channel.base_url, channel.api_key) == (
        "anthropic",
        "https://api.anthropic.com/v1",
        "sk-ant-x",
    )
    assert refusal(openai_channel(body, "claude")) == (
        'config.toml: channels[1] (claude).base_url: required for kind "anthropic" (e.g. "https://api.anthropic.com/v1")'
    )


def test_parse_settings_reads_a_cache_write_price_which_defaults_to_input() -> None:
    assert parse(MINIMAL).prices["echo-1"].cache_write_rate == 0
    prices = parse(
        MINIMAL.replace("[models.", '[models."c"]\ninput = 3\noutput = 15\ncache_write = 3.75\n\n[models.', 1)
    )
    assert (prices.prices["c"].cache_write, prices.prices["c"].cache_write_rate) == (3_750_000_000, 3_750_000_000)


@pytest.mark.parametrize("url", ["api.openai.com/v1", "ftp://x.example", "https://", "https://user:pw@", "http://[::1"])
def test_parse_settings_refuses_base_url_without_http_scheme_and_host(url: str) -> None:
    message = refusal(openai_channel(f'base_url = "{url}"\nmodels = ["echo-1"]'))
    assert message == (
        "config.toml: channels[1] (openai).base_url: must start with http:// or https:// and name a host"
    )


def test_parse_settings_refuses_model_map_key_not_in_models() -> None:
    text = openai_channel('base_url = "https://x.example"\nmodels = ["echo-1"]\nmodel_map = { "gpt-4o" = "gpt-4o-x" }')
    assert refusal(text) == 'config.toml: channels[1] (openai).model_map: "gpt-4o" is not in models ("echo-1")'


def test_parse_settings_refuses_model_map_value_when_empty() -> None:
    text = openai_channel('base_url = "https://x.example"\nmodels = ["echo-1"]\nmodel_map = { "echo-1" = "" }')
    assert refusal(text) == 'config.toml: channels[1] (openai).model_map."echo-1": must not be empty'


# --- refusals: prices ----------------------------------------------------------------------------------------------


def test_parse_settings_refuses_price_with_more_than_nine_decimals() -> None:
    message = refusal(MINIMAL.replace("input = 0", "input = 0.0000000001"))
    assert message == (
        'config.toml: models."echo-1".input: more than 9 decimal places (amounts are exact to 0.000000001 USD)'
    )


def test_parse_settings_refuses_negative_price() -> None:
    assert refusal(MINIMAL.replace("output = 0", "output = -0.5")) == (
        'config.toml: models."echo-1".output: must be >= 0, got -0.5'
    )


def test_parse_settings_price_without_output_is_free_output_for_an_embeddings_model() -> None:
    # An embeddings model has no output tokens: it is priced with `input` only (SPEC §11).
    settings = parse(MINIMAL.replace("input = 0\noutput = 0\n", 'input = 0.02\nroutes = ["embeddings"]\n'))
    assert settings.prices["echo-1"] == Price(input=20_000_000, output=0, cached_input=20_000_000)


def test_parse_settings_refuses_a_chat_model_without_an_output_price() -> None:
    # Left out, it would be 0: every answer's tokens free.
    assert refusal(MINIMAL.replace("input = 0\noutput = 0\n", "input = 0.02\n")) == (
        'config.toml: models."echo-1".output: missing: the model is served on chat, completions, responses,'
        " messages, whose answers are billed by output tokens; give its price, or"
        ' `routes = ["embeddings"]` for an embeddings model'
    )


def test_parse_settings_refuses_price_without_input() -> None:
    assert refusal(MINIMAL.replace("input = 0\n", "")) == 'config.toml: models."echo-1".input: required'


# --- refusals: environment variables and secrets -------------------------------------------------------------------


def test_parse_settings_refuses_unset_env_var_without_default() -> None:
    assert refusal(SPEC_EXAMPLE + EXTRA_PRICES) == (
        "config.toml: channels[1] (openai).api_key: environment variable OPENAI_API_KEY is not set and has no default "
        "(${OPENAI_API_KEY:-fallback} gives one)"
    )


def test_parse_settings_refuses_malformed_env_reference() -> None:
    text = openai_channel('base_url = "https://x.example"\napi_key = "${OPENAI KEY}"\nmodels = ["echo-1"]')
    assert refusal(text) == (
        "config.toml: channels[1] (openai).api_key: malformed ${...}: write ${NAME} or ${NAME:-default}"
    )


def test_config_error_omits_other_secrets_when_api_key_env_var_unset() -> None:
    secrets = {"ADMIN": "admin-secret-1", "FIRST": "sk-first-secret-2", "URL_TOKEN": "url-secret-3"}
    text = (
        '[server]\nadmin_token = "${ADMIN}"\n'
        '[[channels]]\nname = "first"\nbase_url = "https://u:${URL_TOKEN}@x.example"\napi_key = "${FIRST}"\n'
        'models = ["echo-1"]\n'
        '[[channels]]\nname = "second"\nbase_url = "https://y.example"\napi_key = "${SECOND}"\nmodels = ["echo-1"]\n'
        '[[channels]]\nname = "third"\nbase_url = "https://z.example"\napi_key = "sk-literal-secret-4"\n'
        'models = ["echo-1"]\n' + ECHO_PRICE
    )
    message = refusal(text, secrets)
    assert message.startswith("config.toml: channels[1] (second).api_key: environment variable SECOND is not set")
    for secret in [*secrets.values(), "sk-literal-secret-4"]:
        assert secret not in message


def test_parse_settings_reads_responses_and_refuses_an_unknown_one() -> None:
    channel = 'base_url = "https://x.example"\nmodels = ["echo-1"]\n'
    assert parse(openai_channel(channel)).channels[1].responses == "chat"
    assert parse(openai_channel(channel + 'responses = "native"')).channels[1].responses == "native"
    message = refusal(openai_channel(channel + 'responses = "ws"'))
    assert message == 'config.toml: channels[1] (openai).responses: must be one of "chat", "native", got "ws"'
