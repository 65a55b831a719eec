// Token Bridge console, the shared part: page state, DOM helpers, the HTTP client, money and time formats.
// Every value from the server reaches the page through textContent or setAttribute, never as HTML.

export const NANO = 1000000000n;
export const SINCE_SECONDS = { "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };
export const TOKEN_STORE = "tokenbridge.console.token";

// Everything the signed-in person's page knows. fresh() is also what sign-out goes back to.
function fresh() {
  return {
    auth: null, // "session" (cookie, name + password) | "token" (the admin token or a key, as a Bearer header)
    token: null, // the Bearer token when auth is "token" (never with a session)
    role: null, // "admin" | "member" | "key"
    account: null, // the signed-in account (balance, group, ...), or null
    key: null, // the key signed in with its own secret, or null
    tab: null,
    keys: [],
    models: [], // the served models (pricing list), for checkboxes and filters
    created: new Map(), // key name -> secret, for keys created in this page's life (never stored)
    colours: new Map(), // series name -> colour index, shared by every chart
  };
}
export const state = fresh();
const resetters = [];

export function onReset(fn) { resetters.push(fn); }

// Sign-out: every module forgets its own part, every form is reset, every list emptied.
export function resetAll() {
  sessionStorage.clear();
  Object.assign(state, fresh());
  for (const fn of resetters) fn();
  for (const form of document.querySelectorAll("form")) form.reset();
  for (const node of document.querySelectorAll("[data-clear]")) node.replaceChildren();
  for (const node of document.querySelectorAll(".field-error, .form-status")) node.textContent = "";
}

export const $ = (id) => document.getElementById(id);

// el("td", {class: "num"}, "text", childNode, ...): text children become text nodes.
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function svg(tag, attrs, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

export function button(text, attrs, onClick) {
  const node = el("button", { type: "button", ...attrs }, text);
  if (onClick) node.addEventListener("click", onClick);
  return node;
}

// ---- HTTP ---------------------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(message, status, code, param) {
    super(message);
    Object.assign(this, { status, code, param });
  }
}

// A session rides on its cookie (same origin); a token on the Authorization header. `token` overrides
// both (the Playground calls /v1/* with a key's secret and no cookie).
export async function request(path, options) {
  const { method = "GET", body, token, signal } = options || {};
  const bearer = token || (state.auth === "token" ? state.token : null);
  const headers = {};
  if (bearer) headers.Authorization = "Bearer " + bearer;
  // Every write is JSON (a session's write must be: the API refuses others to protect the cookie).
  const sent = body === undefined && method !== "GET" ? {} : body;
  if (sent !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: sent === undefined ? undefined : JSON.stringify(sent),
    cache: "no-store", credentials: bearer ? "omit" : "same-origin", referrerPolicy: "no-referrer", signal,
  });
  if (!response.ok) {
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    const error = (data && data.error) || {};
    throw new ApiError(error.message || plainStatus(response.status), response.status, error.code, error.param);
  }
  return response;
}

export async function api(path, options) {
  const response = await request(path, options);
  return response.status === 204 ? null : response.json();
}

function plainStatus(status) {
  if (status === 429) return "Too many tries: wait a little and try again.";
  if (status >= 500) return "The gateway could not answer just now: try again in a moment.";
  return "The request was refused (HTTP " + status + ").";
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value) search.set(name, value);
  const text = search.toString();
  return text ? "?" + text : "";
}

// ---- Errors next to what caused them ------------------------------------------------------------

// An error from a form's request goes under the field it names (`param`), else under the form.
export function showError(form, error) {
  clearErrors(form);
  if (error instanceof ApiError && error.status === 401 && state.role && onSignedOut.handler) {
    onSignedOut.handler("Your sign-in has ended: please sign in again.");
    return;
  }
  const message = error.message || String(error);
  const name = error.param && (FIELD_ALIASES[error.param] || error.param);
  const field = name && form.querySelector(`[name="${CSS.escape(name)}"]`);
  const holder = field && (field.closest("fieldset") || field.closest("label"));
  const box = holder && holder.querySelector(".field-error");
  if (box) {
    box.textContent = message;
    field.setAttribute("aria-invalid", "true");
    field.focus();
  } else {
    formStatus(form, message, true);
  }
}

export const onSignedOut = { handler: null };
const FIELD_ALIASES = { expires_in: "expires_on", expires_at: "expires_on" }; // API name -> the form's

export function clearErrors(form) {
  for (const box of form.querySelectorAll(".field-error")) box.textContent = "";
  for (const field of form.querySelectorAll("[aria-invalid]")) field.removeAttribute("aria-invalid");
  formStatus(form, "", false);
}

