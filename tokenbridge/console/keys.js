// Keys: create (every limit), edit every limit, enable/disable, revoke. A member sees its own keys; the
// admin every key (and picks the account a new key belongs to). A new key's secret is shown once.
import { $, api, button, clearErrors, day, el, field, formStatus, moneyNode, onReset, pill, servedModels, showError, state, statusKind, table } from "./core.js";
import { snippets } from "./snippets.js";

const PERIODS = [["total", "in total"], ["day", "per day (UTC)"], ["month", "per month (UTC)"]];

// The limit fields, the same in the create form and the edit form; `key` fills them in.
function limitFields(models, key) {
  const chosen = new Set(key ? key.models : []);
  const boxes = el("fieldset", { class: "models" }, el("legend", {}, "Models (none ticked: every model)"),
    models.map((m) => el("label", { class: "check" }, el("input", { type: "checkbox", name: "models", value: m, checked: chosen.has(m) }), m)),
    el("span", { class: "field-error", role: "alert" }));
  const period = el("select", { name: "spend_limit_period" }, PERIODS.map(([v, text]) => el("option", { value: v, selected: key && key.spend_period === v }, text)));
  return [
    field("Requests per minute", { name: "rpm", inputmode: "numeric", placeholder: "no limit", value: key && key.rpm }),
    field("Tokens per minute", { name: "tpm", inputmode: "numeric", placeholder: "no limit", value: key && key.tpm }),
    field("Spend limit (USD)", { name: "spend_limit_usd", inputmode: "decimal", placeholder: "no limit", value: key && key.spend_limit_usd }),
    field("Spend limit counts", {}, period),
    field("Allowed IP addresses", { name: "allow_ips", placeholder: "any (or 10.0.0.0/8, 192.0.2.7)", value: key && key.allow_ips.join(", ") }),
    field("Expires on", { name: "expires_on", type: "date", value: key && key.expires_at ? day(key.expires_at) : null }),
    boxes,
  ];
}

// The form's limits as the API wants them; empty means "no limit" (null) when editing.
function limitBody(form, editing) {
  const text = (name) => form.elements[name].value.trim();
  const body = {};
  const number = (name) => (text(name) ? Number(text(name)) : null);
  for (const name of ["rpm", "tpm"]) if (text(name) || editing) body[name] = number(name);
  if (text("spend_limit_usd") || editing) body.spend_limit_usd = text("spend_limit_usd") || null;
  body.spend_limit_period = form.elements.spend_limit_period.value;
  if (text("allow_ips") || editing) body.allow_ips = text("allow_ips").split(/[\s,]+/).filter(Boolean);
  body.models = [...form.querySelectorAll('input[name="models"]:checked')].map((box) => box.value);
  return body;
}

// A date picked is the end of that day, UTC.
function endOfDay(value) {
  return value ? Date.parse(value + "T23:59:59Z") / 1000 : null;
}

export async function showKeys(page) {
  const models = await servedModels();
  const list = await api("/api/keys");
  state.keys = list.data;
  const reveal = el("div", { id: "reveal", class: "card reveal", "data-testid": "reveal", hidden: "" });
  page.replaceChildren(reveal, createForm(models), el("div", { id: "key-editor" }), keysCard(models));
  if (state.lastCreated) showReveal(state.lastCreated);
}

function createForm(models) {
  if (state.role === "key") return el("p", { class: "card muted" }, "You are signed in with one key's secret: sign in with your name and password to create or change keys.");
  const admin = state.role === "admin";
  const form = el("form", { class: "card form-grid", "data-testid": "create-form", autocomplete: "off", novalidate: "" },
    el("h2", {}, "Create a key"),
    field("Name", { name: "name", "data-testid": "create-name", required: "", placeholder: "my-app" }),
    admin ? field("Account", { name: "account", "data-testid": "create-account", placeholder: "same as the key's name" }) : null,
    admin ? field("Credit for a new account (USD)", { name: "credit_usd", "data-testid": "create-credit", inputmode: "decimal", placeholder: "0" }) : null,
    limitFields(models, null),
    el("div", { class: "form-actions" }, el("button", { type: "submit", class: "primary", "data-testid": "create-submit" }, "Create key")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const body = { name: form.elements.name.value.trim(), ...limitBody(form, false) };
    if (admin && form.elements.account.value.trim()) body.account = form.elements.account.value.trim();
    if (admin && form.elements.credit_usd.value.trim()) body.credit_usd = form.elements.credit_usd.value.trim();
    const until = endOfDay(form.elements.expires_on.value);
    if (until) body.expires_in = Math.max(1, Math.round(until - Date.now() / 1000)) + "s";
    try {
      const key = await api("/api/keys", { method: "POST", body });
      state.created.set(key.name, key.key);
      state.lastCreated = { name: key.name, secret: key.key };
      await showKeys(form.closest(".page"));
    } catch (error) { showError(form, error); }
  });
  return form;
}

