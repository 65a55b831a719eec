// The admin's pages: Accounts (search, create, credit with a note, role, disable, new password),
// Codes (make a batch, its CSV downloadable once, list, disable) and Channels (health in plain words,
// a test button per channel).
import { $, api, button, clearErrors, day, el, field, formStatus, money, moneyNode, onReset, pill, query, showError, state, statusKind, table, when, download } from "./core.js";

const held = { csv: null }; // a batch's CSV, until its one download
onReset(() => { held.csv = null; });

// ---- Accounts -----------------------------------------------------------------------------------

export async function showAccounts(page) {
  const search = el("form", { class: "card form-row", "data-testid": "accounts-search", role: "search", autocomplete: "off", novalidate: "" },
    field("Search accounts", { name: "search", "data-testid": "accounts-search-text", placeholder: "part of a name" }),
    el("button", { type: "submit", class: "primary" }, "Search"));
  const create = el("form", { class: "card form-row", "data-testid": "account-create", autocomplete: "off", novalidate: "" },
    el("h2", {}, "Create an account"),
    field("Name", { name: "name", "data-testid": "account-name", required: "" }),
    field("Role", {}, el("select", { name: "role", "data-testid": "account-role" }, el("option", { value: "member" }, "member"), el("option", { value: "admin" }, "admin"))),
    field("Pricing group", { name: "group", "data-testid": "account-group", placeholder: "default" }),
    field("Starting credit (USD)", { name: "credit_usd", "data-testid": "account-credit", inputmode: "decimal", placeholder: "0" }),
    field("Password (empty: one is made up)", { name: "password", "data-testid": "account-password", type: "password", autocomplete: "off" }),
    el("button", { type: "submit", class: "primary", "data-testid": "account-create-submit" }, "Create account"));
  const list = el("div", { class: "card" }, el("h2", {}, "Accounts"), el("div", { id: "accounts-list" }));
  page.replaceChildren(search, create, el("div", { id: "account-panel" }), list);
  search.addEventListener("submit", (event) => { event.preventDefault(); loadAccounts(search.elements.search.value.trim()); });
  create.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(create);
    const body = { name: create.elements.name.value.trim(), role: create.elements.role.value };
    for (const name of ["group", "credit_usd", "password"]) if (create.elements[name].value.trim()) body[name] = create.elements[name].value.trim();
    try {
      const made = await api("/api/accounts", { method: "POST", body });
      create.reset();
      formStatus(create, made.password
        ? `Account ${made.name} made. Its password, shown only now: ${made.password}`
        : `Account ${made.name} made.`, false);
      await loadAccounts("");
    } catch (error) { showError(create, error); }
  });
  await loadAccounts("");
}

async function loadAccounts(search) {
  const list = (await api("/api/accounts" + query({ search }))).data;
  $("accounts-list").replaceChildren(list.length ? table("accounts-table", [
    { head: "Name", cell: (a) => el("strong", {}, a.name) },
    { head: "Role", cell: (a) => a.role },
    { head: "Status", cell: (a) => pill(a.status, statusKind[a.status]) },
    { head: "Group", cell: (a) => a.group },
    { head: "Balance", num: true, cell: (a) => moneyNode("td", a.balance_nano_usd, { class: "num", "data-testid": "account-balance" }) },
    { head: "Since", cell: (a) => day(a.created_at) },
    { head: "Actions", cell: accountActions },
  ], list, (a) => ({ "data-testid": "account-row", "data-account": a.name })) : el("p", { class: "empty" }, "No account matches."));
}

function accountActions(account) {
  const edit = async (body) => {
    await api("/api/accounts/" + encodeURIComponent(account.name), { method: "PATCH", body });
    await loadAccounts("");
  };
  const other = account.role === "admin" ? "member" : "admin";
  const active = account.status === "active";
  return el("div", { class: "actions" },
    button("Credit", { class: "small", "data-testid": "account-credit-open", "aria-label": "Credit " + account.name }, () => creditPanel(account)),
    button("Make " + other, { class: "small", "data-testid": "account-role-toggle", "aria-label": `Make ${other}: ${account.name}` }, () => edit({ role: other })),
    button(active ? "Disable" : "Enable", { class: "small" + (active ? " danger" : ""), "data-testid": "account-status-toggle", "aria-label": (active ? "Disable " : "Enable ") + account.name },
      () => edit({ status: active ? "disabled" : "active" })),
    button("New password", { class: "small", "data-testid": "account-password-open", "aria-label": "New password for " + account.name }, () => passwordPanel(account)));
}

