"""The console in a real headless Chromium (Debian's), driven by Playwright, against the real gateway:
a member's walk from sign-up to sign-out, the admin's pages, a key's own view. Every page is audited
at 1366x900 and 390x844 (screenshots, axe-core, overflow: tests/e2e/console_audit.py).

Without Chromium or Playwright these tests skip, saying why; with TOKENBRIDGE_REQUIRE_BROWSER=1 (set by
.ci/run) they fail instead, so CI cannot pass without having run them. Playwright never downloads a
browser here: it drives the system's Chromium through `executable_path`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import UPSTREAM_SECRET
from tests.e2e.conftest import ADMIN_TOKEN, ConsoleSite
from tests.e2e.console_audit import assert_plain, audit, serve_axe, shown_errors

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
    folder = Path(os.environ.get("TOKENBRIDGE_SHOTS") or tmp_path_factory.mktemp("console-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots: {folder}")
    return folder


@pytest.fixture
def page(browser: Any, console_site: ConsoleSite) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 900}, base_url=console_site.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    serve_axe(context)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # An answer of 4xx is logged by Chromium itself ("Failed to load resource"): the walk provokes some
    # on purpose (the page shows them); anything else logged as an error fails the test.
    page.on(
        "console",
        lambda m: errors.append(m.text) if m.type == "error" and "Failed to load resource" not in m.text else None,
    )
    yield page
    context.close()
    assert errors == [], "the page logged errors"


def sign_in(page: Any, token: str) -> None:
    """With the admin token or a key's secret."""
    from playwright.sync_api import expect

    page.goto("/console")
    page.get_by_test_id("show-token").click()
    page.get_by_test_id("signin-token").fill(token)
    page.get_by_test_id("token-submit").click()
    expect(page.get_by_test_id("app")).to_be_visible()


def sign_in_as(page: Any, name: str, password: str) -> None:
    from playwright.sync_api import expect

    page.get_by_test_id("signin-name").fill(name)
    page.get_by_test_id("signin-password").fill(password)
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_test_id("app")).to_be_visible()


def tab(page: Any, name: str) -> Any:
    """Open a page by its tab; wait until its data is in."""
    from playwright.sync_api import expect

    page.get_by_test_id(f"tab-{name}").click()
    section = page.get_by_test_id(f"page-{name}")
    expect(section).to_have_attribute("data-loaded", "yes")
    return section


def form_error(page: Any, form: str) -> Any:
    """The error texts shown in a form, next to a field or under the form."""
    return page.locator(f'[data-testid="{form}"] :is(.field-error:not(:empty), .form-status.bad:not(:empty))')


def nano(locator: Any) -> int:
    return int(locator.get_attribute("data-nano"))


def assert_no_secret_in(page: Any, secrets: list[str], where: str) -> None:
    """The DOM as serialised (attributes included) and the address bar hold none of the secrets."""
    html = page.content()
    for secret in secrets:
        assert secret not in html, f"{where}: a secret ({secret[:7]}…) is in the page"
        assert secret not in page.url


PASSWORD = "correct-horse-battery-9"
SIGNUP_CREDIT_NANO = 50_000_000  # signup_credit_usd = 0.05 in the console site's config