export function formStatus(form, message, bad) {
  let box = form.querySelector(":scope > .form-status");
  if (!box) {
    box = el("p", { class: "form-status", role: "status", "data-testid": "form-status" });
    form.append(box);
  }
  box.textContent = message;
  box.classList.toggle("bad", Boolean(bad));
}

// A labelled input with room for its own error: field("Name", {name: "name", ...}).
export function field(label, attrs, control) {
  const input = control || el("input", attrs);
  return el("label", {}, el("span", { class: "label-text" }, label), input, el("span", { class: "field-error", role: "alert" }));
}

// ---- Formats ------------------------------------------------------------------------------------

export const int = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
export const ms = (n) => (n === null || n === undefined ? "–" : Number(n).toFixed(n < 10 ? 1 : 0) + " ms");

// Exact nano-USD (BigInt) -> "1.50", "0.000012345", as the server writes it.
export function nanoToUsd(nano) {
  const sign = nano < 0n ? "-" : "";
  const abs = nano < 0n ? -nano : nano;
  const frac = (abs % NANO).toString().padStart(9, "0").replace(/0+$/, "").padEnd(2, "0");
  return sign + (abs / NANO).toString() + "." + frac;
}

// Money for the eye: cents from a dollar up, 4 decimals from a cent, 6 below (the exact figure is in
// the title and in data-nano); an amount under a millionth of a dollar says so.
export function money(nano) {
  if (nano === null || nano === undefined) return "–";
  const value = BigInt(nano);
  const abs = value < 0n ? -value : value;
  const sign = value < 0n ? "-" : "";
  if (abs > 0n && abs < 500n) return sign + "<$0.000001";
  const places = abs >= NANO ? 2 : abs >= 10000000n ? 4 : 6;
  const unit = 10n ** BigInt(9 - places);
  const rounded = (abs + unit / 2n) / unit; // half up, in units of 10^-places dollars
  const scale = 10n ** BigInt(places);
  const frac = (rounded % scale).toString().padStart(places, "0").replace(/0+$/, "").padEnd(2, "0");
  const grouped = (rounded / scale).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return sign + "$" + grouped + "." + frac;
}

// A money cell: rounded text, the exact amount in the title and in data-nano (what tests compare).
export function moneyNode(tag, nano, attrs) {
  const exact = nano === null || nano === undefined ? "" : "$" + nanoToUsd(BigInt(nano));
  return el(tag, { ...attrs, title: exact || null, "data-nano": nano === null || nano === undefined ? null : String(nano) }, money(nano));
}

export function setMoney(node, nano) {
  node.textContent = money(nano);
  node.title = nano === null || nano === undefined ? "" : "$" + nanoToUsd(BigInt(nano));
  node.dataset.nano = nano === null || nano === undefined ? "" : String(nano);
}

export function when(value) {
  if (value === null || value === undefined || value === "") return "–";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString("en-GB", { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

export function day(value) {
  if (value === null || value === undefined) return "never";
  return new Date(value * 1000).toISOString().slice(0, 10);
}

export function pill(text, kind) {
  return el("span", { class: "pill " + (kind || "") }, text);
}

export const statusKind = { active: "ok", unused: "ok", revoked: "bad", disabled: "bad", expired: "warn", used: "" };

// A table that fits its card: columns [{head, cell(row) -> node|text, num?, wrap?}]; only `wrap`
// columns (free text) break lines, and a phone shows each row as a card (console.css).
export function table(testid, columns, rows, rowAttrs) {
  const head = el("tr", {}, columns.map((c) => el("th", { scope: "col", class: c.num ? "num" : null }, c.head)));
  const body = rows.map((row) => el("tr", rowAttrs ? rowAttrs(row) : {}, columns.map((c) => {
    const value = c.cell(row);
    const cell = value instanceof Node && value.tagName === "TD" ? value : el("td", { class: c.num ? "num" : c.wrap ? "wrap" : null }, value);
    if (c.head) cell.dataset.label = c.head; // a phone shows each row as a card, its cells labelled
    return cell;
  })));
  return el("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": testid.replace(/-/g, " ") },
    el("table", { "data-testid": testid }, el("thead", {}, head), el("tbody", {}, body)));
}

// Download text as a file, without a round trip through a URL that holds credentials.
export function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type: type || "text/csv" }));
  const link = el("a", { href: url, download: name, hidden: "" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 0);
}

export async function copyText(text, status) {
  try {
    await navigator.clipboard.writeText(text);
    status.textContent = "Copied.";
  } catch (_) {
    status.textContent = "Copy did not work here: select the text and copy it by hand.";
  }
}

// The models the signed-in caller may use, loaded once per sign-in.
export async function servedModels() {
  if (!state.models.length) state.models = (await api("/api/models")).data.map((m) => m.id);
  return state.models;
}