// The one time a secret is shown: with the snippets to use it right away.
function showReveal({ name, secret }) {
  const box = $("reveal");
  const done = button("I have saved it", { class: "primary", "data-testid": "reveal-done" }, () => {
    state.lastCreated = null;
    box.replaceChildren();
    box.hidden = true;
  });
  box.replaceChildren(
    el("div", { class: "reveal-head" }, el("h2", {}, "New key ", el("span", { "data-testid": "reveal-name" }, name)),
      el("span", { class: "muted" }, "Copy it now: this is the only time it is shown.")),
    el("div", { class: "reveal-row" }, el("code", { class: "secret", "data-testid": "reveal-secret" }, secret), done),
    snippets(secret, state.models[0]));
  box.hidden = false;
}

function keysCard(models) {
  const admin = state.role === "admin";
  const writer = state.role !== "key";
  const columns = [
    { head: "Name", cell: (k) => el("strong", {}, k.name) },
    admin ? { head: "Account", cell: (k) => k.account } : null,
    { head: "Starts with", cell: (k) => el("span", { class: "mono" }, k.prefix + "…") },
    { head: "Status", cell: (k) => pill(k.status, statusKind[k.status]) },
    { head: "Expires", cell: (k) => day(k.expires_at) },
    { head: "Models", wrap: true, cell: (k) => (k.models.length ? k.models.join(", ") : "all") },
    { head: "Limits", wrap: true, cell: limitsText },
    { head: "Wallet", num: true, cell: (k) => moneyNode("td", k.balance_nano_usd, { class: "num", "data-testid": "key-balance" }) },
    writer ? { head: "Actions", cell: (k) => keyActions(k, models) } : null,
  ].filter(Boolean);
  return el("div", { class: "card" },
    el("div", { class: "card-head" }, el("h2", {}, admin ? "All keys" : "Your keys")),
    state.keys.length
      ? table("keys-table", columns, state.keys, (k) => ({ "data-testid": "key-row", "data-key": k.name, "data-id": k.id }))
      : el("p", { class: "empty" }, "No keys yet: create one above."));
}

function limitsText(key) {
  const parts = [];
  if (key.rpm) parts.push(key.rpm + " requests/min");
  if (key.tpm) parts.push(key.tpm + " tokens/min");
  if (key.spend_limit_usd) parts.push("$" + key.spend_limit_usd + " " + (PERIODS.find(([v]) => v === key.spend_period) || ["", ""])[1]);
  if (key.allow_ips.length) parts.push("from " + key.allow_ips.join(", "));
  return parts.join(" · ") || "none";
}

function keyActions(key, models) {
  const box = el("div", { class: "actions" });
  if (key.status === "revoked") return box;
  const page = () => box.closest(".page");
  const edit = button("Edit", { class: "small", "data-testid": "edit", "aria-label": "Edit " + key.name }, () => openEditor(key, models));
  const enabled = key.status !== "disabled";
  const toggle = button(enabled ? "Disable" : "Enable", { class: "small", "data-testid": "toggle", "aria-label": (enabled ? "Disable " : "Enable ") + key.name }, async () => {
    try {
      await api("/api/keys/" + encodeURIComponent(key.id), { method: "PATCH", body: { status: enabled ? "disabled" : "active" } });
      await showKeys(page());
    } catch (error) { toggle.textContent = error.message; }
  });
  const revoke = button("Revoke", { class: "small danger", "data-testid": "revoke", "aria-label": "Revoke " + key.name }, async () => {
    if (revoke.dataset.armed !== "yes") { // two clicks: the first only asks
      revoke.dataset.armed = "yes";
      revoke.textContent = "Really revoke?";
      return;
    }
    try {
      await api("/api/keys/" + encodeURIComponent(key.id) + "/revoke", { method: "POST" });
      state.created.delete(key.name);
      await showKeys(page());
    } catch (error) { revoke.textContent = error.message; }
  });
  box.append(edit, toggle, revoke);
  return box;
}

// The editor opens as a card above the table, every limit filled in.
function openEditor(key, models) {
  const holder = $("key-editor");
  const form = el("form", { class: "card form-grid", "data-testid": "edit-form", "data-key": key.name, autocomplete: "off", novalidate: "" },
    el("h3", {}, "Limits of " + key.name), limitFields(models, key),
    el("div", { class: "form-actions" },
      el("button", { type: "submit", class: "primary", "data-testid": "edit-save" }, "Save"),
      button("Cancel", { class: "ghost" }, () => holder.replaceChildren())));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const body = { ...limitBody(form, true), expires_at: endOfDay(form.elements.expires_on.value) };
    try {
      await api("/api/keys/" + encodeURIComponent(key.id), { method: "PATCH", body });
      formStatus(form, "Saved.", false);
      await showKeys(form.closest(".page"));
    } catch (error) { showError(form, error); }
  });
  holder.replaceChildren(form);
  form.scrollIntoView({ block: "nearest" });
  form.elements.rpm.focus();
}

onReset(() => { state.lastCreated = null; });
