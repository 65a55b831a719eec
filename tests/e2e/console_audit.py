"""What the console browser test checks on every page: screenshots at a laptop's and a phone's size,
axe-core's serious/critical violations, nothing wider than its box, and error texts in plain words.

axe-core (tests/vendor/axe.min.js, MPL-2.0, licence beside it) is served to the page from the page's own
origin through a Playwright route, so the console's Content-Security-Policy stays as it is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

AXE = Path(__file__).parent.parent / "vendor" / "axe.min.js"
AXE_URL = "/console/__test-axe.js"  # answered by the test's route, never by the gateway
SIZES = ((1366, 900), (390, 844))

# Operator wording a member must never read: backticks, CLI commands, config keys and files, API field
# names (snake_case or quoted), API paths, TOML tables.
JARGON = re.compile(r"`|config\.toml|\btokenbridge\s+[a-z]|\b[a-z]+_[a-z_]+\b|'[a-z_]+'|/api/|\[[a-z]+\]")

# Every box on a page that leaves its own element: a table wider than its scroll box (so it needs
# scrolling), a scroll box or chart wider than its card, or a page wider than the window.
OVERFLOW_JS = """() => {
  const problems = [];
  const visible = (node) => node.offsetParent !== null;
  const doc = document.documentElement;
  if (doc.scrollWidth > window.innerWidth + 1) problems.push(`page ${doc.scrollWidth} > window ${window.innerWidth}`);
  for (const wrap of document.querySelectorAll(".table-wrap")) {
    if (!visible(wrap)) continue;
    const table = wrap.querySelector("table");
    const card = wrap.closest(".card") || wrap.parentElement;
    if (table.scrollWidth > wrap.clientWidth + 1) problems.push(`table ${table.dataset.testid} ${table.scrollWidth} > ${wrap.clientWidth}`);
    if (wrap.getBoundingClientRect().right > card.getBoundingClientRect().right + 1) problems.push(`table box ${table.dataset.testid} leaves its card`);
  }
  for (const chart of document.querySelectorAll(".chart")) {
    if (!visible(chart)) continue;
    const drawing = chart.querySelector("svg");
    const card = chart.closest(".card");
    if (drawing && drawing.getBoundingClientRect().width > chart.clientWidth + 1) problems.push(`chart ${chart.dataset.testid} ${drawing.getBoundingClientRect().width} > ${chart.clientWidth}`);
    if (chart.getBoundingClientRect().right > card.getBoundingClientRect().right + 1) problems.push(`chart ${chart.dataset.testid} leaves its card`);
  }
  return problems;
}"""

AXE_JS = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations.filter((v) => ["serious", "critical"].includes(v.impact))
    .map((v) => ({ id: v.id, help: v.help, nodes: v.nodes.slice(0, 4).map((n) => n.target.join(" ")) }));
}"""

# Charts are drawn at their box's width; after a resize they are drawn again (one animation frame).
CHARTS_FIT_JS = """() => [...document.querySelectorAll(".chart")].filter((c) => c.offsetParent !== null)
  .every((c) => !c.querySelector("svg") || c.querySelector("svg").getBoundingClientRect().width <= c.clientWidth + 1)"""


def serve_axe(context: Any) -> None:
    body = AXE.read_bytes()
    context.route(f"**{AXE_URL}", lambda route: route.fulfill(body=body, content_type="text/javascript"))


def audit(page: Any, shots: Path, name: str) -> None:
    """Both sizes: a full-page screenshot, no overflow, no serious/critical axe violation."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(url=AXE_URL)
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_function(CHARTS_FIT_JS)
        page.screenshot(path=shots / f"{name}-{width}.png", full_page=True)
        overflows = page.evaluate(OVERFLOW_JS)
        assert overflows == [], f"{name} at {width}px: something overflows: {overflows}"
        violations = page.evaluate(AXE_JS)
        assert violations == [], f"{name} at {width}px: axe-core's serious/critical violations: {violations}"
    page.set_viewport_size({"width": SIZES[0][0], "height": SIZES[0][1]})
    page.wait_for_function(CHARTS_FIT_JS)


def shown_errors(page: Any) -> list[str]:
    """Every error text on the page now, as a member reads it."""
    texts: list[str] = page.eval_on_selector_all(
        ".field-error, .form-status.bad, .error, [data-testid=play-status], [data-testid=usage-error]",
        "nodes => nodes.filter((n) => n.offsetParent !== null).map((n) => n.textContent.trim()).filter(Boolean)",
    )
    return texts


def assert_plain(texts: list[str]) -> None:
    for text in texts:
        assert not JARGON.search(text), f"operator wording in an error a member sees: {text!r}"