def test_member_walk_from_sign_up_to_sign_out(page: Any, console_site: ConsoleSite, shots: Path) -> None:
    from playwright.sync_api import expect

    page.goto("/console")
    expect(page.get_by_test_id("signin-form")).to_be_visible()
    audit(page, shots, "01-signin")
    page.get_by_test_id("show-prices").click()  # public_pricing: the prices without signing in
    expect(
        page.get_by_test_id("public-pricing").locator('[data-testid="price-row"][data-model="echo-1"]')
    ).to_be_visible()
    audit(page, shots, "01-public-pricing")
    seen_errors: list[str] = []

    # Sign up: a too-short password is refused next to the field; then the account is made and signed in.
    page.get_by_test_id("show-signup").click()
    page.get_by_test_id("signup-name").fill("dana")
    page.get_by_test_id("signup-password").fill("short")
    page.get_by_test_id("signup-submit").click()
    expect(form_error(page, "signup-form")).not_to_have_count(0)
    seen_errors += shown_errors(page)
    audit(page, shots, "02-signup-error")
    page.get_by_test_id("signup-password").fill(PASSWORD)
    page.get_by_test_id("signup-submit").click()
    expect(page.get_by_test_id("role")).to_have_text("dana")

    # Overview: the wallet holds the sign-up credit; how to connect names the base URL.
    overview = page.get_by_test_id("page-overview")
    expect(overview).to_have_attribute("data-loaded", "yes")
    expect(page.get_by_test_id("me-balance")).to_have_attribute("data-nano", str(SIGNUP_CREDIT_NANO))
    expect(page.get_by_test_id("base-url")).to_have_text(console_site.url + "/v1")
    audit(page, shots, "03-overview-new")

    # Keys: a bad name is refused next to it; then a key, its secret shown once with ready snippets.
    tab(page, "keys")
    page.get_by_test_id("create-name").fill("bad name!")
    page.get_by_test_id("create-submit").click()
    expect(form_error(page, "create-form")).not_to_have_count(0)
    seen_errors += shown_errors(page)
    page.get_by_test_id("create-name").fill("laptop")
    page.get_by_test_id("create-submit").click()
    reveal = page.get_by_test_id("reveal-secret")
    expect(reveal).to_have_text(re.compile(r"^sk-tb-[A-Za-z0-9]{40}$"))
    secret = reveal.text_content()
    assert secret
    audit(page, shots, "04-keys-reveal")

    # Copy the Python snippet (the real clipboard) and run it with the openai SDK: it answers.
    page.get_by_test_id("reveal").locator('[data-snippet="python"]').click()
    page.get_by_test_id("reveal").get_by_test_id("copy-python").click()
    snippet = page.evaluate("() => navigator.clipboard.readText()")
    assert secret in snippet and console_site.url + "/v1" in snippet
    run = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "Hello"
    page.get_by_test_id("reveal-done").click()
    expect(page.get_by_test_id("reveal")).to_be_hidden()
    secrets = [ADMIN_TOKEN, secret, UPSTREAM_SECRET, PASSWORD]
    assert_no_secret_in(page, secrets, "keys")
    laptop = page.locator('[data-testid="key-row"][data-key="laptop"]')
    laptop.get_by_test_id("toggle").click()  # a write on the session: disable, then enable again
    expect(laptop).to_contain_text("disabled")
    laptop.get_by_test_id("toggle").click()
    expect(laptop).to_contain_text("active")
    audit(page, shots, "05-keys")

    # Usage: the snippet's request, with its charge; the wallet went down by exactly that.
    tab(page, "usage")
    row = page.locator('[data-testid="usage-row"][data-status="200"]')
    expect(row).to_have_count(1)
    expect(row).to_contain_text("laptop")
    expect(row).to_contain_text("echo-1")
    charge = nano(row.get_by_test_id("usage-cost"))
    assert charge > 0
    expect(page.locator('[data-testid="chart-spend"] rect.bar')).not_to_have_count(0)
    audit(page, shots, "06-usage")

    # Top up: the charge is in the wallet's history; a wrong code is refused in plain words; a real
    # code raises the balance by exactly its amount.
    top = tab(page, "topup")
    expect(top.locator('[data-testid="ledger-row"][data-kind="charge"]')).to_have_count(1)
    balance = page.get_by_test_id("topup-balance")
    assert nano(balance) == SIGNUP_CREDIT_NANO - charge
    page.get_by_test_id("redeem-code").fill("tbc-NOTAREALCODE0000000000")
    page.get_by_test_id("redeem-submit").click()
    expect(form_error(page, "redeem-form")).not_to_have_count(0)
    seen_errors += shown_errors(page)
    made = console_site.admin.post("/api/codes", json={"amount_usd": "0.5", "count": 1})
    assert made.status_code == 201, made.text
    code = made.json()["data"][0]["code"]
    page.get_by_test_id("redeem-code").fill(code)
    page.get_by_test_id("redeem-submit").click()
    expect(balance).to_have_attribute("data-nano", str(SIGNUP_CREDIT_NANO - charge + 500_000_000))
    expect(top.locator('[data-testid="ledger-row"][data-kind="redeem"]')).to_have_count(1)
    assert_no_secret_in(page, [*secrets, code], "top up")
    audit(page, shots, "07-topup")

    # Pricing: every served model with its prices.
    prices = tab(page, "pricing")
    expect(prices.locator('[data-testid="price-row"][data-model="echo-1"]')).to_contain_text("$1")
    audit(page, shots, "08-pricing")

    # Playground: the key just made, a system prompt, a small default max_tokens; streamed piece by
    # piece, two turns, the cost shown.
    tab(page, "playground")
    expect(page.get_by_test_id("play-key")).to_have_value("created:laptop")
    expect(page.locator('[data-testid="play-model"] option[value="echo-1"]')).to_be_attached()
    expect(page.get_by_test_id("play-max-tokens")).to_have_value("256")
    page.get_by_test_id("play-model").select_option("echo-1")
    page.get_by_test_id("play-system").fill("You answer briefly.")
    page.get_by_test_id("play-message").fill("hello from the console")
    page.get_by_test_id("play-send").click()
    answer = page.get_by_test_id("play-assistant").last.locator(".bubble-text")
    expect(answer).to_have_text("hello from the console")
    expect(page.get_by_test_id("play-status")).to_have_text("Done.")
    assert answer.evaluate("node => node.childNodes.length") == 4  # shown piece by piece as it streamed
    expect(page.get_by_test_id("play-usage")).to_contain_text("cost $")
    page.get_by_test_id("play-message").fill("and a second turn")
    page.get_by_test_id("play-send").click()
    expect(page.get_by_test_id("play-assistant")).to_have_count(2)
    expect(page.get_by_test_id("play-assistant").last.locator(".bubble-text")).to_have_text("and a second turn")
    expect(page.get_by_test_id("play-status")).to_have_text("Done.")
    # A hold larger than the wallet is refused in words a customer understands.
    page.get_by_test_id("play-max-tokens").fill("1000000")
    page.get_by_test_id("play-message").fill("too big")
    page.get_by_test_id("play-send").click()
    expect(page.get_by_test_id("play-status")).not_to_have_text(re.compile(r"^(Done\.|Waiting.*|Streaming.*)$"))
    seen_errors += shown_errors(page)
    page.get_by_test_id("play-max-tokens").fill("256")
    assert_no_secret_in(page, secrets, "playground")
    audit(page, shots, "09-playground")

    # The refused request has its row too, with why, at no cost.
    tab(page, "usage")
    refused = page.locator('[data-testid="usage-row"]:not([data-status="200"])')
    expect(refused).not_to_have_count(0)
    assert nano(refused.first.get_by_test_id("usage-cost")) == 0
    seen_errors += shown_errors(page)
    page.get_by_test_id("filter-model").select_option("echo-1")
    page.get_by_test_id("filter-since").select_option("7d")
    page.get_by_test_id("usage-apply").click()
    expect(page.get_by_test_id("usage-count")).not_to_be_empty()
    with page.expect_download() as download:
        page.get_by_test_id("usage-csv").click()
    csv_text = Path(download.value.path()).read_text()
    assert csv_text.startswith("request_id,") and "laptop" in csv_text
    audit(page, shots, "10-usage-after")

    # Overview again: this month's spend is exactly the sum of the rows' costs, and the chart shows it.
    tab(page, "overview")
    rows = console_site.admin.get("/api/usage", params={"account": "dana", "limit": "1000"}).json()["data"]
    expect(page.get_by_test_id("me-month")).to_have_attribute("data-nano", str(sum(r["cost_nano_usd"] for r in rows)))
    expect(page.get_by_test_id("chart-month")).not_to_have_attribute("data-bars", "0")
    assert_no_secret_in(page, secrets, "overview")  # the secret was shown once, in the reveal box
    audit(page, shots, "11-overview")

    # Sign out: nothing of dana's remains, in the page or in storage, for the next person.
    page.get_by_test_id("signout").click()
    expect(page.get_by_test_id("signin-form")).to_be_visible()
    assert page.evaluate("() => Object.keys(sessionStorage).length") == 0
    assert_no_secret_in(page, secrets, "signed out")
    page.get_by_test_id("show-prices").click()  # the public prices survive a sign-out: they were never dana's
    expect(
        page.get_by_test_id("public-pricing").locator('[data-testid="price-row"][data-model="echo-1"]')
    ).to_be_visible()
    page.reload()  # the session ended on the server too: a reload does not sign dana back in
    expect(page.get_by_test_id("signin-form")).to_be_visible()
    expect(page.get_by_test_id("app")).to_be_hidden()
    made = console_site.admin.post("/api/accounts", json={"name": "frank", "password": PASSWORD})
    assert made.status_code == 201, made.text
    page.get_by_test_id("signin-name").fill("frank")
    page.get_by_test_id("signin-password").fill("not-the-password")
    page.get_by_test_id("signin-submit").click()
    expect(form_error(page, "signin-form")).not_to_have_count(0)
    seen_errors += shown_errors(page)
    sign_in_as(page, "frank", PASSWORD)
    expect(page.get_by_test_id("role")).to_have_text("frank")
    tab(page, "playground")
    assert page.locator('[data-testid="play-key"] option').evaluate_all("o => o.map((x) => x.value)") == ["paste"]
    expect(page.get_by_test_id("play-log")).to_be_empty()
    expect(page.get_by_test_id("play-system")).to_have_value("")
    expect(page.get_by_test_id("play-secret")).to_have_value("")
    tab(page, "usage")
    expect(page.get_by_test_id("filter-model")).to_have_value("")
    expect(page.get_by_test_id("filter-since")).to_have_value("24h")
    expect(page.get_by_test_id("usage-row")).to_have_count(0)
    tab(page, "topup")
    expect(page.get_by_test_id("ledger-row")).to_have_count(0)
    html = page.content()
    for trace in ("dana", "laptop", "hello from the console", "second turn", "You answer briefly", secret, code):
        assert trace not in html, f"after sign-out, {trace[:12]!r} of the first account is in the page"

    # Every error the walk showed is in a customer's words.
    assert len(seen_errors) >= 4, seen_errors
    assert_plain(seen_errors)


