// skysift web app: a single page over the JSON API (see skysift/web/app.py). Plain JavaScript.
"use strict";

const main = document.getElementById("main");
let pollTimer = null;
let info = { max_upload_mb: 0, accepted: [] };

// ---------------------------------------------------------------- helpers
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

async function api(path, opts) {
  let r;
  try { r = await fetch(path, opts); } catch (e) { throw new Error("the skysift server cannot be reached (is it still running?)"); }
  let body = null;
  const text = await r.text();
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = { detail: text }; }
  if (!r.ok) throw new Error((body && body.detail) || `${r.status} ${r.statusText}`);
  return body;
}
function postJSON(path, data) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) });
}
function toast(msg) {
  const t = document.getElementById("toast");
  t.textContent = msg; t.hidden = false;
  clearTimeout(toast.timer); toast.timer = setTimeout(() => { t.hidden = true; }, 8000);
}
function fileUrl(jobId, rel, download) {
  return `/api/jobs/${jobId}/files/${rel.split("/").map(encodeURIComponent).join("/")}${download ? "?download=1" : ""}`;
}
function stopPolling() { if (pollTimer) { clearTimeout(pollTimer); pollTimer = null; } }
function progressBar(frac) { return el("div", { class: "bar" }, el("span", { style: `width:${Math.round(100 * (frac || 0))}%` })); }
function stateBadge(job) { return el("span", { class: `state ${job.state}`, "data-state": job.state }, job.state); }
function pct(frac) { return `${Math.round(100 * (frac || 0))}%`; }
function fmtTime(t) { return t ? new Date(t * 1000).toLocaleString() : "–"; }

