// Playground: a conversation with a model through /v1/chat/completions, with a key's secret (one made
// in this page's life, the key signed in with, or one pasted). System prompt, max_tokens (small by
// default, so a small balance can try it), temperature, streaming; each answer's tokens and cost.
import { $, api, button, el, field, int, money, onReset, query, request, state } from "./core.js";

export const DEFAULT_MAX_TOKENS = 256;
const talk = { messages: [], playing: null };
onReset(() => {
  if (talk.playing) talk.playing.abort();
  Object.assign(talk, { messages: [], playing: null });
});

// Option values name where the secret is; the secret itself never goes into the DOM.
function secret() {
  const choice = $("play-key").value;
  if (choice === "self") return state.token;
  if (choice.startsWith("created:")) return state.created.get(choice.slice(8)) || "";
  return $("play-secret").value.trim();
}

export async function showPlayground(page) {
  if (page.childElementCount) return; // built once per sign-in: the conversation survives a tab switch
  const options = [];
  if (state.role === "key") options.push(el("option", { value: "self" }, "the key you signed in with (" + state.key.name + ")"));
  for (const name of [...state.created.keys()].reverse()) options.push(el("option", { value: "created:" + name }, name + " (made just now)"));
  options.push(el("option", { value: "paste" }, "paste a key…"));
  const form = el("form", { class: "card play", "data-testid": "play-form", autocomplete: "off", novalidate: "" },
    el("div", { class: "form-row" },
      field("Key", {}, el("select", { id: "play-key", name: "key", "data-testid": "play-key" }, options)),
      el("label", { id: "play-paste-label" }, el("span", { class: "label-text" }, "Key"),
        el("input", { id: "play-secret", name: "secret", "data-testid": "play-secret", type: "password", spellcheck: "false", placeholder: "sk-tb-…" }),
        el("span", { class: "field-error", role: "alert" })),
      field("Model", {}, el("select", { id: "play-model", name: "model", "data-testid": "play-model" })),
      field("Most tokens in the answer", { id: "play-max", name: "max_tokens", "data-testid": "play-max-tokens", inputmode: "numeric", value: String(DEFAULT_MAX_TOKENS) }),
      field("Temperature", { id: "play-temperature", name: "temperature", "data-testid": "play-temperature", inputmode: "decimal", placeholder: "model default" }),
      el("label", { class: "check" }, el("input", { type: "checkbox", id: "play-stream", "data-testid": "play-stream", checked: "" }), "Stream the answer")),
    el("label", { class: "block" }, el("span", { class: "label-text" }, "System prompt"),
      el("textarea", { id: "play-system", name: "system", "data-testid": "play-system", rows: "2", placeholder: "You are a helpful assistant." })),
    el("div", { id: "play-log", class: "play-log", "data-testid": "play-log", "aria-live": "polite" }),
    el("label", { class: "block" }, el("span", { class: "label-text" }, "Message"),
      el("textarea", { id: "play-message", name: "message", "data-testid": "play-message", rows: "3", placeholder: "Say something…" })),
    el("div", { class: "form-row" },
      el("button", { type: "submit", class: "primary", id: "play-send", "data-testid": "play-send" }, "Send"),
      button("Stop", { class: "ghost", id: "play-stop", "data-testid": "play-stop", disabled: "" }, () => talk.playing && talk.playing.abort()),
      button("New conversation", { class: "ghost", "data-testid": "play-new" }, () => { talk.messages = []; $("play-log").replaceChildren(); }),
      el("span", { id: "play-status", class: "muted", role: "status", "data-testid": "play-status" })),
    el("p", { id: "play-usage", class: "muted", "data-testid": "play-usage" }));
  page.replaceChildren(form);
  $("play-key").addEventListener("change", keyChanged);
  $("play-secret").addEventListener("change", keyChanged);
  form.addEventListener("submit", (event) => { event.preventDefault(); send(); });
  keyChanged();
}

function keyChanged() {
  $("play-paste-label").hidden = $("play-key").value !== "paste";
  if (secret()) loadModels().catch((error) => { $("play-status").textContent = error.message; });
}

