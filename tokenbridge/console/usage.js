// Usage: the rows (refused requests included, with why), filters, paging, a CSV download, two charts.
// A member sees its own account's rows, never a channel; the admin every row and the channel.
import { drawStacked, legend, seriesNames, timeSlots } from "./chart.js";
import { $, SINCE_SECONDS, api, button, el, field, int, money, moneyNode, ms, onReset, pill, query, request, servedModels, setMoney, state, table, when, download } from "./core.js";

const PAGE_ROWS = 25;
const CSV_ROWS = 1000; // the API's most in one answer
const view = { page: 0, by: "model" };
onReset(() => Object.assign(view, { page: 0, by: "model" }));

function filterForm(models) {
  const admin = state.role === "admin";
  const keys = el("select", { name: "key", "data-testid": "filter-key" }, el("option", { value: "" }, "all keys"),
    state.keys.map((k) => el("option", { value: k.name }, admin ? k.account + " / " + k.name : k.name)));
  const model = el("select", { name: "model", "data-testid": "filter-model" }, el("option", { value: "" }, "all models"), models.map((m) => el("option", { value: m }, m)));
  const since = el("select", { name: "since", "data-testid": "filter-since" },
    [["1h", "last hour"], ["24h", "last 24 hours"], ["7d", "last 7 days"], ["30d", "last 30 days"]].map(([v, t]) => el("option", { value: v, selected: v === "24h" }, t)));
  return el("form", { class: "card form-row", "data-testid": "usage-filters", autocomplete: "off", novalidate: "" },
    admin ? field("Account", { name: "account", "data-testid": "filter-account", placeholder: "all accounts" }) : null,
    field("Key", {}, keys), field("Model", {}, model), field("Period", {}, since),
    el("button", { type: "submit", class: "primary", "data-testid": "usage-apply" }, "Apply"),
    button("Download CSV", { class: "ghost", "data-testid": "usage-csv" }, downloadCsv));
}

function filters() {
  const form = document.querySelector('[data-testid="usage-filters"]');
  const value = (name) => (form.elements[name] ? form.elements[name].value.trim() : "");
  return { account: value("account"), key: value("key"), model: value("model"), since: value("since") || "24h" };
}

export async function showUsage(page) {
  const models = await servedModels();
  if (!state.keys.length) state.keys = (await api("/api/keys")).data;
  const tiles = ["Requests", "Tokens in / out", "Spend"].map((label, i) => el("div", { class: "tile" }, el("span", { class: "tile-label" }, label),
    el("span", { class: "tile-value", "data-testid": ["tile-requests", "tile-tokens", "tile-spend"][i] }, "–")));
  const by = el("div", { class: "segmented", role: "group", "aria-label": "Chart series" },
    button("by model", { class: "seg", "data-by": "model", "data-testid": "by-model", "aria-pressed": "true" }),
    state.role === "key" ? null : button("by key", { class: "seg", "data-by": "key", "data-testid": "by-key", "aria-pressed": "false" }));
  const form = filterForm(models);
  page.replaceChildren(form, el("div", { class: "tiles" }, tiles),
    el("div", { class: "card" }, el("div", { class: "card-head" }, el("h2", {}, "Over time"), by),
      el("div", { class: "charts" },
        el("figure", { class: "chart-box" }, el("figcaption", {}, "Spend (USD)"), el("div", { id: "chart-spend", class: "chart", "data-testid": "chart-spend" })),
        el("figure", { class: "chart-box" }, el("figcaption", {}, "Tokens (prompt + completion)"), el("div", { id: "chart-tokens", class: "chart", "data-testid": "chart-tokens" }))),
      el("div", { id: "chart-legend", class: "legend", "data-testid": "chart-legend" })),
    el("div", { class: "card" }, el("div", { class: "card-head" }, el("h2", {}, "Requests"), el("span", { id: "usage-count", class: "muted", "data-testid": "usage-count" })),
      el("div", { id: "usage-rows" }), el("div", { class: "pager", id: "usage-pager" })));
  const failed = (e) => { $("usage-count").textContent = e.message; };
  form.addEventListener("submit", (event) => { event.preventDefault(); view.page = 0; loadUsage().catch(failed); });
  for (const seg of by.querySelectorAll(".seg")) {
    seg.addEventListener("click", () => { view.by = seg.dataset.by; loadUsage().catch(failed); });
  }
  view.page = 0;
  await loadUsage();
}