function panel(form) {
  $("account-panel").replaceChildren(form);
  form.querySelector("input").focus();
}

function creditPanel(account) {
  const form = el("form", { class: "card form-row", "data-testid": "credit-form", autocomplete: "off", novalidate: "" },
    el("h2", {}, "Credit " + account.name + " (balance " + money(account.balance_nano_usd) + ")"),
    field("Amount (USD, negative to take back)", { name: "amount_usd", "data-testid": "credit-amount", inputmode: "decimal", required: "" }),
    field("Note (shown in their history)", { name: "note", "data-testid": "credit-note", placeholder: "invoice 42" }),
    el("button", { type: "submit", class: "primary", "data-testid": "credit-submit" }, "Credit"),
    button("Close", { class: "ghost" }, () => $("account-panel").replaceChildren()));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const body = { amount_usd: form.elements.amount_usd.value.trim() };
    if (form.elements.note.value.trim()) body.note = form.elements.note.value.trim();
    try {
      const done = await api("/api/accounts/" + encodeURIComponent(account.name) + "/credit", { method: "POST", body });
      formStatus(form, `Credited ${money(done.amount_nano_usd)}: ${done.name}'s balance is ${money(done.balance_nano_usd)}.`, false);
      form.elements.amount_usd.value = "";
      await loadAccounts("");
    } catch (error) { showError(form, error); }
  });
  panel(form);
}

function passwordPanel(account) {
  const form = el("form", { class: "card form-row", "data-testid": "password-form", autocomplete: "off", novalidate: "" },
    el("h2", {}, "A new password for " + account.name + " (signs them out everywhere)"),
    field("New password", { name: "password", type: "password", "data-testid": "new-password", autocomplete: "off", required: "" }),
    el("button", { type: "submit", class: "primary", "data-testid": "password-submit" }, "Set password"),
    button("Close", { class: "ghost" }, () => $("account-panel").replaceChildren()));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    try {
      await api("/api/accounts/" + encodeURIComponent(account.name), { method: "PATCH", body: { password: form.elements.password.value } });
      form.elements.password.value = "";
      formStatus(form, "Password changed; their sessions have ended.", false);
    } catch (error) { showError(form, error); }
  });
  panel(form);
}

// ---- Codes --------------------------------------------------------------------------------------

export async function showCodes(page) {
  const form = el("form", { class: "card form-row", "data-testid": "codes-form", autocomplete: "off", novalidate: "" },
    el("h2", {}, "Make top-up codes"),
    field("Amount each (USD)", { name: "amount_usd", "data-testid": "codes-amount", inputmode: "decimal", required: "" }),
    field("How many", { name: "count", "data-testid": "codes-count", inputmode: "numeric", value: "1" }),
    field("Valid for (days, empty: always)", { name: "expires_in", "data-testid": "codes-days", inputmode: "numeric" }),
    field("Note", { name: "note", "data-testid": "codes-note" }),
    el("button", { type: "submit", class: "primary", "data-testid": "codes-submit" }, "Make codes"));
  const made = el("div", { id: "codes-made" });
  page.replaceChildren(form, made, el("div", { class: "card" }, el("h2", {}, "Codes"), el("div", { id: "codes-list" })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const body = { amount_usd: form.elements.amount_usd.value.trim(), count: Number(form.elements.count.value.trim() || "1") };
    if (form.elements.expires_in.value.trim()) body.expires_in = form.elements.expires_in.value.trim() + "d";
    if (form.elements.note.value.trim()) body.note = form.elements.note.value.trim();
    try {
      const batch = await api("/api/codes", { method: "POST", body });
      held.csv = batch.csv;
      form.reset();
      showBatch(made, batch.data);
      await loadCodes();
    } catch (error) { showError(form, error); }
  });
  await loadCodes();
}