// ---------------------------------------------------------------- router
const routes = [
  [/^#?\/?$/, viewStart],
  [/^#\/jobs$/, viewJobs],
  [/^#\/job\/([0-9a-f]{12})$/, viewJob],
  [/^#\/job\/([0-9a-f]{12})\/manual$/, viewManual],
];
function route() {
  stopPolling();
  const h = location.hash || "#/";
  for (const [re, fn] of routes) {
    const m = h.match(re);
    if (m) { main.replaceChildren(); fn(...m.slice(1)).catch(showError); return; }
  }
  main.replaceChildren(el("p", {}, "No such page. ", el("a", { href: "#/" }, "Start an analysis")));
}
function showError(err) {
  main.append(el("div", { class: "error-box" }, err.message || String(err)));
}
window.addEventListener("hashchange", route);

// ---------------------------------------------------------------- start page
async function viewStart() {
  const [samples, uploads] = await Promise.all([api("/api/samples"), api("/api/uploads")]);
  const state = { kind: "calibrate", files: {} };
  main.append(el("h1", {}, "New analysis"));
  const form = el("div", { class: "panel", id: "start-form" });
  main.append(form);
  const kinds = [["calibrate", "Calibrate a frame"], ["bolide", "Bolide in a video"], ["streaks", "Streaks in images"], ["dso", "Deep-sky objects in an image"]];
  const kindRow = el("div", { class: "row kinds" }, kinds.map(([k, label]) =>
    el("label", {}, el("input", { type: "radio", name: "kind", value: k, checked: k === state.kind,
      onchange: () => { state.kind = k; drawInputs(); } }), label)));
  form.append(kindRow);
  const inputs = el("div", { id: "inputs" });
  form.append(inputs);

  const lat = el("input", { type: "number", step: "any", id: "site-lat", placeholder: "lat °" });
  const lon = el("input", { type: "number", step: "any", id: "site-lon", placeholder: "lon ° (east +)" });
  const height = el("input", { type: "number", step: "any", id: "site-height", placeholder: "height m" });
  const time = el("input", { type: "text", class: "time", id: "obs-time", placeholder: "2018-08-17T00:52:21 (UTC)" });
  form.append(el("h2", {}, "Site and time ", el("span", { class: "muted small" }, "(from the file's metadata when it has them; edit if needed)")),
    el("div", { class: "row" }, el("label", {}, "latitude"), lat, el("label", {}, "longitude"), lon,
      el("label", {}, "height"), height, el("label", {}, "time"), time));
  const opts = el("div", { class: "row", id: "options" });
  form.append(opts);
  const run = el("button", { class: "primary", id: "run-btn", onclick: submit }, "Run");
  const msg = el("span", { class: "hint", id: "start-msg" });
  form.append(el("div", { class: "row" }, run, msg));

  function prefill(meta) {
    if (!meta) return;
    if (meta.site) { lat.value = meta.site.lat; lon.value = meta.site.lon; height.value = meta.site.height; }
    if (meta.time) time.value = meta.time;
  }

  function sampleSelect() {
    const mine = samples.filter((s) => s.kind === state.kind);
    const sel = el("select", { id: "sample-select" }, el("option", { value: "" }, "— none: use my files —"),
      mine.map((s) => el("option", { value: s.name, disabled: !s.available, title: s.reason || s.description },
        s.title + (s.available ? "" : " (unavailable)"))));
    sel.addEventListener("change", () => {
      state.sample = sel.value || null;
      if (sel.value === "magic-allsky") { lat.value = 28.7619; lon.value = -17.8908; height.value = 2200; time.value = "2018-08-17T00:52:21"; }
    });
    const unavailable = mine.filter((s) => !s.available);
    return el("div", {}, el("div", { class: "row" }, el("label", {}, "bundled sample"), sel),
      unavailable.map((s) => el("div", { class: "muted small" }, `${s.title}: ${s.reason}`)));
  }

  function fileField(role, label, kind, multiple) {
    const status = el("span", { class: "muted small", id: `status-${role}` });
    const input = el("input", { type: "file", id: `file-${role}`, multiple: multiple || null,
      accept: info.accepted.join(",") });
    const earlier = uploads.filter((u) => u.kind === kind);
    const pick = el("select", { id: `pick-${role}` }, el("option", { value: "" }, earlier.length ? "— or an earlier upload —" : "— no earlier upload —"),
      earlier.map((u) => el("option", { value: u.id }, `${u.name} (${u.shape.join("×")})`)));
    pick.addEventListener("change", () => {
      const u = earlier.find((x) => x.id === pick.value);
      state.files[role] = u ? [u] : [];
      if (u) { status.textContent = describe(u); prefill(u); }
    });
    input.addEventListener("change", async () => {
      state.files[role] = [];
      run.disabled = true;
      try {
        for (const f of input.files) {
          status.textContent = `uploading ${f.name}…`;
          const u = await api(`/api/uploads?filename=${encodeURIComponent(f.name)}`, { method: "POST", body: f });
          state.files[role].push(u);
          prefill(u);
        }
        status.textContent = state.files[role].map(describe).join("; ");
      } catch (e) {
        status.textContent = "";
        input.value = "";
        msg.textContent = e.message;
      } finally { run.disabled = false; }
    });
    return el("div", { class: "row" }, el("label", {}, label), input, pick, status);
  }
  function describe(u) {
    return `${u.name}: ${u.kind} ${u.shape.join("×")}` + (u.time ? `, ${u.time}` : "") + (u.site ? `, site ${u.site.lat}, ${u.site.lon}` : "");
  }

  function drawInputs() {
    state.files = {}; state.sample = null;
    inputs.replaceChildren(sampleSelect());
    opts.replaceChildren();
    if (state.kind === "calibrate") {
      inputs.append(fileField("image", "frame", "image"));
      opts.append(el("label", {}, "calibration"), el("select", { id: "mode" },
        el("option", { value: "auto" }, "automatic (all-sky model or plate solve)"),
        el("option", { value: "manual" }, "by hand: I will pair stars myself"),
        el("option", { value: "allsky" }, "automatic, all-sky model"),
        el("option", { value: "narrow" }, "automatic, plate solve (narrow field)")));
    } else if (state.kind === "bolide") {
      inputs.append(fileField("video", "video (mp4/avi/mkv/mov) or FITS cube", "video"),
        fileField("calibration", "calibration frame (optional)", "image"));
      opts.append(el("label", {}, "frame rate (optional)"), el("input", { type: "number", id: "fps", step: "any", min: 0 }));
    } else if (state.kind === "dso") {
      inputs.append(fileField("image", "image (JPEG/PNG/TIFF/FITS)", "image"));
      opts.append(el("label", {}, "hints (optional): width °"), el("input", { type: "number", id: "dso-fov", step: "any", min: 0 }),
        el("label", {}, "RA °"), el("input", { type: "number", id: "dso-ra", step: "any", min: 0, max: 360 }),
        el("label", {}, "Dec °"), el("input", { type: "number", id: "dso-dec", step: "any", min: -90, max: 90 }));
    } else {
      inputs.append(fileField("images", "images", "image", true));
      opts.append(el("label", {}, "streak finder"), el("select", { id: "method" },
        (info.streak_methods || []).map((m) => el("option", { value: m, selected: m === info.streak_method_default }, m))));
    }
  }
  drawInputs();

  async function submit() {
    msg.textContent = "";
    const req = { kind: state.kind, sample: state.sample || null };
    const ids = (role) => (state.files[role] || []).map((u) => u.id);
    if (!req.sample) {
      if (state.kind === "calibrate") req.image = ids("image")[0];
      if (state.kind === "bolide") { req.video = ids("video")[0]; req.calibration = ids("calibration")[0] || null; }
      if (state.kind === "streaks") req.images = ids("images");
      if (state.kind === "dso") req.image = ids("image")[0];
    }
    for (const [id, key] of [["dso-fov", "fov"], ["dso-ra", "ra"], ["dso-dec", "dec"]]) {
      const f = document.getElementById(id); if (f && f.value !== "") req[key] = +f.value;
    }
    if (lat.value !== "" && lon.value !== "") req.site = { lat: +lat.value, lon: +lon.value, height: +(height.value || 0) };
    else if (lat.value !== "" || lon.value !== "") { msg.textContent = "give both latitude and longitude, or neither"; return; }
    if (time.value.trim()) req.time = time.value.trim();
    const mode = document.getElementById("mode"); if (mode) req.mode = mode.value;
    const fps = document.getElementById("fps"); if (fps && fps.value) req.fps = +fps.value;
    const method = document.getElementById("method"); if (method && method.value) req.method = method.value;
    try {
      run.disabled = true;
      const job = await postJSON("/api/jobs", req);
      location.hash = `#/job/${job.id}`;
    } catch (e) { msg.textContent = e.message; } finally { run.disabled = false; }
  }

  main.append(el("h2", {}, "Jobs"));
  const list = el("div", { id: "job-list" });
  main.append(list);
  await jobList(list);
}

async function jobList(container) {
  const jobs = await api("/api/jobs");
  if (!jobs.length) { container.replaceChildren(el("p", { class: "muted" }, "No jobs yet.")); return; }
  container.replaceChildren(el("table", {}, el("tr", {}, ["job", "state", "stage", "progress", "started", ""].map((h) => el("th", {}, h))),
    jobs.map((j) => el("tr", { class: "clickable", "data-job": j.id, onclick: () => { location.hash = `#/job/${j.id}`; } },
      el("td", {}, j.title), el("td", {}, stateBadge(j)),
      el("td", {}, j.state === "failed" ? el("span", { class: "muted" }, j.error) : j.stage),
      el("td", {}, progressBar(j.progress)), el("td", { class: "muted" }, fmtTime(j.created)),
      el("td", {}, ["done", "failed"].includes(j.state) ? el("button", { class: "small", title: "delete this job and its files",
        onclick: async (e) => { e.stopPropagation(); if (confirm(`Delete ${j.title}?`)) { await api(`/api/jobs/${j.id}`, { method: "DELETE" }); jobList(container); } } }, "delete") : "")))));
  if (jobs.some((j) => j.state === "queued" || j.state === "running")) {
    pollTimer = setTimeout(() => jobList(container).catch(() => {}), 1000);
  }
}

async function viewJobs() {
  main.append(el("h1", {}, "Jobs"), el("p", { class: "muted" }, "Jobs run one after another on this computer; their results stay in the data folder, so you can close the browser and come back."));
  const list = el("div", { id: "job-list" });
  main.append(list);
  await jobList(list);
}

// ---------------------------------------------------------------- job page
async function viewJob(id) {
  const head = el("div", { id: "job-head" });
  const body = el("div", { id: "job-body" });
  main.append(head, body);
  let job = await api(`/api/jobs/${id}`);
  const draw = () => {
    head.replaceChildren(el("h1", {}, job.title),
      el("div", { class: "row" }, stateBadge(job), el("span", { id: "job-stage" }, job.state === "running" ? job.stage : ""),
        el("span", { id: "job-pct" }, job.state === "running" || job.state === "queued" ? pct(job.progress) : ""),
        (job.state === "running" || job.state === "queued") ? progressBar(job.progress) : null,
        el("span", { class: "muted small" }, `inputs: ${(job.params.input_names || []).join(", ")}`)));
  };
  draw();
  while (job.state === "queued" || job.state === "running") {
    await new Promise((res) => { pollTimer = setTimeout(res, 700); });
    if (location.hash !== `#/job/${id}`) return;
    job = await api(`/api/jobs/${id}`);
    draw();
  }
  if (job.state === "failed") {
    body.append(el("div", { class: "error-box", id: "job-error" }, el("strong", {}, "The job failed: "), job.error));
    if (job.kind === "calibrate") {
      const cal = await api(`/api/jobs/${id}/calibration`).catch(() => null);
      if (cal) body.append(el("p", {}, "The frame was read: you can still ", el("a", { href: `#/job/${id}/manual`, id: "manual-link" }, "calibrate it by hand"), " by pairing stars."));
    }
    return;
  }
  if (job.kind === "calibrate") await drawCalibration(job, body);
  else if (job.kind === "bolide") await drawBolide(job, body);
  else if (job.kind === "dso") await drawDso(job, body);
  else await drawStreaks(job, body);
}

// ---------------------------------------------------------------- calibration
function frameImage(jobId, frame, rel) {
  const [h, w] = frame.shape;
  const img = el("img", { src: fileUrl(jobId, rel || "frame.png"), alt: "frame", id: "frame-img", width: w, height: h });
  const svg = svgEl("svg", { class: "overlay", viewBox: `-0.5 -0.5 ${w} ${h}`, preserveAspectRatio: "none" });
  const wrap = el("div", { class: "imgwrap" }, img);
  wrap.append(svg);
  return { wrap, img, svg, w, h };
}

async function drawCalibration(job, body) {
  const cal = await api(`/api/jobs/${job.id}/calibration`);
  const c = cal.calibration;
  if (!c) {
    body.append(el("div", { class: "note" }, "No calibration yet. ", el("a", { href: `#/job/${job.id}/manual`, id: "manual-link" }, "Calibrate by hand"), " by pairing image stars with catalogue stars."));
    return;
  }
  const fi = frameImage(job.id, cal.frame);
  const byMag = cal.matches.slice().sort((a, b) => (a.catalog_mag ?? 99) - (b.catalog_mag ?? 99));
  const named = new Set(byMag.filter((m) => m.name).slice(0, 20));
  for (const m of cal.matches) {
    const g = svgEl("g", {}, fi.svg);
    svgEl("circle", { cx: m.x, cy: m.y, r: Math.max(fi.w / 150, 5), fill: "none", stroke: "#5ad17a", "stroke-width": fi.w / 900 }, g);
    if (named.has(m)) {
      const t = svgEl("text", { x: m.x + fi.w / 120, y: m.y - fi.w / 120, fill: "#ffc857", "font-size": fi.w / 70 }, g);
      t.textContent = m.name;
    }
    g.addEventListener("mousemove", (e) => showTip(`${m.name || m.catalog_id}: V ${fmt(m.catalog_mag)}, residual ${fmt(m.residual_px)} px`, e));
    g.addEventListener("mouseleave", hideTip);
  }
  const source = (job.result && job.result.calibration && job.result.calibration.source) || (c.method === "manual pairs" ? "manual" : "automatic");
  const numbers = el("dl", { class: "kv", id: "fit-numbers" },
    el("dt", {}, "calibration"), el("dd", {}, source),
    el("dt", {}, "model"), el("dd", {}, c.model_type),
    el("dt", {}, "stars detected"), el("dd", {}, c.n_detected),
    el("dt", {}, "stars identified"), el("dd", { id: "n-matched" }, c.n_matched),
    el("dt", {}, "astrometric RMS"), el("dd", { id: "rms" }, `${fmt(c.astrometric_rms_px)} px`),
    el("dt", {}, `zero point (${c.photometric_band})`), el("dd", {}, c.zero_point === null ? "not fitted" : `${fmt(c.zero_point, 3)} ± ${fmt(c.zero_point_err, 3)} mag`),
    el("dt", {}, "photometric RMS"), el("dd", {}, c.photometric_rms_mag === null ? "–" : `${fmt(c.photometric_rms_mag, 3)} mag`),
    el("dt", {}, "site"), el("dd", {}, c.site ? `${c.site.lat}°, ${c.site.lon}°, ${c.site.height} m` : "unknown"),
    el("dt", {}, "time (mid-exposure)"), el("dd", {}, c.time_mid_exposure || "unknown"));
  const resid = scatterPlot({ id: "plot-resid", width: 460, height: 230, xlabel: "distance from optical centre (fraction of horizon)", ylabel: "position residual (px)",
    hline: c.astrometric_rms_px,
    series: [{ color: "#6cb6ff", r: 2.5, points: cal.matches.map((m) => ({ x: m.radius_norm, y: m.residual_px, label: `${m.name || m.catalog_id}: ${fmt(m.residual_px)} px` })) }] });
  const used = cal.matches.filter((m) => m.used_in_zp !== false && m.mag !== null);
  const other = cal.matches.filter((m) => m.used_in_zp === false && m.mag !== null);
  const magpts = (ms) => ms.map((m) => ({ x: m.catalog_mag, y: m.catalog_mag - m.mag, label: `${m.name || m.catalog_id}: V ${fmt(m.catalog_mag)}, Δ ${fmt(m.catalog_mag - m.mag)} mag` }));
  const dmag = scatterPlot({ id: "plot-mag", width: 460, height: 230, xlabel: `catalogue magnitude (${c.photometric_band})`, ylabel: "catalogue − calibrated (mag)", hline: 0, legend: true,
    series: [{ name: "used in fit", color: "#6cb6ff", r: 2.5, points: magpts(used) }, { name: "excluded", color: "#ffa657", r: 2.5, points: magpts(other) }] });
  const links = el("div", { class: "links" }, ["calibration.png", "calibration.json", "matches.ecsv", "stars.ecsv"].map((f) =>
    el("a", { href: fileUrl(job.id, `calibration/${f}`, true) }, f)));
  body.append(el("div", { class: "grid-main" },
    el("div", {}, fi.wrap, el("p", { class: "muted small" }, "Green: identified stars (hover for residuals); yellow: the brightest named.")),
    el("div", {}, el("div", { class: "panel" }, numbers,
      el("div", { class: "row" }, el("a", { href: `#/job/${job.id}/manual`, id: "manual-link" }, el("button", {}, "Manual calibration…"))), links),
      el("h2", {}, "Residuals"), resid, dmag)));
}

// ---------------------------------------------------------------- manual calibration
async function viewManual(id) {
  const job = await api(`/api/jobs/${id}`);
  main.append(el("h1", {}, `Manual calibration: ${job.title}`), el("p", {}, el("a", { href: `#/job/${id}` }, "← back to the job")));
  const [cal, stars] = await Promise.all([api(`/api/jobs/${id}/calibration`), api(`/api/jobs/${id}/stars`)]);
  let catalog;
  try { catalog = await api(`/api/jobs/${id}/catalog`); } catch (e) { showError(e); return; }
  const pairs = (cal.pairs || []).map((p) => ({ ...p }));
  let pending = null; // image star waiting for its catalogue star
  const hint = el("div", { class: "hint", id: "manual-hint" });
  const fi = frameImage(id, cal.frame);
  fi.wrap.classList.add("clicky");
  const marks = svgEl("g", {}, fi.svg);
  const predicted = svgEl("g", {}, fi.svg);
  const chartBox = el("div", {});
  const table = el("div", { id: "pairs-table" });
  const result = el("div", { id: "manual-result" });
  const fitBtn = el("button", { class: "primary", id: "fit-btn", onclick: fit }, "Fit and save");
  const clearBtn = el("button", { id: "clear-btn", onclick: () => { pairs.length = 0; pending = null; redraw(); } }, "Remove all pairs");
  const catByHip = new Map(catalog.stars.map((s) => [String(s.hip), s]));
  const label = (s) => s.name || `HIP ${s.hip}`;

  fi.wrap.addEventListener("click", (e) => { // on the wrapper: the overlay lies over the image
    const r = fi.img.getBoundingClientRect();
    let x = ((e.clientX - r.left) / r.width) * fi.w - 0.5;
    let y = ((e.clientY - r.top) / r.height) * fi.h - 0.5;
    // Snap to the nearest detected star within 12 px (or 3 screen pixels, whichever is larger).
    const tol = Math.max(12, (3 * fi.w) / r.width);
    let best = null, bd = tol;
    for (const s of stars) { const d = Math.hypot(s.x - x, s.y - y); if (d < bd) { bd = d; best = s; } }
    if (best) { x = best.x; y = best.y; }
    pending = { x, y };
    hint.textContent = `Image star at (${x.toFixed(1)}, ${y.toFixed(1)})${best ? " (snapped to a detection)" : ""}: now click its catalogue star in the sky chart.`;
    redraw();
  });

  function drawChart() {
    // The sky as seen from the site (the report's Fig. 24): zenith in the centre, north up, east left.
    const S = 560, R = S / 2 - 24, cx = S / 2, cy = S / 2;
    const svg = svgEl("svg", { viewBox: `0 0 ${S} ${S}`, class: "chart", id: "sky-chart" });
    for (const a of [0, 30, 60]) svgEl("circle", { cx, cy, r: R * (90 - a) / 90, fill: "none", stroke: "#2a3550" }, svg);
    for (const [t, az] of [["N", 0], ["E", 90], ["S", 180], ["W", 270]]) {
      const p = project(5, az);
      svgEl("text", { x: p[0], y: p[1] + 5, fill: "#8d97ad", "text-anchor": "middle", "font-size": 14 }, svg).textContent = t;
    }
    function project(alt, az) {
      const r = R * (90 - alt) / 90, a = (az * Math.PI) / 180;
      return [cx - r * Math.sin(a), cy - r * Math.cos(a)];
    }
    const paired = new Set(pairs.map((p) => String(p.star)));
    // Faintest first, so that the bright stars (the ones people pair) are on top.
    for (const s of catalog.stars.slice().sort((a, b) => b.v_mag - a.v_mag)) {
      const [x, y] = project(s.alt, s.az);
      const isPaired = paired.has(String(s.hip)) || (s.name && paired.has(s.name));
      const g = svgEl("g", { class: "cat-star", "data-hip": s.hip, "data-name": s.name || "" }, svg);
      svgEl("circle", { cx: x, cy: y, r: Math.max(1.5, 5.5 - 1.1 * s.v_mag), fill: isPaired ? "#5ad17a" : "#fff", stroke: "none" }, g);
      svgEl("circle", { cx: x, cy: y, r: 9, fill: "transparent" }, g); // a larger target for the mouse
      if (s.name && s.v_mag < 2.6) {
        svgEl("text", { x: x + 7, y: y - 5, fill: isPaired ? "#5ad17a" : "#8d97ad", "font-size": 11 }, g).textContent = s.name;
      }
      g.addEventListener("mousemove", (e) => showTip(`${label(s)}: V ${fmt(s.v_mag)}, alt ${fmt(s.alt, 1)}°, az ${fmt(s.az, 1)}°`, e));
      g.addEventListener("mouseleave", hideTip);
      g.addEventListener("click", () => {
        if (!pending) { hint.textContent = "First click the star in the image, then its catalogue star here."; return; }
        if (pairs.some((p) => String(p.star) === String(s.hip))) { hint.textContent = `${label(s)} is already paired: remove that pair first.`; return; }
        pairs.push({ x: pending.x, y: pending.y, star: String(s.hip), name: s.name });
        pending = null;
        hint.textContent = `Paired with ${label(s)}. ${pairs.length < 4 ? `${4 - pairs.length} more pair(s) needed.` : "Fit when ready."}`;
        redraw();
      });
    }
    chartBox.replaceChildren(svg, el("p", { class: "muted small" }, `Catalogue stars brighter than V ${catalog.max_mag} above the horizon at ${catalog.time} UT (site ${catalog.site.lat}°, ${catalog.site.lon}°). Zenith in the centre, north up, east left.`));
  }

  function drawPredicted() {
    predicted.replaceChildren();
    for (const s of catalog.stars) {
      if (s.x === undefined || s.x === null || s.y === null) continue;
      svgEl("circle", { cx: s.x, cy: s.y, r: fi.w / 160, fill: "none", stroke: "#6cb6ff", "stroke-width": fi.w / 1200, opacity: 0.8 }, predicted);
    }
  }

  function redraw() {
    marks.replaceChildren();
    const r = fi.w / 110;
    pairs.forEach((p, i) => {
      svgEl("circle", { cx: p.x, cy: p.y, r, fill: "none", stroke: "#5ad17a", "stroke-width": fi.w / 700 }, marks);
      svgEl("text", { x: p.x + r, y: p.y - r, fill: "#5ad17a", "font-size": fi.w / 70 }, marks).textContent = `${i + 1}`;
    });
    if (pending) svgEl("circle", { cx: pending.x, cy: pending.y, r, fill: "none", stroke: "#ffc857", "stroke-width": fi.w / 500, id: "pending-mark" }, marks);
    drawChart();
    table.replaceChildren(el("table", {}, el("tr", {}, ["#", "x", "y", "star", "residual (px)", ""].map((h) => el("th", {}, h))),
      pairs.map((p, i) => {
        const s = catByHip.get(String(p.star));
        return el("tr", { "data-star": p.star }, el("td", {}, i + 1), el("td", { class: "num" }, fmt(p.x, 1)), el("td", { class: "num" }, fmt(p.y, 1)),
          el("td", {}, s ? label(s) : p.name || p.star), el("td", { class: "num" }, p.residual_px === undefined ? "–" : fmt(p.residual_px)),
          el("td", {}, el("button", { class: "small remove", onclick: () => { pairs.splice(i, 1); redraw(); } }, "remove")));
      })));
    fitBtn.disabled = pairs.length < 4;
  }

  async function fit() {
    fitBtn.disabled = true;
    hint.textContent = "Fitting…";
    try {
      const r = await postJSON(`/api/jobs/${id}/manual-fit`, { pairs: pairs.map((p) => ({ x: p.x, y: p.y, star: String(p.star) })) });
      r.pairs.forEach((q, i) => { pairs[i].residual_px = q.residual_px; });
      const c = r.calibration;
      result.replaceChildren(el("dl", { class: "kv" },
        el("dt", {}, "pairs"), el("dd", {}, c.n_pairs),
        el("dt", {}, "RMS of the pairs"), el("dd", { id: "pairs-rms", class: "big" }, `${fmt(c.pairs_rms_px)} px`),
        el("dt", {}, "stars identified"), el("dd", { id: "manual-n-matched" }, c.n_matched),
        el("dt", {}, "astrometric RMS (all)"), el("dd", { id: "manual-rms" }, `${fmt(c.astrometric_rms_px)} px`),
        el("dt", {}, "zero point"), el("dd", {}, c.zero_point === null ? "not fitted" : `${fmt(c.zero_point, 3)} ± ${fmt(c.zero_point_err, 3)} mag`)),
        el("p", { class: "small" }, "Saved as this job's calibration. ", el("a", { href: `#/job/${id}` }, "See the calibration view")));
      hint.textContent = "Fitted and saved. Blue circles: where the fitted model puts the catalogue stars.";
      catalog = await api(`/api/jobs/${id}/catalog`);
      catalog.stars.forEach((s) => catByHip.set(String(s.hip), s));
      drawPredicted();
    } catch (e) {
      hint.textContent = "";
      result.replaceChildren(el("div", { class: "error-box" }, e.message));
    } finally { redraw(); }
  }

  main.append(el("div", { class: "note" }, "Click a star in the image, then the same star in the sky chart, to pair them. Four pairs or more, spread over the sky, then ", el("b", {}, "Fit and save"), "."),
    hint,
    el("div", { class: "grid2" }, el("div", {}, fi.wrap), chartBox),
    el("div", { class: "grid2" }, el("div", {}, el("h2", {}, "Pairs"), table, el("div", { class: "row" }, fitBtn, clearBtn)),
      el("div", {}, el("h2", {}, "Fit"), result)));
  drawPredicted();
  redraw();
}

// ---------------------------------------------------------------- bolide
async function drawBolide(job, body) {
  const lc = await api(`/api/jobs/${job.id}/lightcurve`);
  const files = (job.result && job.result.files) || {};
  const viewer = el("div", { class: "panel" });
  const img = el("img", { id: "overlay-img", alt: "frame overlay" });
  const slider = el("input", { type: "range", min: 0, max: Math.max(lc.overlays.length - 1, 0), value: 0, id: "frame-slider", style: "width:100%" });
  const label = el("div", { class: "row small", id: "frame-label" });
  const frameOf = (name) => parseInt(name.match(/(\d+)/)[1], 10);
  const rowsByFrame = new Map(lc.rows.map((r) => [r.frame, r]));
  const tcol = lc.rows.some((r) => r.t !== null && r.t !== undefined) ? "t" : "frame";
  // calibrated magnitudes, else instrumental ones; saturated frames are bright limits (drawn as such)
  const mcol = lc.rows.some((r) => Number.isFinite(r.mag)) ? "mag" : "inst_mag";
  const epoch = lc.rows.length && lc.rows[0].time ? lc.rows[0].time : null;
  const pts = lc.rows.map((r) => ({ x: r[tcol], y: r[mcol], err: r.saturated ? null : r.mag_err, limit: !!r.saturated, data: r,
    label: `frame ${r.frame}, ${r.time ? r.time + " UTC" : "t " + fmt(r.t, 3) + " s"}: ${r.saturated ? "brighter than " + fmt(r[mcol]) + " mag (saturated: a bright limit)" : fmt(r[mcol]) + " ± " + fmt(r.mag_err) + " mag"}` }));
  const plotBox = el("div", {});
  function show(i) {
    if (!lc.overlays.length) return;
    const name = lc.overlays[i];
    img.src = fileUrl(job.id, `out/overlays/${name}`);
    const r = rowsByFrame.get(frameOf(name));
    label.textContent = `${name}` + (r ? `: t ${fmt(r.t, 3)} s, ${fmt(r.mag)} ± ${fmt(r.mag_err)} mag, (x, y) = (${fmt(r.x, 1)}, ${fmt(r.y, 1)})` : " (no light-curve point)");
    plotBox.querySelectorAll("circle.pt").forEach((c) => c.setAttribute("r", +c.dataset.i === lc.rows.indexOf(r) ? 6 : 3.5));
  }
  slider.addEventListener("input", () => show(+slider.value));
  const plot = scatterPlot({ id: "lightcurve-plot", width: 600, height: 300, invertY: true, xlabel: tcol === "t" ? (epoch ? `time (s) from ${epoch} UTC` : "time from the first frame (s; UTC unknown)") : "frame",
    ylabel: mcol === "mag" ? "magnitude" : "instrumental magnitude", series: [{ color: "#ffc857", line: true, points: pts }],
    onClick: (p) => { const i = lc.overlays.findIndex((n) => frameOf(n) === p.data.frame); if (i >= 0) { slider.value = i; show(i); } } });
  plotBox.append(plot);
  viewer.append(img, slider, label);
  const want = [["lightcurve.ecsv", "light curve (ECSV)"], ["lightcurve.png", "light curve (PNG)"], ["report.html", "report (HTML)"], ["motion_zone.png", "motion zone (PNG)"], ["calibration.json", "calibration (JSON)"]];
  const links = el("div", { class: "links", id: "downloads" }, want.map(([f, text]) => el("a", { href: fileUrl(job.id, `out/${f}`, f !== "report.html"), target: f === "report.html" ? "_blank" : null }, text)));
  const res = job.result || {};
  const peak = res.peak_mag !== null && res.peak_mag !== undefined ? fmt(res.peak_mag) + " mag" : "–";
  const limit = res.peak_mag_limit !== null && res.peak_mag_limit !== undefined ? `; saturated: brighter than ${fmt(res.peak_mag_limit)} mag` : "";
  const summary = el("p", {}, `${lc.rows.length} light-curve points; peak measured (unsaturated) ${peak}${limit}.`);
  body.append(summary, links, el("div", { class: "grid2" },
    el("div", {}, el("h2", {}, "Frames (mask, head, motion zone)"), lc.overlays.length ? viewer : el("p", { class: "muted" }, "no overlay frames")),
    el("div", {}, el("h2", {}, "Light curve"), plotBox, el("p", { class: "muted small" }, "Hover a point for its values; click it to show its frame."))));
  void files;
  show(0);
}

// ---------------------------------------------------------------- streaks
async function drawStreaks(job, body) {
  const items = await api(`/api/jobs/${job.id}/streaks`);
  const detail = el("div", { id: "streak-detail" });
  const rows = items.map((it) => el("tr", { class: "clickable", "data-stem": it.stem, onclick: (e) => select(it, e.currentTarget) },
    el("td", {}, it.name), el("td", { class: "num" }, fmt(it.p_streak, 3)), el("td", { class: "num" }, it.n_streaks < 0 ? "–" : it.n_streaks),
    el("td", { class: "muted" }, it.error || "")));
  const table = el("table", { id: "streak-list" }, el("tr", {}, ["image", "streak score", "streaks", "error"].map((h) => el("th", {}, h))), rows);
  body.append(el("p", {}, `${items.length} images, ${items.reduce((a, it) => a + Math.max(it.n_streaks, 0), 0)} streaks. `,
    el("a", { href: fileUrl(job.id, "streaks/summary.ecsv", true) }, "summary.ecsv")),
  el("div", { class: "grid-main" }, detail, el("div", {}, el("div", { class: "scroll" }, table))));
  function select(it, tr) {
    table.querySelectorAll("tr.selected").forEach((r) => r.classList.remove("selected"));
    tr.classList.add("selected");
    detail.replaceChildren(el("h2", {}, it.name));
    if (it.image) {
      const img = el("img", { src: fileUrl(job.id, it.image), alt: it.name, id: "streak-img" });
      const wrap = el("div", { class: "imgwrap" }, img);
      if (it.mask) wrap.append(el("img", { class: "mask", src: fileUrl(job.id, it.mask), alt: "mask", id: "streak-mask" }));
      img.addEventListener("load", () => {
        const svg = svgEl("svg", { class: "overlay", viewBox: `-0.5 -0.5 ${img.naturalWidth} ${img.naturalHeight}`, preserveAspectRatio: "none" });
        for (const s of it.streaks) svgEl("line", { x1: s.x1, y1: s.y1, x2: s.x2, y2: s.y2, stroke: "#ff6b6b", "stroke-width": Math.max(1, img.naturalWidth / 300), opacity: 0.8 }, svg);
        wrap.append(svg);
      });
      detail.append(wrap, el("p", { class: "muted small" }, "Mask of streak pixels in white over the image; found streaks in red."));
    }
    const cols = ["x1", "y1", "x2", "y2", "length", "angle", "width", "snr", "score"];
    detail.append(it.streaks.length
      ? el("table", { id: "streak-table" }, el("tr", {}, cols.map((c) => el("th", {}, c))), it.streaks.map((s) => el("tr", {}, cols.map((c) => el("td", { class: "num" }, fmt(s[c], 1))))))
      : el("p", { class: "muted" }, it.error ? `error: ${it.error}` : "no streak found"),
    el("div", { class: "links" }, it.table_file ? el("a", { href: fileUrl(job.id, it.table_file, true) }, "streaks (ECSV)") : null,
      it.mask ? el("a", { href: fileUrl(job.id, it.mask, true) }, "mask (PNG)") : null));
  }
  if (rows.length) select(items[0], rows[0]);
}

// ---------------------------------------------------------------- start
(async () => {
  try {
    info = await api("/api/info");
    document.getElementById("version").textContent = `skysift ${info.version}`;
  } catch (e) { toast(e.message); }
  route();
})();
