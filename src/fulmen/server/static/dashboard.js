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

  // the project page's charts: its saved workspace (or the default one), over the runs the
  // table charts; every change to the layout is saved (PUT .../workspace), with the table's view
  function projectCharts(shown, tableView) {
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
      onChange: (layout) => saveWorkspace(tableView(layout)),
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
    // the workspace keeps the table's view too ({columns, pinned, sort, filter}: its "table")
    const ws = view.workspace || {};
    let tableState = (ws.layout && ws.layout.table) || null;
    const tableView = (layout) => {
      const out = { ...layout };
      if (tableState) out.table = tableState; else delete out.table;
      return out;
    };
    // the runs table (runtable.js): paged from the server, its view kept in the URL; ticked runs
    // are charted (none ticked: the first CHARTED runs of the table) and go to the compare page
    let firstRows = view.first.runs, table = null;
    const charted = () => {
      const picked = table ? table.selectedRuns() : []; // (onLoad may run inside mount)
      return picked.length ? picked : firstRows.slice(0, CHARTED);
    };
    const panels = projectCharts(charted, tableView);
    const RT = window.FulmenRunTable;
    const saved = tableState || {};
    let saveTimer = null;
    table = RT.mount(document.getElementById("runs-table"), {
      source: RT.apiSource({ entity: view.entity, project: view.project }),
      columns: saved.columns || [...RT.DEFAULT_COLUMNS, ...view.default_columns],
      pinned: saved.pinned,
      sort: saved.sort,
      filters: saved.filter,
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
      onChange: (state) => {
        tableState = state;
        const status = document.getElementById("workspace-status");
        if (status) status.textContent = "changed, saving soon…";
        clearTimeout(saveTimer);
        saveTimer = setTimeout(() => saveWorkspace(tableView(panels.grid.layout())), 400);
      },
    });
    window.addEventListener("fulmen-colors", () => table.update({})); // the runs' colours are known
    const reset = document.getElementById("workspace-reset");
    if (reset) reset.addEventListener("click", () => {
      clearTimeout(saveTimer);
      tableState = null;
      table.update({ columns: [...RT.DEFAULT_COLUMNS, ...view.default_columns], pinned: ["name"], sort: "-created", filters: "" });
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

    window.fulmenTiming = { tablePainted: table.timing.firstRows };
    // the media of the charted runs once the charts are drawn and on screen (a request per run:
    // they would queue before the charts' own on a busy server, and starting 100 fetches holds
    // the main thread for a third of a second, which would delay the frame that shows the charts)
    const painted = () => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
    panels.setRuns(charted()).then(() => panels.grid.ready()).then(painted)
      .then(() => mediaSideBySide(document.getElementById("media"), charted()));
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

  // fn over items, at most `n` at a time, the answers in order: 100 requests started at once
  // hold the main thread for a tenth of a second and the server for longer (the charts' cursor
  // stutters meanwhile)
  async function few(items, fn, n) {
    const out = new Array(items.length);
    let next = 0;
    const worker = async () => { while (next < items.length) { const i = next++; out[i] = await fn(items[i]); } };
    await Promise.all(Array.from({ length: Math.min(n || 4, items.length) }, worker));
    return out;
  }

  // the same media key of several runs side by side, at one step (compare and project pages)
  async function mediaSideBySide(box, runs) {
    const chooser = document.getElementById("media-key"), target = document.getElementById("media-compare");
    const lists = await few(runs, (r) => getJSON(api(`/runs/${enc(r.id)}/media?refs=false`)).catch(() => ({ media: [] })));
    const keys = [...new Set(lists.flatMap((l) => l.media.map((m) => m.key)))].sort();
    chooser.replaceChildren();
    for (const k of keys) { const o = el("option", "", k); o.value = k; chooser.append(o); }
    if (!keys.length) { target.replaceChildren(el("p", "muted", "no media logged by these runs")); box.dataset.ready = "1"; return; }
    async function showKey(key) {
      const entries = await few(runs, (r) => getJSON(api(`/runs/${enc(r.id)}/media?key=${enc(key)}`)).then((d) => d.media[0] || null).catch(() => null));
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

  // the sweep page: its trials as a small embedded source (a run per trial: config = its
  // parameters, summary = its metric), drawn by the panels' own kinds (parallel, bar) and xyChart
  function sweepPage() {
    const sweep = view.sweep, metric = (sweep.metric || {}).name || "metric";
    const trials = (sweep.trials || []).filter((t) => t.run_id);
    const runs = trials.map((t) => ({
      id: t.run_id, name: `trial ${t.number}`, state: t.state, config: t.params || {},
      summary: t.value === null || t.value === undefined ? {} : { [metric]: t.value },
    }));
    const mount = (box, spec, data) => {
      const root = el("div", "panel");
      box.append(root);
      return P.mountPanel(root, spec, P.embeddedSource({ entity: view.entity, project: view.project, runs: data }), {});
    };
    const columns = [...view.parameters.map((p) => `config.${p}`), `summary.${metric}`];
    const parallel = mount(document.getElementById("parallel"), { kind: "parallel", title: `${view.parameters.join(", ")} against ${metric}`, columns }, runs);
    const curve = sweep.best_so_far || [];
    const box = document.getElementById("best-so-far");
    const best = P.xyChart(box, [
      { x: curve.map((c) => c.number), y: curve.map((c) => c.value), color: "#1f77b4", dots: true },
      { x: curve.map((c) => c.number), y: curve.map((c) => c.best), color: "#d62728" },
    ], { title: `${metric} by trial`, xLabel: "trial", yLabel: metric });
    const legend = el("div", "chart-legend");
    legend.append(el("span", "legend-value", `● ${metric} of a finished trial`), el("span", "legend-best", ` ─ best so far (${(sweep.metric || {}).goal || "minimize"})`));
    legend.children[0].style.color = "#1f77b4"; legend.children[1].style.color = "#d62728";
    best.append(legend);
    // importance and correlation as bar panels: one "run" per parameter
    const bars = (values, key) => Object.entries(values || {}).filter(([, v]) => v !== null).map(([p, v]) => ({ id: `param:${p}`, name: p, config: {}, summary: { [key]: v } }));
    const methods = { fanova: "fANOVA", ped_anova: "PED-ANOVA" };
    const importance = sweep.importance || {}, imp = document.getElementById("importance-bars");
    const mounted = [parallel];
    if (Object.keys(importance.values || {}).length) mounted.push(mount(imp, { kind: "bar", title: `importance (${methods[importance.method] || importance.method})`, metric: "importance" }, bars(importance.values, "importance")));
    const cor = bars((sweep.correlation || {}).values, "correlation");
    if (cor.length) mounted.push(mount(imp, { kind: "bar", title: `Spearman correlation with ${metric}`, metric: "correlation" }, cor));
    window.fulmenDashboard = { panels: mounted, best };
  }

  if (page === "project") projectPage();
  else if (page === "sweep") sweepPage();
  else if (page === "run") runPage();
  else if (page === "compare") comparePage();
})();
