// Token Bridge console: sign-in (name + password with a session cookie, or a token as a Bearer header),
// the tabs, sign-out. No build step, no libraries; each page lives in its own module.
import { showCodes, showAccounts, showChannels } from "./admin.js";
import { pricingTable, showOverview, showPricing, showTopup } from "./account.js";
import { $, ApiError, TOKEN_STORE, api, clearErrors, onSignedOut, resetAll, showError, state } from "./core.js";
import { showKeys } from "./keys.js";
import { showPlayground } from "./playground.js";
import { showUsage } from "./usage.js";

const PAGES = {
  overview: showOverview, keys: showKeys, topup: showTopup, usage: showUsage, pricing: showPricing,
  playground: showPlayground, accounts: showAccounts, codes: showCodes, channels: showChannels,
};
const tabs = () => [...document.querySelectorAll(".tab")].filter((tab) => getComputedStyle(tab).display !== "none");

// ---- Signing in ---------------------------------------------------------------------------------

async function enter(auth, token) {
  const me = await api("/api/me", auth === "token" ? { token } : undefined);
  Object.assign(state, { auth, token: auth === "token" ? token : null, role: me.role, account: me.account || null, key: me.key || null });
  if (auth === "token") sessionStorage.setItem(TOKEN_STORE, token);
  const body = document.body.classList;
  body.toggle("role-admin", me.role === "admin");
  body.toggle("role-key", me.role === "key");
  body.toggle("has-account", Boolean(me.account));
  body.toggle("has-wallet", Boolean(me.account || me.key));
  $("role").textContent = me.account ? me.account.name + (me.role === "admin" ? " (admin)" : "")
    : me.role === "key" ? "key " + me.key.name : "admin token";
  $("signin").hidden = true;
  $("app").hidden = false;
  show(me.account || me.key ? "overview" : "keys");
}

function signedOutScreen(message) {
  for (const form of ["signup-form", "token-form"]) $(form).hidden = true;
  $("signin-form").hidden = false;
  $("signin-error").textContent = message || "";
  $("signin").hidden = false;
  $("app").hidden = true;
  $("signin-form").elements.name.focus();
}

// Sign-out forgets everything of the session in this page: state, pages, inputs, storage.
async function signOut(message) {
  if (state.auth === "session") {
    try { await api("/api/session", { method: "DELETE" }); } catch (_) { /* the session is gone already */ }
  }
  resetAll();
  for (const page of document.querySelectorAll(".page")) { page.replaceChildren(); page.hidden = true; }
  document.body.className = "";
  $("role").textContent = "";
  $("page-title").textContent = "";
  signedOutScreen(message);
}
onSignedOut.handler = (message) => signOut(message);

function wire(form, run) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    $("signin-error").textContent = "";
    try {
      await run(form.elements);
      form.reset();
    } catch (error) { showError(form, error); }
  });
}

wire($("signin-form"), async (f) => {
  const name = f.name.value.trim(), password = f.password.value;
  if (!name || !password) throw new ApiError("Enter your name and your password.", 400, null, name ? "password" : "name");
  await api("/api/session", { method: "POST", body: { name, password } });
  await enter("session");
});

wire($("signup-form"), async (f) => {
  const body = { name: f.name.value.trim(), password: f.password.value };
  if (f.invite_code.value.trim()) body.invite_code = f.invite_code.value.trim();
  await api("/api/register", { method: "POST", body });
  await enter("session");
});

wire($("token-form"), async (f) => {
  const token = f.token.value.trim();
  if (!token) throw new ApiError("Paste the token or key first.", 400, null, "token");
  try {
    await enter("token", token);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) throw new ApiError("That token or key is not accepted: check that you pasted all of it, and that the key is still active.", 401, null, "token");
    throw error;
  }
});

function only(id) {
  for (const form of ["signin-form", "signup-form", "token-form"]) $(form).hidden = form !== id;
  $(id).querySelector("input").focus();
}
$("show-signup").addEventListener("click", () => only("signup-form"));
$("show-token").addEventListener("click", () => only("token-form"));
for (const back of document.querySelectorAll("[data-back]")) back.addEventListener("click", () => only("signin-form"));
$("show-prices").addEventListener("click", () => { $("public-pricing").hidden = false; $("public-pricing").scrollIntoView(); });
$("signout").addEventListener("click", () => signOut());

// ---- Tabs: click, or arrow keys / Home / End between them ---------------------------------------

function show(name) {
  state.tab = name;
  for (const tab of document.querySelectorAll(".tab")) {
    const active = tab.dataset.tab === name;
    tab.classList.toggle("active", active);
    tab.setAttribute("aria-selected", String(active));
    tab.tabIndex = active ? 0 : -1;
  }
  const tab = document.querySelector(`.tab[data-tab="${name}"]`);
  $("page-title").textContent = tab.textContent;
  for (const page of document.querySelectorAll(".page")) page.hidden = page.id !== "page-" + name;
  const page = $("page-" + name);
  page.setAttribute("aria-labelledby", tab.id);
  page.dataset.loaded = "no";
  PAGES[name](page).then(() => { page.dataset.loaded = "yes"; }, (error) => {
    if (error instanceof ApiError && error.status === 401) { signOut("Your sign-in has ended: please sign in again."); return; }
    page.dataset.loaded = "error";
    page.prepend(Object.assign(document.createElement("p"), { className: "card error", textContent: error.message }));
  });
}

for (const tab of document.querySelectorAll(".tab")) {
  tab.id = "tab-" + tab.dataset.tab;
  tab.setAttribute("aria-controls", "page-" + tab.dataset.tab);
  tab.addEventListener("click", () => show(tab.dataset.tab));
}
$("tabs").addEventListener("keydown", (event) => {
  const list = tabs();
  const at = list.indexOf(document.activeElement);
  if (at < 0) return;
  const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: list.length - 1 }[event.key];
  if (to === undefined) return;
  event.preventDefault();
  const next = list[(to + list.length) % list.length];
  next.focus();
  show(next.dataset.tab);
});

// ---- Start: a token kept in this tab, else a session cookie, else the sign-in screen -----------

async function start() {
  fetch("/api/pricing", { credentials: "omit", cache: "no-store" }).then(async (response) => {
    if (!response.ok) return;
    $("public-pricing-table").replaceChildren(pricingTable(await response.json()));
    $("show-prices").hidden = false;
  }).catch(() => {});
  $("show-signup").hidden = false;
  const saved = sessionStorage.getItem(TOKEN_STORE);
  try {
    if (saved) await enter("token", saved);
    else await enter("session");
  } catch (_) {
    resetAll();
    signedOutScreen(saved ? "Please sign in again." : "");
  }
}
start();