def test_admin_accounts_codes_keys_and_channels(page: Any, console_site: ConsoleSite, shots: Path) -> None:
    from playwright.sync_api import expect

    erin_key = console_site.admin.post("/api/keys", json={"name": "erin-app", "account": "erin", "credit_usd": "1"})
    assert erin_key.status_code == 201, erin_key.text
    sign_in(page, ADMIN_TOKEN)
    expect(page.get_by_test_id("role")).to_have_text("admin token")
    for hidden in ("tab-overview", "tab-topup"):
        expect(page.get_by_test_id(hidden)).to_be_hidden()

    # Accounts: create one (its password made up and shown once), credit it with a note.
    tab(page, "accounts")
    page.get_by_test_id("account-name").fill("gail")
    page.get_by_test_id("account-create-submit").click()
    expect(page.locator('[data-testid="account-create"] .form-status')).to_contain_text("Its password, shown only now")
    gail = page.locator('[data-testid="account-row"][data-account="gail"]')
    expect(gail.get_by_test_id("account-balance")).to_have_attribute("data-nano", "0")
    gail.get_by_test_id("account-credit-open").click()
    page.get_by_test_id("credit-amount").fill("2.50")
    page.get_by_test_id("credit-note").fill("invoice 42")
    page.get_by_test_id("credit-submit").click()
    expect(gail.get_by_test_id("account-balance")).to_have_attribute("data-nano", "2500000000")
    (row,) = [r for r in console_site.admin.get("/api/ledger", params={"account": "gail"}).json()["data"]]
    assert row["note"] == "invoice 42" and row["amount_nano_usd"] == 2_500_000_000
    gail.get_by_test_id("account-role-toggle").click()
    expect(gail).to_contain_text("admin")
    page.get_by_test_id("accounts-search-text").fill("gai")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_test_id("account-row")).to_have_count(1)
    audit(page, shots, "20-admin-accounts")

    # Codes: a batch of two, shown once, its CSV downloadable once; both listed unused; one disabled.
    tab(page, "codes")
    page.get_by_test_id("codes-amount").fill("1.25")
    page.get_by_test_id("codes-count").fill("2")
    page.get_by_test_id("codes-submit").click()
    expect(page.get_by_test_id("new-code")).to_have_count(2)
    with page.expect_download() as download:
        page.get_by_test_id("codes-csv").click()
    csv_lines = Path(download.value.path()).read_text().splitlines()
    assert len(csv_lines) == 3 and csv_lines[0].startswith("code,")
    expect(page.get_by_test_id("codes-csv")).to_be_disabled()
    expect(page.locator('[data-testid="code-row"][data-status="unused"]')).to_have_count(2)
    page.get_by_test_id("code-disable").first.click()
    expect(page.locator('[data-testid="code-row"][data-status="disabled"]')).to_have_count(1)
    audit(page, shots, "21-admin-codes")
    page.get_by_test_id("codes-done").click()

    # Keys: every key; edit erin-app's limits (models as checkboxes, spend limit, IP allowlist, expiry).
    tab(page, "keys")
    key_row = page.locator('[data-testid="key-row"][data-key="erin-app"]')
    key_row.get_by_test_id("edit").click()
    editor = page.get_by_test_id("edit-form")
    editor.locator('input[name="rpm"]').fill("60")
    editor.locator('input[name="tpm"]').fill("90000")
    editor.locator('input[name="spend_limit_usd"]').fill("0.75")
    editor.locator('select[name="spend_limit_period"]').select_option("day")
    editor.locator('input[name="allow_ips"]').fill("127.0.0.1/32, 10.0.0.0/8")
    editor.locator('input[name="expires_on"]').fill("2031-06-30")
    editor.locator('input[name="models"][value="echo-1"]').check()
    page.get_by_test_id("edit-save").click()
    expect(key_row).to_contain_text("60 requests/min")
    shown = console_site.admin.get("/api/keys/" + erin_key.json()["id"]).json()
    assert (shown["rpm"], shown["tpm"], shown["spend_limit_usd"], shown["spend_period"]) == (60, 90000, "0.75", "day")
    assert shown["allow_ips"] == ["127.0.0.1/32", "10.0.0.0/8"] and shown["models"] == ["echo-1"]
    assert shown["expires_at"] == 1940630399  # 2031-06-30 23:59:59 UTC
    key_row.get_by_test_id("toggle").click()
    expect(key_row).to_contain_text("disabled")
    audit(page, shots, "22-admin-keys")

    # Usage: every account's rows, the channel column the admin's only.
    tab(page, "usage")
    audit(page, shots, "23-admin-usage")

    # Channels: health in words, a test per channel.
    tab(page, "channels")
    demo = page.locator('[data-testid="channel-card"][data-channel="demo"]')
    expect(demo.get_by_test_id("channel-health")).to_have_text("Working normally")
    demo.get_by_test_id("channel-test").click()
    expect(demo.get_by_test_id("channel-test-result")).to_have_attribute("data-ok", "true")
    expect(demo.get_by_test_id("channel-test-result")).to_contain_text("Working")
    assert_no_secret_in(page, [ADMIN_TOKEN, UPSTREAM_SECRET], "channels")
    audit(page, shots, "24-admin-channels")

    page.get_by_test_id("signout").click()
    expect(page.get_by_test_id("signin-form")).to_be_visible()
    assert page.evaluate("() => Object.keys(sessionStorage).length") == 0
    assert_no_secret_in(page, [ADMIN_TOKEN], "signed out")


