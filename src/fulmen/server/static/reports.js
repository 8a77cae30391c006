// fulmen's report pages: a report (its panel grids mounted with FulmenPanels.mountGrid) and its
// editor; the same code draws an exported report from file://. The server renders the report's
// text and puts its view in #page-data: the report, the snapshots of its frozen run sets (and of
// every run set in an export, which has no server). User text is written with textContent; the
// only HTML set is the markdown the server rendered (escaped and sanitized there).
"use strict";
(function () {
  const view = JSON.parse(document.getElementById("page-data").textContent);
  const page = document.body.dataset.page;
  const P = window.FulmenPanels;
  const enc = encodeURIComponent;
  const api = (path) => `/api/v1/entities/${enc(view.entity)}/projects/${enc(view.project)}${path}`;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function button(label, cls, onClick, title) {
    const b = el("button", cls, label);
    b.type = "button";
    if (title) b.title = title;
    b.addEventListener("click", onClick);
    return b;
  }

  async function send(method, url, body) {
    const headers = { accept: "application/json", "X-Fulmen-Client": "dashboard" };
    if (body !== undefined) headers["content-type"] = "application/json";
    const r = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(typeof data.detail === "string" ? data.detail : `${url}: ${r.status}`);
    return data;
  }

  // ---------------------------------------------------------------- sources of a panel grid

  // a live run set: its runs from GET .../runs (filters, search, selection), the rest from
  // FulmenPanels.apiSource (history, values, media, colours by the project's run order)
  function liveSource(rs) {
    const src = P.apiSource({ entity: view.entity, project: rs.project, filters: rs.filters || [] });
    const base = src.runs;
    src.runs = async () => {
      const q = new URLSearchParams({ limit: "10000", sort: "created" });
      for (const f of rs.filters || []) q.append("filter", f);
      if (rs.query) q.set("search", rs.query);
      const url = `/api/v1/entities/${enc(view.entity)}/projects/${enc(rs.project)}/runs?${q}`;
      let runs = (await send("GET", url)).runs;
      if (rs.selection) { const chosen = new Set(rs.selection); runs = runs.filter((r) => chosen.has(r.id)); }
      src.setRuns(runs);
      return base();
    };
    return src;
  }

  // a run set's source: its snapshot when frozen (or exported), else the server
  function runsetSource(rs) {
    const snap = (view.snapshots || {})[rs.id];
    if (snap || view.embedded) return P.embeddedSource(snap || { runs: [] });
    return liveSource(rs);
  }

  // the runs of every run set of a grid as one source; each run answered by its own run set's
  function unionSource(sources, onCounts) {
    if (sources.length === 1) {
      const only = sources[0], runs = only.runs.bind(only);
      only.runs = async () => { const r = await runs(); onCounts([r.length]); return r; };
      return only;
    }
    const owner = new Map();
    const of = (id) => owner.get(id) || sources[0];
    return {
      kind: "union",
      async runs() {
        const lists = await Promise.all(sources.map((s) => s.runs()));
        onCounts(lists.map((l) => l.length));
        const out = [];
        lists.forEach((list, i) => { for (const r of list) if (!owner.has(r.id)) { owner.set(r.id, sources[i]); out.push(r); } });
        return out;
      },
      async withFields(runs, paths) {
        const parts = await Promise.all(sources.map((s) => {
          const mine = runs.filter((r) => of(r.id) === s);
          return mine.length && s.withFields ? s.withFields(mine, paths) : mine;
        }));
        const byId = new Map(parts.flat().map((r) => [r.id, r]));
        return runs.map((r) => byId.get(r.id) || r);
      },
      async history(q) {
        const answers = await Promise.all(sources.map((s) => {
          const mine = q.runs.filter((id) => of(id) === s);
          return mine.length ? s.history({ ...q, runs: mine }) : null;
        }));
        const done = answers.filter(Boolean);
        return { x: q.x || "_step", buckets: q.buckets, series: done.flatMap((a) => a.series) };
      },
      values(runId, key, limit) { return of(runId).values(runId, key, limit); },
      media(runId, key) { return of(runId).media(runId, key); },
      mediaUrl(runId, path) { return of(runId).mediaUrl(runId, path); },
      async snapshot(panels) { return sources[0].snapshot(panels); },
    };
  }

  // a grid's panels, with the run sets' grouping for the line and bar panels that name none
  function gridPanels(block) {
    const by = ((block.runsets[0] || {}).groupby || [])[0];
    return block.panels.map((p) => {
      if (!by || (p.kind !== "line" && p.kind !== "bar") || "groupby" in p) return p;
      return { ...p, groupby: by, ...(p.kind === "line" && !p.band ? { band: "minmax" } : {}) };
    });
  }

  function mountBlock(host, block, opts) {
    const items = block.runsets.map((rs) => document.querySelector(`.runset[data-runset="${CSS.escape(rs.id)}"] .runset-count`));
    const source = unionSource(block.runsets.map(runsetSource), (counts) => {
      counts.forEach((n, i) => { if (items[i]) items[i].textContent = `${n} run${n === 1 ? "" : "s"}`; });
    });
    return P.mountGrid(host, { panels: gridPanels(block) }, source, { sync: `report-${block.id}`, ...(opts || {}) });
  }

  // ---------------------------------------------------------------- the report

  function reportPage() {
    const grids = [];
    for (const block of view.report.blocks) {
      if (block.kind !== "panels") continue;
      const host = document.querySelector(`.report-grid[data-block="${CSS.escape(block.id)}"]`);
      if (host) grids.push(mountBlock(host, block));
    }
    Promise.all(grids.map((g) => g.ready())).then(() => { document.body.dataset.ready = "1"; });
    const del = document.getElementById("delete-report");
    if (del) {
      del.addEventListener("click", async () => {
        if (!window.confirm("Delete this report?")) return;
        await send("DELETE", api(`/reports/${enc(view.report.id)}`));
        location.href = `/${enc(view.entity)}/${enc(view.project)}/reports`;
      });
    }
    window.fulmenReport = { grids };
  }

  // ---------------------------------------------------------------- the editor

  function editorPage() {
    const report = JSON.parse(JSON.stringify(view.report));
    const blocks = report.blocks.map(strip);
    const box = document.getElementById("blocks");
    const status = document.getElementById("save-status");
    const config = view.config || [];
    const choices = {
      keys: view.metrics || [],
      x: ["_step", "_runtime", "_timestamp", ...(view.metrics || []).filter((k) => k === "trainer/global_step" || k === "epoch")],
      groupby: ["group", ...config.map((k) => `config.${k}`)],
      columns: ["name", "state", "group", ...config.map((k) => `config.${k}`), ...(view.summary || []).map((k) => `summary.${k}`)],
    };
    let mounted = [];

    function strip(b) {
      const out = { ...b };
      delete out.html;
      if (out.panels) out.panels = out.panels.map((p) => { const q = { ...p }; delete q.html; return q; });
      return out;
    }

    function move(i, d) {
      const j = i + d;
      if (j < 0 || j >= blocks.length) return;
      [blocks[i], blocks[j]] = [blocks[j], blocks[i]];
      render();
    }

    function markdownEditor(card, block) {
      const area = el("textarea", "md-input");
      area.rows = 6; area.value = block.text || ""; area.placeholder = "markdown: # headings, lists, `code`, $math$";
      const preview = el("div", "md-preview markdown");
      let timer = null, seq = 0;
      async function show() {
        const mine = ++seq;
        try {
          const { html } = await send("POST", "/api/v1/markdown", { text: area.value });
          if (mine !== seq) return;
          preview.innerHTML = html; // rendered and sanitized by the server (_markdown)
          preview.dataset.rendered = String(Number(preview.dataset.rendered || 0) + 1);
        } catch (e) { preview.textContent = String(e.message || e); }
      }
      area.addEventListener("input", () => { block.text = area.value; clearTimeout(timer); timer = setTimeout(show, 250); });
      card.append(el("div", "md-edit"));
      card.lastChild.append(area, preview);
      show();
    }

    function imageEditor(card, block) {
      const url = el("input", "image-url"); url.type = "text"; url.placeholder = "data: URL or /api/v1/... media file"; url.value = block.url || "";
      const file = el("input", "image-file"); file.type = "file"; file.accept = "image/png,image/jpeg,image/gif,image/webp";
      const caption = el("input", "image-caption"); caption.type = "text"; caption.placeholder = "caption"; caption.value = block.caption || "";
      const img = el("img", "image-preview");
      const show = () => { if (block.url) img.src = block.url; else img.removeAttribute("src"); };
      url.addEventListener("change", () => { block.url = url.value; show(); });
      caption.addEventListener("input", () => { block.caption = caption.value || null; });
      file.addEventListener("change", () => {
        const f = file.files && file.files[0];
        if (!f) return;
        const fr = new FileReader();
        fr.onload = () => { block.url = String(fr.result); url.value = block.url.slice(0, 60) + "…"; show(); };
        fr.readAsDataURL(f);
      });
      card.append(url, file, caption, img);
      show();
    }

    function runsetEditor(rs, remount) {
      const row = el("div", "runset-edit");
      row.dataset.runset = rs.id || "";
      const field = (label, input) => { const l = el("label", "field-inline", label + " "); l.append(input); row.append(l); return input; };
      const name = field("name", el("input")); name.value = rs.name || "Run set";
      name.addEventListener("input", () => { rs.name = name.value; });
      const filters = field("filters", el("input", "runset-filters")); filters.placeholder = "config.lr<0.01; summary.acc>0.9";
      filters.value = (rs.filters || []).join("; ");
      filters.addEventListener("change", () => { rs.filters = filters.value.split(";").map((s) => s.trim()).filter(Boolean); remount(); });
      const query = field("search", el("input", "runset-query")); query.value = rs.query || "";
      query.addEventListener("change", () => { rs.query = query.value || null; remount(); });
      const group = field("group by", el("select", "runset-groupby"));
      for (const v of ["", ...choices.groupby]) { const o = el("option", "", v || "none"); o.value = v; group.append(o); }
      group.value = (rs.groupby || [])[0] || "";
      group.addEventListener("change", () => { rs.groupby = group.value ? [group.value] : []; remount(); });
      const frozen = field("freeze", el("input", "runset-frozen")); frozen.type = "checkbox"; frozen.checked = !!rs.frozen;
      frozen.title = "keep these runs and their data as they are when the report is saved";
      frozen.addEventListener("change", () => { rs.frozen = frozen.checked; });
      if (rs.selection) {
        row.append(el("span", "muted", `${rs.selection.length} chosen runs `));
        row.append(button("all runs", "runset-all", () => { rs.selection = null; remount(); }));
      }
      return row;
    }

    function gridEditor(card, block) {
      const sets = el("div", "runsets-edit");
      const host = el("div", "report-grid");
      host.dataset.block = block.id || "";
      let grid = null;
      function remount() {
        if (grid) grid.destroy();
        const snapless = { ...block, runsets: block.runsets.map((rs) => ({ ...rs, frozen: false })) };
        const source = unionSource(snapless.runsets.map(liveSource), () => {});
        grid = P.mountGrid(host, { panels: block.panels }, source, {
          sync: "report-editor", editable: true, choices, debounce: 0,
          onChange(layout) { block.panels = P.flatPanels(layout); },
        });
        mounted = mounted.filter((g) => g !== grid).concat([grid]);
      }
      for (const rs of block.runsets) sets.append(runsetEditor(rs, remount));
      card.append(sets, host);
      remount();
    }

    function render() {
      for (const g of mounted) g.destroy();
      mounted = [];
      box.replaceChildren();
      blocks.forEach((block, i) => {
        const card = el("section", `block-edit block-edit-${block.kind}`);
        card.dataset.index = String(i);
        const head = el("div", "block-head");
        const names = { markdown: "text", image: "image", panels: "panel grid" };
        head.append(el("b", "", names[block.kind] || block.kind));
        head.append(button("↑", "block-up", () => move(i, -1), "move up"));
        head.append(button("↓", "block-down", () => move(i, 1), "move down"));
        head.append(button("×", "block-remove", () => { blocks.splice(i, 1); render(); }, "remove"));
        card.append(head);
        box.append(card);
        if (block.kind === "markdown") markdownEditor(card, block);
        else if (block.kind === "image") imageEditor(card, block);
        else if (block.kind === "panels") gridEditor(card, block);
      });
      box.dataset.blocks = String(blocks.length);
    }

    document.getElementById("add-markdown").addEventListener("click", () => { blocks.push({ kind: "markdown", text: "" }); render(); });
    document.getElementById("add-image").addEventListener("click", () => { blocks.push({ kind: "image", url: "", caption: null }); render(); });
    document.getElementById("add-grid").addEventListener("click", () => { blocks.push(JSON.parse(JSON.stringify(view.default_grid))); render(); });
    document.getElementById("save-report").addEventListener("click", async () => {
      const body = {
        title: document.getElementById("report-title-input").value,
        description: document.getElementById("report-description-input").value,
        blocks,
      };
      status.textContent = "saving…";
      try {
        const saved = view.new
          ? await send("POST", api("/reports"), body)
          : await send("PUT", api(`/reports/${enc(report.id)}`), body);
        status.textContent = "saved";
        location.href = saved.url;
      } catch (e) {
        status.textContent = String(e.message || e);
        status.classList.add("error");
      }
    });
    render();
    window.fulmenReportEditor = { blocks, render };
  }

  if (page === "report") reportPage();
  else if (page === "report-edit") editorPage();
})();