async function loadModels() {
  const list = await api("/v1/models", { token: secret() });
  const select = $("play-model");
  const before = select.value;
  select.replaceChildren(...list.data.map((m) => el("option", { value: m.id }, m.id)));
  if ([...select.options].some((o) => o.value === before)) select.value = before;
  $("play-status").textContent = list.data.length ? "" : "This key may use no model.";
}

function bubble(role, text) {
  const body = el("div", { class: "bubble-text" }, text || null);
  $("play-log").append(el("div", { class: "bubble " + role, "data-testid": "play-" + role }, el("span", { class: "who-said" }, role === "user" ? "You" : "Model"), body));
  return body;
}

async function send() {
  const key = secret(), model = $("play-model").value, text = $("play-message").value.trim();
  const status = $("play-status");
  if (!key) { status.textContent = "Choose a key first (or paste one)."; return; }
  if (!model) { status.textContent = "Choose a model."; return; }
  if (!text) { status.textContent = "Write a message first."; return; }
  const max = Number($("play-max").value.trim() || DEFAULT_MAX_TOKENS);
  const temperature = $("play-temperature").value.trim();
  const stream = $("play-stream").checked;
  const system = $("play-system").value.trim();
  const messages = [...(system ? [{ role: "system", content: system }] : []), ...talk.messages, { role: "user", content: text }];
  const body = { model, messages, max_tokens: max, stream };
  if (temperature) body.temperature = Number(temperature);
  if (stream) body.stream_options = { include_usage: true };
  bubble("user", text);
  const output = bubble("assistant", "");
  output.classList.add("streaming");
  $("play-message").value = "";
  $("play-usage").textContent = "";
  $("play-send").disabled = true;
  $("play-stop").disabled = false;
  talk.playing = new AbortController();
  status.textContent = "Waiting for the first words…";
  status.classList.remove("play-status-bad");
  let answer = "";
  try {
    const response = await request("/v1/chat/completions", { method: "POST", body, token: key, signal: talk.playing.signal });
    let usage;
    if (stream) {
      usage = await readStream(response.body, (piece) => {
        status.textContent = "Streaming…";
        answer += piece;
        output.append(document.createTextNode(piece));
      });
    } else {
      const data = await response.json();
      answer = (data.choices[0].message.content || "");
      output.textContent = answer;
      usage = data.usage;
    }
    talk.messages.push({ role: "user", content: text }, { role: "assistant", content: answer });
    status.textContent = "Done.";
    await showCost(usage, response.headers.get("x-request-id"));
  } catch (error) {
    output.parentNode.classList.add("failed");
    status.textContent = error.name === "AbortError" ? "Stopped." : error.message;
    status.classList.toggle("play-status-bad", error.name !== "AbortError");
    if (!answer) output.textContent = error.name === "AbortError" ? "(stopped)" : "(no answer)";
  } finally {
    output.classList.remove("streaming");
    $("play-send").disabled = false;
    $("play-stop").disabled = true;
    talk.playing = null;
  }
}

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
    if (chunk.error) throw new Error(chunk.error.message || "The answer broke off.");
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices || []) if (choice.delta && choice.delta.content) onText(choice.delta.content);
  };
  for (;;) {
    const { value, done: ended } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !ended });
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      handle(buffer.slice(0, cut));
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
    }
    if (ended) break;
  }
  if (buffer.trim()) handle(buffer);
  if (!done) throw new Error("The answer broke off before its end.");
  return usage;
}

// Tokens from the answer; the cost from the usage row with the request's id.
async function showCost(usage, requestId) {
  const line = $("play-usage");
  const parts = usage ? [int(usage.prompt_tokens) + " prompt + " + int(usage.completion_tokens) + " completion tokens"] : [];
  line.textContent = parts.join(" · ");
  if (!requestId) return;
  line.dataset.requestId = requestId;
  try {
    const rows = await api("/api/usage" + query({ limit: "50", since: "1h" }));
    const row = rows.data.find((r) => r.request_id === requestId);
    if (row) {
      parts.push("cost " + money(row.cost_nano_usd));
      line.dataset.nano = String(row.cost_nano_usd);
    }
  } catch (_) { /* a pasted key of another account: its row is not ours to read, tokens alone then */ }
  line.textContent = parts.join(" · ");
}