def test_key_holder_sees_only_its_own_key(page: Any, console_site: ConsoleSite, shots: Path) -> None:
    from playwright.sync_api import expect

    bob = console_site.create_key("bob", "2")
    carol = console_site.create_key("carol", "2")
    console_site.chat(bob, "from bob")
    console_site.chat(carol, "from carol")

    sign_in(page, bob)
    expect(page.get_by_test_id("role")).to_have_text("key bob")
    expect(page.get_by_test_id("page-overview")).to_have_attribute("data-loaded", "yes")
    for hidden in ("tab-topup", "tab-accounts", "tab-codes", "tab-channels"):
        expect(page.get_by_test_id(hidden)).to_be_hidden()
    page.get_by_test_id("tab-overview").focus()  # the tabs move with the arrow keys
    page.keyboard.press("ArrowRight")
    expect(page.get_by_test_id("tab-keys")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_test_id("tab-keys")).to_be_focused()
    expect(page.get_by_test_id("page-keys")).to_have_attribute("data-loaded", "yes")
    expect(page.get_by_test_id("key-row")).to_have_count(1)
    expect(page.get_by_test_id("create-form")).to_have_count(0)
    secrets = [ADMIN_TOKEN, bob, carol, UPSTREAM_SECRET]
    assert_no_secret_in(page, secrets, "holder keys")

    tab(page, "usage")
    rows = page.get_by_test_id("usage-row")
    expect(rows).not_to_have_count(0)
    for text in rows.all_inner_texts():
        assert "bob" in text and "carol" not in text and "demo" not in text  # no channel names
    expect(page.get_by_test_id("by-key")).to_have_count(0)
    audit(page, shots, "30-key-usage")

    tab(page, "playground")
    expect(page.get_by_test_id("play-key")).to_have_value("self")
    page.get_by_test_id("play-model").select_option("echo-1")
    page.get_by_test_id("play-message").fill("bob plays")
    page.get_by_test_id("play-send").click()
    expect(page.get_by_test_id("play-assistant").locator(".bubble-text")).to_have_text("bob plays")
    expect(page.get_by_test_id("play-usage")).to_contain_text("cost $")
    assert_no_secret_in(page, secrets, "holder playground")
