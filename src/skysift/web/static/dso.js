"use strict";
// Deep-sky objects (skysift dso): the image with catalogue ellipses toggled by verdict.
// Uses el, api, fileUrl (app.js) and svgEl, fmt (plot.js); drawDso is called by viewJob.

const DSO_COLORS = { visible: "#39ff14", marginal: "#ffd400", "not visible": "#ff5a5a", unidentified: "#4fc3ff" };

async function drawDso(job, body) {
  const d = await api(`/api/jobs/${job.id}/dso`);
  const shown = new Set(["visible", "marginal", "unidentified"]);
  const ps = d.plate_solve || {};
  body.append(el("p", { id: "dso-summary" }, `${d.objects.length} objects: ` +
    d.verdicts.map((v) => `${d.counts[v] || 0} ${v}`).join(", ") +
    (ps.rms_px != null ? `; plate solve RMS ${fmt(ps.rms_px, 2)} px, ${ps.n_matched} stars` : "")));
  const toggles = el("div", { class: "row", id: "dso-toggles" }, d.verdicts.map((v) =>
    el("label", { style: `color:${DSO_COLORS[v]}` }, el("input", { type: "checkbox", "data-verdict": v, checked: shown.has(v),
      onchange: (e) => { if (e.target.checked) shown.add(v); else shown.delete(v); redraw(); } }), `${v} (${d.counts[v] || 0})`)));
  const stars = el("label", {}, el("input", { type: "checkbox", id: "dso-stars", onchange: () => redraw() }), "catalogue stars");
  toggles.append(stars);
  const img = el("img", { src: fileUrl(job.id, d.files.display || d.files.annotated), alt: "image", id: "dso-img" });
  const wrap = el("div", { class: "imgwrap", id: "dso-wrap" }, img);
  const svg = svgEl("svg", { class: "overlay", id: "dso-overlay", preserveAspectRatio: "none" });
  wrap.append(svg);
  const cols = ["label", "type", "verdict", "snr", "method", "mag", "surface_brightness", "major_arcmin"];
  const tbody = el("tbody");
  const table = el("table", { id: "dso-table" }, el("tr", {}, cols.map((c) => el("th", {}, c))), tbody);
  const isStar = (o) => o.type === "*";
  function visibleObjects() {
    return d.objects.filter((o) => shown.has(o.verdict) && (!isStar(o) || stars.querySelector("input").checked));
  }
  function redraw() {
    const [h, w] = d.shape || [img.naturalHeight, img.naturalWidth];
    svg.setAttribute("viewBox", `-0.5 -0.5 ${w} ${h}`);
    svg.replaceChildren();
    const lw = Math.max(1, w / 500);
    const objs = visibleObjects();
    for (const o of objs) {
      const a = isStar(o) ? 12 : Math.max(3, o.major_px / 2), b = isStar(o) ? 12 : Math.max(3, o.minor_px / 2);
      const color = isStar(o) ? "#6ec6ff" : DSO_COLORS[o.verdict] || "white";
      const e = svgEl("ellipse", { cx: o.x, cy: o.y, rx: a, ry: b, transform: `rotate(${o.theta_deg || 0} ${o.x} ${o.y})`, fill: "none",
        stroke: color, "stroke-width": lw, "data-label": o.label, "data-verdict": o.verdict }, svg);
      if (o.verdict === "not visible") e.setAttribute("stroke-dasharray", `${4 * lw} ${3 * lw}`);
      const lx = Math.min(Math.max(o.x, 0), w - 1), ly = Math.min(Math.max(o.y - Math.min(b, h / 4) - 4 * lw, 12 * lw), h - 1);
      const t = svgEl("text", { x: lx, y: ly, fill: color, "font-size": 12 * lw, "text-anchor": "middle" }, svg);
      t.textContent = o.label;
    }
    tbody.replaceChildren(...objs.map((o) => el("tr", { "data-label": o.label },
      cols.map((c) => el("td", { class: typeof o[c] === "number" ? "num" : "" }, typeof o[c] === "number" ? fmt(o[c], 2) : (o[c] ?? "–"))))));
  }
  img.addEventListener("load", redraw);
  const links = el("div", { class: "links" },
    d.files.annotated ? el("a", { href: fileUrl(job.id, d.files.annotated) , target: "_blank" }, "annotated.png") : null,
    d.files.saliency ? el("a", { href: fileUrl(job.id, d.files.saliency), target: "_blank" }, "saliency.png") : null,
    d.files.objects ? el("a", { href: fileUrl(job.id, d.files.objects, true) }, "objects.ecsv") : null);
  body.append(toggles, el("div", { class: "grid-main" }, wrap, el("div", {}, el("div", { class: "scroll" }, table))), links);
  if (d.files.saliency) {
    body.append(el("h2", {}, "Saliency of the learned detector"),
      el("img", { src: fileUrl(job.id, d.files.saliency), alt: "saliency", id: "dso-saliency", style: "max-width:100%" }));
  }
  body.append(el("p", { class: "muted small" }, d.credit));
  redraw();
}
