// fulmen's dashboard pages. The server renders each page and puts its view (the page's JSON twin)
// in #page-data; what changes (runs, chart data, console) comes from /api/v1. User text is only
// ever written with textContent, never as HTML.
"use strict";
(function () {
  const view = JSON.parse(document.getElementById("page-data").textContent);
  const page = document.body.dataset.page;
  const params = new URLSearchParams(location.search);
  const LIVE_MS = Number(params.get("live_ms")) || 3000;
  const CHARTED = Number(params.get("charted")) || 10; // runs charted until the user picks
  const enc = encodeURIComponent;
  const api = (path) => `/api/v1/entities/${enc(view.entity)}/projects/${enc(view.project)}${path}`;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  async function getJSON(url) {
    const r = await fetch(url, { headers: { accept: "application/json" } });
    if (!r.ok) throw new Error(`${url}: ${r.status}`);
    return r.json();
  }

  // a stable colour per run: the hue comes from the run id
  function color(id) {
    let h = 2166136261;
    for (let i = 0; i < id.length; i++) { h ^= id.charCodeAt(i); h = Math.imul(h, 16777619); }
    return `hsl(${(h >>> 0) % 360}, 68%, 44%)`;
  }

  function text(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "number") return window.FulmenChart.fmt(v);
    if (typeof v === "string") return v;
    return JSON.stringify(v);
  }

  function dig(obj, path) {
    let cur = obj;
    for (const p of path.split(".")) { if (cur === null || typeof cur !== "object") return undefined; cur = cur[p]; }
    return cur;
  }

  // ---------------------------------------------------------------- chart panels (all pages)

  class Panels {
    constructor(container, keys, xChoices, x) {
      this.container = container;
      this.keys = keys;
      this.x = x;
      this.zoom = [null, null];
      this.smoothing = 0;
      this.log = false;
      this.groupBy = "";
      this.runs = [];
      this.charts = new Map();
      this.data = null;
      this.seq = 0;
      for (const k of keys) {
        const div = el("div", "panel");
        div.dataset.key = k;
        container.append(div);
        this.charts.set(k, new window.FulmenChart(div, { title: k, onZoom: (lo, hi) => this.setZoom(lo, hi) }));
      }
      const xs = document.getElementById("x-axis");
      const names = { _step: "_step", _runtime: "relative time (s)", _timestamp: "wall time" };
      for (const c of xChoices) { const o = el("option", "", names[c] || c); o.value = c; xs.append(o); }
      xs.value = x;
      xs.addEventListener("change", () => { this.x = xs.value; this.zoom = [null, null]; this.fetch(); });
      const sm = document.getElementById("smoothing"), out = document.getElementById("smoothing-value");
      sm.addEventListener("input", () => { this.smoothing = Number(sm.value); out.textContent = sm.value; this.render(); });
      const lg = document.getElementById("log-scale");
      lg.addEventListener("change", () => { this.log = lg.checked; this.render(); });
      document.getElementById("reset-zoom").addEventListener("click", () => this.setZoom(null, null));
      if (!keys.length) container.append(el("p", "muted", "no metrics logged yet"));
    }

    setRuns(runs) { this.runs = runs; return this.fetch(); }

    setZoom(lo, hi) { this.zoom = [lo, hi]; return this.fetch(); }

    async fetch() {
      const seq = ++this.seq;
      if (!this.runs.length || !this.keys.length) { this.data = { series: [] }; this.render(); return; }
      const q = new URLSearchParams();
      for (const r of this.runs) q.append("run", r.id);
      for (const k of this.keys) q.append("key", k);
      q.set("x", this.x);
      const width = this.container.querySelector(".chart-box")?.clientWidth || 500;
      q.set("buckets", String(Math.max(50, Math.min(2000, Math.round(width)))));
      if (this.zoom[0] !== null) { q.set("min", String(this.zoom[0])); q.set("max", String(this.zoom[1])); }
      const data = await getJSON(api(`/history?${q}`));
      if (seq !== this.seq) return; // a newer request is on its way
      this.data = data;
      this.render();
    }

    render() {
      if (!this.data) return;
      const byKey = new Map();
      for (const s of this.data.series) { if (!byKey.has(s.key)) byKey.set(s.key, []); byKey.get(s.key).push(s); }
      const runs = new Map(this.runs.map((r) => [r.id, r]));
      for (const [key, chart] of this.charts) {
        let series = (byKey.get(key) || []).filter((s) => runs.has(s.run)).map((s) => {
          const r = runs.get(s.run);
          return { id: s.run, label: r.name || s.run, color: color(s.run), x: s.x, y: s.last, lo: s.min, hi: s.max, raw: s.last };
        });
        if (this.groupBy) series = group(series, runs, this.groupBy);
        if (this.smoothing > 0) series = series.map((s) => ({ ...s, y: window.FulmenChart.ema(s.raw, this.smoothing) }));
        chart.setData(series, { log: this.log, xLabel: this.x });
        chart.container.dataset.zoom = this.zoom[0] === null ? "" : `${this.zoom[0]},${this.zoom[1]}`;
      }
    }
  }

  // one line per group: the mean over its runs, and a band from the lowest to the highest value of
  // any of its runs (bucket minima and maxima included)
  function group(series, runs, by) {
    const groups = new Map();
    for (const s of series) {
      const r = runs.get(s.id);
      const v = by === "group" ? r.group : dig(r.config || {}, by.slice("config.".length));
      const name = v === undefined || v === null ? "(none)" : text(v);
      if (!groups.has(name)) groups.set(name, []);
      groups.get(name).push(s);
    }
    const out = [];
    for (const [name, members] of groups) {
      let xs = [...new Set(members.flatMap((s) => Array.from(s.x).filter(Number.isFinite)))].sort((a, b) => a - b);
      if (xs.length > 1500) { const k = xs.length / 1500; xs = Array.from({ length: 1500 }, (_, i) => xs[Math.floor(i * k)]); }
      const mean = [], lo = [], hi = [];
      for (const x of xs) {
        let sum = 0, n = 0, a = Infinity, b = -Infinity;
        for (const s of members) {
          const v = interp(s.x, s.raw, x);
          if (v === null) continue;
          sum += v; n++;
          // the band spans every run's bucket min and max, so a spike in one run still shows
          const lo = s.lo ? interp(s.x, s.lo, x) : v, hi = s.hi ? interp(s.x, s.hi, x) : v;
          a = Math.min(a, v, lo ?? v); b = Math.max(b, v, hi ?? v);
        }
        mean.push(n ? sum / n : null); lo.push(n ? a : null); hi.push(n ? b : null);
      }
      out.push({ id: `group:${name}`, label: `${name} (${members.length} runs)`, color: color(`group:${name}`), x: xs, y: mean, raw: mean, lo, hi, bandAlpha: 0.25, group: name, runs: members.map((s) => s.id) });
    }
    return out;
  }

  function interp(xs, ys, x) {
    const n = xs.length;
    if (!n || x < xs[0] || x > xs[n - 1]) return null;
    let lo = 0, hi = n - 1;
    while (lo < hi) { const m = (lo + hi) >> 1; if (xs[m] < x) lo = m + 1; else hi = m; }
    if (xs[lo] === x || lo === 0) return Number.isFinite(ys[lo]) ? ys[lo] : null;
    const x0 = xs[lo - 1], y0 = ys[lo - 1], y1 = ys[lo];
    if (!Number.isFinite(y0) || !Number.isFinite(y1)) return null;
    return y0 + ((y1 - y0) * (x - x0)) / (xs[lo] - x0);
  }

  // ---------------------------------------------------------------- project page

  function projectPage() {
    const panels = new Panels(document.getElementById("charts"), view.charts, view.x_choices, view.x);
    // the runs table (runtable.js): paged from the server, its view kept in the URL; ticked runs
    // are charted (none ticked: the first CHARTED runs of the table) and go to the compare page
    let firstRows = view.first.runs, table = null;
    const charted = () => {
      const picked = table ? table.selectedRuns() : []; // (onLoad may run inside mount)
      return picked.length ? picked : firstRows.slice(0, CHARTED);
    };
    table = window.FulmenRunTable.mount(document.getElementById("runs-table"), {
      source: window.FulmenRunTable.apiSource({ entity: view.entity, project: view.project }),
      columns: [...window.FulmenRunTable.DEFAULT_COLUMNS, ...view.default_columns],
      initial: { total: view.first.total, runs: view.first.runs, sort: "-created", columns: view.default_columns },
      url: true,
      color,
      runUrl: (r) => `/${enc(view.entity)}/${enc(view.project)}/runs/${enc(r.id)}`,
      onSelect: (ids) => { updateCompare(ids); panels.setRuns(charted()); },
      onLoad: ({ rows, initial }) => {
        const before = charted().map((r) => r.id).join();
        firstRows = rows;
        if (!initial || charted().map((r) => r.id).join() !== before) panels.setRuns(charted());
      },
    });
    function updateCompare(ids) {
      const b = document.getElementById("compare");
      b.disabled = ids.length < 1;
      b.textContent = `compare selected (${ids.length})`;
    }
    document.getElementById("compare").addEventListener("click", () => {
      const q = new URLSearchParams();
      for (const id of table.selected()) q.append("run", id);
      location.href = `/${enc(view.entity)}/${enc(view.project)}/compare?${q}`;
    });

    // ---- charts
    const groupSel = document.getElementById("group-by");
    for (const k of Object.keys(view.columns.config).sort()) {
      const o = el("option", "", `config.${k}`); o.value = `config.${k}`; groupSel.append(o);
    }
    groupSel.addEventListener("change", async () => {
      panels.groupBy = groupSel.value;
      // the charted runs need that config value: the table fetches it with every run
      if (groupSel.value.startsWith("config.")) await table.update({ fields: [groupSel.value] });
      panels.setRuns(charted());
    });

    window.fulmenTiming = { tablePainted: table.timing.firstRows };
    panels.setRuns(charted()).then(() => mediaSideBySide(document.getElementById("media"), charted()));
    // live: while a run is running, refresh the table's rows (states) and the charts, and once
    // more after the last running run ended (its final points)
    let live = firstRows.some((r) => r.state === "running");
    setInterval(async () => {
      if (!live && !table.rows(100).some((r) => r.state === "running")) return;
      await table.refresh();
      live = table.rows(100).some((r) => r.state === "running");
      panels.setRuns(charted());
    }, LIVE_MS);
    window.fulmenDashboard = { table, panels, state: { get runs() { return table.rows(); } } };
  }

  // ---------------------------------------------------------------- run page

  function runPage() {
    const run = view.run;
    const panels = new Panels(document.getElementById("charts"), view.charts, view.x_choices, view.x);
    panels.setRuns([{ id: run.id, name: run.name || run.id, config: run.config, group: run.group }]);
    const base = `/runs/${enc(run.id)}`;
    let after = 0;
    const con = document.getElementById("console"), segments = [];
    // progress bars rewrite their line with "\r" and ANSI codes: each run of same-stream output
    // is shown as a terminal would show it (FulmenMedia.terminal), not as the raw bytes
    async function consoleTail() {
      const data = await getJSON(api(`${base}/console?after=${after}`));
      if (!data.lines.length) return;
      for (const line of data.lines) {
        const stream = line.stream === "stderr" ? "stderr" : "stdout", last = segments[segments.length - 1];
        if (last && last.stream === stream) last.text += line.text; else segments.push({ stream, text: line.text });
        after = Math.max(after, line.seq);
      }
      const frag = document.createDocumentFragment();
      for (const seg of segments) {
        const lines = window.FulmenMedia.terminal(seg.text);
        if (lines.length) frag.append(el("span", seg.stream === "stderr" ? "stderr" : "", lines.join("\n") + "\n"));
      }
      con.replaceChildren(frag);
    }
    async function system() {
      const data = await getJSON(api(`${base}/system`));
      const box = document.getElementById("system");
      box.replaceChildren();
      const keys = new Set();
      for (const s of data.stats) for (const k of Object.keys(s)) if (k !== "seq" && typeof s[k] === "number") keys.add(k);
      if (!keys.size) box.append(el("p", "muted", "none recorded"));
      for (const k of [...keys].sort()) {
        const div = el("div", "panel"); box.append(div);
        const c = new window.FulmenChart(div, { title: k });
        const pts = data.stats.filter((s) => typeof s[k] === "number");
        c.setData([{ id: k, label: k, color: color(k), x: pts.map((_, i) => i), y: pts.map((s) => s[k]), lo: null, hi: null }], { xLabel: "sample" });
      }
    }
    async function histograms() {
      const box = document.getElementById("histograms");
      if (!view.histograms.length) box.append(el("p", "muted", "none recorded (watch(model) logs them)"));
      for (const k of view.histograms.slice(0, 16)) {
        const data = await getJSON(api(`${base}/history/values?key=${enc(k)}&limit=500`));
        const rows = data.values.filter((v) => v.value && Array.isArray(v.value.bins)).map((v) => ({ step: v._step, bins: v.value.bins, values: v.value.values }));
        const div = el("div", "panel"); div.dataset.key = k; box.append(div);
        window.FulmenChart.heatmap(div, `${k} (${rows.length} steps)`, rows);
      }
    }
    async function topology() {
      const f = view.files.find((x) => x.type === "topology");
      if (!f) return;
      const r = await fetch(api(`${base}/files/${f.path.split("/").map(enc).join("/")}`));
      if (!r.ok) return;
      const tree = await r.json(), lines = [];
      (function walk(node, depth) {
        const label = `${"  ".repeat(depth)}${node.name || "(model)"}: ${node.type || node.class || ""}${node.total_parameters !== undefined ? ` (${node.total_parameters} parameters)` : ""}`;
        lines.push(label);
        for (const c of node.children || []) walk(c, depth + 1);
      })(tree, 0);
      const pre = document.getElementById("topology");
      pre.classList.remove("muted"); pre.textContent = lines.join("\n");
    }
    async function git() {
      const f = view.files.find((x) => x.type === "git" && x.uploaded);
      const shown = [...document.querySelectorAll("#overview th")].some((th) => th.textContent === "git");
      if (!f || shown) return;
      const r = await fetch(api(`${base}/files/${f.path.split("/").map(enc).join("/")}`));
      if (!r.ok) return;
      const g = await r.json();
      const row = el("tr"), value = `${g.remote ? g.remote + " " : ""}${g.commit || ""}${g.dirty ? " (dirty: see diff.patch)" : ""}`;
      row.append(el("th", "", "git"), el("td", "", value));
      document.querySelector("#overview tbody").append(row);
    }
    const fileUrl = (path) => api(`${base}/media/files/${path.split("/").map(enc).join("/")}`);
    async function media() {
      const box = document.getElementById("media");
      const data = await getJSON(api(`${base}/media`));
      box.replaceChildren();
      if (!data.media.length) box.append(el("p", "muted", "none logged"));
      const done = [];
      for (const entry of data.media) {
        const div = el("div", `panel media-key media-type-${entry.type.replace(/[^a-z0-9]/gi, "-")}`);
        box.append(div);
        done.push(window.FulmenMedia.keyPanel(div, entry, { fileUrl }));
      }
      await Promise.all(done);
      box.dataset.ready = "1";
    }
    consoleTail(); system(); histograms(); topology(); git(); media();
    setInterval(async () => {
      if (view.run.state !== "running") return;
      const fresh = await getJSON(api(base));
      view.run.state = fresh.state;
      const st = document.querySelector("#run-name .state");
      st.textContent = fresh.state; st.className = `state state-${fresh.state}`;
      consoleTail(); panels.fetch();
      if (fresh.state !== "running") media(); // the media files arrive with the end of the run
    }, LIVE_MS);
    window.fulmenDashboard = { panels };
  }

  // ---------------------------------------------------------------- compare page

  // the same media key of several runs side by side, at one step (compare and project pages)
  async function mediaSideBySide(box, runs) {
    const chooser = document.getElementById("media-key"), target = document.getElementById("media-compare");
    const lists = await Promise.all(runs.map((r) => getJSON(api(`/runs/${enc(r.id)}/media?refs=false`)).catch(() => ({ media: [] }))));
    const keys = [...new Set(lists.flatMap((l) => l.media.map((m) => m.key)))].sort();
    chooser.replaceChildren();
    for (const k of keys) { const o = el("option", "", k); o.value = k; chooser.append(o); }
    if (!keys.length) { target.replaceChildren(el("p", "muted", "no media logged by these runs")); box.dataset.ready = "1"; return; }
    async function showKey(key) {
      const entries = await Promise.all(runs.map((r) => getJSON(api(`/runs/${enc(r.id)}/media?key=${enc(key)}`)).then((d) => d.media[0] || null).catch(() => null)));
      const side = runs.map((r, i) => ({
        id: r.id, name: r.name || r.id, color: color(r.id), entry: entries[i],
        fileUrl: (path) => api(`/runs/${enc(r.id)}/media/files/${path.split("/").map(enc).join("/")}`),
      }));
      await window.FulmenMedia.compare(target, key, side);
      box.dataset.ready = "1";
    }
    chooser.onchange = () => showKey(chooser.value);
    await showKey(keys[0]);
  }

  function comparePage() {
    const panels = new Panels(document.getElementById("charts"), view.charts, view.x_choices, view.x);
    panels.setRuns(view.runs);
    mediaSideBySide(document.getElementById("media"), view.runs);
    window.fulmenDashboard = { panels };
  }

  if (page === "project") projectPage();
  else if (page === "run") runPage();
  else if (page === "compare") comparePage();
})();
