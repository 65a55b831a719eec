"""The shape of the code is part of the product: the chain is visible, stages are small, docs are complete."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import config_text
from tokenbridge import accountsettings
from tokenbridge import settings as settings_module
from tokenbridge.app import pipeline
from tokenbridge.runtime import Runtime
from tokenbridge.settings import parse_settings
from tokenbridge.upstream.proxy import UpstreamProxy

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "tokenbridge"
MAX_MODULE_LINES = 400


def test_pipeline_runs_the_stages_in_spec_order_each_from_its_own_module() -> None:
    settings = parse_settings(config_text("http://127.0.0.1:9"), ROOT / "config.toml", environ={})
    app = pipeline(Runtime(settings), "chat")
    chain = []
    while not isinstance(app, UpstreamProxy):
        chain.append(type(app))
        app = app.app  # type: ignore[attr-defined]
    names = [cls.__name__ for cls in chain]
    assert names == [
        "RefusalMiddleware",  # outermost: a usage row for what the inner stages refuse (issue 14)
        "BodyMiddleware",
        "AuthMiddleware",
        "QuotaMiddleware",
        "MappingMiddleware",
        "ShapeMiddleware",
        "MeterMiddleware",
    ]
    modules = [cls.__module__ for cls in chain]
    assert len(set(modules)) == len(modules) and all(m.startswith("tokenbridge.stages.") for m in modules)


def test_modules_stay_small() -> None:
    sizes = {p.relative_to(ROOT): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {p: n for p, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_no_base_http_middleware_anywhere() -> None:
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert "BaseHTTPMiddleware" not in text and "@app.middleware" not in text, path


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    [command] = re.findall(r"^TEST_COMMAND='(.+)'$", ci, re.MULTILINE)
    assert f"\n{command}\n" in readme


def test_every_config_option_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    options = [
        *settings_module._SERVER_KEYS,
        *settings_module._CHANNEL_KEYS,
        *settings_module._PRICE_KEYS,
        *settings_module._GROUP_KEYS,
        *accountsettings.ACCOUNT_KEYS,
    ]
    assert [o for o in options if f"`{o}`" not in readme] == []
