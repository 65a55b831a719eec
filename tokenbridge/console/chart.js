// Stacked bar charts drawn at the box's own pixel width (so labels stay readable on a phone), with a
// tooltip that works by mouse, touch and keyboard: every time bucket is a focusable group.
import { el, state, svg } from "./core.js";

// Twelve well-separated colours, then golden-angle hues: no two series share one.
const PALETTE = ["#4f5bd5", "#0f8a7a", "#d0731c", "#c63d6b", "#7a5cd6", "#2f86c9", "#7d8a1f", "#8a4b2d",
  "#b0399e", "#1f7a3d", "#a3441f", "#56608a"];

export function colour(name) {
  if (!state.colours.has(name)) state.colours.set(name, state.colours.size);
  const index = state.colours.get(name);
  return index < PALETTE.length ? PALETTE[index] : `hsl(${Math.round((index * 137.508) % 360)} 60% 42%)`;
}

export function legend(box, names) {
  box.replaceChildren(...names.map((name) => {
    const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
    swatch.style.background = colour(name);
    return el("span", { class: "legend-item", "data-series": name }, swatch, name || "(none)");
  }));
}

// Series ordered by size (biggest first), each given its colour now so every chart agrees.
export function seriesNames(data, by) {
  const totals = new Map();
  for (const p of data) totals.set(p[by], (totals.get(p[by]) || 0) + Number(p.cost_nano_usd) + p.prompt_tokens + p.completion_tokens);
  const names = [...totals.keys()].sort((a, b) => totals.get(b) - totals.get(a) || String(a).localeCompare(String(b)));
  for (const name of names) colour(name);
  return names;
}

// The buckets from `sinceSeconds` ago up to now, plus any the server sent off that grid.
export function timeSlots(data, step, sinceSeconds) {
  const now = Math.floor(Date.now() / 1000);
  const slots = new Set();
  if (data.every((p) => p.t % step === 0)) {
    for (let t = Math.floor((now - sinceSeconds) / step) * step; t <= now; t += step) slots.add(t);
  }
  for (const p of data) slots.add(p.t);
  return [...slots].sort((a, b) => a - b);
}

export function slotLabel(t, step, long) {
  const date = new Date(t * 1000);
  const dayText = date.toLocaleDateString("en-GB", { month: "short", day: "numeric" });
  if (step >= 86400) return dayText;
  const hour = date.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
  return long ? dayText + " " + hour : hour;
}

function niceMax(value) {
  if (value <= 0) return 0;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= value) return m * power;
  return 10 * power;
}

// Charts are drawn at their box's width: a resize (a phone turned, a window dragged) draws them again.
const drawn = new Map(); // box -> its last drawing's options
let redraw = 0;
window.addEventListener("resize", () => {
  cancelAnimationFrame(redraw);
  redraw = requestAnimationFrame(() => {
    for (const [box, options] of drawn) {
      if (!box.isConnected) drawn.delete(box);
      else if (box.clientWidth) drawStacked(box, options);
    }
  });
});

// drawStacked(box, {data, by, slots, names, step, value(point), label(number), title})
export function drawStacked(box, options) {
  drawn.set(box, options);
  const { data, by, slots, names, step, value, label, title } = options;
  const W = Math.max(280, Math.floor(box.clientWidth || 640)), H = W < 500 ? 200 : 240;
  const right = 12, top = 12, bottom = 28;
  const cells = new Map(), stacks = new Map();
  for (const p of data) {
    const v = value(p), key = p.t + "|" + p[by];
    cells.set(key, (cells.get(key) || 0) + v);
    stacks.set(p.t, (stacks.get(p.t) || 0) + v);
  }
  const max = niceMax(Math.max(0, ...stacks.values()));
  const ticks = [0, 0.5, 1].map((f) => [f, max ? label(max * f) : ""]);
  const left = 12 + 7 * Math.max(...ticks.map(([, text]) => text.length));
  const plotW = W - left - right, plotH = H - top - bottom;
  const chart = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "group", "aria-label": title });
  for (const [f, text] of ticks) {
    const y = top + plotH - f * plotH;
    chart.append(svg("line", { class: "grid-line", x1: left, x2: W - right, y1: y, y2: y }));
    chart.append(svg("text", { class: "axis-label", x: left - 6, y: y + 4, "text-anchor": "end" }, text));
  }
  const slotW = plotW / Math.max(slots.length, 1);
  const barW = Math.max(2, Math.min(36, slotW * 0.7));
  const labelEvery = Math.max(1, Math.ceil(slots.length / Math.max(2, Math.floor(plotW / 70))));
  let bars = 0, total = 0;
  const tip = el("div", { class: "chart-tip", role: "status", hidden: "" });
  slots.forEach((t, i) => {
    const x = left + i * slotW + (slotW - barW) / 2;
    let y = top + plotH;
    const parts = [];
    const group = svg("g", { class: "slot" });
    for (const name of names) {
      const v = cells.get(t + "|" + name) || 0;
      if (!v) continue;
      const h = Math.max(1, (v / max) * plotH);
      y -= h;
      group.append(svg("rect", { class: "bar", fill: colour(name), x: x.toFixed(1), y: y.toFixed(1), width: barW.toFixed(1), height: h.toFixed(1), rx: 2, "data-series": name, "data-t": t, "data-value": v }));
      parts.push(`${name || "(none)"}: ${label(v)}`);
      bars += 1;
      total += v;
    }
    if (parts.length) {
      const text = slotLabel(t, step, true) + " · " + parts.join(", ");
      group.append(svg("rect", { class: "hit", x: (left + i * slotW).toFixed(1), y: top, width: slotW.toFixed(1), height: plotH, fill: "transparent" }));
      group.setAttribute("tabindex", "0");
      group.setAttribute("role", "img");
      group.setAttribute("aria-label", text);
      const showTip = () => {
        tip.textContent = text;
        tip.hidden = false;
        tip.style.left = Math.min(Math.max(0, x - 40), W - 180) + "px";
      };
      for (const type of ["pointerenter", "focus", "click"]) group.addEventListener(type, showTip);
      for (const type of ["pointerleave", "blur"]) group.addEventListener(type, () => { tip.hidden = true; });
      chart.append(group);
    }
    if (i % labelEvery === 0) {
      chart.append(svg("text", { class: "axis-label", x: (left + i * slotW + slotW / 2).toFixed(1), y: H - 8, "text-anchor": "middle" }, slotLabel(t, step, false)));
    }
  });
  if (!bars) chart.append(svg("text", { class: "no-data", x: left + plotW / 2, y: top + plotH / 2, "text-anchor": "middle" }, "No usage in this window yet"));
  box.dataset.bars = String(bars);
  box.dataset.total = String(total);
  box.dataset.buckets = String(slots.length);
  box.replaceChildren(chart, tip);
}
