// Token Bridge console: vanilla JS, no build step, no libraries.
// Every value from the server reaches the page through textContent or setAttribute, never as HTML.
// The token lives in this tab's sessionStorage and travels only as an Authorization header.
"use strict";

(() => {
  const TOKEN_STORE = "tokenbridge.console.token";
  const SINCE_SECONDS = { "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };
  const NANO = 1000000000n;
  const PALETTE_SIZE = 8;

  const state = {
    token: null, // the signed-in admin token or API key
    role: null, // "admin" | "holder"
    me: null, // the holder's own key object
    tab: "keys",
    by: "model",
    keys: [],
    created: new Map(), // key name -> secret, for keys created in this page's life (never stored)
    colours: new Map(), // series name -> palette index, shared by both charts
    playing: null, // AbortController of the running playground stream
  };

  const $ = (id) => document.getElementById(id);

  // el("td", {class: "num", "data-testid": "x"}, "text", childNode, ...): text children become text nodes.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined && value !== false) node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  let toastTimer = null;
  function toast(message, bad) {
    const box = $("toast");
    box.textContent = message;
    box.classList.toggle("bad", Boolean(bad));
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, bad ? 6000 : 3500);
  }

  // ---- HTTP -------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(message, status, code) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, options) {
    const { method = "GET", body, token = state.token } = options || {};
    const headers = { Authorization: "Bearer " + token };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
    });
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (!response.ok) {
      const error = data && data.error ? data.error : {};
      throw new ApiError(error.message || "HTTP " + response.status, response.status, error.code);
    }
    return data;
  }

  function query(params) {
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) if (value) search.set(name, value);
    const text = search.toString();
    return text ? "?" + text : "";
  }

  // A failure while signed in: a token that stopped working signs out; anything else is a toast.
  function failed(error) {
    if (error instanceof ApiError && error.status === 401) {
      signOut("Your token is no longer accepted: " + error.message);
      return;
    }
    toast(error.message || String(error), true);
  }

  // ---- Formatting -------------------------------------------------------------------------------

  const int = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
  const ms = (n) => Number(n).toFixed(n < 10 ? 1 : 0) + " ms";
  const usd = (text) => (text === null || text === undefined ? "–" : "$" + text);

  // Exact nano-USD (BigInt) -> "1.50", "0.000012345", as the server's format_usd writes it.
  function nanoToUsd(nano) {
    const sign = nano < 0n ? "-" : "";
    const abs = nano < 0n ? -nano : nano;
    const frac = (abs % NANO).toString().padStart(9, "0").replace(/0+$/, "").padEnd(2, "0");
    return sign + (abs / NANO).toString() + "." + frac;
  }

  function when(value) {
    if (value === null || value === undefined || value === "") return "–";
    const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    if (Number.isNaN(date.getTime())) return String(value);
    return date.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function pill(text, kind) {
    return el("span", { class: "pill " + (kind || "") }, text);
  }

  const statusKind = { active: "ok", revoked: "bad", expired: "warn", closed: "ok", open: "bad", half_open: "warn" };

  // ---- Sign-in ----------------------------------------------------------------------------------
  // /api/me answers "admin" for the admin token and "key" (with the key) for a key's own secret.

  async function signIn(token) {
    const me = await api("/api/me", { token });
    state.token = token;
    state.role = me.role === "admin" ? "admin" : "holder";
    state.me = me.key || null;
    sessionStorage.setItem(TOKEN_STORE, token);
    document.body.classList.toggle("role-holder", state.role === "holder");
    $("role").textContent = state.role === "admin" ? "admin" : "key " + (state.me ? state.me.name : "holder");
    $("signin").hidden = true;
    $("app").hidden = false;
    show(state.tab);
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_STORE);
    if (state.playing) state.playing.abort();
    Object.assign(state, { token: null, role: null, me: null, keys: [], tab: "keys", by: "model" });
    state.created.clear();
    state.colours.clear();
    for (const id of ["keys-body", "usage-body", "channels-grid", "chart-spend", "chart-tokens", "chart-legend", "play-output", "play-usage", "reveal-secret"]) {
      $(id).replaceChildren();
    }
    $("reveal").hidden = true;
    $("app").hidden = true;
    $("signin").hidden = false;
    $("signin-error").textContent = message || "";
    $("signin-token").value = "";
    $("signin-token").focus();
  }

  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("signin-token");
    const token = input.value.trim();
    $("signin-error").textContent = "";
    try {
      await signIn(token);
      input.value = "";
    } catch (error) {
      $("signin-error").textContent = error.status === 401
        ? "That token is not accepted (is `admin_token` set in config.toml, or is the key active?)."
        : error.message;
    }
  });
  $("signout").addEventListener("click", () => signOut());

  // ---- Tabs -------------------------------------------------------------------------------------

  const loaders = { keys: loadKeys, usage: loadUsage, channels: loadChannels, playground: loadPlayground };

  function show(tab) {
    if (tab === "channels" && state.role !== "admin") tab = "keys";
    state.tab = tab;
    for (const button of document.querySelectorAll(".tab")) {
      const active = button.dataset.tab === tab;
      button.classList.toggle("active", active);
      button.setAttribute("aria-selected", String(active));
    }
    for (const page of document.querySelectorAll(".page")) page.hidden = page.id !== "page-" + tab;
    loaders[tab]().catch(failed);
  }

  for (const button of document.querySelectorAll(".tab")) button.addEventListener("click", () => show(button.dataset.tab));
  for (const button of document.querySelectorAll("[data-refresh]")) {
    button.addEventListener("click", () => loaders[button.dataset.refresh]().catch(failed));
  }

  // ---- Keys -------------------------------------------------------------------------------------

  async function loadKeys() {
    const [list, me] = await Promise.all([api("/api/keys"), state.role === "holder" ? api("/v1/me") : null]);
    state.keys = list.data;
    renderKeys();
    if (me) { // a holder's own figures, from the self-service route
      $("me-balance").textContent = usd(me.balance_usd);
      $("me-spent").textContent = usd(me.spent_usd);
      $("me-held").textContent = usd(me.held_usd);
    }
  }

  function renderKeys() {
    const body = $("keys-body");
    body.replaceChildren(...state.keys.map(keyRow));
    $("keys-empty").hidden = state.keys.length > 0;
    $("key-names").replaceChildren(...state.keys.map((k) => el("option", { value: k.name })));
  }

  function keyRow(key) {
    const limits = [key.rpm ? key.rpm + " rpm" : null, key.tpm ? key.tpm + " tpm" : null].filter(Boolean).join(", ");
    const row = el("tr", { "data-testid": "key-row", "data-key": key.name },
      el("td", {}, el("strong", {}, key.name)),
      el("td", { class: "mono" }, key.prefix + "…"),
      el("td", {}, key.group),
      el("td", { class: "num", "data-testid": "key-balance" }, usd(key.balance_usd)),
      el("td", {}, pill(key.status, statusKind[key.status])),
      el("td", {}, key.expires_at ? when(key.expires_at) : "never"),
      el("td", {}, key.models && key.models.length ? key.models.join(", ") : "all"),
      el("td", {}, limits || "none"),
      el("td", {}, when(key.created_at)),
    );
    if (state.role === "admin") row.append(el("td", { class: "admin-only" }, keyActions(key)));
    return row;
  }

  function keyActions(key) {
    const box = el("div", { class: "actions" });
    if (key.status === "revoked") return box;
    const amount = el("input", { "data-testid": "credit-amount", placeholder: "USD", inputmode: "decimal", "aria-label": "Credit amount for " + key.name });
    const credit = el("button", { type: "button", class: "small", "data-testid": "credit-submit" }, "Credit");
    credit.addEventListener("click", async () => {
      const value = amount.value.trim();
      if (!value) { amount.focus(); return; }
      credit.disabled = true;
      try {
        // The wallet is the key's account's (every key of an account spends from it).
        const done = await api("/api/accounts/" + encodeURIComponent(key.account) + "/credit", { method: "POST", body: { amount_usd: value } });
        toast("Credited " + usd(done.amount_usd) + " to " + done.name + ": balance " + usd(done.balance_usd));
        await loadKeys();
      } catch (error) {
        failed(error);
        credit.disabled = false;
      }
    });
    const revoke = el("button", { type: "button", class: "small danger", "data-testid": "revoke" }, "Revoke");
    revoke.addEventListener("click", async () => {
      if (revoke.dataset.armed !== "yes") { // two clicks: the first only asks
        revoke.dataset.armed = "yes";
        revoke.textContent = "Really revoke?";
        return;
      }
      try {
        await api("/api/keys/" + encodeURIComponent(key.id) + "/revoke", { method: "POST" });
        toast("Revoked " + key.name + ": it stopped working at once.");
        state.created.delete(key.name);
        await loadKeys();
      } catch (error) { failed(error); }
    });
    box.append(amount, credit, revoke);
    return box;
  }

  $("create-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const field = (name) => form.elements[name].value.trim();
    const body = { name: field("name") };
    if (field("credit_usd")) body.credit_usd = field("credit_usd");
    if (field("group")) body.group = field("group");
    if (field("models")) body.models = field("models").split(",").map((m) => m.trim()).filter(Boolean);
    if (field("expires_in")) body.expires_in = field("expires_in");
    try {
      const key = await api("/api/keys", { method: "POST", body });
      state.created.set(key.name, key.key);
      $("reveal-name").textContent = key.name;
      $("reveal-secret").textContent = key.key;
      $("reveal").hidden = false;
      form.reset();
      await loadKeys();
    } catch (error) { failed(error); }
  });

  function closeReveal() {
    $("reveal-secret").textContent = "";
    $("reveal-name").textContent = "";
    $("reveal").hidden = true;
  }
  $("reveal-done").addEventListener("click", closeReveal);
  $("reveal-copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($("reveal-secret").textContent);
      toast("Copied to the clipboard.");
    } catch (_) {
      toast("Copy failed: select the key and copy it by hand.", true);
    }
  });

  // ---- Usage ------------------------------------------------------------------------------------

  function usageFilters() {
    const form = $("usage-filters");
    return {
      key: state.role === "admin" ? form.elements.key.value.trim() : "",
      model: form.elements.model.value.trim(),
      since: form.elements.since.value,
    };
  }

  async function loadUsage() {
    const filters = usageFilters();
    const bucket = SINCE_SECONDS[filters.since] > 2 * 86400 ? "day" : "hour";
    const [rows, series] = await Promise.all([
      api("/api/usage" + query({ ...filters, limit: "200" })),
      api("/api/usage/series" + query({ ...filters, bucket, by: state.by })),
    ]);
    renderUsageRows(rows.data);
    renderSeries(series.data, bucket, filters.since);
    for (const button of document.querySelectorAll(".seg")) button.classList.toggle("active", button.dataset.by === state.by);
  }

  function renderUsageRows(rows) {
    $("usage-body").replaceChildren(...rows.map((r) => el("tr", { "data-testid": "usage-row", "data-request-id": r.request_id },
      el("td", { title: r.time }, when(r.time)),
      el("td", {}, r.key),
      el("td", {}, r.model),
      el("td", {}, r.channel || "–"),
      el("td", {}, pill(String(r.status), r.status < 400 ? "ok" : "bad")),
      el("td", { class: "num" }, int(r.prompt_tokens)),
      el("td", { class: "num" }, int(r.completion_tokens)),
      el("td", { class: "num", "data-testid": "usage-cost" }, usd(r.cost_usd)),
      el("td", { class: "num" }, r.latency_ms === null || r.latency_ms === undefined ? "–" : ms(r.latency_ms)),
      el("td", {}, r.end_reason + (r.usage_source === "estimated" ? " (est.)" : "")),
    )));
    $("usage-empty").hidden = rows.length > 0;
  }

  function renderSeries(data, bucket, since) {
    const by = state.by;
    let requests = 0, prompt = 0, completion = 0, spend = 0n;
    for (const point of data) {
      requests += point.requests;
      prompt += point.prompt_tokens;
      completion += point.completion_tokens;
      spend += BigInt(point.cost_nano_usd);
    }
    $("tile-requests").textContent = int(requests);
    $("tile-tokens").textContent = int(prompt) + " / " + int(completion);
    $("tile-spend").textContent = "$" + nanoToUsd(spend);

    const step = bucket === "day" ? 86400 : 3600;
    const slots = timeSlots(data, step, SINCE_SECONDS[since]);
    const names = seriesNames(data, by);
    drawStacked($("chart-spend"), { data, by, slots, names, step, value: (p) => Number(p.cost_nano_usd), label: (v) => "$" + nanoToUsd(BigInt(Math.round(v))) });
    drawStacked($("chart-tokens"), { data, by, slots, names, step, value: (p) => p.prompt_tokens + p.completion_tokens, label: int });
    $("chart-legend").replaceChildren(...names.map((name) => el("span", { class: "legend-item", "data-series": name },
      el("span", { class: "swatch s" + colour(name) }), name || "(none)")));
  }

  // The bucket starts from `since` ago up to now, plus any the server sent off that grid.
  function timeSlots(data, step, sinceSeconds) {
    const now = Math.floor(Date.now() / 1000);
    const slots = new Set();
    for (let t = Math.floor((now - sinceSeconds) / step) * step; t <= now; t += step) slots.add(t);
    const onGrid = data.every((p) => p.t % step === 0);
    if (!onGrid) slots.clear();
    for (const point of data) slots.add(point.t);
    return [...slots].sort((a, b) => a - b);
  }

  function seriesNames(data, by) {
    const totals = new Map();
    for (const point of data) totals.set(point[by], (totals.get(point[by]) || 0) + Number(point.cost_nano_usd) + point.prompt_tokens + point.completion_tokens);
    const names = [...totals.keys()].sort((a, b) => totals.get(b) - totals.get(a) || String(a).localeCompare(String(b)));
    for (const name of names) colour(name);
    return names;
  }

  function colour(name) {
    if (!state.colours.has(name)) state.colours.set(name, state.colours.size % PALETTE_SIZE);
    return state.colours.get(name);
  }

  // Stacked bars: one column per time bucket, one segment per series; an empty chart says so.
  function drawStacked(box, { data, by, slots, names, step, value, label }) {
    const W = 640, H = 240, right = 28, top = 12, bottom = 26;
    const cells = new Map(); // "t|name" -> value
    const stacks = new Map(); // t -> stacked total
    for (const point of data) {
      const v = value(point);
      cells.set(point.t + "|" + point[by], (cells.get(point.t + "|" + point[by]) || 0) + v);
      stacks.set(point.t, (stacks.get(point.t) || 0) + v);
    }
    const max = niceMax(Math.max(0, ...stacks.values()));
    const ticks = [0, 0.25, 0.5, 0.75, 1].map((fraction) => [fraction, max ? label(max * fraction) : ""]);
    const left = 14 + 6 * Math.max(...ticks.map(([, text]) => text.length)); // room for the widest y label
    const plotW = W - left - right, plotH = H - top - bottom;
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": box.id });
    for (const [fraction, text] of ticks) {
      const y = top + plotH - fraction * plotH;
      chart.append(svg("line", { class: "grid-line", x1: left, x2: W - right, y1: y, y2: y }));
      chart.append(svg("text", { class: "axis-label", x: left - 6, y: y + 3, "text-anchor": "end" }, text));
    }
    const slotW = plotW / Math.max(slots.length, 1);
    const barW = Math.max(2, Math.min(36, slotW * 0.7));
    const labelEvery = Math.max(1, Math.ceil(slots.length / 8));
    let bars = 0, total = 0;
    slots.forEach((t, i) => {
      const x = left + i * slotW + (slotW - barW) / 2;
      let y = top + plotH;
      for (const name of names) {
        const v = cells.get(t + "|" + name) || 0;
        if (!v) continue;
        const h = Math.max(1, (v / max) * plotH);
        y -= h;
        const bar = svg("rect", { class: "bar s" + colour(name), x: x.toFixed(1), y: y.toFixed(1), width: barW.toFixed(1), height: h.toFixed(1), rx: 2, "data-series": name, "data-t": t, "data-value": v });
        bar.append(svg("title", {}, `${name} · ${slotLabel(t, step, true)} · ${label(v)}`));
        chart.append(bar);
        bars += 1;
        total += v;
      }
      if (i % labelEvery === 0) {
        chart.append(svg("text", { class: "axis-label", x: (left + i * slotW + slotW / 2).toFixed(1), y: H - 8, "text-anchor": "middle" }, slotLabel(t, step, false)));
      }
    });
    if (!bars) chart.append(svg("text", { class: "no-data", x: left + plotW / 2, y: top + plotH / 2, "text-anchor": "middle" }, "No usage in this window yet"));
    box.dataset.bars = String(bars);
    box.dataset.total = String(total);
    box.dataset.buckets = String(slots.length);
    box.replaceChildren(chart);
  }

  function niceMax(value) {
    if (value <= 0) return 0;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= value) return m * power;
    return 10 * power;
  }

  function slotLabel(t, step, long) {
    const date = new Date(t * 1000);
    if (step >= 86400) return date.toLocaleDateString(undefined, { month: "short", day: "numeric" });
    const hour = date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
    return long ? date.toLocaleDateString(undefined, { month: "short", day: "numeric" }) + " " + hour : hour;
  }

  $("usage-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    loadUsage().catch(failed);
  });
  for (const button of document.querySelectorAll(".seg")) {
    button.addEventListener("click", () => {
      state.by = button.dataset.by;
      loadUsage().catch(failed);
    });
  }

  // ---- Channels ---------------------------------------------------------------------------------

  async function loadChannels() {
    const list = await api("/api/channels");
    $("channels-grid").replaceChildren(...list.data.map(channelCard));
  }

  function channelCard(channel) {
    const circuits = channel.circuits || [];
    const worst = circuits.some((c) => c.state === "open") ? "bad" : circuits.some((c) => c.state === "half_open") ? "warn" : "";
    const byModel = new Map(circuits.map((c) => [c.model, c]));
    const rows = channel.models.map((model) => {
      const circuit = byModel.get(model) || { state: "closed" };
      const note = circuit.state === "closed" ? "" : [circuit.reason, circuit.retry_in_s ? "retry in " + Math.ceil(circuit.retry_in_s) + " s" : ""].filter(Boolean).join(" · ");
      return el("div", { class: "circuit", "data-testid": "circuit", "data-model": model, "data-state": circuit.state },
        el("span", { class: "mono" }, model),
        el("span", {}, note ? el("span", { class: "muted small" }, note + " ") : null, pill(circuit.state.replace("_", "-"), statusKind[circuit.state])));
    });
    return el("div", { class: "card channel", "data-testid": "channel-card", "data-channel": channel.name },
      el("h3", {}, el("span", { class: "dot " + worst }), channel.name, el("span", { class: "pill" }, channel.kind)),
      el("div", { class: "meta" }, [channel.display_url, "priority " + channel.priority, "weight " + channel.weight].filter(Boolean).join(" · ")),
      el("div", { class: "circuits" }, ...rows));
  }

  // ---- Playground -------------------------------------------------------------------------------

  // Option values name where the secret is; the secret itself never goes into the DOM.
  function playSecret() {
    const choice = $("play-key").value;
    if (choice === "self") return state.token;
    if (choice.startsWith("created:")) return state.created.get(choice.slice(8)) || "";
    return $("play-secret").value.trim();
  }

  async function loadPlayground() {
    const select = $("play-key");
    const before = select.value;
    const options = [];
    if (state.role === "holder") options.push(el("option", { value: "self" }, "my key (" + (state.me ? state.me.name : "signed in") + ")"));
    for (const name of [...state.created.keys()].reverse()) options.push(el("option", { value: "created:" + name }, name + " (created just now)"));
    options.push(el("option", { value: "paste" }, "paste a key secret…"));
    select.replaceChildren(...options);
    if ([...select.options].some((o) => o.value === before)) select.value = before;
    keyChanged();
  }

  function keyChanged() {
    $("play-paste-label").hidden = $("play-key").value !== "paste";
    if (playSecret()) loadModels().catch((error) => { $("play-status").textContent = error.message; });
  }

  async function loadModels() {
    const list = await api("/v1/models", { token: playSecret() });
    const select = $("play-model");
    const before = select.value;
    select.replaceChildren(...list.data.map((m) => el("option", { value: m.id }, m.id)));
    if ([...select.options].some((o) => o.value === before)) select.value = before;
    $("play-status").textContent = list.data.length ? "" : "This key may use no model.";
  }

  $("play-key").addEventListener("change", keyChanged);
  $("play-load-models").addEventListener("click", () => loadModels().catch((error) => { $("play-status").textContent = error.message; }));
  $("play-stop").addEventListener("click", () => { if (state.playing) state.playing.abort(); });

  $("play-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const secret = playSecret();
    const model = $("play-model").value;
    const message = $("play-message").value;
    if (!secret || !model) {
      $("play-status").textContent = !secret ? "Choose a key first." : "Load the models and choose one.";
      return;
    }
    const output = $("play-output"), status = $("play-status");
    output.replaceChildren();
    $("play-usage").textContent = "";
    output.classList.add("streaming");
    $("play-send").disabled = true;
    $("play-stop").disabled = false;
    state.playing = new AbortController();
    status.textContent = "Waiting for the first token…";
    try {
      const response = await fetch("/v1/chat/completions", {
        method: "POST",
        headers: { Authorization: "Bearer " + secret, "Content-Type": "application/json" },
        body: JSON.stringify({ model, messages: [{ role: "user", content: message }], stream: true, stream_options: { include_usage: true } }),
        signal: state.playing.signal, cache: "no-store", credentials: "omit",
      });
      if (!response.ok) {
        let data = null;
        try { data = await response.json(); } catch (_) { data = null; }
        throw new Error(data && data.error ? data.error.message : "HTTP " + response.status);
      }
      const usage = await readStream(response.body, (text) => {
        status.textContent = "Streaming…";
        output.append(document.createTextNode(text));
      });
      status.textContent = "Done.";
      await showUsage(usage, response.headers.get("x-request-id"));
    } catch (error) {
      status.textContent = error.name === "AbortError" ? "Stopped." : "Error: " + error.message;
    } finally {
      output.classList.remove("streaming");
      $("play-send").disabled = false;
      $("play-stop").disabled = true;
      state.playing = null;
    }
  });

  // Incremental SSE: bytes in, events out as soon as their blank line arrives; text deltas go to onText.
  async function readStream(body, onText) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "", usage = null, done = false;
    const handle = (event) => {
      const data = event.split(/\r?\n/).filter((line) => line.startsWith("data:")).map((line) => line.slice(5).replace(/^ /, "")).join("\n");
      if (!data) return;
      if (data === "[DONE]") { done = true; return; }
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message || "the stream broke");
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices || []) {
        const text = choice.delta && choice.delta.content;
        if (text) onText(text);
      }
    };
    for (;;) {
      const { value, done: ended } = await reader.read();
      buffer += decoder.decode(value || new Uint8Array(), { stream: !ended });
      let cut;
      while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
        handle(event);
      }
      if (ended) break;
    }
    if (buffer.trim()) handle(buffer);
    if (!done) throw new Error("the stream ended before [DONE]");
    return usage;
  }

  // Tokens from the stream's usage chunk; the cost from the usage row that has the request's id.
  async function showUsage(usage, requestId) {
    const parts = [];
    if (usage) parts.push(int(usage.prompt_tokens) + " prompt + " + int(usage.completion_tokens) + " completion tokens");
    $("play-usage").textContent = parts.join(" · ");
    if (!requestId) return;
    try {
      const rows = await api("/api/usage" + query({ limit: "50", since: "1h" }));
      const row = rows.data.find((r) => r.request_id === requestId);
      if (row) parts.push("cost " + usd(row.cost_usd));
    } catch (_) { /* another key's row is not ours to read: tokens alone then */ }
    $("play-usage").textContent = parts.join(" · ");
    $("play-usage").dataset.requestId = requestId;
  }

  // ---- Start ------------------------------------------------------------------------------------

  const saved = sessionStorage.getItem(TOKEN_STORE);
  if (saved) {
    signIn(saved).catch(() => signOut("Please sign in again."));
  } else {
    $("signin-token").focus();
  }
})();