// A batch's codes are shown once; its CSV can be downloaded once, then it is gone from the page.
function showBatch(box, codes) {
  const get = button("Download CSV (once)", { class: "primary", "data-testid": "codes-csv" }, () => {
    if (held.csv) download("codes.csv", held.csv);
    held.csv = null;
    get.disabled = true;
    get.textContent = "Downloaded";
  });
  box.replaceChildren(el("div", { class: "card reveal", "data-testid": "codes-reveal" },
    el("div", { class: "reveal-head" }, el("h2", {}, codes.length + " new code" + (codes.length === 1 ? "" : "s")),
      el("span", { class: "muted" }, "Hand them out now: they are not shown again.")),
    el("ul", { class: "code-list" }, codes.map((c) => el("li", {}, el("code", { class: "secret", "data-testid": "new-code" }, c.code), " " + money(c.amount_nano_usd)))),
    el("div", { class: "form-row" }, get, button("Done", { class: "ghost", "data-testid": "codes-done" }, () => { held.csv = null; box.replaceChildren(); }))));
}

async function loadCodes() {
  const list = (await api("/api/codes")).data;
  $("codes-list").replaceChildren(list.length ? table("codes-table", [
    { head: "Starts with", cell: (c) => el("span", { class: "mono" }, c.prefix + "…") },
    { head: "Amount", num: true, cell: (c) => moneyNode("td", c.amount_nano_usd, { class: "num" }) },
    { head: "Status", cell: (c) => pill(c.status, statusKind[c.status]) },
    { head: "Note", wrap: true, cell: (c) => c.note || "" },
    { head: "Used by", cell: (c) => c.redeemed_by || "–" },
    { head: "Used", cell: (c) => when(c.redeemed_at) },
    { head: "Expires", cell: (c) => day(c.expires_at) },
    { head: "", cell: (c) => (c.status === "unused" ? button("Disable", { class: "small danger", "data-testid": "code-disable", "aria-label": "Disable code " + c.prefix }, async () => {
      await api("/api/codes/" + encodeURIComponent(c.id) + "/disable", { method: "POST" });
      await loadCodes();
    }) : "") },
  ], list, (c) => ({ "data-testid": "code-row", "data-status": c.status })) : el("p", { class: "empty" }, "No codes yet."));
}

// ---- Channels -----------------------------------------------------------------------------------

const KIND = { closed: "ok", half_open: "warn", open: "bad" };

export async function showChannels(page) {
  const list = (await api("/api/channels")).data;
  page.replaceChildren(el("div", { class: "grid", "data-testid": "channels-grid" }, list.map(channelCard)));
}

function channelCard(channel) {
  const circuits = new Map((channel.circuits || []).map((c) => [c.model, c]));
  const result = el("p", { class: "muted small", role: "status", "data-testid": "channel-test-result" });
  const test = button("Test", { class: "small", "data-testid": "channel-test", "aria-label": "Test channel " + channel.name }, async () => {
    test.disabled = true;
    result.textContent = "Testing…";
    try {
      const done = await api("/api/channels/" + encodeURIComponent(channel.name) + "/test", { method: "POST", body: {} });
      result.textContent = done.verdict;
      result.dataset.ok = String(done.ok);
    } catch (error) {
      result.textContent = "Test failed: " + error.message;
      result.dataset.ok = "false";
    } finally { test.disabled = false; }
  });
  return el("div", { class: "card channel", "data-testid": "channel-card", "data-channel": channel.name },
    el("div", { class: "card-head" }, el("h2", {}, channel.name, " ", el("span", { class: "pill" }, channel.kind)), test),
    el("p", { class: "health", "data-testid": "channel-health" }, el("span", { class: "dot " + worst(channel), "aria-hidden": "true" }), channel.health),
    el("p", { class: "meta" }, [channel.display_url, "priority " + channel.priority, "weight " + channel.weight].filter(Boolean).join(" · ")),
    el("ul", { class: "circuits" }, channel.models.map((model) => {
      const circuit = circuits.get(model) || { state: "closed" };
      return el("li", { class: "circuit", "data-testid": "circuit", "data-model": model, "data-state": circuit.state },
        el("span", { class: "mono" }, model), el("span", { class: "circuit-health" }, pill(circuit.health || "Working", KIND[circuit.state])));
    })),
    result);
}

function worst(channel) {
  const states = (channel.circuits || []).map((c) => c.state);
  if (!channel.enabled && channel.enabled !== undefined) return "off";
  return states.includes("open") ? "bad" : states.includes("half_open") ? "warn" : "";
}
