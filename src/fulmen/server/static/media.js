// fulmen's media viewer: images with mask overlays and boxes, tables, chart presets, audio, video,
// HTML. A reusable component with no page of its own (the run and compare pages use it; panels of
// a later dashboard can too):
//
//   FulmenMedia.view(container, refs, {fileUrl, state})   one step's references of one key
//   FulmenMedia.keyPanel(container, entry, {fileUrl})      a key with its step slider: entry is
//                                                          {key, type, steps, values} as GET .../media answers
//   FulmenMedia.table(container, tableRef, {fileUrl})      a table-file: sort, filter, pages
//   FulmenMedia.chart(container, chartRef, {fileUrl})      a chart preset (plot.*)
//   FulmenMedia.terminal(text)                             console text as a terminal shows it
//
// fileUrl(path) answers the URL of a run file (the server's media route). Everything is drawn with
// DOM calls and textContent, never HTML from the data; HTML media go into a sandboxed frame.
// What each canvas shows is kept on it as `canvas.fulmen` (the tests read it).
"use strict";
(function () {
  const PALETTE = [
    [128, 64, 128], [244, 35, 232], [70, 70, 70], [107, 142, 35], [70, 130, 180], [0, 0, 142],
    [220, 20, 60], [250, 170, 30], [220, 220, 0], [152, 251, 152], [255, 0, 0], [0, 60, 100],
    [0, 80, 100], [119, 11, 32], [190, 153, 153], [153, 153, 153], [102, 102, 156], [0, 0, 230],
  ];
  const PAGE_ROWS = 50;
  // numbers as the panels write them (panels.js), when the page has them
  const fmt = (v) => (window.FulmenPanels ? window.FulmenPanels.fmt(v) : String(v));
  const IMAGE_TYPES = new Set(["image-file"]);

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function classColor(id) {
    const n = Number(id);
    if (n >= 0 && n < PALETTE.length) return PALETTE[n];
    let h = (n * 2654435761) >>> 0; // other ids: a stable colour from the id
    return [h & 255, (h >> 8) & 255, (h >> 16) & 255];
  }
  const css = (rgb) => `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;

  function checkbox(label, checked, onChange, cls) {
    const l = el("label", cls || "toggle"), box = el("input");
    box.type = "checkbox"; box.checked = checked;
    box.addEventListener("change", () => onChange(box.checked));
    l.append(box, document.createTextNode(" " + label));
    return l;
  }

  // ------------------------------------------------------------------ images

  // a mask PNG (8-bit grey: one class id per pixel) as {w, h, ids}, once per path
  const masks = new Map();
  function loadMask(url) {
    if (!masks.has(url)) {
      masks.set(url, new Promise((resolve, reject) => {
        const img = new Image();
        img.onload = () => {
          const c = document.createElement("canvas");
          c.width = img.naturalWidth; c.height = img.naturalHeight;
          const ctx = c.getContext("2d", { willReadFrequently: true });
          ctx.drawImage(img, 0, 0);
          const rgba = ctx.getImageData(0, 0, c.width, c.height).data;
          const ids = new Uint8Array(c.width * c.height);
          for (let i = 0; i < ids.length; i++) ids[i] = rgba[i * 4];
          resolve({ w: c.width, h: c.height, ids });
        };
        img.onerror = () => reject(new Error(`mask ${url} did not load`));
        img.src = url;
      }));
    }
    return masks.get(url);
  }

  function labelsOf(m) { return m && m.class_labels && typeof m.class_labels === "object" ? m.class_labels : {}; }

  // what the controls of one key decide, shared by every image of the key and every step
  function newState() {
    return { opacity: 0.5, fit: true, hiddenMasks: new Set(), hiddenClasses: new Map(), hiddenBoxClasses: new Map(), minScore: new Map(), hiddenBoxes: new Set() };
  }
  const hidden = (map, name) => { if (!map.has(name)) map.set(name, new Set()); return map.get(name); };

  async function drawMasks(canvas, ref, opts, state) {
    const names = Object.keys(ref.masks || {});
    const loaded = await Promise.all(names.map((n) => loadMask(opts.fileUrl(ref.masks[n].path)).catch(() => null)));
    const w = ref.width || (loaded.find(Boolean) || {}).w || 1, h = ref.height || (loaded.find(Boolean) || {}).h || 1;
    canvas.width = w; canvas.height = h;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    const out = ctx.createImageData(w, h), px = out.data, alpha = Math.round(state.opacity * 255);
    let drawn = 0;
    names.forEach((name, k) => {
      const m = loaded[k];
      if (!m || state.hiddenMasks.has(name) || m.w !== w || m.h !== h) return;
      const off = hidden(state.hiddenClasses, name), lut = new Array(256).fill(null);
      for (let c = 0; c < 256; c++) if (!off.has(String(c))) lut[c] = classColor(c);
      for (let i = 0; i < m.ids.length; i++) {
        const rgb = lut[m.ids[i]];
        if (!rgb) continue;
        const j = i * 4;
        px[j] = rgb[0]; px[j + 1] = rgb[1]; px[j + 2] = rgb[2]; px[j + 3] = alpha;
        drawn++;
      }
    });
    ctx.putImageData(out, 0, 0);
    canvas.fulmen = { masks: names, drawn, opacity: state.opacity };
    canvas.dataset.drawn = String(drawn);
  }

  function boxRect(b, w, h) {
    const p = b.position || {}, pixel = b.domain === "pixel";
    const sx = pixel ? 1 : w, sy = pixel ? 1 : h;
    if (p.middle) {
      const [mx, my] = p.middle;
      return [(mx - p.width / 2) * sx, (my - p.height / 2) * sy, p.width * sx, p.height * sy];
    }
    return [p.minX * sx, p.minY * sy, (p.maxX - p.minX) * sx, (p.maxY - p.minY) * sy];
  }

  function drawBoxes(canvas, ref, state) {
    const w = ref.width || 1, h = ref.height || 1;
    // drawn at least ~480 px wide whatever the image's size, so labels stay legible text (the
    // mask canvas keeps the image's own pixels)
    const k = Math.max(1, Math.ceil(480 / w));
    canvas.width = w * k; canvas.height = h * k;
    const ctx = canvas.getContext("2d");
    const line = Math.max(2, Math.round((Math.max(w, h) * k) / 300)), size = Math.max(12, line * 6);
    ctx.lineWidth = line; ctx.font = `${size}px system-ui, sans-serif`; ctx.textBaseline = "bottom";
    let drawn = 0;
    for (const [name, group] of Object.entries(ref.boxes || {})) {
      if (state.hiddenBoxes.has(name)) continue;
      const labels = labelsOf(group), off = hidden(state.hiddenBoxClasses, name);
      for (const b of group.box_data || []) {
        if (off.has(String(b.class_id))) continue;
        const scores = b.scores || {};
        if (Object.entries(scores).some(([s, v]) => v < (state.minScore.get(s) ?? -Infinity))) continue;
        const [x, y, bw, bh] = boxRect(b, w, h).map((v) => v * k), color = css(classColor(b.class_id));
        ctx.strokeStyle = color; ctx.strokeRect(x, y, bw, bh);
        const scoreText = Object.entries(scores).map(([s, v]) => `${s}: ${Math.round(v * 1000) / 1000}`).join(" ");
        const label = [b.box_caption || labels[String(b.class_id)] || `class ${b.class_id}`, scoreText].filter(Boolean).join(" ");
        const tw = ctx.measureText(label).width + 4, th = size + 2;
        ctx.fillStyle = color; ctx.fillRect(x, Math.max(0, y - th), tw, th);
        ctx.fillStyle = "#fff"; ctx.fillText(label, x + 2, Math.max(th, y));
        drawn++;
      }
    }
    canvas.fulmen = { drawn };
    canvas.dataset.drawn = String(drawn);
  }

  // one image: the picture, its mask overlay and its boxes stacked, and the caption
  function imageFigure(ref, opts, state) {
    const fig = el("figure", "media-image"), stage = el("div", "media-stage");
    const img = el("img");
    img.alt = ref.caption || "";
    img.src = opts.fileUrl(ref.path);
    img.width = ref.width || 0; img.height = ref.height || 0;
    stage.append(img);
    const redraw = [];
    if (ref.masks && Object.keys(ref.masks).length) {
      const c = el("canvas", "media-masks"); stage.append(c);
      redraw.push(() => drawMasks(c, ref, opts, state));
    }
    if (ref.boxes && Object.keys(ref.boxes).length) {
      const c = el("canvas", "media-boxes"); stage.append(c);
      redraw.push(() => drawBoxes(c, ref, state));
    }
    fig.append(stage);
    if (ref.caption) fig.append(el("figcaption", "", ref.caption));
    fig.redraw = () => Promise.all(redraw.map((f) => f()));
    fig.fit = () => {
      const native = !state.fit;
      stage.classList.toggle("native", native);
      stage.style.width = native && ref.width ? `${ref.width}px` : "";
    };
    fig.fit();
    return fig;
  }

  // the controls of a key's images: fit, opacity, legend with mask and class toggles, box classes
  // and one slider per score; `refs` are the images of the first step that has each mask or box set
  function imageControls(box, images, state, redraw) {
    box.replaceChildren();
    box.append(checkbox("fit to width", state.fit, (on) => { state.fit = on; redraw(true); }, "fit-toggle"));
    const maskNames = new Map(), boxNames = new Map(), scores = new Map();
    for (const r of images) {
      for (const [n, m] of Object.entries(r.masks || {})) if (!maskNames.has(n)) maskNames.set(n, labelsOf(m));
      for (const [n, g] of Object.entries(r.boxes || {})) {
        const labels = { ...(boxNames.get(n) || {}), ...labelsOf(g) };
        for (const b of g.box_data || []) {
          if (!(String(b.class_id) in labels)) labels[String(b.class_id)] = `class ${b.class_id}`;
          for (const [s, v] of Object.entries(b.scores || {})) {
            const [lo, hi] = scores.get(s) || [Infinity, -Infinity];
            scores.set(s, [Math.min(lo, v), Math.max(hi, v)]);
          }
        }
        boxNames.set(n, labels);
      }
    }
    if (maskNames.size) {
      const op = el("label", "opacity", "mask opacity ");
      const range = el("input"); range.type = "range"; range.min = "0"; range.max = "1"; range.step = "0.05";
      range.value = String(state.opacity); range.className = "mask-opacity";
      range.addEventListener("input", () => { state.opacity = Number(range.value); redraw(); });
      op.append(range); box.append(op);
    }
    for (const [name, labels] of maskNames) {
      const legend = el("div", "legend"); legend.dataset.mask = name;
      legend.append(checkbox(`mask ${name}`, !state.hiddenMasks.has(name), (on) => {
        on ? state.hiddenMasks.delete(name) : state.hiddenMasks.add(name); redraw();
      }, "mask-toggle"));
      const off = hidden(state.hiddenClasses, name);
      for (const [id, label] of Object.entries(labels)) {
        const item = checkbox("", !off.has(id), (on) => { on ? off.delete(id) : off.add(id); redraw(); }, "class-toggle");
        item.dataset.classId = id;
        const sw = el("span", "swatch-class"); sw.style.background = css(classColor(id));
        item.append(sw, document.createTextNode(String(label)));
        legend.append(item);
      }
      box.append(legend);
    }
    for (const [name, labels] of boxNames) {
      const legend = el("div", "legend"); legend.dataset.boxes = name;
      legend.append(checkbox(`boxes ${name}`, !state.hiddenBoxes.has(name), (on) => {
        on ? state.hiddenBoxes.delete(name) : state.hiddenBoxes.add(name); redraw();
      }, "boxes-toggle"));
      const off = hidden(state.hiddenBoxClasses, name);
      for (const [id, label] of Object.entries(labels)) {
        const item = checkbox("", !off.has(id), (on) => { on ? off.delete(id) : off.add(id); redraw(); }, "box-class-toggle");
        item.dataset.classId = id;
        const sw = el("span", "swatch-class"); sw.style.background = css(classColor(id));
        item.append(sw, document.createTextNode(String(label)));
        legend.append(item);
      }
      box.append(legend);
    }
    for (const [s, [lo, hi]] of scores) {
      const l = el("label", "score", `${s} ≥ `), range = el("input"), out = el("output");
      range.type = "range"; range.className = "score-slider"; range.dataset.score = s;
      range.min = String(Math.min(lo, 0)); range.max = String(hi); range.step = String((hi - Math.min(lo, 0)) / 100 || 0.01);
      range.value = String(state.minScore.get(s) ?? range.min);
      out.textContent = range.value;
      range.addEventListener("input", () => { state.minScore.set(s, Number(range.value)); out.textContent = range.value; redraw(); });
      l.append(range, out); box.append(l);
    }
  }

  function imagesOf(ref) {
    if (!ref || typeof ref !== "object") return [];
    if (ref._type === "image-file") return [ref];
    if (ref._type === "images/separated") return (ref.images || []).filter((r) => r && r._type === "image-file");
    return [];
  }

  // ------------------------------------------------------------------ one step of one key

  function view(container, refs, opts) {
    const o = opts || {}, state = o.state || newState();
    container.replaceChildren();
    const images = refs.flatMap(imagesOf);
    const done = [];
    if (images.length) {
      const grid = el("div", "media-grid");
      const figs = images.map((r) => imageFigure(r, o, state));
      grid.append(...figs);
      const controls = el("div", "media-controls");
      const redraw = (refit) => { for (const f of figs) { if (refit) f.fit(); f.redraw(); } grid.classList.toggle("native", !state.fit); };
      if (!o.noControls) { imageControls(controls, images, state, redraw); container.append(controls); }
      container.append(grid);
      grid.classList.toggle("native", !state.fit);
      done.push(...figs.map((f) => f.redraw()));
    }
    for (const ref of refs) {
      if (!ref || typeof ref !== "object" || IMAGE_TYPES.has(ref._type) || ref._type === "images/separated") continue;
      const box = el("div", `media-item media-${String(ref._type).replace(/[^a-z0-9]/gi, "-")}`);
      container.append(box);
      done.push(other(box, ref, o));
    }
    container.fulmenDone = Promise.all(done).then(() => { container.dataset.ready = "1"; });
    return state;
  }

  function other(box, ref, o) {
    const t = ref._type;
    if (t === "table-file") return table(box, ref, o);
    if (t === "chart") return chart(box, ref, o);
    const many = t === "audio" ? ref.audio : t === "videos" ? ref.videos : t === "html" ? ref.html : [ref];
    for (const r of many || []) {
      if (!r || !r.path) continue;
      const fig = el("figure", "media-file");
      if (r._type === "audio-file") {
        const a = el("audio"); a.controls = true; a.src = o.fileUrl(r.path); fig.append(a);
      } else if (r._type === "video-file") {
        if (r.format === "gif") { const i = el("img"); i.src = o.fileUrl(r.path); i.alt = r.caption || ""; fig.append(i); }
        else { const v = el("video"); v.controls = true; v.src = o.fileUrl(r.path); fig.append(v); }
      } else if (r._type === "html-file") {
        const frame = el("iframe", "media-html");
        frame.setAttribute("sandbox", ""); // no scripts, no forms, no same-origin
        fetch(o.fileUrl(r.path)).then((resp) => resp.text()).then((html) => { frame.srcdoc = html; });
        fig.append(frame);
      }
      if (r.caption) fig.append(el("figcaption", "", r.caption));
      box.append(fig);
    }
    return Promise.resolve();
  }

  // ------------------------------------------------------------------ a key with its step slider

  function keyPanel(container, entry, opts) {
    const o = opts || {}, state = newState();
    container.classList.add("media-panel");
    container.dataset.key = entry.key;
    const title = el("div", "media-title", entry.key);
    const bar = el("div", "media-steps");
    const slider = el("input"); slider.type = "range"; slider.className = "step-slider";
    slider.min = "0"; slider.max = String(Math.max(0, entry.steps.length - 1)); slider.step = "1";
    slider.value = slider.max;
    const label = el("span", "step-label");
    bar.append(el("span", "", "step "), slider, label);
    const body = el("div", "media-body");
    container.replaceChildren(title, bar, body);
    if (entry.steps.length < 2) bar.hidden = true;
    function show() {
      const i = Number(slider.value), step = entry.steps[i];
      label.textContent = `${step} (${i + 1} of ${entry.steps.length})`;
      container.dataset.step = String(step);
      const ref = (entry.values || [])[i];
      view(body, ref ? [ref] : [], { ...o, state });
      return body.fulmenDone;
    }
    slider.addEventListener("input", show);
    container.show = show;
    return show();
  }

  // ------------------------------------------------------------------ one key across runs

  // the same key of several runs side by side at one step: `runs` = [{id, name, entry, fileUrl}]
  // (entry as GET .../media?key=K answers it); one slider over the union of the runs' steps, each
  // run showing its last value at or before that step; one set of controls for all of them
  function compare(container, key, runs) {
    const state = newState();
    container.classList.add("media-compare");
    container.dataset.key = key;
    const steps = [...new Set(runs.flatMap((r) => r.entry ? r.entry.steps : []))].sort((a, b) => a - b);
    const bar = el("div", "media-steps"), slider = el("input"), label = el("span", "step-label");
    slider.type = "range"; slider.className = "step-slider"; slider.min = "0"; slider.step = "1";
    slider.max = String(Math.max(0, steps.length - 1)); slider.value = slider.max;
    bar.append(el("span", "", "step "), slider, label);
    const controls = el("div", "media-controls"), row = el("div", "media-side");
    container.replaceChildren(bar, controls, row);
    const cols = runs.map((r) => {
      const col = el("div", "media-run"); col.dataset.run = r.id;
      const head = el("div", "media-run-name", r.name || r.id); head.style.borderColor = r.color || "#ccc";
      const body = el("div", "media-body");
      col.append(head, body); row.append(col);
      return { r, body };
    });
    const at = (entry, step) => {
      if (!entry) return null;
      let k = -1;
      entry.steps.forEach((s, i) => { if (s <= step) k = i; });
      return k < 0 ? null : { ref: entry.values[k], step: entry.steps[k] };
    };
    function show() {
      const step = steps[Number(slider.value)];
      label.textContent = steps.length ? `${step}` : "none";
      container.dataset.step = String(step);
      const images = [];
      const done = cols.map(({ r, body }) => {
        const found = at(r.entry, step);
        body.replaceChildren();
        if (!found) { body.append(el("p", "muted", "not logged by this step")); return Promise.resolve(); }
        images.push(...imagesOf(found.ref));
        const inner = el("div"); body.append(inner);
        if (found.step !== step) body.prepend(el("div", "muted", `step ${found.step}`));
        view(inner, [found.ref], { fileUrl: r.fileUrl, state, noControls: true });
        return inner.fulmenDone;
      });
      const redraw = (refit) => {
        for (const { body } of cols) for (const fig of body.querySelectorAll("figure.media-image")) { if (refit) fig.fit(); fig.redraw(); }
      };
      if (images.length) imageControls(controls, images, state, redraw); else controls.replaceChildren();
      container.fulmenDone = Promise.all(done).then(() => { container.dataset.ready = "1"; });
      return container.fulmenDone;
    }
    slider.addEventListener("input", show);
    if (steps.length < 2) bar.hidden = true;
    return show();
  }

  // ------------------------------------------------------------------ tables

  const tables = new Map();
  function loadTable(ref, o) {
    const parts = [...(ref.previous_increments || []), ref.path];
    const key = parts.join("|");
    if (!tables.has(key)) {
      tables.set(key, Promise.all(parts.map((p) => fetch(o.fileUrl(p)).then((r) => {
        if (!r.ok) throw new Error(`${p}: ${r.status}`);
        return r.json();
      }))).then((all) => ({ columns: all[all.length - 1].columns || [], data: all.flatMap((t) => t.data || []) })));
    }
    return tables.get(key);
  }

  function cellText(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "number") return fmt(v);
    if (typeof v === "object") return v._type ? `(${v._type})` : JSON.stringify(v);
    return String(v);
  }

  function cmpCells(a, b) {
    const na = typeof a === "number", nb = typeof b === "number";
    if (na && nb) return a - b;
    if (a === null || a === undefined) return 1;
    if (b === null || b === undefined) return -1;
    if (na !== nb) return na ? -1 : 1;
    return cellText(a).localeCompare(cellText(b), undefined, { numeric: true });
  }

  // sorted, filtered and paged on the client: the table JSON is fetched once (10,000 rows are a
  // few MB), each page renders PAGE_ROWS rows, so a sort of 10,000 rows is one Array.sort
  async function table(container, ref, opts) {
    const o = opts || {};
    container.classList.add("media-table");
    const status = el("div", "muted", "loading table…");
    container.replaceChildren(status);
    let t;
    try { t = await loadTable(ref, o); } catch (e) { status.textContent = String(e.message || e); return; }
    const st = { sort: null, desc: false, filter: "", page: 0 };
    const controls = el("div", "controls");
    const filter = el("input"); filter.type = "search"; filter.placeholder = "filter rows"; filter.className = "table-filter";
    const count = el("span", "muted row-count"), prev = el("button", "", "‹ prev"), next = el("button", "", "next ›"), pageNo = el("span", "page-no");
    prev.type = next.type = "button";
    controls.append(filter, count, prev, pageNo, next);
    const tbl = el("table", "plain media-rows"), thead = el("thead"), tbody = el("tbody");
    tbl.append(thead, tbody);
    const wrap = el("div", "table-wrap"); wrap.append(tbl);
    container.replaceChildren(controls, wrap);
    const rows = t.data.map((r, i) => ({ r, i }));
    let shown = rows;
    function refilter() {
      const f = st.filter.toLowerCase();
      shown = f ? rows.filter(({ r }) => r.some((v) => cellText(v).toLowerCase().includes(f))) : rows.slice();
      if (st.sort !== null) {
        const c = st.sort, s = st.desc ? -1 : 1;
        shown.sort((a, b) => s * cmpCells(a.r[c], b.r[c]) || a.i - b.i);
      }
    }
    function paint() {
      thead.replaceChildren();
      const hr = el("tr");
      t.columns.forEach((name, c) => {
        const th = el("th", "sortable", String(name) + (st.sort === c ? (st.desc ? " ▼" : " ▲") : ""));
        th.dataset.col = String(c);
        th.addEventListener("click", () => {
          if (st.sort === c) st.desc = !st.desc; else { st.sort = c; st.desc = false; }
          st.page = 0; refilter(); paint();
        });
        hr.append(th);
      });
      thead.append(hr);
      const pages = Math.max(1, Math.ceil(shown.length / PAGE_ROWS));
      st.page = Math.min(st.page, pages - 1);
      const frag = document.createDocumentFragment();
      for (const { r, i } of shown.slice(st.page * PAGE_ROWS, (st.page + 1) * PAGE_ROWS)) {
        const tr = el("tr"); tr.dataset.row = String(i);
        for (const v of r) {
          const td = el("td");
          if (v && typeof v === "object" && (v._type === "image-file" || v._type === "images/separated")) {
            const cell = el("div", "media-cell");
            view(cell, [v], { ...o, noControls: true });
            td.append(cell);
          } else if (v && typeof v === "object" && v._type) {
            other(td, v, o);
          } else {
            td.textContent = cellText(v);
            if (typeof v === "number") td.className = "num";
          }
          tr.append(td);
        }
        frag.append(tr);
      }
      tbody.replaceChildren(frag);
      count.textContent = `${shown.length} of ${rows.length} rows`;
      pageNo.textContent = `page ${st.page + 1} of ${pages}`;
      prev.disabled = st.page === 0; next.disabled = st.page >= pages - 1;
      container.dataset.rows = String(shown.length);
      container.dataset.page = String(st.page);
    }
    let timer;
    filter.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => { st.filter = filter.value; st.page = 0; refilter(); paint(); }, 150); });
    prev.addEventListener("click", () => { st.page--; paint(); });
    next.addEventListener("click", () => { st.page++; paint(); });
    refilter(); paint();
    container.fulmenTable = { columns: t.columns, rows: () => shown.map(({ r }) => r), state: st };
  }

  // ------------------------------------------------------------------ chart presets

  async function chart(container, ref, opts) {
    const o = opts || {};
    container.classList.add("media-chart");
    container.dataset.preset = ref.preset;
    let t;
    try { t = await loadTable(ref.table || {}, o); } catch (e) { container.append(el("div", "muted", String(e.message || e))); return; }
    const col = (role) => t.columns.indexOf((ref.fields || {})[role]);
    const title = ref.title || ref.preset;
    const labels = ref.labels || {};
    if (ref.preset === "confusion_matrix") return confusion(container, title, t, col("Actual"), col("Predicted"), col("nPredictions"));
    if (ref.preset === "bar") return bars(container, title, t.data.map((r) => [cellText(r[col("label")]), Number(r[col("value")])]));
    if (ref.preset === "histogram") {
      const vs = t.data.map((r) => Number(r[col("value")])).filter(Number.isFinite);
      return bars(container, title, histogram(vs, 20));
    }
    // line, line_series, pr_curve, roc_curve, scatter: lines (or points) per stroke value
    const xi = col("x"), yi = col("y"), si = col("stroke");
    const groups = new Map();
    for (const r of t.data) {
      const name = si >= 0 ? cellText(r[si]) : (ref.fields || {}).y || "y";
      if (!groups.has(name)) groups.set(name, []);
      groups.get(name).push([Number(r[xi]), Number(r[yi])]);
    }
    const series = [...groups].map(([name, pts], k) => {
      if (ref.preset !== "pr_curve" && ref.preset !== "roc_curve") pts.sort((a, b) => a[0] - b[0]);
      return { id: name, label: name, color: css(classColor(k)), x: pts.map((p) => p[0]), y: pts.map((p) => p[1]), lo: null, hi: null, dots: ref.preset === "scatter" };
    });
    const div = window.FulmenPanels.xyChart(container, series, { title, xLabel: labels.xname || (ref.fields || {}).x || "x", yLabel: labels.yname || (ref.fields || {}).y || "" });
    legend(div, series);
  }

  function legend(box, series) {
    const l = el("div", "chart-legend");
    for (const s of series) { const i = el("span", "", s.label); const sw = el("span", "swatch-class"); sw.style.background = s.color; i.prepend(sw); l.append(i); }
    box.append(l);
  }

  function histogram(vs, n) {
    if (!vs.length) return [];
    let lo = Math.min(...vs), hi = Math.max(...vs);
    if (hi === lo) { lo -= 0.5; hi += 0.5; }
    const counts = new Array(n).fill(0);
    for (const v of vs) counts[Math.min(n - 1, Math.floor(((v - lo) / (hi - lo)) * n))]++;
    return counts.map((c, i) => [fmt(lo + ((i + 0.5) * (hi - lo)) / n), c]);
  }

  function bars(container, title, items) {
    const div = el("div", "panel"); container.append(div);
    div.append(el("div", "chart-title", title));
    const w = 420, h = 220, pad = { l: 46, b: 40, t: 8, r: 8 };
    const c = el("canvas"); c.width = w; c.height = h; div.append(c);
    const ctx = c.getContext("2d"), top = Math.max(1e-12, ...items.map((x) => x[1]).filter(Number.isFinite));
    const bw = (w - pad.l - pad.r) / Math.max(1, items.length);
    ctx.font = "10px system-ui, sans-serif"; ctx.fillStyle = "#666"; ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (const t of [0, 0.5, 1]) { const y = h - pad.b - t * (h - pad.b - pad.t); ctx.fillText(fmt(top * t), pad.l - 4, y); }
    items.forEach(([label, v], i) => {
      const bh = (Math.max(0, v) / top) * (h - pad.b - pad.t);
      ctx.fillStyle = css(PALETTE[4]); ctx.fillRect(pad.l + i * bw + 1, h - pad.b - bh, Math.max(1, bw - 2), bh);
      ctx.save(); ctx.fillStyle = "#444"; ctx.translate(pad.l + (i + 0.5) * bw, h - pad.b + 4); ctx.rotate(-Math.PI / 4);
      ctx.textAlign = "right"; ctx.fillText(String(label).slice(0, 14), 0, 0); ctx.restore();
    });
    c.fulmen = { bars: items };
  }

  function confusion(container, title, t, ai, pi, ni) {
    const names = [], index = new Map();
    const add = (v) => { const k = cellText(v); if (!index.has(k)) { index.set(k, names.length); names.push(k); } return index.get(k); };
    const cells = t.data.map((r) => [add(r[ai]), add(r[pi]), Number(r[ni]) || 0]);
    const n = names.length, m = Array.from({ length: n }, () => new Array(n).fill(0));
    for (const [a, p, v] of cells) m[a][p] += v;
    const top = Math.max(1, ...m.flat());
    const div = el("div", "panel"); container.append(div);
    div.append(el("div", "chart-title", title));
    const size = Math.max(18, Math.min(48, Math.floor(360 / Math.max(1, n)))), pad = 80;
    const c = el("canvas"); c.width = pad + n * size + 8; c.height = pad + n * size + 8; div.append(c);
    const ctx = c.getContext("2d");
    ctx.font = "10px system-ui, sans-serif";
    for (let a = 0; a < n; a++) for (let p = 0; p < n; p++) {
      const v = m[a][p], k = v / top;
      ctx.fillStyle = `rgba(29, 95, 191, ${0.06 + 0.94 * k})`;
      ctx.fillRect(pad + p * size, pad + a * size, size - 1, size - 1);
      ctx.fillStyle = k > 0.5 ? "#fff" : "#222"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
      if (size >= 22) ctx.fillText(fmt(v), pad + (p + 0.5) * size, pad + (a + 0.5) * size);
    }
    ctx.fillStyle = "#444";
    for (let i = 0; i < n; i++) {
      ctx.textAlign = "right"; ctx.fillText(names[i].slice(0, 12), pad - 4, pad + (i + 0.5) * size);
      ctx.save(); ctx.translate(pad + (i + 0.5) * size, pad - 4); ctx.rotate(-Math.PI / 4); ctx.textAlign = "left"; ctx.fillText(names[i].slice(0, 12), 0, 0); ctx.restore();
    }
    ctx.fillStyle = "#888"; ctx.textAlign = "left"; ctx.fillText("actual ↓  predicted →", 2, 10);
    c.fulmen = { names, matrix: m };
    container.dataset.classes = String(n);
  }

  // ------------------------------------------------------------------ console text

  // text as a terminal shows it: "\r" returns to the start of the line (what follows overwrites),
  // "\b" steps back, ESC[K / ESC[2K erase, ESC[nA moves up (tqdm's multi-bar), ESC[nG / ESC[nC /
  // ESC[nD move in the line; colours and other escape sequences are dropped. Answers the lines.
  function terminal(text) {
    const lines = [[]];
    let row = 0, col = 0;
    const line = () => { while (lines.length <= row) lines.push([]); return lines[row]; };
    const put = (ch) => { const l = line(); while (l.length < col) l.push(" "); l[col] = ch; col++; };
    for (let i = 0; i < text.length; i++) {
      const ch = text[i];
      if (ch === "\n") { row++; col = 0; line(); continue; }
      if (ch === "\r") { col = 0; continue; }
      if (ch === "\b") { col = Math.max(0, col - 1); continue; }
      if (ch === "\x1b") {
        const m = /^\x1b\[([0-9;?]*)([A-Za-z@`])/.exec(text.slice(i, i + 32));
        if (!m) { const osc = /^\x1b\][^\x07\x1b]*(\x07|\x1b\\)?/.exec(text.slice(i)); i += osc ? osc[0].length - 1 : 1; continue; }
        i += m[0].length - 1;
        const n = m[1] === "" ? NaN : Number(m[1].split(";")[0]), cmd = m[2];
        if (cmd === "K") {
          const l = line();
          if (!n) l.length = Math.min(l.length, col); else if (n === 1) for (let k = 0; k < col && k < l.length; k++) l[k] = " "; else l.length = 0;
        } else if (cmd === "A" || cmd === "F") { row = Math.max(0, row - (n || 1)); if (cmd === "F") col = 0; }
        else if (cmd === "B" || cmd === "E") { row += n || 1; line(); if (cmd === "E") col = 0; }
        else if (cmd === "G") col = Math.max(0, (n || 1) - 1);
        else if (cmd === "C") col += n || 1;
        else if (cmd === "D") col = Math.max(0, col - (n || 1));
        else if (cmd === "J" && n === 2) { lines.length = 0; lines.push([]); row = 0; col = 0; }
        continue; // "m" (colours) and the rest: nothing to show
      }
      if (ch < " " && ch !== "\t") continue;
      put(ch);
    }
    const out = lines.map((l) => l.join("").replace(/\s+$/, ""));
    if (out.length && out[out.length - 1] === "" && text.endsWith("\n")) out.pop();
    return out;
  }

  window.FulmenMedia = { view, keyPanel, compare, table, chart, terminal, imagesOf, classColor, newState };
})();
