// Small SVG plots with hover values: no external library (the app runs offline).
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs, parent) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { hi = lo + 1; }
  const span = hi - lo;
  const step0 = span / Math.max(n, 1);
  const mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= step0) || step0;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
  return ticks;
}

function fmt(v, digits) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (typeof v !== "number") return String(v);
  return v.toFixed(digits === undefined ? 2 : digits);
}

let tipEl = null;
function showTip(text, evt) {
  if (!tipEl) { tipEl = document.createElement("div"); tipEl.className = "tip"; document.body.appendChild(tipEl); }
  tipEl.textContent = text;
  tipEl.hidden = false;
  const x = Math.min(evt.clientX + 12, window.innerWidth - tipEl.offsetWidth - 8);
  tipEl.style.left = x + "px";
  tipEl.style.top = (evt.clientY + 12) + "px";
}
function hideTip() { if (tipEl) tipEl.hidden = true; }

/**
 * A scatter (or line) plot as an SVG element.
 * opts: series [{points: [{x, y, err, label, data}], color, line, name}], xlabel, ylabel,
 * invertY, width, height, onClick(point), id.
 * Each point gets a <circle class="pt"> with data-i (index in its series) and a hover text.
 */
function scatterPlot(opts) {
  const W = opts.width || 560, H = opts.height || 300;
  const m = { l: 58, r: 14, t: 12, b: 44 };
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
  if (opts.id) svg.id = opts.id;
  const all = opts.series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
  if (!all.length) {
    svgEl("text", { x: W / 2, y: H / 2, fill: "#8d97ad", "text-anchor": "middle" }, svg).textContent = "no data";
    return svg;
  }
  let x0 = Math.min(...all.map((p) => p.x)), x1 = Math.max(...all.map((p) => p.x));
  let y0 = Math.min(...all.map((p) => p.y - (p.err || 0))), y1 = Math.max(...all.map((p) => p.y + (p.err || 0)));
  if (opts.yZero) { y0 = Math.min(0, y0); }
  const px = (x1 - x0) * 0.04 || 0.5, py = (y1 - y0) * 0.06 || 0.5;
  x0 -= px; x1 += px; y0 -= py; y1 += py;
  const sx = (x) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
  const sy = opts.invertY
    ? (y) => m.t + ((y - y0) / (y1 - y0)) * (H - m.t - m.b)
    : (y) => H - m.b - ((y - y0) / (y1 - y0)) * (H - m.t - m.b);
  const axis = svgEl("g", { stroke: "#2a3550", fill: "#8d97ad", "font-size": 11 }, svg);
  for (const t of niceTicks(x0, x1, 6)) {
    svgEl("line", { x1: sx(t), x2: sx(t), y1: m.t, y2: H - m.b }, axis);
    svgEl("text", { x: sx(t), y: H - m.b + 14, "text-anchor": "middle", stroke: "none" }, axis).textContent = +t.toPrecision(6);
  }
  for (const t of niceTicks(y0, y1, 5)) {
    svgEl("line", { x1: m.l, x2: W - m.r, y1: sy(t), y2: sy(t) }, axis);
    svgEl("text", { x: m.l - 6, y: sy(t) + 4, "text-anchor": "end", stroke: "none" }, axis).textContent = +t.toPrecision(6);
  }
  svgEl("text", { x: (m.l + W - m.r) / 2, y: H - 8, "text-anchor": "middle", fill: "#e6e9f0", "font-size": 12 }, svg).textContent = opts.xlabel || "";
  const yl = svgEl("text", { x: 14, y: (m.t + H - m.b) / 2, "text-anchor": "middle", fill: "#e6e9f0", "font-size": 12,
    transform: `rotate(-90 14 ${(m.t + H - m.b) / 2})` }, svg);
  yl.textContent = opts.ylabel || "";
  if (opts.hline !== undefined) {
    svgEl("line", { x1: m.l, x2: W - m.r, y1: sy(opts.hline), y2: sy(opts.hline), stroke: "#8d97ad", "stroke-dasharray": "4 3" }, svg);
  }
  for (const s of opts.series) {
    const pts = s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y));
    const g = svgEl("g", { class: "series" }, svg);
    if (s.line && pts.length > 1) {
      svgEl("polyline", { points: pts.map((p) => `${sx(p.x)},${sy(p.y)}`).join(" "), fill: "none", stroke: s.color, "stroke-width": 1.2, opacity: 0.7 }, g);
    }
    s.points.forEach((p, i) => {
      if (!Number.isFinite(p.x) || !Number.isFinite(p.y)) return;
      if (p.limit) {
        // a limit, not a measurement (e.g. a saturated frame: the object was at least this
        // bright): an open triangle with an arrow pointing towards brighter values, no error bar
        const X = sx(p.x), Y = sy(p.y), up = opts.invertY ? -1 : 1;
        svgEl("line", { x1: X, x2: X, y1: Y, y2: Y + up * 16, stroke: s.color, "stroke-width": 1.2 }, g);
        svgEl("path", { d: `M${X - 3},${Y + up * 11} L${X},${Y + up * 16} L${X + 3},${Y + up * 11}`, fill: "none", stroke: s.color }, g);
        const tri = svgEl("path", { d: `M${X - 5},${Y - up * 4} L${X + 5},${Y - up * 4} L${X},${Y + up * 5} Z`, fill: "none", stroke: s.color, "stroke-width": 1.5, class: "pt limit", "data-i": i }, g);
        tri.addEventListener("mousemove", (e) => showTip(p.label || `${fmt(p.x)}, ${fmt(p.y)} (limit)`, e));
        tri.addEventListener("mouseleave", hideTip);
        if (opts.onClick) tri.addEventListener("click", () => opts.onClick(p, i, s));
        return;
      }
      if (p.err) {
        svgEl("line", { x1: sx(p.x), x2: sx(p.x), y1: sy(p.y - p.err), y2: sy(p.y + p.err), stroke: s.color, opacity: 0.5 }, g);
      }
      const c = svgEl("circle", { cx: sx(p.x), cy: sy(p.y), r: s.r || 3.5, fill: s.color, class: "pt", "data-i": i }, g);
      c.addEventListener("mousemove", (e) => showTip(p.label || `${fmt(p.x)}, ${fmt(p.y)}`, e));
      c.addEventListener("mouseleave", hideTip);
      if (opts.onClick) c.addEventListener("click", () => opts.onClick(p, i, s));
    });
  }
  if (opts.legend) {
    let lx = m.l + 8;
    for (const s of opts.series) {
      if (!s.name) continue;
      svgEl("circle", { cx: lx, cy: m.t + 10, r: 4, fill: s.color }, svg);
      const t = svgEl("text", { x: lx + 8, y: m.t + 14, fill: "#e6e9f0", "font-size": 11 }, svg);
      t.textContent = s.name;
      lx += 16 + s.name.length * 6.2;
    }
  }
  svg.scaleX = sx; svg.scaleY = sy;
  return svg;
}
