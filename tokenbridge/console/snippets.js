// "How to connect": the base URL and ready-to-run curl / Python / Node snippets for a key.
import { button, copyText, el } from "./core.js";

export const PLACEHOLDER = "YOUR_API_KEY";

export function baseUrl() {
  return location.origin + "/v1";
}

function texts(secret, model) {
  const base = baseUrl();
  return {
    curl: `curl ${base}/chat/completions \\\n  -H "Authorization: Bearer ${secret}" \\\n  -H "Content-Type: application/json" \\\n` +
      `  -d '{"model": "${model}", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 64}'`,
    python: `from openai import OpenAI\n\nclient = OpenAI(base_url="${base}", api_key="${secret}")\n` +
      `answer = client.chat.completions.create(\n    model="${model}",\n    messages=[{"role": "user", "content": "Hello"}],\n    max_tokens=64,\n)\nprint(answer.choices[0].message.content)`,
    node: `import OpenAI from "openai";\n\nconst client = new OpenAI({ baseURL: "${base}", apiKey: "${secret}" });\n` +
      `const answer = await client.chat.completions.create({\n  model: "${model}",\n  messages: [{ role: "user", content: "Hello" }],\n  max_tokens: 64,\n});\nconsole.log(answer.choices[0].message.content);`,
  };
}

// Three tabs (arrow keys move between them), each with a Copy button.
export function snippets(secret, model) {
  const code = texts(secret || PLACEHOLDER, model || "MODEL");
  const status = el("span", { class: "muted small", role: "status" });
  const names = [["curl", "curl"], ["python", "Python"], ["node", "Node.js"]];
  const panels = names.map(([id, label]) => {
    const pre = el("pre", { class: "snippet", "data-testid": "snippet-" + id, tabindex: "0", "aria-label": label + " example" }, code[id]);
    return el("div", { class: "snippet-panel", "data-panel": id, role: "tabpanel", hidden: id === "curl" ? null : "" },
      pre, button("Copy", { class: "small", "data-testid": "copy-" + id, "aria-label": "Copy the " + label + " example" }, () => copyText(pre.textContent, status)));
  });
  const tabs = names.map(([id, label], i) => button(label, { class: "seg", role: "tab", "data-snippet": id, "aria-selected": String(i === 0), tabindex: i === 0 ? "0" : "-1" }, () => pick(i)));
  const bar = el("div", { class: "segmented", role: "tablist", "aria-label": "Language" }, tabs);
  function pick(index) {
    tabs.forEach((tab, i) => {
      tab.setAttribute("aria-selected", String(i === index));
      tab.tabIndex = i === index ? 0 : -1;
      panels[i].hidden = i !== index;
    });
    tabs[index].focus();
  }
  bar.addEventListener("keydown", (event) => {
    const at = tabs.indexOf(document.activeElement);
    if (at < 0 || !["ArrowLeft", "ArrowRight"].includes(event.key)) return;
    pick((at + (event.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length);
  });
  return el("div", { class: "connect", "data-testid": "connect" },
    el("p", {}, "Base URL ", el("code", { "data-testid": "base-url" }, baseUrl()),
      secret ? null : el("span", { class: "muted" }, ` (put your key where it says ${PLACEHOLDER})`)),
    bar, panels, status);
}
