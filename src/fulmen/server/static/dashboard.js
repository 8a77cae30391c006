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

  const P = window.FulmenPanels;
  // a run's colour: its place in the project (panels.js), the same on every page
  const color = (id) => P.color(id);

  function text(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "number") return P.fmt(v);
    if (typeof v === "string") return v;
    return JSON.stringify(v);
  }

  function dig(obj, path) {
    let cur = obj;
    for (const p of path.split(".")) { if (cur === null || typeof cur !== "object") return undefined; cur = cur[p]; }
    return cur;
  }

  function duration(s) {
    if (!(s >= 0)) return "";
    if (s < 60) return `${s.toFixed(1)} s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`;
    return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  }

  function when(ts) {
    if (!ts) return "";
    const d = new Date(ts * 1000), p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
  }

  // ---------------------------------------------------------------- chart panels (all pages)

  // the charts of a page: a grid of panels (panels.js) over the page's runs; the page's controls
  // (x-axis, smoothing, log scale, group by, reset zoom) are the layout's settings
  function charts(container, layout, source, opts) {
    const o = opts || {};
    layout = P.normalize(layout);
    layout.settings = { x: view.x, ...(layout.settings || {}) };
    const grid = P.mountGrid(container, layout, source, { sync: `fulmen-${page}`, ...o });
    const settings = () => grid.layout().settings || {};
    const xs = document.getElementById("x-axis");
    if (xs) {
      const names = { _step: "_step", _runtime: "relative time (s)", _timestamp: "wall time" };
      for (const c of view.x_choices) { const op = el("option", "", names[c] || c); op.value = c; xs.append(op); }
      if (![...xs.options].some((op) => op.value === settings().x)) { const op = el("option", "", settings().x); op.value = settings().x; xs.append(op); }
      xs.value = settings().x;
      xs.addEventListener("change", () => grid.setSettings({ x: xs.value }));
    }
    const sm = document.getElementById("smoothing"), out = document.getElementById("smoothing-value");
    const kind = document.getElementById("smoothing-type");
    if (sm) {
      const s0 = settings().smoothing;
      if (s0 && s0.type && s0.type !== "none") { if (kind) kind.value = s0.type; sm.value = String(s0.amount); out.textContent = String(s0.amount); }
      const apply = () => {
        const type = kind ? kind.value : "exponential", amount = Number(sm.value);
        out.textContent = sm.value;
        grid.setSettings({ smoothing: amount > 0 && type !== "none" ? { type, amount } : { type: "none", amount: 0 } });
      };
      const range = () => { // the slider's range follows the kind: a weight, or points
        const t = kind ? kind.value : "exponential";
        sm.max = t === "exponential" ? "0.99" : "50"; sm.step = t === "exponential" ? "0.01" : "1";
      };
      range();
      sm.addEventListener("input", apply);
      if (kind) kind.addEventListener("change", () => { range(); sm.value = "0"; apply(); });
    }
    const lg = document.getElementById("log-scale");
    if (lg) { lg.checked = !!settings().logy; lg.addEventListener("change", () => grid.setSettings({ logy: lg.checked })); }
    const reset = document.getElementById("reset-zoom");
    if (reset) reset.addEventListener("click", () => grid.resetZoom());
    return {
      grid,
      source,
      setRuns(runs) { source.setRuns(runs); return grid.refresh(); },
      fetch() { return grid.refresh(); },
    };
  }

  // saves the project's workspace (its layout) on the server, a moment after the last change
  function saveWorkspace(layout) {
    const status = document.getElementById("workspace-status");
    if (status) status.textContent = "saving…";
    return fetch(api("/workspace"), {
      method: "PUT",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify({ layout }),
    }).then(async (r) => {
      if (!r.ok) throw new Error(((await r.json().catch(() => ({}))).detail) || `${r.status}`);
      if (status) { status.textContent = "saved"; status.dataset.saved = String(Date.now()); }
    }).catch((e) => { if (status) status.textContent = `not saved: ${e.message || e}`; });
  }

  // ---------------------------------------------------------------- project page

  const ROW_H = 26;
  const BUILTIN = [
    { key: "state", label: "state", sort: "state", get: (r) => r.state },
    { key: "name", label: "name", sort: "name", get: (r) => r.name || r.id },
    { key: "tags", label: "tags", get: (r) => (r.tags || []).join(", ") },
    { key: "group", label: "group", get: (r) => r.group },
    { key: "created", label: "created", sort: "created", get: (r) => when(r.created) },
    { key: "duration", label: "duration", sort: "runtime", get: (r) => duration(r.runtime) },
  ];

  // the project page's charts: its saved workspace (or the default one), over the runs the
  // table charts; every change to the layout is saved (PUT .../workspace)
  function projectCharts(shown) {
    const source = P.apiSource({ entity: view.entity, project: view.project });
    // every run came with the page: their colours are known without asking
    if (view.first.runs.length === view.first.total) P.rankRuns(view.first.runs);
    source.setRuns(shown());
    const ws = view.workspace || { layout: P.defaultLayout(view.charts) };
    const config = Object.keys(view.columns.config).sort().map((k) => `config.${k}`);
    const summary = Object.keys(view.columns.summary).sort().map((k) => `summary.${k}`);
    const keys = Object.keys(view.columns.history).filter((k) => !k.startsWith("_")).sort();
    const c = charts(document.getElementById("charts"), ws.layout, source, {
      editable: true,
      onChange: saveWorkspace,
      onDirty: () => { document.getElementById("workspace-status").textContent = "changed, saving soon…"; },
      choices: { keys, x: view.x_choices, groupby: ["group", ...config], columns: ["name", "state", "group", ...config, ...summary] },
    });
    let charted = "";
    // the same runs in the same states: nothing to fetch again (the table reloads often)
    const signature = (runs) => runs.map((r) => `${r.id}:${r.state}:${r.updated}:${r.rows}`).join(",");
    c.setRuns = (runs) => {
      const sig = signature(runs);
      source.setRuns(runs);
      c.grid.context.refresh(); // the fresher run objects, without fetching the charts again
      if (sig === charted) return Promise.resolve();
      charted = sig;
      return c.grid.refresh();
    };
    charted = signature(shown());
    // group by: the run group or a config key (the panels fetch that key's values themselves)
    const groupSel = document.getElementById("group-by");
    for (const k of config) { const o = el("option", "", k); o.value = k; groupSel.append(o); }
    groupSel.value = c.grid.layout().settings.groupby || "";
    groupSel.addEventListener("change", () => c.grid.setSettings({ groupby: groupSel.value || null }));
    const reset = document.getElementById("workspace-reset");
    if (reset) reset.addEventListener("click", async () => {
      const r = await fetch(api("/workspace"), { method: "DELETE", headers: { accept: "application/json", "x-fulmen-client": "dashboard" } });
      if (!r.ok) return;
      const ws2 = await r.json();
      await c.grid.update({ ...ws2.layout, settings: { x: view.x, ...(ws2.layout.settings || {}) } });
      document.getElementById("workspace-status").textContent = "default (not saved yet)";
    });
    return c;
  }

  function projectPage() {
    const state = {
      columns: view.default_columns.slice(),
      sort: "-created", search: "", filter: "", runState: "",
      runs: view.first.runs, total: view.first.total, shown: null, selected: new Set(),
    };
    const panels = projectCharts(() => shownRuns());
    const head = document.getElementById("runs-head"), body = document.getElementById("runs-body");
    const spacer = document.getElementById("runs-spacer"), layer = el("div", "vlayer");
    body.append(layer);
    window.addEventListener("fulmen-colors", () => renderRows()); // the runs' colours are known

    const columns = () => [
      ...BUILTIN,
      ...state.columns.map((c) => ({ key: c, label: c, sort: c, get: (r) => text(dig(c.startsWith("config.") ? r.config || {} : r.summary || {}, c.slice(c.indexOf(".") + 1))) })),
    ];

    function renderHead() {
      head.replaceChildren();
      const row = el("div", "vrow");
      row.append(el("span", "cell sel", ""), el("span", "cell eye", "chart"));
      for (const c of columns()) {
        const cell = el("span", `cell col-${c.key.replace(/[^a-z0-9]/gi, "_")}`, c.label);
        if (c.sort) {
          cell.classList.add("sortable");
          if (state.sort === c.sort) cell.textContent += " ▲";
          if (state.sort === `-${c.sort}`) cell.textContent += " ▼";
          cell.addEventListener("click", () => { state.sort = state.sort === `-${c.sort}` ? c.sort : `-${c.sort}`; load(); });
        }
        row.append(cell);
      }
      head.append(row);
    }

    function renderChooser() {
      const list = document.getElementById("column-list");
      list.replaceChildren();
      for (const kind of ["summary", "config"]) {
        for (const k of Object.keys(view.columns[kind]).sort()) {
          const name = `${kind}.${k}`, label = el("label"), box = el("input");
          box.type = "checkbox"; box.value = name; box.checked = state.columns.includes(name);
          box.addEventListener("change", () => {
            state.columns = box.checked ? [...state.columns, name] : state.columns.filter((c) => c !== name);
            load();
          });
          label.append(box, document.createTextNode(" " + name));
          list.append(label);
        }
      }
    }

    function shownRuns() {
      if (state.shown) return state.runs.filter((r) => state.shown.has(r.id));
      return state.runs.slice(0, CHARTED); // by default the first runs of the table are charted
    }

    function renderRows() {
      const top = body.scrollTop, h = body.clientHeight || 400;
      const first = Math.max(0, Math.floor(top / ROW_H) - 5), last = Math.min(state.total, Math.ceil((top + h) / ROW_H) + 5);
      const cols = columns(), shown = new Set(shownRuns().map((r) => r.id));
      const frag = document.createDocumentFragment();
      for (let i = first; i < last; i++) {
        const r = state.runs[i], row = el("div", "vrow");
        row.style.top = `${i * ROW_H}px`;
        if (!r) { row.append(el("span", "cell muted", "loading…")); frag.append(row); continue; }
        row.dataset.run = r.id;
        const sel = el("input"); sel.type = "checkbox"; sel.checked = state.selected.has(r.id);
        sel.addEventListener("change", () => { sel.checked ? state.selected.add(r.id) : state.selected.delete(r.id); updateCompare(); });
        const selCell = el("span", "cell sel"); selCell.append(sel);
        const eye = el("span", "cell eye");
        const sw = el("button", "swatch"); sw.type = "button"; sw.title = "show in charts";
        sw.style.background = shown.has(r.id) ? color(r.id) : "transparent";
        sw.style.borderColor = color(r.id);
        sw.addEventListener("click", () => {
          if (!state.shown) state.shown = new Set(shownRuns().map((x) => x.id));
          state.shown.has(r.id) ? state.shown.delete(r.id) : state.shown.add(r.id);
          renderRows(); panels.setRuns(shownRuns());
        });
        eye.append(sw);
        row.append(selCell, eye);
        for (const c of cols) {
          const cell = el("span", `cell col-${c.key.replace(/[^a-z0-9]/gi, "_")}`);
          if (c.key === "name") {
            const a = el("a", "", c.get(r)); a.href = `/${enc(view.entity)}/${enc(view.project)}/runs/${enc(r.id)}`;
            cell.append(a);
          } else if (c.key === "state") {
            cell.append(el("span", `state state-${r.stale ? "stale" : r.state}`, r.stale ? "stale" : r.state));
          } else cell.textContent = c.get(r);
          row.append(cell);
        }
        frag.append(row);
      }
      layer.replaceChildren(frag);
    }

    function updateCompare() {
      const b = document.getElementById("compare");
      b.disabled = state.selected.size < 1;
      b.textContent = `compare selected (${state.selected.size})`;
    }
    document.getElementById("compare").addEventListener("click", () => {
      const q = new URLSearchParams();
      for (const id of state.selected) q.append("run", id);
      location.href = `/${enc(view.entity)}/${enc(view.project)}/compare?${q}`;
    });

    let loading = 0;
    async function load(quiet) {
      const seq = ++loading;
      const q = new URLSearchParams({ limit: "10000", sort: state.sort });
      if (state.search) q.set("search", state.search);
      if (state.runState) q.append("state", state.runState);
      for (const f of state.filter.split(";").map((s) => s.trim()).filter(Boolean)) q.append("filter", f);
      for (const c of state.columns) q.append("field", c);
      if (!state.columns.length) q.append("field", "config.__none__");
      let page;
      try { page = await getJSON(api(`/runs?${q}`)); } catch (e) {
        document.getElementById("run-count").textContent = String(e.message || e); return;
      }
      if (seq !== loading) return;
      const wasLive = state.runs.some((r) => r.state === "running");
      state.runs = page.runs; state.total = page.total;
      paint();
      // charts too, and once more after the last running run ended (its final points)
      if (!quiet || wasLive) await panels.setRuns(shownRuns());
    }

    let scheduled = false;
    body.addEventListener("scroll", () => {
      if (scheduled) return;
      scheduled = true;
      requestAnimationFrame(() => { scheduled = false; renderRows(); });
    });
    const debounce = (fn) => { let t; return () => { clearTimeout(t); t = setTimeout(fn, 200); }; };
    const search = document.getElementById("search"), filter = document.getElementById("filter");
    search.addEventListener("input", debounce(() => { state.search = search.value; load(); }));
    filter.addEventListener("change", () => { state.filter = filter.value; load(); });
    document.getElementById("state-filter").addEventListener("change", (e) => { state.runState = e.target.value; load(); });
    function paint() {
      document.getElementById("run-count").textContent = `${state.total} runs`;
      spacer.style.height = `${state.total * ROW_H}px`;
      renderHead(); renderRows();
      const table = document.getElementById("runs-table");
      table.dataset.rows = String(state.runs.length);
      table.dataset.total = String(state.total);
    }
    renderChooser();
    paint(); // the first runs came with the page: the table paints before the whole list loads
    // when that frame is on screen (for the benchmarks), then fetch every run
    requestAnimationFrame(() => setTimeout(() => {
      window.fulmenTiming = { tablePainted: performance.now() };
      // the media of the charted runs once the charts are drawn (a request per run: they would
      // queue before the charts' own on a busy server)
      load().then(() => panels.grid.ready()).then(() => mediaSideBySide(document.getElementById("media"), shownRuns()));
    }, 0));
    // live: while a run is running, refresh the table (states) and its charts
    setInterval(() => { if (state.runs.some((r) => r.state === "running")) load(true); }, LIVE_MS);
    window.fulmenDashboard = { state, panels, load };
  }

  // ---------------------------------------------------------------- run page

  function runPage() {
    const run = view.run;
    const source = P.apiSource({ entity: view.entity, project: view.project, runs: [run.id] });
    source.setRuns([run]);
    const panels = charts(document.getElementById("charts"), P.defaultLayout(view.charts), source);
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
      if (!keys.size) { box.append(el("p", "muted", "none recorded")); return; }
      // the samples as a snapshot (one point per STATS record, x = its index): the same panels
      const series = [...keys].sort().map((k) => {
        const pts = data.stats.map((s, i) => [i, s[k]]).filter((p) => typeof p[1] === "number");
        const ys = pts.map((p) => p[1]);
        return { run: run.id, key: k, x: pts.map((p) => p[0]), min: ys, max: ys, last: ys, count: ys.map(() => 1) };
      });
      const snapshot = { runs: [run], history: [{ x: "sample", answer: { x: "sample", series } }] };
      const layout = { panels: series.map((s) => ({ kind: "line", title: s.key, y: [s.key], x: "sample" })) };
      P.mountGrid(box, layout, P.embeddedSource(snapshot), { sync: "fulmen-system" });
    }
    function histograms() {
      const box = document.getElementById("histograms");
      if (!view.histograms.length) { box.append(el("p", "muted", "none recorded (watch(model) logs them)")); return; }
      const layout = { panels: view.histograms.slice(0, 16).map((k) => ({ kind: "histogram", title: k, key: k })) };
      P.mountGrid(box, layout, source, { sync: "fulmen-histograms" });
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
    const source = P.apiSource({ entity: view.entity, project: view.project, runs: view.runs.map((r) => r.id) });
    source.setRuns(view.runs);
    const panels = charts(document.getElementById("charts"), P.defaultLayout(view.charts), source);
    mediaSideBySide(document.getElementById("media"), view.runs);
    window.fulmenDashboard = { panels };
  }

  if (page === "project") projectPage();
  else if (page === "run") runPage();
  else if (page === "compare") comparePage();
})();