async function loadUsage() {
  const f = filters();
  const bucket = SINCE_SECONDS[f.since] > 2 * 86400 ? "day" : "hour";
  const [, series] = await Promise.all([loadRows(), api("/api/usage/series" + query({ ...f, bucket, by: view.by }))]);
  renderSeries(series.data, bucket, f.since);
  for (const seg of document.querySelectorAll("[data-by]")) seg.setAttribute("aria-pressed", String(seg.dataset.by === view.by));
}

// One page of rows, newest first, from the server (`offset` paging with the `total`).
async function loadRows() {
  const list = await api("/api/usage" + query({ ...filters(), limit: String(PAGE_ROWS), offset: String(view.page * PAGE_ROWS) }));
  renderRows(list.data, list.total);
}

function renderRows(shown, total) {
  const admin = state.role === "admin";
  const columns = [
    { head: "Time", cell: (r) => el("td", { title: r.time }, when(r.created_at)) },
    { head: "Key", cell: (r) => r.key },
    { head: "Model", cell: (r) => r.model },
    admin ? { head: "Channel", cell: (r) => r.channel || "–" } : null,
    { head: "Result", cell: (r) => el("td", { class: "result" }, pill(r.status < 400 ? "OK" : String(r.status), r.status < 400 ? "ok" : "bad"), r.status < 400 ? null : el("span", { class: "why", "data-testid": "usage-error" }, r.error || r.end_reason)) },
    { head: "Prompt", num: true, cell: (r) => int(r.prompt_tokens) },
    { head: "Completion", num: true, cell: (r) => int(r.completion_tokens) },
    { head: "Cost", num: true, cell: (r) => moneyNode("td", r.cost_nano_usd, { class: "num", "data-testid": "usage-cost" }) },
    { head: "Time taken", num: true, cell: (r) => ms(r.latency_ms) },
  ].filter(Boolean);
  $("usage-rows").replaceChildren(shown.length
    ? table("usage-table", columns, shown, (r) => ({ "data-testid": "usage-row", "data-request-id": r.request_id, "data-status": r.status }))
    : el("p", { class: "empty" }, "No requests in this window. Try the Playground."));
  const pages = Math.max(1, Math.ceil(total / PAGE_ROWS));
  $("usage-count").textContent = total ? `${view.page * PAGE_ROWS + 1}–${view.page * PAGE_ROWS + shown.length} of ${int(total)}` : "";
  const go = (delta) => { view.page += delta; loadRows().catch((e) => { $("usage-count").textContent = e.message; }); };
  $("usage-pager").replaceChildren(
    button("Newer", { class: "ghost small", "data-testid": "page-prev", disabled: view.page === 0 ? "" : null }, () => go(-1)),
    el("span", { class: "muted small" }, `Page ${view.page + 1} of ${pages}`),
    button("Older", { class: "ghost small", "data-testid": "page-next", disabled: view.page + 1 >= pages ? "" : null }, () => go(1)));
}

function renderSeries(data, bucket, since) {
  let requests = 0, prompt = 0, completion = 0, spend = 0n;
  for (const p of data) {
    requests += p.requests;
    prompt += p.prompt_tokens;
    completion += p.completion_tokens;
    spend += BigInt(p.cost_nano_usd);
  }
  document.querySelector('[data-testid="tile-requests"]').textContent = int(requests);
  document.querySelector('[data-testid="tile-tokens"]').textContent = int(prompt) + " / " + int(completion);
  setMoney(document.querySelector('[data-testid="tile-spend"]'), spend);
  const step = bucket === "day" ? 86400 : 3600;
  const slots = timeSlots(data, step, SINCE_SECONDS[since]);
  const names = seriesNames(data, view.by);
  drawStacked($("chart-spend"), { data, by: view.by, slots, names, step, value: (p) => Number(p.cost_nano_usd), label: (v) => money(BigInt(Math.round(v))), title: "Spend over time" });
  drawStacked($("chart-tokens"), { data, by: view.by, slots, names, step, value: (p) => p.prompt_tokens + p.completion_tokens, label: int, title: "Tokens over time" });
  legend($("chart-legend"), names);
}

// The CSV of the filters as set (every row the API gives, not only this page's).
async function downloadCsv() {
  const response = await request("/api/usage" + query({ ...filters(), limit: String(CSV_ROWS), format: "csv" }));
  download("usage.csv", await response.text());
}
