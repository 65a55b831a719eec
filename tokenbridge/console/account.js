// A member's own pages: Overview (wallet, this month, a chart, how to connect), Top up (redeem a code,
// the wallet's history) and Pricing (also shown signed out when the operator makes prices public).
import { drawStacked, legend, seriesNames, timeSlots } from "./chart.js";
import { api, button, clearErrors, el, field, formStatus, money, moneyNode, query, servedModels, setMoney, showError, state, table, when } from "./core.js";
import { snippets } from "./snippets.js";

function monthStart() {
  const now = new Date();
  return Math.floor(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1) / 1000);
}

function tile(label, testid) {
  const value = el("span", { class: "tile-value", "data-testid": testid }, "–");
  return [el("div", { class: "tile" }, el("span", { class: "tile-label" }, label), value), value];
}

// The wallet's figures: an account's from /api/me, a key's own from the key.
async function wallet() {
  const me = await api("/api/me");
  if (me.account) {
    state.account = me.account;
    return { balance: me.account.balance_nano_usd, held: me.account.held_nano_usd };
  }
  return { balance: me.key ? me.key.balance_nano_usd : null, held: null };
}

export async function showOverview(page) {
  const [balanceTile, balance] = tile("Wallet balance", "me-balance");
  const [monthTile, month] = tile("Spent this month", "me-month");
  const [heldTile, held] = tile("Held by requests running now", "me-held");
  const chart = el("div", { class: "chart", "data-testid": "chart-month" });
  const keys = el("div", { class: "legend" });
  const latest = state.lastCreated; // a new key's secret, until "I have saved it" (then never shown again)
  const models = await servedModels();
  page.replaceChildren(
    el("div", { class: "tiles" }, balanceTile, monthTile, heldTile),
    el("div", { class: "card" }, el("div", { class: "card-head" }, el("h2", {}, "Spend per day this month")),
      el("figure", { class: "chart-box" }, chart, el("figcaption", { class: "muted small" }, "USD per day, by model")), keys),
    el("div", { class: "card" }, el("div", { class: "card-head" }, el("h2", {}, "How to connect"),
      state.role === "key" ? null : button("Create a key", { class: "primary", "data-testid": "overview-create-key" }, () => document.querySelector('[data-tab="keys"]').click())),
      el("p", { class: "muted" }, latest
        ? "Ready to run with your new key " + latest.name + ": copy it now, it is not shown again once you say you have saved it."
        : "Any OpenAI-compatible client works: point it at the base URL below and give it one of your keys."),
      snippets(latest ? latest.secret : null, models[0])));
  const since = monthStart();
  const [figures, series] = await Promise.all([wallet(), api("/api/usage/series" + query({ bucket: "day", by: "model", since: String(since) }))]);
  setMoney(balance, figures.balance);
  setMoney(held, figures.held);
  const spent = series.data.reduce((sum, p) => sum + BigInt(p.cost_nano_usd), 0n);
  setMoney(month, spent);
  const names = seriesNames(series.data, "model");
  const days = Math.max(1, Math.ceil((Date.now() / 1000 - since) / 86400));
  drawStacked(chart, { data: series.data, by: "model", names, step: 86400, slots: timeSlots(series.data, 86400, days * 86400 - 86400),
    value: (p) => Number(p.cost_nano_usd), label: (v) => money(BigInt(Math.round(v))), title: "Spend per day this month" });
  legend(keys, names);
}

// ---- Top up -------------------------------------------------------------------------------------

export async function showTopup(page) {
  const balance = el("span", { class: "tile-value", "data-testid": "topup-balance" }, "–");
  const form = el("form", { class: "card form-row", "data-testid": "redeem-form", autocomplete: "off", novalidate: "" },
    el("h2", {}, "Redeem a top-up code"),
    field("Code", { name: "code", "data-testid": "redeem-code", placeholder: "tbc-…", spellcheck: "false", required: "" }),
    el("button", { type: "submit", class: "primary", "data-testid": "redeem-submit" }, "Redeem"));
  const history = el("div", { "data-testid": "ledger" });
  page.replaceChildren(
    el("div", { class: "tiles" }, el("div", { class: "tile" }, el("span", { class: "tile-label" }, "Wallet balance"), balance)),
    form,
    el("div", { class: "card" }, el("div", { class: "card-head" }, el("h2", {}, "Wallet history")), history));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const code = form.elements.code.value.trim();
    if (!code) { showError(form, { message: "Enter the code you were given.", param: "code" }); return; }
    try {
      const done = await api("/api/redeem", { method: "POST", body: { code } });
      form.reset();
      setMoney(balance, done.balance_nano_usd);
      formStatus(form, "Added " + money(done.amount_nano_usd) + ". Your balance is now " + money(done.balance_nano_usd) + ".", false);
      await loadLedger(history, null);
    } catch (error) { showError(form, error); }
  });
  const figures = await wallet();
  setMoney(balance, figures.balance);
  await loadLedger(history, null);
}

const KINDS = { redeem: "Top-up code", credit: "Credit", charge: "Usage", correction: "Correction" };

async function loadLedger(box, before) {
  const list = await api("/api/ledger" + query({ limit: "25", before: before ? String(before) : "" }));
  const rows = list.data;
  const columns = [
    { head: "Time", cell: (r) => when(r.created_at) },
    { head: "What", cell: (r) => KINDS[r.kind] || r.kind },
    { head: "Details", wrap: true, cell: (r) => r.note || (r.code ? "code " + r.code : "") || (r.key ? "key " + r.key : "") },
    { head: "Amount", num: true, cell: (r) => moneyNode("td", r.amount_nano_usd, { class: "num" }) },
  ];
  const older = list.has_more ? button("Older entries", { class: "ghost", "data-testid": "ledger-older" }, () => loadLedger(box, list.next_before)) : null;
  const pager = el("div", { class: "pager" }, before ? button("Newest entries", { class: "ghost small" }, () => loadLedger(box, null)) : null, older);
  box.replaceChildren(rows.length ? table("ledger-table", columns, rows, (r) => ({ "data-testid": "ledger-row", "data-kind": r.kind })) : el("p", { class: "empty" }, "Nothing yet."), pager);
}

// ---- Pricing ------------------------------------------------------------------------------------

export function pricingTable(list) {
  const per = (text) => "$" + text;
  return el("div", {},
    el("p", { class: "muted" }, "US dollars per million tokens" + (list.group && list.group !== "default" ? ", your group's prices (" + list.group + ")" : "") + "."),
    table("pricing-table", [
      { head: "Model", cell: (m) => el("span", { class: "mono" }, m.model) },
      { head: "Input", num: true, cell: (m) => per(m.input_usd_per_1m) },
      { head: "Cached input", num: true, cell: (m) => per(m.cached_input_usd_per_1m) },
      { head: "Output", num: true, cell: (m) => per(m.output_usd_per_1m) },
      { head: "Works with", cell: (m) => (m.routes || []).join(", ") || "chat" },
    ], list.data, (m) => ({ "data-testid": "price-row", "data-model": m.model })));
}

export async function showPricing(page) {
  page.replaceChildren(el("div", { class: "card" }, el("h2", {}, "Prices"), pricingTable(await api("/api/pricing"))));
}

