"""The console in a real headless Chromium (Debian's), driven by Playwright, against the real gateway.

Without Chromium or Playwright these tests skip, saying why; with TOKENBRIDGE_REQUIRE_BROWSER=1 (set by
.ci/run) they fail instead, so CI cannot pass without having run them. Playwright never downloads a
browser here: it drives the system's Chromium through `executable_path`.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import UPSTREAM_SECRET
from tests.e2e.conftest import ADMIN_TOKEN, ConsoleSite
from tokenbridge.money import format_usd

CHROMIUM = os.environ.get("TOKENBRIDGE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google and hangs on a closed network.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
WAIT_MS = 20_000  # an upper bound for auto-waiting on a busy machine, not a sleep


def _unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed: pip install -e '.[test]'"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM}: on Debian `apt-get install chromium` (or set TOKENBRIDGE_CHROMIUM)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if problem := _unavailable():
        if os.environ.get("TOKENBRIDGE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"TOKENBRIDGE_REQUIRE_BROWSER=1 but {problem}")
        pytest.skip(f"browser test skipped: {problem}")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("console-screenshots")
    print(f"\nconsole screenshots: {folder}")
    return folder


@pytest.fixture
def page(browser: Any, console_site: ConsoleSite) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=console_site.url)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    yield page
    context.close()
    assert errors == [], "the page logged errors"


def sign_in(page: Any, token: str) -> None:
    from playwright.sync_api import expect

    page.goto("/console")
    page.get_by_test_id("signin-token").fill(token)
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_test_id("app")).to_be_visible()


def assert_no_secret_in(page: Any, secrets: list[str], where: str) -> None:
    """The DOM as serialised (attributes included) and the address bar hold none of the secrets."""
    html = page.content()
    for secret in secrets:
        assert secret not in html, f"{where}: a secret ({secret[:7]}…) is in the page"
        assert secret not in page.url


def test_admin_creates_credits_plays_and_sees_usage(page: Any, console_site: ConsoleSite, shots: Path) -> None:
    from playwright.sync_api import expect

    page.goto("/console")
    expect(page.get_by_test_id("signin-form")).to_be_visible()
    page.screenshot(path=shots / "01-signin.png")
    sign_in(page, ADMIN_TOKEN)
    expect(page.get_by_test_id("role")).to_have_text("admin")
    expect(page.get_by_test_id("me-tiles")).to_be_hidden()

    # Keys: create one; its secret is shown once, in the reveal box.
    page.get_by_test_id("create-name").fill("alice")
    page.get_by_test_id("create-credit").fill("1")
    page.get_by_test_id("create-submit").click()
    reveal = page.get_by_test_id("reveal-secret")
    expect(reveal).to_have_text(re.compile(r"^sk-tb-[A-Za-z0-9]{40}$"))
    secret = reveal.text_content()
    assert secret
    page.screenshot(path=shots / "02-keys-reveal.png")
    page.get_by_test_id("reveal-done").click()
    expect(page.get_by_test_id("reveal")).to_be_hidden()
    secrets = [ADMIN_TOKEN, secret, UPSTREAM_SECRET]

    # ... and credit it.
    row = page.locator('[data-testid="key-row"][data-key="alice"]')
    expect(row.get_by_test_id("key-balance")).to_have_text("$1.00")
    row.get_by_test_id("credit-amount").fill("2.50")
    row.get_by_test_id("credit-submit").click()
    expect(row.get_by_test_id("key-balance")).to_have_text("$3.50")
    page.screenshot(path=shots / "03-keys.png", full_page=True)
    assert_no_secret_in(page, secrets, "keys")

    # Usage before: remember what the chart shows.
    page.get_by_test_id("tab-usage").click()
    spend = page.get_by_test_id("chart-spend")
    expect(spend).to_have_attribute("data-buckets", re.compile(r"^[1-9]"))
    bars_before = int(spend.get_attribute("data-bars") or "0")
    total_before = spend.get_attribute("data-total") or "0"

    # Playground: the key just created is offered; the echo model streams the message back.
    page.get_by_test_id("tab-playground").click()
    expect(page.get_by_test_id("play-key")).to_have_value("created:alice")
    expect(page.locator('[data-testid="play-model"] option[value="echo-1"]')).to_be_attached()
    page.get_by_test_id("play-model").select_option("echo-1")
    page.get_by_test_id("play-message").fill("hello from the console")
    page.get_by_test_id("play-send").click()
    output = page.get_by_test_id("play-output")
    expect(output).to_have_text("hello from the console")
    expect(page.get_by_test_id("play-status")).to_have_text("Done.")
    usage_line = page.get_by_test_id("play-usage")
    expect(usage_line).to_contain_text("completion tokens")
    expect(usage_line).to_contain_text("cost $")
    # One text node per streamed chunk: the answer was shown piece by piece as it arrived.
    assert output.evaluate("node => node.childNodes.length") == 4
    request_id = usage_line.get_attribute("data-request-id")
    assert request_id and request_id.startswith("req_")
    page.screenshot(path=shots / "04-playground.png", full_page=True)
    assert_no_secret_in(page, secrets, "playground")

    # Usage after: the row of that request, and one more bar in the chart.
    page.get_by_test_id("tab-usage").click()
    usage_row = page.locator(f'[data-testid="usage-row"][data-request-id="{request_id}"]')
    expect(usage_row).to_contain_text("alice")
    expect(usage_row).to_contain_text("echo-1")
    expect(spend).not_to_have_attribute("data-total", total_before)
    assert Decimal(spend.get_attribute("data-total") or "0") > Decimal(total_before)
    assert int(spend.get_attribute("data-bars") or "0") >= max(bars_before, 1)
    expect(page.locator('[data-testid="chart-spend"] rect.bar[data-series="echo-1"]')).not_to_have_count(0)
    expect(page.get_by_test_id("chart-tokens")).not_to_have_attribute("data-bars", "0")
    page.get_by_test_id("by-key").click()
    expect(page.locator('[data-testid="chart-spend"] rect.bar[data-series="alice"]')).not_to_have_count(0)
    page.screenshot(path=shots / "05-usage.png", full_page=True)
    assert_no_secret_in(page, secrets, "usage")

    # The console and the CLI agree on every figure shown: the row's cost, the totals, alice's balance.
    rows = console_site.cli_json("usage", "--since", "24h")
    (cli_row,) = [r for r in rows if r["request_id"] == request_id]
    assert usage_row.get_by_test_id("usage-cost").inner_text() == "$" + cli_row["cost_usd"]
    expect(page.get_by_test_id("tile-requests")).to_have_text(str(len(rows)))
    spent = sum(r["cost_nano_usd"] for r in rows)
    expect(page.get_by_test_id("tile-spend")).to_have_text("$" + format_usd(spent))
    page.get_by_test_id("tab-keys").click()
    (cli_alice,) = [k for k in console_site.cli_json("keys", "list") if k["name"] == "alice"]
    expect(row.get_by_test_id("key-balance")).to_have_text("$" + cli_alice["balance_usd"])
    assert Decimal(cli_alice["balance_usd"]) == Decimal("3.50") - Decimal(cli_row["cost_usd"])

    # Channels: both, with their circuits; the channel's secret is nowhere.
    page.get_by_test_id("tab-channels").click()
    expect(page.get_by_test_id("channel-card")).to_have_count(2)
    expect(page.locator('[data-testid="channel-card"][data-channel="demo"]')).to_contain_text("echo-1")
    page.screenshot(path=shots / "06-channels.png", full_page=True)
    assert_no_secret_in(page, secrets, "channels")

    # Revoke takes two clicks, then the key is shown revoked.
    page.get_by_test_id("tab-keys").click()
    row.get_by_test_id("revoke").click()
    row.get_by_test_id("revoke").click()
    expect(row).to_contain_text("revoked")

    page.get_by_test_id("signout").click()
    expect(page.get_by_test_id("signin-form")).to_be_visible()
    assert page.evaluate("() => Object.keys(sessionStorage).length") == 0
    assert_no_secret_in(page, secrets, "signed out")


def test_key_holder_sees_only_its_own_key(page: Any, console_site: ConsoleSite, shots: Path) -> None:
    from playwright.sync_api import expect

    bob = console_site.create_key("bob", "2")
    carol = console_site.create_key("carol", "2")
    console_site.chat(bob, "from bob")
    console_site.chat(carol, "from carol")

    sign_in(page, bob)
    expect(page.get_by_test_id("role")).to_have_text("key bob")
    expect(page.get_by_test_id("key-row")).to_have_count(1)
    expect(page.locator('[data-testid="key-row"][data-key="bob"]')).to_be_visible()
    balance = page.get_by_test_id("key-balance").inner_text()
    spent = page.get_by_test_id("me-spent")
    expect(spent).to_have_text(re.compile(r"^\$0\.\d+$"))
    expect(page.get_by_test_id("me-balance")).to_have_text(balance)
    assert Decimal(balance.strip("$")) + Decimal((spent.text_content() or "").strip("$")) == Decimal(2)  # exact
    expect(page.get_by_test_id("me-tiles")).to_be_visible()
    for hidden in ("create-form", "tab-channels", "credit-submit", "revoke", "filter-key", "by-key"):
        expect(page.get_by_test_id(hidden)).to_be_hidden()
    page.screenshot(path=shots / "07-holder-keys.png", full_page=True)
    secrets = [ADMIN_TOKEN, bob, carol, UPSTREAM_SECRET]
    assert_no_secret_in(page, secrets, "holder keys")

    page.get_by_test_id("tab-usage").click()
    rows = page.get_by_test_id("usage-row")
    expect(rows).not_to_have_count(0)
    for text in rows.all_inner_texts():
        assert "bob" in text and "carol" not in text
    expect(page.locator('[data-testid="chart-spend"] rect.bar')).not_to_have_count(0)
    page.screenshot(path=shots / "08-holder-usage.png", full_page=True)
    assert_no_secret_in(page, secrets, "holder usage")

    page.get_by_test_id("tab-playground").click()
    expect(page.get_by_test_id("play-key")).to_have_value("self")
    page.get_by_test_id("play-model").select_option("echo-1")
    page.get_by_test_id("play-message").fill("bob plays")
    page.get_by_test_id("play-send").click()
    expect(page.get_by_test_id("play-output")).to_have_text("bob plays")
    expect(page.get_by_test_id("play-usage")).to_contain_text("cost $")
    page.screenshot(path=shots / "09-holder-playground.png", full_page=True)
    assert_no_secret_in(page, secrets, "holder playground")
