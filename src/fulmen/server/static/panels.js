// fulmen's panels: ONE panel system for every page (run, project, compare, sweeps, reports and
// the exported report). Plain ES2019, no build step, no modules, no network of its own: the
// data comes from a "source" (apiSource: the server's /api/v1 routes; embeddedSource: a snapshot
// inlined into a page that opens from file://). Line plots are drawn with uPlot (vendored with
// its licence in static/vendor/), the rest with plain canvas and DOM calls. User text is only
// ever written with textContent; the markdown kind shows the HTML the server rendered (safe).
//
//   FulmenPanels.color(runId, index?)                 a run's colour (stable across pages)
//   FulmenPanels.apiSource({entity, project, runs, filters}) / embeddedSource(snapshot)
//   FulmenPanels.mountPanel(el, spec, source, opts)   one panel -> {update(spec), destroy()}
//   FulmenPanels.mountGrid(el, layout, source, opts)  sections of panels -> {update(layout), ...}
//   FulmenPanels.defaultLayout(keys)                  one section per key prefix (train/, val/)
//
// The panel spec and layout JSON are documented in docs/dashboard.md. What each panel drew is on
// its element as `el.fulmen` (series with x, y, lo, hi; the tests and the benchmark read it).
// The file is long because it is one component that pages and the exported report inline whole.
"use strict";
(function () {
  // 24 colours picked for distinctness on white: Tableau's ten, then greedy farthest points in
  // CIELAB (lightness 28-72, so every line reads on white); min pairwise distance 27.7 (CIE76)
  const PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f", "#0000ff", "#ff1eff", "#3c4b00", "#690fb4", "#ff0078", "#87004b",
    "#e1a55a", "#00785a", "#0078ff", "#ff8787", "#96b469", "#c300a5", "#964b00", "#4b3c5a",
  ];
  const DASHES = [null, [6, 3], [2, 3], [8, 3, 2, 3], [1, 2]];
  const X_NAMES = { _step: "step", _runtime: "relative time (s)", _timestamp: "wall time" };
  const HIDDEN = ["_", "gradients/", "parameters/", "system/", "trainer/global_step"];
  const ROW_PX = 80; // one layout row
  const Y_AXIS = 54; // the y axis of a line plot, in CSS pixels
  const REST_MS = 90; // the cursor rests: the synchronized panels' legends follow it
  const enc = encodeURIComponent;

  // ------------------------------------------------------------------ small helpers

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  const finite = (v) => typeof v === "number" && Number.isFinite(v);

  function fmt(v) {
    if (!finite(v)) return v === null || v === undefined ? "-" : String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2);
    return String(Math.round(v * 1e4) / 1e4);
  }

  function text(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "number") return fmt(v);
    if (typeof v === "string") return v;
    return JSON.stringify(v);
  }

  // "config.model.depth" / "summary.val/loss" / "name" / "group" of a run
  function dig(run, path) {
    if (!run) return undefined;
    const dot = path.indexOf(".");
    const head = dot < 0 ? path : path.slice(0, dot);
    if (dot < 0) return run[path];
    let cur = head === "config" ? run.config : head === "summary" ? run.summary : run[head];
    const rest = path.slice(dot + 1);
    if (cur && typeof cur === "object" && rest in cur) return cur[rest]; // "val/loss", "a.b" keys
    for (const p of rest.split(".")) {
      if (cur === null || typeof cur !== "object") return undefined;
      cur = cur[p];
    }
    return cur;
  }

  function hash(s) {
    let h = 2166136261;
    for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 16777619); }
    return h >>> 0;
  }

  // a run's place in its project (creation order): its colour, the same on every page
  const ranks = new Map();
  function color(runId, index) {
    const id = String(runId);
    const i = Number.isInteger(index) ? index : ranks.has(id) ? ranks.get(id) : hash(id);
    return PALETTE[((i % PALETTE.length) + PALETTE.length) % PALETTE.length];
  }

  // every run of a project (id, created): ranks by creation, then id
  function rankRuns(runs) {
    const sorted = runs.slice().sort((a, b) => (a.created - b.created) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    let changed = false;
    sorted.forEach((r, i) => { if (ranks.get(r.id) !== i) { ranks.set(r.id, i); changed = true; } });
    if (changed) window.dispatchEvent(new CustomEvent("fulmen-colors"));
  }

  function fade(css, alpha) {
    const h = css.replace("#", "");
    const n = parseInt(h.length === 3 ? h.split("").map((c) => c + c).join("") : h, 16);
    return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${alpha})`;
  }

  async function getJSON(url) {
    const r = await fetch(url, { headers: { accept: "application/json" } });
    if (!r.ok) throw new Error(`${url}: ${r.status}`);
    return r.json();
  }

  // the history answer's binary form (GET .../history?format=binary, docs/http-api.md): a JSON
  // head, then each series' x, min, max, last and count as float64 arrays, read in place (15 MB
  // of JSON to parse for a project page of 6 panels x 100 runs otherwise). NaN stands for null.
  const HISTORY_FIELDS = ["x", "min", "max", "last", "count"];
  function decodeHistory(buf) {
    const h = new DataView(buf).getUint32(0, true);
    const head = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, h)));
    let at = 4 + h + ((8 - ((4 + h) % 8)) % 8);
    for (const s of head.series) {
      for (const f of HISTORY_FIELDS) { s[f] = new Float64Array(buf, at, s.n); at += 8 * s.n; }
      delete s.n;
    }
    return head;
  }

  async function getHistory(url) {
    const r = await fetch(url, { headers: { accept: "application/vnd.fulmen.history" } });
    if (!r.ok) throw new Error(`${url}: ${r.status}`);
    return decodeHistory(await r.arrayBuffer());
  }

  function nearest(xs, x) {
    let lo = 0, hi = xs.length - 1;
    if (hi < 0 || !finite(x)) return -1;
    while (lo < hi) { const m = (lo + hi) >> 1; if (xs[m] < x) lo = m + 1; else hi = m; }
    if (lo > 0 && Math.abs(xs[lo - 1] - x) <= Math.abs(xs[lo] - x)) lo--;
    return lo;
  }

  function interp(xs, ys, x) {
    const n = xs.length;
    if (!n || x < xs[0] || x > xs[n - 1]) return null;
    let lo = 0, hi = n - 1;
    while (lo < hi) { const m = (lo + hi) >> 1; if (xs[m] < x) lo = m + 1; else hi = m; }
    if (xs[lo] === x || lo === 0) return finite(ys[lo]) ? ys[lo] : null;
    const x0 = xs[lo - 1], y0 = ys[lo - 1], y1 = ys[lo];
    if (!finite(y0) || !finite(y1)) return null;
    return y0 + ((y1 - y0) * (x - x0)) / (xs[lo] - x0);
  }

  // ------------------------------------------------------------------ smoothing

  // exponential: a moving average with its start-up bias removed (TensorBoard's slider, 0..1);
  // running: the mean of the last `amount` points; gaussian: a kernel of `amount` points' sigma
  function smooth(ys, xs, s) {
    const type = s && s.type, amount = Number(s && s.amount);
    if (!type || type === "none" || !(amount > 0)) return ys;
    const n = ys.length, out = new Array(n);
    if (type === "exponential") {
      const w = Math.min(amount, 0.999);
      let last = 0, k = 0;
      for (let i = 0; i < n; i++) {
        const v = ys[i];
        if (!finite(v)) { out[i] = v; continue; }
        last = last * w + (1 - w) * v; k++;
        out[i] = last / (1 - Math.pow(w, k));
      }
      return out;
    }
    if (type === "running") {
      const win = Math.max(1, Math.round(amount));
      let sum = 0, cnt = 0;
      const q = [];
      for (let i = 0; i < n; i++) {
        const v = ys[i];
        if (finite(v)) { q.push(v); sum += v; cnt++; }
        while (q.length > win) { sum -= q.shift(); cnt--; }
        out[i] = finite(v) && cnt ? sum / cnt : v;
      }
      return out;
    }
    if (type === "gaussian") {
      const sigma = Math.max(0.5, amount), r = Math.ceil(3 * sigma);
      const kern = Array.from({ length: 2 * r + 1 }, (_, j) => Math.exp(-((j - r) ** 2) / (2 * sigma * sigma)));
      for (let i = 0; i < n; i++) {
        if (!finite(ys[i])) { out[i] = ys[i]; continue; }
        let sum = 0, wsum = 0;
        for (let j = -r; j <= r; j++) {
          const v = ys[i + j];
          if (finite(v)) { sum += v * kern[j + r]; wsum += kern[j + r]; }
        }
        out[i] = sum / wsum;
      }
      return out;
    }
    return ys;
  }

  // ------------------------------------------------------------------ sources

  function apiSource(o) {
    const opts = o || {};
    const base = opts.base || "";
    const api = (p) => `${base}/api/v1/entities/${enc(opts.entity)}/projects/${enc(opts.project)}${p}`;
    const runPath = (id) => `/runs/${enc(id)}`;
    let given = null; // run objects handed over by the page (its table), instead of a fetch
    let ids = opts.runs ? opts.runs.slice() : null;
    let ranked = null;
    const fieldCache = new Map(); // "config.lr" -> Promise of Map(run id -> value)
    const whole = new Map(); // run id -> {updated, run: Promise of the whole run} (fullRuns)

    function rankAll() { // the project's runs in creation order: their colours
      if (!ranked) {
        ranked = getJSON(api(`/runs?sort=created&limit=10000&field=config.__none__`))
          .then((page) => { if (page.runs.length === page.total) rankRuns(page.runs); })
          .catch(() => {});
      }
      return ranked;
    }

    const src = {
      kind: "api",
      entity: opts.entity,
      project: opts.project,
      // the page chooses the runs (objects as GET .../runs answers them, or ids)
      setRuns(runs) {
        if (runs && runs.length && typeof runs[0] === "object") { given = runs.slice(); ids = null; }
        else { given = null; ids = runs ? runs.slice() : null; }
      },
      async runs() {
        if (given) { const wanted = given.filter((r) => !ranks.has(r.id)); if (wanted.length) await rankAll(); return given.slice(); }
        const q = new URLSearchParams({ limit: "10000", sort: "created" });
        for (const f of opts.filters || []) q.append("filter", f);
        let runs;
        if (ids && ids.length <= 20) {
          runs = await Promise.all(ids.map((id) => getJSON(api(runPath(id))).catch(() => null)));
          runs = runs.filter(Boolean);
        } else {
          const page = await getJSON(api(`/runs?${q}`));
          runs = page.runs;
          if (!ids && !(opts.filters || []).length && page.runs.length === page.total) rankRuns(runs);
          if (ids) { const byId = new Map(runs.map((r) => [r.id, r])); runs = ids.map((id) => byId.get(id)).filter(Boolean); }
        }
        if (runs.some((r) => !ranks.has(r.id))) await rankAll();
        return runs;
      },
      // the runs with the config/summary values at `paths` filled in (a page's run objects may
      // hold only the columns its table shows): one light GET .../runs?field= per path
      async withFields(runs, paths) {
        const wanted = [...new Set(paths.filter((p) => /^(config|summary)\./.test(p)))];
        const missing = wanted.filter((p) => runs.some((r) => dig(r, p) === undefined));
        if (!missing.length) return runs;
        const maps = await Promise.all(missing.map(async (path) => {
          let known = fieldCache.get(path);
          const have = known ? await known : null;
          if (!have || runs.some((r) => !have.has(r.id))) {
            known = getJSON(api(`/runs?limit=10000&field=${enc(path)}`))
              .then((page) => new Map(page.runs.map((r) => [r.id, dig(r, path)])))
              .catch(() => new Map());
            fieldCache.set(path, known);
          }
          return known;
        }));
        return runs.map((r) => {
          const out = { ...r, config: { ...(r.config || {}) }, summary: { ...(r.summary || {}) } };
          missing.forEach((path, i) => {
            const v = maps[i].get(r.id);
            if (v !== undefined) setPath(out, path, v, true);
          });
          return out;
        });
      },
      async history(q) {
        const p = new URLSearchParams();
        for (const r of q.runs) p.append("run", r);
        for (const k of q.keys) p.append("key", k);
        p.set("x", q.x || "_step");
        p.set("buckets", String(q.buckets || 1000));
        if (finite(q.lo)) p.set("min", String(q.lo));
        if (finite(q.hi)) p.set("max", String(q.hi));
        // q.binary: the arrays as Float64Array (NaN for null), what line plots ask for
        if (q.binary) { p.set("format", "binary"); return getHistory(api(`/history?${p}`)); }
        return getJSON(api(`/history?${p}`));
      },
      async values(runId, key, limit) {
        return getJSON(api(`${runPath(runId)}/history/values?key=${enc(key)}&limit=${limit || 1000}`));
      },
      async media(runId, key) {
        return getJSON(api(`${runPath(runId)}/media${key ? `?key=${enc(key)}` : ""}`));
      },
      mediaUrl(runId, path) {
        return api(`${runPath(runId)}/media/files/${String(path).split("/").map(enc).join("/")}`);
      },
      // these runs whole (the page's run objects may hold only its table's columns): one GET
      // .../runs?run=...&run=... for those not kept, each kept while its "updated" stays
      async fullRuns(runs) {
        if (!given) return runs;
        const stale = runs.filter((r) => { const kept = whole.get(r.id); return !kept || kept.updated !== r.updated; });
        for (let i = 0; i < stale.length; i += 100) {
          const part = stale.slice(i, i + 100), q = new URLSearchParams({ limit: String(part.length) });
          for (const r of part) q.append("run", r.id);
          const answer = getJSON(api(`/runs?${q}`))
            .then((page) => new Map(page.runs.map((r) => [r.id, r]))).catch(() => new Map());
          for (const r of part) whole.set(r.id, { updated: r.updated, run: answer.then((got) => got.get(r.id) || r) });
        }
        return Promise.all(runs.map((r) => whole.get(r.id).run));
      },
      // everything `panels` need, as JSON (the exported report and frozen run sets embed it)
      async snapshot(panels, so) {
        const o2 = so || {};
        const runs = await src.runs();
        const runIds = runs.map((r) => r.id);
        const out = { version: 1, entity: opts.entity, project: opts.project, runs, ranks: {}, history: [], values: {}, media: {}, files: {} };
        for (const r of runs) if (ranks.has(r.id)) out.ranks[r.id] = ranks.get(r.id);
        const byX = new Map();
        for (const p of flatPanels(panels)) {
          if (p.kind === "line") {
            const x = p.x || (o2.settings && o2.settings.x) || "_step";
            if (!byX.has(x)) byX.set(x, new Set());
            for (const k of p.y || []) byX.get(x).add(k);
          } else if (p.kind === "histogram" && p.key) {
            for (const id of runIds) {
              const v = await src.values(id, p.key).catch(() => ({ key: p.key, values: [] }));
              (out.values[id] = out.values[id] || {})[p.key] = v;
            }
          } else if (p.kind === "media" && p.key) {
            for (const id of runIds) {
              const m = await src.media(id, p.key).catch(() => ({ media: [] }));
              const mine = out.media[id] = out.media[id] || { media: [] };
              mine.media.push(...m.media.filter((e) => e.key === p.key));
              for (const path of paths(m)) {
                const k = `${id}/${path}`;
                if (!(k in out.files)) out.files[k] = await dataUrl(src.mediaUrl(id, path)).catch(() => "");
              }
            }
          }
        }
        for (const [x, keys] of byX) {
          if (!keys.size || !runIds.length) continue;
          const answer = await src.history({ runs: runIds, keys: [...keys], x, buckets: o2.buckets || 1000 });
          out.history.push({ x, answer });
        }
        return out;
      },
    };
    return src;
  }

  function paths(value, found) {
    const out = found || [];
    if (Array.isArray(value)) for (const v of value) paths(v, out);
    else if (value && typeof value === "object") {
      for (const [k, v] of Object.entries(value)) {
        if (k === "path" && typeof v === "string") out.push(v); else paths(v, out);
      }
    }
    return out;
  }

  async function dataUrl(url) {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`${url}: ${r.status}`);
    const blob = await r.blob();
    return new Promise((resolve, reject) => {
      const fr = new FileReader();
      fr.onload = () => resolve(fr.result);
      fr.onerror = () => reject(fr.error);
      fr.readAsDataURL(blob);
    });
  }

  // a source over a snapshot (what apiSource.snapshot answered): no network at all
  function embeddedSource(data) {
    const d = data || {};
    for (const [id, i] of Object.entries(d.ranks || {})) ranks.set(id, i);
    let chosen = null;
    return {
      kind: "embedded",
      entity: d.entity,
      project: d.project,
      setRuns(runs) { chosen = runs ? new Set(runs.map((r) => (typeof r === "object" ? r.id : r))) : null; },
      async runs() { const all = (d.runs || []).slice(); return chosen ? all.filter((r) => chosen.has(r.id)) : all; },
      async history(q) {
        const runs = new Set(q.runs), keys = new Set(q.keys), series = [];
        for (const h of d.history || []) {
          if (h.x !== (q.x || "_step")) continue;
          for (const s of h.answer.series) {
            if (!runs.has(s.run) || !keys.has(s.key)) continue;
            if (!finite(q.lo) && !finite(q.hi)) { series.push(s); continue; }
            const lo = finite(q.lo) ? q.lo : -Infinity, hi = finite(q.hi) ? q.hi : Infinity;
            const keep = s.x.map((x, i) => (x !== null && x >= lo && x <= hi ? i : -1)).filter((i) => i >= 0);
            const pick = (a) => (a ? keep.map((i) => a[i]) : a);
            series.push({ ...s, x: pick(s.x), min: pick(s.min), max: pick(s.max), last: pick(s.last), count: pick(s.count) });
          }
        }
        return { x: q.x || "_step", buckets: q.buckets, series };
      },
      async values(runId, key) { return ((d.values || {})[runId] || {})[key] || { key, values: [] }; },
      async media(runId, key) {
        const m = ((d.media || {})[runId] || { media: [] }).media;
        return { media: key ? m.filter((e) => e.key === key) : m };
      },
      mediaUrl(runId, path) { return (d.files || {})[`${runId}/${path}`] || ""; },
      async snapshot() { return d; },
    };
  }

  // ------------------------------------------------------------------ layouts

  function flatPanels(layout) {
    if (!layout) return [];
    if (Array.isArray(layout)) return layout;
    if (layout.sections) return layout.sections.flatMap((s) => s.panels || []);
    return layout.panels || [];
  }

  function normalize(layout) {
    if (!layout) return { version: 1, sections: [], settings: {} };
    if (layout.sections) return { version: 1, settings: {}, ...layout };
    return { version: 1, sections: [{ name: "charts", panels: layout.panels || [], collapsed: false }], settings: layout.settings || {} };
  }

  // one section per key prefix ("train/loss" -> train), the keys without one in "charts"
  function defaultLayout(keys, o) {
    const max = (o && o.max) || 24;
    const shown = keys.filter((k) => !HIDDEN.some((h) => k.startsWith(h))).sort().slice(0, max);
    const sections = new Map();
    for (const k of shown) {
      const slash = k.indexOf("/"), name = slash > 0 ? k.slice(0, slash) : "charts";
      if (!sections.has(name)) sections.set(name, []);
      sections.get(name).push({ kind: "line", title: k, y: [k] });
    }
    const names = [...sections.keys()].sort((a, b) => (a === "charts") - (b === "charts") || (a < b ? -1 : 1));
    return { version: 1, sections: names.map((n) => ({ name: n, panels: sections.get(n), collapsed: false })), settings: {} };
  }

  // ------------------------------------------------------------------ the page context

  // what the panels of one page share: the run list, the cursor sync key, the highlighted run,
  // the zoom per x axis and the workspace settings
  function makeContext(source, opts) {
    const o = opts || {};
    const ctx = {
      source,
      sync: o.sync || "fulmen",
      settings: o.settings || {},
      choices: o.choices || {},
      highlight: null,
      zoom: new Map(),
      members: new Set(),
      hovered: null,
      // the panels' draws in the next frame, together: every width read first, then every draw,
      // so that a page whose 6 answers come in at once is laid out and painted once, not once a
      // panel (each draw would otherwise lay out what the one before changed, to read a width)
      _draws: [],
      drawSoon(measure, drawIt) {
        return new Promise((resolve) => {
          ctx._draws.push([measure, drawIt, resolve]);
          if (ctx._draws.length > 1) return;
          const run = () => {
            const due = ctx._draws;
            ctx._draws = [];
            const widths = due.map(([m]) => m());
            due.forEach(([, d, done], i) => { try { d(widths[i]); } finally { done(); } });
          };
          let ran = false;
          const once = () => { if (!ran) { ran = true; run(); } };
          requestAnimationFrame(once);
          setTimeout(once, 100); // a page in the background gets no frames
        });
      },
      // work that waits until the cursor rests (REST_MS without a move): fn under its key,
      // replacing what that key had waiting (null: nothing waits for it any more)
      _later: new Map(),
      _laterTimer: 0,
      later(key, fn) {
        if (!fn) { ctx._later.delete(key); return; }
        ctx._later.set(key, fn);
        clearTimeout(ctx._laterTimer);
        ctx._laterTimer = setTimeout(() => {
          const due = [...ctx._later.values()];
          ctx._later.clear();
          for (const f of due) f();
        }, REST_MS);
      },
      _runs: null,
      runs() { if (!ctx._runs) ctx._runs = source.runs(); return ctx._runs; },
      // the runs with these config./summary. paths filled in (when the source can)
      async runsWith(paths) {
        const runs = await ctx.runs();
        const need = paths.filter(Boolean);
        return need.length && source.withFields ? source.withFields(runs, need) : runs;
      },
      refresh() { ctx._runs = null; },
      setHighlight(id) {
        ctx.highlight = ctx.highlight === id ? null : id;
        for (const m of ctx.members) m.highlight && m.highlight(ctx.highlight);
        if (o.onHighlight) o.onHighlight(ctx.highlight);
      },
      setZoom(x, lo, hi) {
        if (lo === null || lo === undefined) ctx.zoom.delete(x); else ctx.zoom.set(x, [lo, hi]);
        for (const m of ctx.members) if (m.zoomed) m.zoomed(x);
      },
    };
    return ctx;
  }

  // ------------------------------------------------------------------ panel shell

  function shell(root, spec, kind) {
    root.classList.add("panel", "fp-panel");
    root.dataset.kind = kind;
    root.replaceChildren();
    const head = el("div", "fp-head");
    const title = el("span", "chart-title fp-title", spec.title || defaultTitle(spec));
    head.append(title);
    const body = el("div", "fp-body");
    root.append(head, body);
    return { head, title, body };
  }

  function defaultTitle(spec) {
    switch (spec.kind) {
      case "line": return (spec.y || []).join(", ");
      case "scalar": case "bar": return `${spec.metric || ""}${spec.agg && spec.agg !== "last" ? ` (${spec.agg})` : ""}`;
      case "scatter": return `${spec.y || ""} vs ${spec.x || ""}`;
      case "parallel": return "parallel coordinates";
      case "table": return spec.compare ? "run comparer" : "runs";
      case "media": case "histogram": return spec.key || "";
      default: return "";
    }
  }

  // a summary value of a run for scalar/bar panels: last from the summary, else min/max/mean
  // over its history (asked of the source)
  function aggregate(run, metric, agg, hist) {
    if (!agg || agg === "last") {
      const v = dig(run, metric.startsWith("summary.") ? metric : `summary.${metric}`);
      if (finite(v)) return v;
    }
    const s = hist && hist.get(run.id);
    if (!s) return null;
    const vals = (agg === "min" ? s.min : agg === "max" ? s.max : s.last).filter(finite);
    if (!vals.length) return null;
    if (agg === "min") return Math.min(...vals);
    if (agg === "max") return Math.max(...vals);
    if (agg === "mean") {
      let sum = 0, n = 0;
      s.last.forEach((v, i) => { if (finite(v)) { const c = (s.count && s.count[i]) || 1; sum += v * c; n += c; } });
      return n ? sum / n : null;
    }
    return vals[vals.length - 1];
  }

  // ------------------------------------------------------------------ line plots (uPlot)

  const groupPaths = (eff) => (eff.groupby && eff.groupby.startsWith("config.") ? [eff.groupby] : []);

  function groupValue(run, by) {
    const v = by === "group" ? run.group : dig(run, by);
    return v === undefined || v === null || v === "" ? "(none)" : text(v);
  }

  // one line per group and key: the mean of its runs (each interpolated onto the union of their
  // x), with a band: min/max (the lowest bucket minimum to the highest bucket maximum of any run,
  // so a spike in one run survives) or mean +- one standard deviation
  function groupLines(lines, runs, by, band) {
    const groups = new Map();
    for (const l of lines) {
      const g = groupValue(runs.get(l.run), by);
      const id = `${g}\u0000${l.key}`;
      if (!groups.has(id)) groups.set(id, { name: g, key: l.key, ki: l.ki, members: [] });
      groups.get(id).members.push(l);
    }
    const multi = new Set(lines.map((l) => l.key)).size > 1;
    const out = [];
    for (const g of groups.values()) {
      let xs = [...new Set(g.members.flatMap((s) => Array.from(s.x).filter(finite)))].sort((a, b) => a - b);
      if (xs.length > 2000) { const k = xs.length / 2000; xs = Array.from({ length: 2000 }, (_, i) => xs[Math.floor(i * k)]); }
      const mean = [], lo = [], hi = [];
      for (const x of xs) {
        let sum = 0, sq = 0, n = 0, a = Infinity, b = -Infinity;
        for (const s of g.members) {
          const v = interp(s.x, s.raw, x);
          if (v === null) continue;
          sum += v; sq += v * v; n++;
          const l = s.lo ? interp(s.x, s.lo, x) : v, h = s.hi ? interp(s.x, s.hi, x) : v;
          a = Math.min(a, v, l === null ? v : l); b = Math.max(b, v, h === null ? v : h);
        }
        const m = n ? sum / n : null;
        mean.push(m);
        if (band === "stddev") {
          const sd = n ? Math.sqrt(Math.max(0, sq / n - m * m)) : null;
          lo.push(n ? m - sd : null); hi.push(n ? m + sd : null);
        } else { lo.push(n ? a : null); hi.push(n ? b : null); }
      }
      const id = `group:${g.name}`;
      out.push({
        id: `${id}|${g.key}`, run: id, key: g.key, ki: g.ki, group: g.name,
        members: g.members.map((s) => s.run),
        label: `${g.name} (${g.members.length} runs)${multi ? ` · ${g.key}` : ""}`,
        color: color(id), x: xs, y: mean, raw: mean,
        lo: band === "none" ? null : lo, hi: band === "none" ? null : hi, bandAlpha: 0.25,
      });
    }
    return out;
  }

  // every line onto one x array (uPlot's data model): the union of their x when that is small
  // (runs logged at the same steps: exact), else a grid of `cells` equal cells over the range
  // lines with the very same x (runs logged at the same steps: the usual case), increasing
  function sharedX(lines, limit) {
    const xs = lines.length ? lines[0].x : null;
    if (!xs || xs.length > limit) return null;
    for (let i = 0; i < xs.length; i++) if (!finite(xs[i]) || (i && !(xs[i] > xs[i - 1]))) return null;
    for (const l of lines) {
      if (l.x.length !== xs.length) return null;
      for (let i = 0; i < xs.length; i++) if (l.x[i] !== xs[i]) return null;
    }
    return xs;
  }

  function align(lines, cells) {
    const shared = sharedX(lines, Math.max(3 * cells, 2000));
    if (shared) { // each line's own values, no placing (what the general case below gives too)
      const gaps = (a) => {
        if (!a) return a;
        const out = new Array(a.length); // a loop: Array.from(a, fn) is 10x slower here
        for (let i = 0; i < a.length; i++) { const v = a[i]; out[i] = v - v === 0 ? v : null; }
        return out;
      };
      return { xs: Array.from(shared), cols: lines.map((l) => ({ y: gaps(l.y), lo: gaps(l.lo), hi: gaps(l.hi) })), grid: false };
    }
    let total = 0;
    for (const l of lines) total += l.x.length;
    const all = new Float64Array(total);
    let n = 0;
    for (const l of lines) for (const x of l.x) if (finite(x)) all[n++] = x;
    const sorted = all.subarray(0, n).sort();
    const uniq = [];
    for (let i = 0; i < sorted.length; i++) if (i === 0 || sorted[i] !== sorted[i - 1]) uniq.push(sorted[i]);
    const grid = uniq.length > Math.max(3 * cells, 2000);
    let xs = uniq;
    let place;
    if (grid) {
      const lo = uniq[0], hi = uniq[uniq.length - 1], w = (hi - lo) / cells || 1;
      xs = Array.from({ length: cells }, (_, i) => lo + (i + 0.5) * w);
      place = (x) => Math.min(cells - 1, Math.max(0, Math.floor((x - lo) / w)));
    } else {
      const index = new Map(uniq.map((x, i) => [x, i]));
      place = (x) => index.get(x);
    }
    const cols = lines.map((l) => {
      const y = new Array(xs.length).fill(null);
      const lo = l.lo ? new Array(xs.length).fill(null) : null, hi = l.hi ? new Array(xs.length).fill(null) : null;
      for (let i = 0; i < l.x.length; i++) {
        if (!finite(l.x[i])) continue;
        const j = place(l.x[i]);
        const v = l.y[i];
        y[j] = finite(v) ? v : y[j];
        if (lo && finite(l.lo[i])) lo[j] = lo[j] === null ? l.lo[i] : Math.min(lo[j], l.lo[i]);
        if (hi && finite(l.hi[i])) hi[j] = hi[j] === null ? l.hi[i] : Math.max(hi[j], l.hi[i]);
      }
      return { y, lo, hi };
    });
    return { xs, cols, grid };
  }

  function effective(spec, settings) {
    const s = settings || {};
    return {
      x: spec.x || s.x || "_step",
      smoothing: spec.smoothing || s.smoothing || { type: "none", amount: 0 },
      logx: spec.logx !== undefined ? !!spec.logx : !!s.logx,
      logy: spec.logy !== undefined ? !!spec.logy : !!s.logy,
      groupby: spec.groupby !== undefined ? spec.groupby : s.groupby || null,
      band: spec.band || s.band || "minmax",
      max_runs: spec.max_runs || s.max_runs || 100,
    };
  }

  function linePanel(root, spec, source, ctx) {
    let cur = spec, u = null, lines = [], aligned = null, seq = 0, data = null, runMap = new Map();
    let down = null; // where a press began: a click (not a drag) highlights the nearest line
    let width = 0; // the plot's width in CSS pixels (kept: never read back on a cursor move)
    let eff = effective(cur, ctx.settings);
    const parts = shell(root, cur, "line");
    const plot = el("div", "fp-plot"), tip = el("div", "chart-tip fp-tip"), legend = el("div", "fp-legend");
    tip.hidden = true;
    parts.body.append(plot, legend);
    plot.append(tip);
    root.dataset.key = (cur.y || [])[0] || "";
    const height = () => Math.max(120, ((cur.layout && cur.layout.h) || 3) * ROW_PX - 20);
    let legendRows = [];

    async function load() {
      const mine = ++seq;
      eff = effective(cur, ctx.settings);
      const runs = (await ctx.runsWith(groupPaths(eff))).slice(0, eff.max_runs);
      runMap = new Map(runs.map((r) => [r.id, r]));
      const keys = (cur.y || []).filter(Boolean);
      if (!runs.length || !keys.length) { data = { series: [] }; draw(); return; }
      // a bucket per pixel of the plot area (the panel less its y axis)
      const area = (plot.clientWidth || root.clientWidth || 400) - Y_AXIS - 6;
      const zoom = ctx.zoom.get(eff.x);
      root.dataset.loading = "1";
      let answer;
      try {
        answer = await source.history({ binary: true, runs: runs.map((r) => r.id), keys, x: eff.x, buckets: Math.max(50, Math.min(2000, Math.round(area))), lo: zoom ? zoom[0] : null, hi: zoom ? zoom[1] : null });
      } catch (e) {
        if (mine === seq) { parts.title.textContent = `${cur.title || defaultTitle(cur)} (${e.message || e})`; delete root.dataset.loading; }
        return;
      }
      if (mine !== seq) return; // a newer request is on its way
      data = answer;
      await ctx.drawSoon(() => plot.clientWidth, (w) => { if (mine === seq) draw(w); });
      if (mine === seq) delete root.dataset.loading;
    }

    function buildLines() {
      const keys = cur.y || [], multi = keys.length > 1;
      const order = new Map([...runMap.keys()].map((id, i) => [id, i]));
      let out = [];
      for (const s of data.series) {
        const r = runMap.get(s.run), ki = keys.indexOf(s.key);
        if (!r || ki < 0) continue;
        const name = r.name || r.id;
        // a copy (log axes write NaN into it), NaN for null, as a plain array (copying a binary
        // answer's arrays into new typed arrays would allocate 3,000 buffers a panel)
        const arr = (a) => {
          if (!a) return null;
          const out = new Array(a.length);
          for (let i = 0; i < a.length; i++) { const v = a[i]; out[i] = v === null ? NaN : v; }
          return out;
        };
        const x = arr(s.x), y = arr(s.last);
        const lo = arr(s.min), hi = arr(s.max);
        const band = lo && hi && lo.some((v, i) => finite(v) && v !== hi[i]);
        out.push({ id: `${s.run}|${s.key}`, run: s.run, key: s.key, ki, label: multi ? `${name} · ${s.key}` : name, color: color(s.run), x, y, raw: y, lo: band ? lo : null, hi: band ? hi : null, order: order.get(s.run) * keys.length + ki });
      }
      out.sort((a, b) => a.order - b.order);
      if (eff.groupby) out = groupLines(out, runMap, eff.groupby, eff.band);
      for (const l of out) {
        l.y = smooth(l.raw, l.x, eff.smoothing);
        if (eff.logy) for (const a of [l.y, l.lo, l.hi]) if (a) for (let i = 0; i < a.length; i++) if (!(a[i] > 0)) a[i] = NaN;
        if (eff.logx) { const keep = l.x.map((x) => x > 0); for (const k of ["x", "y", "raw", "lo", "hi"]) if (l[k]) l[k] = l[k].filter((_, i) => keep[i]); }
        l.dash = DASHES[l.ki % DASHES.length];
      }
      return out;
    }

    // a value's canvas pixel: uPlot's valToPos, or on a linear scale the same arithmetic inline
    // (a band calls it 4 times a bucket: 150,000 calls a panel of 100 runs)
    function toPx(self, axis) {
      const sc = self.scales[axis], { left, top, width: w, height: h } = self.bbox;
      if (sc.distr !== 1 || !(sc.max > sc.min)) return (v) => self.valToPos(v, axis, true);
      const lo = sc.min, span = sc.max - sc.min;
      return axis === "x" ? (v) => left + ((v - lo) / span) * w : (v) => top + h - ((v - lo) / span) * h;
    }

    // each line's min/max band. Buckets about a pixel apart (the usual case: a bucket per pixel)
    // are drawn as one 1-pixel column per bucket, a single stroke of hairlines, which the
    // browser rasterizes ~10x faster than a filled polygon of the same shape (100 runs' bands
    // are 100 polygons); sparser buckets as the polygon
    function bands(self) {
      const c = self.ctx, { left, top, width, height: h } = self.bbox;
      const X = toPx(self, "x"), Y = toPx(self, "y"), xs = aligned.xs;
      const px = new Float64Array(xs.length);
      for (let j = 0; j < xs.length; j++) px[j] = X(xs[j]);
      const lw = Math.max(1, Math.round(devicePixelRatio || 1)), off = (lw % 2) / 2;
      const dense = xs.length > 1 && (px[xs.length - 1] - px[0]) / (xs.length - 1) <= 1.5 * lw;
      c.save();
      c.beginPath(); c.rect(left, top, width, h); c.clip();
      c.lineWidth = lw;
      lines.forEach((l, li) => {
        const col = aligned.cols[li];
        if (!col.lo || !col.hi || !self.series[li + 1].show) return;
        const faded = ctx.highlight && !isLit(l);
        const paint = fade(l.color, (l.bandAlpha || 0.15) * (faded ? 0.25 : 1));
        const lo = col.lo, hi = col.hi;
        c.beginPath();
        if (dense) {
          for (let j = 0; j < xs.length; j++) {
            const a = lo[j], b = hi[j];
            if (a === null || b === null || !(a === a) || !(b === b)) continue;
            const x = Math.floor(px[j]) + off;
            c.moveTo(x, Y(b)); c.lineTo(x, Y(a));
          }
          c.strokeStyle = paint; c.stroke();
          return;
        }
        c.fillStyle = paint;
        let i = 0;
        while (i < xs.length) {
          while (i < xs.length && !(finite(lo[i]) && finite(hi[i]))) i++;
          const start = i;
          while (i < xs.length && finite(lo[i]) && finite(hi[i])) i++;
          if (i - start < 1) continue;
          if (i - start === 1) { c.rect(px[start] - 1, Y(hi[start]), 2, Y(lo[start]) - Y(hi[start])); continue; }
          c.moveTo(px[start], Y(hi[start]));
          for (let j = start + 1; j < i; j++) c.lineTo(px[j], Y(hi[j]));
          for (let j = i - 1; j >= start; j--) c.lineTo(px[j], Y(lo[j]));
          c.closePath();
        }
        c.fill();
      });
      c.restore();
    }

    // a run's line is 1 pixel wide: the browser draws those as hairlines, ~10x faster than the
    // 1.5 pixels of a stroked outline (600 lines on a project page); a highlighted run and the
    // few lines of groups are wider
    const lineWidth = (l) => (ctx.highlight && isLit(l) ? 2.5 : l.group ? 2 : 1);

    const isLit = (l) => !ctx.highlight || l.run === ctx.highlight || (l.members && l.members.includes(ctx.highlight));

    function xValues(self, ticks) {
      if (eff.x !== "_timestamp") return ticks.map(fmt);
      const span = ticks.length > 1 ? ticks[ticks.length - 1] - ticks[0] : 0;
      return ticks.map((t) => { const d = new Date(t * 1000); return span > 2 * 86400 ? d.toLocaleDateString() : d.toLocaleTimeString(); });
    }

    function options(w) {
      const zoom = ctx.zoom.get(eff.x);
      return {
        width: w,
        height: height(),
        legend: { show: false },
        scales: {
          x: { time: false, distr: eff.logx ? 3 : 1, range: (self, lo, hi) => (zoom ? [zoom[0], zoom[1]] : lo === hi ? [lo - 0.5, hi + 0.5] : [lo, hi]) },
          y: { distr: eff.logy ? 3 : 1 },
        },
        axes: [
          { values: xValues, size: 32, grid: { stroke: "#eee" }, ticks: { stroke: "#ddd" } },
          { values: (self, t) => t.map(fmt), size: Y_AXIS, grid: { stroke: "#eee" }, ticks: { stroke: "#ddd" } },
        ],
        series: [
          { label: X_NAMES[eff.x] || eff.x },
          ...lines.map((l) => ({
            label: l.label,
            stroke: () => (isLit(l) ? l.color : fade(l.color, 0.18)),
            width: lineWidth(l),
            dash: l.dash || undefined,
            spanGaps: true,
            points: { show: (self, si) => l.x.length < 2 || l.x.length * 6 < w, size: 4, fill: l.color },
          })),
        ],
        cursor: {
          sync: { key: ctx.sync, setSeries: false, scales: [eff.x === "_timestamp" ? "x" : "x", null] },
          drag: { x: true, y: false, setScale: false },
          points: { show: lines.length <= 24 },
          bind: {
            dblclick: () => () => { ctx.setZoom(eff.x, null, null); return null; },
            mousedown: (self, targ, handler) => (e) => { down = [e.clientX, e.clientY]; handler(e); return null; },
            mouseup: (self, targ, handler) => (e) => {
              handler(e);
              if (down && Math.abs(e.clientX - down[0]) < 3 && Math.abs(e.clientY - down[1]) < 3) clickAt(self);
              down = null;
              return null;
            },
          },
        },
        hooks: {
          drawAxes: [bands],
          setCursor: [cursorMoved],
          setSelect: [(self) => {
            if (self.select.width < 4 || ctx.hovered !== self) return;
            const lo = self.posToVal(self.select.left, "x"), hi = self.posToVal(self.select.left + self.select.width, "x");
            self.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            ctx.setZoom(eff.x, lo, hi);
          }],
        },
      };
    }

    function clickAt(self) {
      const idx = self.cursor.idx, top = self.cursor.top;
      if (idx === null || idx === undefined || top < 0) return;
      let best = null, dist = 14;
      lines.forEach((l, li) => {
        const v = valueAt(li, aligned.xs[idx]);
        if (v === null) return;
        const d = Math.abs(self.valToPos(v, "y") - top);
        if (d < dist) { dist = d; best = l; }
      });
      ctx.setHighlight(best ? best.run : null);
    }

    // the line's own value nearest the cursor's x (its point, not another run's x)
    function valueAt(li, x) {
      const l = lines[li], i = nearest(l.x, x);
      if (i < 0) return null;
      let j = i;
      while (j >= 0 && !finite(l.y[j])) j--;
      return j >= 0 ? l.y[j] : null;
    }

    // the legend's values at x (null: each line's last value). Only the entries in sight of the
    // legend's scroll box are written (the rest when scrolled to): 100 runs in each of several
    // synchronized panels, all rewritten on every cursor move, would cost frames.
    const ENTRY_W = 178, ENTRY_H = 16; // an entry's box and gap (panels.css .fp-entry)
    let legendX = null, legendTop = 0;
    legend.addEventListener("scroll", () => { legendTop = legend.scrollTop; paintLegend(legendX); });
    legend.addEventListener("click", (e) => { // one listener for the entries (600 on a project page)
      const row = e.target.closest && e.target.closest(".fp-entry");
      if (row && legend.contains(row)) ctx.setHighlight(row.dataset.run);
    });
    function paintLegend(x) {
      legendX = x;
      const cols = Math.max(1, Math.floor((width + 10) / ENTRY_W));
      const first = Math.floor(legendTop / ENTRY_H) * cols, last = Math.min(lines.length, first + (Math.ceil(84 / ENTRY_H) + 1) * cols);
      for (let li = first; li < last; li++) {
        const cell = legendRows[li];
        if (!cell) continue;
        const t = fmt(x === null ? lastValue(lines[li]) : valueAt(li, x));
        if (cell.value.textContent !== t) cell.value.textContent = t;
      }
      root.dataset.legendAt = x === null ? "" : String(x);
    }

    // the tooltip's rows are made once and rewritten in place (12 rows rebuilt on every move
    // cost layout and garbage for nothing)
    const TIP_ROWS = 12;
    let tipHead = null, tipRows = [], tipMore = null;
    function tipRow(i) {
      if (!tipHead) {
        tipHead = el("div", "tip-x");
        tipMore = el("div", "muted");
        tip.replaceChildren(tipHead);
      }
      while (tipRows.length <= i) {
        const row = el("div"), dot = el("span", "dot"), label = document.createTextNode("");
        row.append(dot, label);
        tip.insertBefore(row, tipMore.parentNode === tip ? tipMore : null);
        tipRows.push({ row, dot, label, color: "", text: "", cls: "" });
      }
      return tipRows[i];
    }

    function cursorMoved(self) {
      const idx = self.cursor.idx;
      const x = idx === null || idx === undefined ? null : aligned.xs[idx];
      root.dataset.cursor = x === null ? "" : String(x);
      // the panel under the pointer writes its legend now; the panels synchronized with it once
      // the cursor rests (6 panels' legends rewritten on every move cost the frame rate)
      if (x === null || !ctx.hovered || ctx.hovered === self) { ctx.later(paintLegend, null); paintLegend(x); }
      else ctx.later(paintLegend, () => paintLegend(x));
      if (x === null || ctx.hovered !== self) { tip.hidden = true; return; }
      const rows = lines.map((l, li) => [l, valueAt(li, x)]);
      rows.sort((a, b) => (finite(b[1]) ? b[1] : -Infinity) - (finite(a[1]) ? a[1] : -Infinity));
      tipRow(0);
      const head = `${X_NAMES[eff.x] || eff.x} ${eff.x === "_timestamp" ? new Date(x * 1000).toLocaleString() : fmt(x)}`;
      if (tipHead.textContent !== head) tipHead.textContent = head;
      const shown = Math.min(TIP_ROWS, rows.length);
      for (let i = 0; i < shown; i++) {
        const [l, v] = rows[i], r = tipRow(i), t = `${l.label}: ${fmt(v)}`, cls = isLit(l) ? "" : "fp-dim";
        if (r.text !== t) { r.label.data = t; r.text = t; }
        if (r.color !== l.color) { r.dot.style.background = l.color; r.color = l.color; }
        if (r.cls !== cls) { r.row.className = cls; r.cls = cls; }
        r.row.hidden = false;
      }
      for (let i = shown; i < tipRows.length; i++) tipRows[i].row.hidden = true;
      if (rows.length > TIP_ROWS) {
        const more = `+ ${rows.length - TIP_ROWS} more`;
        if (tipMore.textContent !== more) tipMore.textContent = more;
        if (tipMore.parentNode !== tip) tip.append(tipMore);
      } else if (tipMore.parentNode === tip) tipMore.remove();
      tip.hidden = false;
      // placed without reading any layout back (a read here would lay the page out every move),
      // and moved by a transform: the tip is a layer of its own (panels.css), which the
      // compositor moves without the page being laid out or its layers worked out again
      const left = self.cursor.left + self.bbox.left / devicePixelRatio, top = Math.max(0, self.cursor.top - 10);
      tip.style.transform = left > width / 2 ? `translate(calc(${left - 14}px - 100%), ${top}px)` : `translate(${left + 14}px, ${top}px)`;
    }

    function lastValue(l) {
      for (let i = l.y.length - 1; i >= 0; i--) if (finite(l.y[i])) return l.y[i];
      return null;
    }

    // one entry made, the others cloned from it, all put in at once
    const ENTRY = el("span", "fp-entry");
    ENTRY.append(el("span", "fp-swatch"), el("span", "fp-name"), el("span", "fp-value"));
    function renderLegend() {
      legendTop = 0;
      const all = document.createDocumentFragment();
      legendRows = lines.map((l) => {
        const row = ENTRY.cloneNode(true), [sw, name, value] = row.children;
        row.dataset.run = l.run;
        sw.style.background = l.color;
        if (l.dash) sw.classList.add("fp-dashed");
        name.textContent = l.label;
        value.textContent = fmt(lastValue(l));
        row.title = `${l.label} (click to highlight)`;
        all.append(row);
        return { row, value };
      });
      legend.replaceChildren(all);
      paintHighlight();
    }

    function paintHighlight() {
      lines.forEach((l, i) => { const r = legendRows[i]; if (r) r.row.classList.toggle("fp-dim", !isLit(l)); });
      root.dataset.highlight = ctx.highlight || "";
    }

    function draw(measured) {
      const t0 = performance.now();
      lines = buildLines();
      const w = Math.max(200, measured || plot.clientWidth || root.clientWidth || 400);
      width = w;
      const t1 = performance.now();
      aligned = align(lines, Math.max(50, Math.min(2000, Math.round(w - Y_AXIS))));
      if (u) { u.destroy(); u = null; }
      const frame = [aligned.xs, ...aligned.cols.map((c) => c.y)];
      const t2 = performance.now();
      u = new window.uPlot(options(w), frame, plot);
      const t3 = performance.now();
      plot.append(tip);
      u.over.addEventListener("mouseenter", () => { ctx.hovered = u; });
      u.over.addEventListener("mouseleave", () => { if (ctx.hovered === u) ctx.hovered = null; tip.hidden = true; });
      renderLegend();
      const t4 = performance.now();
      root.dataset.drawMs = [t1 - t0, t2 - t1, t3 - t2, t4 - t3].map((t) => t.toFixed(1)).join(",");
      let points = 0;
      for (const l of lines) { const y = l.y; for (let i = 0; i < y.length; i++) if (finite(y[i])) points++; }
      root.fulmen = { kind: "line", x: eff.x, log: eff.logy, logx: eff.logx, groupby: eff.groupby, smoothing: eff.smoothing, points, grid: aligned.grid, series: lines.map((l) => ({ id: l.run, key: l.key, label: l.label, color: l.color, x: l.x, y: l.y, raw: l.raw, lo: l.lo, hi: l.hi, members: l.members || null })) };
      root.dataset.points = String(points);
      root.dataset.series = String(lines.length);
      root.dataset.bands = String(lines.filter((l) => l.lo && l.hi).length);
      const zoom = ctx.zoom.get(eff.x);
      root.dataset.zoom = zoom ? `${zoom[0]},${zoom[1]}` : "";
      root.dataset.drawn = String(Number(root.dataset.drawn || 0) + 1);
    }

    const resize = new ResizeObserver(() => {
      const w = plot.clientWidth;
      if (u && w && Math.abs(w - width) > 2) { width = w; u.setSize({ width: w, height: height() }); }
    });
    resize.observe(plot);

    const member = {
      root,
      update(spec2) { cur = spec2; parts.title.textContent = cur.title || defaultTitle(cur); root.dataset.key = (cur.y || [])[0] || ""; return load(); },
      refresh: load,
      redraw() { if (data) draw(); },
      async settingsChanged() {
        const next = effective(cur, ctx.settings);
        if (next.x !== eff.x || next.max_runs !== eff.max_runs) return load();
        if (JSON.stringify(next) === JSON.stringify(eff) || !data) return null;
        eff = next;
        // the runs again (the page may have handed over fuller ones: a config column to group by)
        const runs = (await ctx.runsWith(groupPaths(eff))).slice(0, eff.max_runs);
        runMap = new Map(runs.map((r) => [r.id, r]));
        draw();
        return null;
      },
      highlight() { if (u) { u.series.forEach((s, i) => { if (i > 0) s.width = lineWidth(lines[i - 1]); }); u.redraw(false); } paintHighlight(); },
      zoomed(x) { if (x === eff.x) return load(); return null; },
      destroy() { seq++; resize.disconnect(); ctx.later(paintLegend, null); if (u) u.destroy(); ctx.members.delete(member); },
    };
    ctx.members.add(member);
    member.ready = load();
    return member;
  }

  // ------------------------------------------------------------------ the other kinds

  function canvasOf(box, w, h) {
    const c = el("canvas"), r = window.devicePixelRatio || 1;
    c.width = Math.round(w * r); c.height = Math.round(h * r);
    c.style.width = `${w}px`; c.style.height = `${h}px`;
    box.append(c);
    const g = c.getContext("2d");
    g.setTransform(r, 0, 0, r, 0, 0);
    g.font = "11px system-ui, sans-serif";
    return [c, g];
  }

  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) return [lo];
    const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const out = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(t);
    return out;
  }

  // the config./summary. paths a spec reads (its runs must hold them)
  function specPaths(spec) {
    const m = spec.metric ? [spec.metric.startsWith("summary.") ? spec.metric : `summary.${spec.metric}`] : [];
    return [...m, spec.groupby, spec.x, spec.y, spec.color, ...(spec.columns || [])].filter((p) => typeof p === "string");
  }

  function simple(kind, render) {
    return function (root, spec, source, ctx) {
      let cur = spec, seq = 0;
      const parts = shell(root, cur, kind);
      async function load() {
        const mine = ++seq;
        const runs = await ctx.runsWith(specPaths(cur));
        if (mine !== seq) return;
        parts.body.replaceChildren();
        try { await render(parts.body, cur, runs, source, ctx, root); } catch (e) { parts.body.append(el("p", "muted", String(e.message || e))); }
        root.dataset.drawn = String(Number(root.dataset.drawn || 0) + 1);
      }
      const member = {
        root,
        update(s) { cur = s; parts.title.textContent = cur.title || defaultTitle(cur); return load(); },
        refresh: load,
        redraw: load,
        highlight() { for (const n of root.querySelectorAll("[data-run]")) n.classList.toggle("fp-dim", !!ctx.highlight && n.dataset.run !== ctx.highlight); },
        destroy() { seq++; ctx.members.delete(member); },
      };
      ctx.members.add(member);
      member.ready = load();
      return member;
    };
  }

  async function histories(source, runs, metric, agg) {
    const key = metric.replace(/^summary\./, "");
    // "last" is the summary's value; the history only for runs whose summary lacks it
    if (!runs.length || !key) return null;
    if ((!agg || agg === "last") && runs.every((r) => finite(dig(r, `summary.${key}`)))) return null;
    const a = await source.history({ runs: runs.map((r) => r.id), keys: [key], x: "_step", buckets: 1000 });
    return new Map(a.series.map((s) => [s.run, s]));
  }

  const scalarPanel = simple("scalar", async (body, spec, runs, source, ctx, root) => {
    const hist = await histories(source, runs, spec.metric || "", spec.agg);
    const vals = runs.map((r) => [r, aggregate(r, spec.metric || "", spec.agg, hist)]).filter(([, v]) => finite(v));
    const big = el("div", "fp-scalar");
    if (runs.length <= 1 || vals.length <= 1) {
      big.textContent = vals.length ? fmt(vals[0][1]) : "-";
    } else {
      const mean = vals.reduce((s, [, v]) => s + v, 0) / vals.length;
      big.textContent = fmt(mean);
      body.append(el("div", "muted", `mean of ${vals.length} runs (${fmt(Math.min(...vals.map((x) => x[1])))} to ${fmt(Math.max(...vals.map((x) => x[1])))})`));
    }
    body.prepend(big);
    root.fulmen = { kind: "scalar", values: vals.map(([r, v]) => ({ id: r.id, value: v })) };
  });

  const barPanel = simple("bar", async (body, spec, runs, source, ctx, root) => {
    const metric = spec.metric || "";
    const hist = await histories(source, runs, metric, spec.agg);
    let items = runs.map((r) => ({ id: r.id, label: r.name || r.id, color: color(r.id), value: aggregate(r, metric, spec.agg, hist) })).filter((b) => finite(b.value));
    if (spec.groupby) {
      const groups = new Map();
      for (const b of items) { const g = groupValue(runs.find((r) => r.id === b.id), spec.groupby); if (!groups.has(g)) groups.set(g, []); groups.get(g).push(b); }
      items = [...groups].map(([g, bs]) => {
        const vs = bs.map((b) => b.value), mean = vs.reduce((a, b) => a + b, 0) / vs.length;
        return { id: `group:${g}`, label: `${g} (${bs.length})`, color: color(`group:${g}`), value: mean, lo: Math.min(...vs), hi: Math.max(...vs) };
      });
    }
    const w = Math.max(240, body.clientWidth || 360), rowH = 18, h = Math.max(60, items.length * rowH + 24);
    const [c, g] = canvasOf(body, w, Math.min(h, 2000));
    const labelW = Math.min(160, w * 0.35), vmax = Math.max(0, ...items.map((b) => b.hi ?? b.value)), vmin = Math.min(0, ...items.map((b) => b.lo ?? b.value));
    const X = (v) => labelW + 6 + ((v - vmin) / ((vmax - vmin) || 1)) * (w - labelW - 60);
    items.forEach((b, i) => {
      const y = 4 + i * rowH;
      g.fillStyle = ctx.highlight && ctx.highlight !== b.id ? fade(b.color, 0.25) : b.color;
      g.fillRect(Math.min(X(0), X(b.value)), y, Math.abs(X(b.value) - X(0)) || 1, rowH - 5);
      if (finite(b.lo)) { g.strokeStyle = "#333"; g.beginPath(); g.moveTo(X(b.lo), y + 6); g.lineTo(X(b.hi), y + 6); g.stroke(); }
      g.fillStyle = "#333"; g.textAlign = "right"; g.textBaseline = "top";
      g.fillText(b.label.slice(0, 28), labelW, y + 1);
      g.textAlign = "left"; g.fillText(fmt(b.value), Math.max(X(b.value), X(0)) + 4, y + 1);
    });
    c.addEventListener("click", (e) => { const i = Math.floor((e.offsetY - 4) / rowH); if (items[i]) ctx.setHighlight(items[i].id); });
    root.fulmen = { kind: "bar", bars: items.map((b) => ({ id: b.id, label: b.label, value: b.value, lo: b.lo, hi: b.hi, color: b.color })) };
  });

  const scatterPanel = simple("scatter", async (body, spec, runs, source, ctx, root) => {
    const pts = runs.map((r) => ({ id: r.id, label: r.name || r.id, x: Number(dig(r, spec.x || "")), y: Number(dig(r, spec.y || "")), c: spec.color ? dig(r, spec.color) : null })).filter((p) => finite(p.x) && finite(p.y));
    const w = Math.max(240, body.clientWidth || 360), h = 220, pad = { l: 54, r: 10, t: 8, b: 28 };
    const [c, g] = canvasOf(body, w, h);
    const xs = pts.map((p) => p.x), ys = pts.map((p) => p.y);
    const rng = (a) => { let lo = Math.min(...a), hi = Math.max(...a); if (!(hi > lo)) { lo -= 0.5; hi += 0.5; } const p = (hi - lo) * 0.06; return [lo - p, hi + p]; };
    const [x0, x1] = pts.length ? rng(xs) : [0, 1], [y0, y1] = pts.length ? rng(ys) : [0, 1];
    const X = (v) => pad.l + ((v - x0) / (x1 - x0)) * (w - pad.l - pad.r), Y = (v) => h - pad.b - ((v - y0) / (y1 - y0)) * (h - pad.t - pad.b);
    axes(g, w, h, pad, x0, x1, y0, y1, spec.x, spec.y);
    const cvals = pts.map((p) => p.c).filter(finite), c0 = Math.min(...cvals), c1 = Math.max(...cvals);
    for (const p of pts) {
      const col = finite(p.c) && c1 > c0 ? `hsl(${240 - 240 * ((p.c - c0) / (c1 - c0))}, 75%, 45%)` : color(p.id);
      g.fillStyle = ctx.highlight && ctx.highlight !== p.id ? fade(color(p.id), 0.2) : col;
      g.beginPath(); g.arc(X(p.x), Y(p.y), ctx.highlight === p.id ? 5 : 3.5, 0, 2 * Math.PI); g.fill();
    }
    const tipBox = el("div", "chart-tip fp-tip"); tipBox.hidden = true; body.append(tipBox); body.classList.add("fp-rel");
    c.addEventListener("mousemove", (e) => {
      let best = null, d = 10;
      for (const p of pts) { const dd = Math.hypot(X(p.x) - e.offsetX, Y(p.y) - e.offsetY); if (dd < d) { d = dd; best = p; } }
      tipBox.hidden = !best;
      if (best) { tipBox.textContent = `${best.label}: ${spec.x} ${fmt(best.x)}, ${spec.y} ${fmt(best.y)}`; tipBox.style.left = `${e.offsetX + 12}px`; tipBox.style.top = `${e.offsetY}px`; }
    });
    c.addEventListener("click", (e) => { for (const p of pts) if (Math.hypot(X(p.x) - e.offsetX, Y(p.y) - e.offsetY) < 8) { ctx.setHighlight(p.id); return; } });
    root.fulmen = { kind: "scatter", points: pts };
  });

  function axes(g, w, h, pad, x0, x1, y0, y1, xl, yl) {
    g.strokeStyle = "#eee"; g.fillStyle = "#666"; g.textAlign = "right"; g.textBaseline = "middle";
    for (const t of niceTicks(y0, y1, 4)) { const y = h - pad.b - ((t - y0) / (y1 - y0)) * (h - pad.t - pad.b); g.beginPath(); g.moveTo(pad.l, y); g.lineTo(w - pad.r, y); g.stroke(); g.fillText(fmt(t), pad.l - 4, y); }
    g.textAlign = "center"; g.textBaseline = "top";
    for (const t of niceTicks(x0, x1, 5)) { const x = pad.l + ((t - x0) / (x1 - x0)) * (w - pad.l - pad.r); g.beginPath(); g.moveTo(x, pad.t); g.lineTo(x, h - pad.b); g.stroke(); g.fillText(fmt(t), x, h - pad.b + 3); }
    g.fillStyle = "#888"; g.textAlign = "right"; g.textBaseline = "bottom"; g.fillText(xl || "", w - pad.r, h);
    g.textAlign = "left"; g.textBaseline = "top"; g.fillText(yl || "", 2, 0);
  }

  // x/y lines (in the order given: PR and ROC curves go back in x) or dots, on a canvas: the
  // chart presets of media.js (fulmen.track.plot.*) are drawn with it
  function xyChart(container, series, o) {
    const opts = o || {};
    const div = el("div", "panel fp-xy");
    if (opts.title) div.append(el("div", "chart-title", opts.title));
    container.append(div);
    const w = Math.max(260, opts.width || container.clientWidth || 380), h = opts.height || 220;
    const pad = { l: 54, r: 10, t: 8, b: 28 };
    const [c, g] = canvasOf(div, w, h);
    const xs = series.flatMap((s) => s.x.filter(finite)), ys = series.flatMap((s) => s.y.filter(finite));
    const rng = (a) => { let lo = Math.min(...a), hi = Math.max(...a); if (!a.length) return [0, 1]; if (!(hi > lo)) { lo -= 0.5; hi += 0.5; } const p = (hi - lo) * 0.04; return [lo - p, hi + p]; };
    const [x0, x1] = rng(xs), [y0, y1] = rng(ys);
    const X = (v) => pad.l + ((v - x0) / (x1 - x0)) * (w - pad.l - pad.r), Y = (v) => h - pad.b - ((v - y0) / (y1 - y0)) * (h - pad.t - pad.b);
    axes(g, w, h, pad, x0, x1, y0, y1, opts.xLabel, opts.yLabel);
    for (const s of series) {
      g.strokeStyle = g.fillStyle = s.color; g.lineWidth = 1.5;
      if (s.dots) { s.x.forEach((x, i) => { if (finite(x) && finite(s.y[i])) g.fillRect(X(x) - 2, Y(s.y[i]) - 2, 4, 4); }); continue; }
      g.beginPath();
      let pen = false;
      s.x.forEach((x, i) => { const y = s.y[i]; if (!finite(x) || !finite(y)) { pen = false; return; } if (pen) g.lineTo(X(x), Y(y)); else g.moveTo(X(x), Y(y)); pen = true; });
      g.stroke();
      if (s.x.length === 1) g.fillRect(X(s.x[0]) - 2, Y(s.y[0]) - 2, 4, 4);
    }
    c.fulmen = { series, range: { x0, x1, y0, y1 } };
    div.dataset.series = String(series.length);
    return div;
  }

  // parallel coordinates: one vertical axis per column, one polyline per run (its colour);
  // text columns get their distinct values as ticks
  const parallelPanel = simple("parallel", async (body, spec, runs, source, ctx, root) => {
    const cols = (spec.columns || []).filter(Boolean);
    const w = Math.max(300, body.clientWidth || 480), h = 240, pad = { l: 30, r: 30, t: 22, b: 16 };
    const [c, g] = canvasOf(body, w, h);
    if (cols.length < 2) { g.fillStyle = "#888"; g.fillText("choose two or more columns", 10, 20); root.fulmen = { kind: "parallel", axes: [] }; return; }
    const axesInfo = cols.map((col) => {
      const vals = runs.map((r) => dig(r, col));
      const nums = vals.filter(finite);
      if (nums.length >= vals.filter((v) => v !== undefined && v !== null).length && nums.length) {
        let lo = Math.min(...nums), hi = Math.max(...nums); if (!(hi > lo)) { lo -= 0.5; hi += 0.5; }
        return { col, pos: (v) => (finite(v) ? (v - lo) / (hi - lo) : null), ticks: [[0, fmt(lo)], [1, fmt(hi)]], lo, hi };
      }
      const cats = [...new Set(vals.filter((v) => v !== undefined && v !== null).map(text))].sort();
      return { col, pos: (v) => (v === undefined || v === null ? null : cats.length > 1 ? cats.indexOf(text(v)) / (cats.length - 1) : 0.5), ticks: cats.map((k, i) => [cats.length > 1 ? i / (cats.length - 1) : 0.5, k]), cats };
    });
    const X = (i) => pad.l + (i / (cols.length - 1)) * (w - pad.l - pad.r), Y = (p) => h - pad.b - p * (h - pad.t - pad.b);
    const drawn = [];
    for (const r of runs) {
      const ps = axesInfo.map((a) => a.pos(dig(r, a.col)));
      g.strokeStyle = ctx.highlight && ctx.highlight !== r.id ? fade(color(r.id), 0.12) : color(r.id);
      g.lineWidth = ctx.highlight === r.id ? 2.5 : 1.2;
      g.beginPath();
      let pen = false;
      ps.forEach((p, i) => { if (p === null) { pen = false; return; } if (pen) g.lineTo(X(i), Y(p)); else g.moveTo(X(i), Y(p)); pen = true; });
      g.stroke();
      drawn.push({ id: r.id, positions: ps });
    }
    g.lineWidth = 1; g.strokeStyle = "#999"; g.fillStyle = "#333"; g.font = "10px system-ui, sans-serif";
    axesInfo.forEach((a, i) => {
      g.beginPath(); g.moveTo(X(i), pad.t); g.lineTo(X(i), h - pad.b); g.stroke();
      g.textAlign = i === 0 ? "left" : i === cols.length - 1 ? "right" : "center"; g.textBaseline = "bottom";
      g.fillText(a.col.replace(/^(config|summary)\./, ""), X(i), pad.t - 6);
      g.textAlign = "left"; g.textBaseline = "middle";
      for (const [p, t] of a.ticks.slice(0, 12)) g.fillText(String(t).slice(0, 14), X(i) + 3, Y(p));
    });
    c.addEventListener("click", (e) => {
      let best = null, d = 8;
      for (const r of drawn) r.positions.forEach((p, i) => { if (p !== null) { const dd = Math.hypot(X(i) - e.offsetX, Y(p) - e.offsetY); if (dd < d) { d = dd; best = r.id; } } });
      ctx.setHighlight(best);
    });
    root.fulmen = { kind: "parallel", axes: axesInfo.map((a) => ({ column: a.col, lo: a.lo, hi: a.hi, categories: a.cats || null })), runs: drawn };
  });

  // the run comparer (a table panel with "compare": true, W&B's RunComparer): the runs as
  // columns, a row per run field, config path (model.depth) and summary metric; diff_only (the
  // spec's, then the panel's toggle) hides the rows whose value is the same in every run
  const COMPARE_RUNS = 50; // columns at most (the first runs of the run set)
  const COMPARE_CHARS = 48; // a longer value is cut, the whole of it in the cell's title
  const RUN_ROWS = [["state", (r) => r.state, (v) => text(v)],
    ["created", (r) => r.created, (v) => (finite(v) ? new Date(v * 1000).toISOString().slice(0, 19).replace("T", " ") : "")],
    ["runtime", (r) => r.runtime, (v) => (finite(v) ? duration(v) : "")]];

  function duration(s) {
    const t = Math.round(s), h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60);
    return h ? `${h}h ${m}m ${t % 60}s` : m ? `${m}m ${t % 60}s` : `${Math.round(s * 10) / 10}s`;
  }

  // a config or summary object's leaf paths (nested objects walked, but media values with a
  // _type, empty objects, lists and scalars are leaves), top-level keys with "_" left out
  function leaves(obj, prefix, out) {
    for (const [k, v] of Object.entries(obj || {})) {
      if (!prefix && k.startsWith("_")) continue;
      const path = prefix + k;
      if (v && typeof v === "object" && !Array.isArray(v) && !("_type" in v) && Object.keys(v).length) leaves(v, path + ".", out);
      else out.set(path, v);
    }
    return out;
  }

  function compareTable(body, spec, all, source, ctx, root) {
    const runs = all.slice(0, COMPARE_RUNS);
    const rows = []; // [section, label, values per run, shown text per run]
    for (const [label, get, show] of RUN_ROWS) {
      const vals = runs.map(get);
      rows.push(["run", label, vals, vals.map(show)]);
    }
    for (const part of ["config", "summary"]) {
      const flat = runs.map((r) => leaves(r[part], "", new Map()));
      const names = [...new Set(flat.flatMap((f) => [...f.keys()]))].sort();
      for (const name of names) {
        const vals = flat.map((f) => f.get(name));
        rows.push([part, name, vals, vals.map((v) => (v && typeof v === "object" && "_type" in v ? String(v._type) : text(v)))]);
      }
    }
    const bar = el("div", "fp-compare-bar");
    const toggle = el("label", "fp-field"), box = el("input", "fp-diff-only");
    box.type = "checkbox"; box.checked = !!spec.diff_only;
    toggle.append(box, document.createTextNode(" differences only"));
    const note = el("span", "muted fp-compare-note");
    bar.append(toggle, note);
    const wrap = el("div", "fp-table-wrap fp-compare-wrap"), t = el("table", "plain fp-table fp-compare");
    const head = el("tr"); head.append(el("th", "fp-compare-key", ""));
    for (const r of runs) {
      const th = el("th", "fp-compare-run"); th.dataset.run = r.id; th.title = r.id;
      const dot = el("span", "fp-swatch"); dot.style.background = color(r.id);
      const name = r.name || r.id;
      let label;
      if (source.kind === "api" && source.entity) {
        label = el("a", "", name);
        label.href = `/${enc(source.entity)}/${enc(source.project)}/runs/${enc(r.id)}`;
      } else label = el("span", "", name);
      th.append(dot, label);
      th.addEventListener("click", (e) => { if (e.target === label && label.tagName === "A") return; ctx.setHighlight(r.id); });
      head.append(th);
    }
    const thead = el("thead"); thead.append(head);
    const tbody = el("tbody"), differing = [], sections = new Map();
    for (const [section, label, vals, shown] of rows) {
      if (!sections.has(section)) {
        const tr = el("tr", "fp-compare-section"); tr.dataset.section = section;
        const th = el("th", "", section); th.colSpan = runs.length + 1; tr.append(th);
        tbody.append(tr); sections.set(section, { tr, rows: [] });
      }
      const key = section === "run" ? label : `${section}.${label}`;
      // run fields as shown (a created time to the second), config and summary by value
      const seen = section === "run" ? shown : vals.map((v) => JSON.stringify(v === undefined ? null : v));
      const same = seen.every((v) => v === seen[0]);
      const tr = el("tr", same ? "fp-same" : "fp-differs"); tr.dataset.row = key;
      tr.append(el("th", "fp-compare-key", label));
      vals.forEach((v, i) => {
        const full = shown[i], td = el("td", typeof v === "number" ? "num" : v === undefined ? "muted" : "");
        td.dataset.run = runs[i].id;
        td.textContent = v === undefined ? "-" : full.length > COMPARE_CHARS ? `${full.slice(0, COMPARE_CHARS - 1)}\u2026` : full;
        if (v !== undefined && full.length > COMPARE_CHARS) td.title = full;
        tr.append(td);
      });
      tbody.append(tr);
      sections.get(section).rows.push([tr, same]);
      if (!same) differing.push(key);
    }
    function apply() {
      const only = box.checked;
      for (const { tr, rows: mine } of sections.values()) {
        for (const [row, same] of mine) row.hidden = only && same;
        tr.hidden = only && mine.every(([, same]) => same);
      }
      const more = all.length > runs.length ? ` (the first ${runs.length} of ${all.length} runs)` : "";
      note.textContent = `${differing.length} of ${rows.length} rows differ${more}`;
      root.dataset.diffOnly = only ? "1" : "0";
      root.fulmen = { kind: "compare", runs: runs.map((r) => r.id), rows: rows.map(([s, l]) => (s === "run" ? l : `${s}.${l}`)), differing, diff_only: only, shown: [...tbody.querySelectorAll("tr[data-row]")].filter((r) => !r.hidden).map((r) => r.dataset.row) };
    }
    box.addEventListener("change", apply);
    t.append(thead, tbody); wrap.append(t); body.append(bar, wrap);
    root.dataset.compare = "1";
    apply();
  }

  // the runs table: the runs table component (runtable.js) when the page has it, else a plain one
  const tablePanel = simple("table", async (body, spec, runs, source, ctx, root) => {
    if (spec.compare) {
      if (!(spec.layout && spec.layout.w)) root.style.gridColumn = "1 / -1"; // a column per run: the grid's width
      // a page's run objects may hold only its table's columns: the comparer needs all of them
      const whole = source.fullRuns ? await source.fullRuns(runs.slice(0, COMPARE_RUNS)) : runs;
      compareTable(body, spec, runs.length > whole.length ? [...whole, ...runs.slice(whole.length)] : whole, source, ctx, root);
      return;
    }
    const cols = spec.columns && spec.columns.length ? spec.columns : ["name", "state"];
    const RT = window.FulmenRunTable;
    if (RT && typeof RT.mount === "function") {
      // a source without query(): the component sorts and filters these runs in the browser
      RT.mount(body, { source: { runs: async () => runs.slice() }, columns: cols, color, onHighlight: (id) => ctx.setHighlight(id) });
      root.fulmen = { kind: "table", columns: cols, rows: runs.length, component: "FulmenRunTable" };
      return;
    }
    const wrap = el("div", "fp-table-wrap"), t = el("table", "plain fp-table");
    const head = el("tr");
    head.append(el("th", "", ""));
    for (const c of cols) head.append(el("th", "", c.replace(/^(config|summary)\./, "")));
    const thead = el("thead"); thead.append(head);
    const tbody = el("tbody");
    for (const r of runs) {
      const tr = el("tr"); tr.dataset.run = r.id;
      const sw = el("td"); const dot = el("span", "fp-swatch"); dot.style.background = color(r.id); sw.append(dot); tr.append(sw);
      for (const c of cols) tr.append(el("td", typeof dig(r, c) === "number" ? "num" : "", text(c === "name" ? r.name || r.id : dig(r, c))));
      tr.addEventListener("click", () => ctx.setHighlight(r.id));
      tbody.append(tr);
    }
    t.append(thead, tbody); wrap.append(t); body.append(wrap);
    root.fulmen = { kind: "table", columns: cols, rows: runs.length, component: "plain" };
  });

  // media: the media viewer (media.js) side by side over the runs, at one step
  const mediaPanel = simple("media", async (body, spec, runs, source, ctx, root) => {
    if (!window.FulmenMedia) { body.append(el("p", "muted", "media.js is not loaded")); return; }
    const shown = runs.slice(0, 12);
    const entries = await Promise.all(shown.map((r) => source.media(r.id, spec.key).then((d) => d.media.find((m) => m.key === spec.key) || null).catch(() => null)));
    const side = shown.map((r, i) => ({ id: r.id, name: r.name || r.id, color: color(r.id), entry: entries[i], fileUrl: (p) => source.mediaUrl(r.id, p) }));
    if (!side.some((s) => s.entry)) { body.append(el("p", "muted", `no media under ${spec.key}`)); root.fulmen = { kind: "media", runs: 0 }; return; }
    await window.FulmenMedia.compare(body, spec.key, side);
    root.fulmen = { kind: "media", runs: side.filter((s) => s.entry).length };
  });

  // histograms over steps (watch, Histogram): a heat map per run, step on x, value on y, each
  // step's bins shaded by their count relative to that step's largest
  const histogramPanel = simple("histogram", async (body, spec, runs, source, ctx, root) => {
    const shown = runs.slice(0, 8), drawnAll = [];
    for (const r of shown) {
      const data = await source.values(r.id, spec.key, 500);
      const rows = data.values.filter((v) => v.value && Array.isArray(v.value.bins)).map((v) => ({ step: v._step, bins: v.value.bins, values: v.value.values }));
      const box = el("div", "fp-heat");
      if (shown.length > 1) { const n = el("div", "fp-run-name", r.name || r.id); n.style.borderLeftColor = color(r.id); box.append(n); }
      body.append(box);
      drawnAll.push(heatmap(box, rows, Math.max(240, body.clientWidth || 380)));
    }
    root.dataset.steps = String(drawnAll.length ? drawnAll[0].steps.length : 0);
    root.fulmen = { kind: "histogram", runs: drawnAll };
  });

  function heatmap(box, rows, w) {
    const PAD = { left: 56, right: 10, top: 12, bottom: 26 }, h = 200;
    const [canvas, ctx] = canvasOf(box, w, h);
    let lo = Infinity, hi = -Infinity;
    for (const row of rows) { lo = Math.min(lo, row.bins[0]); hi = Math.max(hi, row.bins[row.bins.length - 1]); }
    const info = { steps: [], lo, hi, xTicks: [], yTicks: [] };
    canvas.fulmen = info;
    if (!rows.length || !(hi > lo)) { ctx.fillStyle = "#888"; ctx.fillText("none logged", 10, 20); return info; }
    rows = rows.slice().sort((a, b) => a.step - b.step);
    const first = rows[0].step, last = rows[rows.length - 1].step;
    const gap = rows.length > 1 ? (last - first) / (rows.length - 1) : 1;
    const s0 = first, s1 = last + gap;
    const pw = w - PAD.left - PAD.right, ph = h - PAD.top - PAD.bottom;
    const X = (s) => PAD.left + ((s - s0) / (s1 - s0 || 1)) * pw;
    const Y = (v) => PAD.top + (1 - (v - lo) / (hi - lo)) * ph;
    rows.forEach((row, i) => {
      const next = i + 1 < rows.length ? X(rows[i + 1].step) : PAD.left + pw;
      const x = X(row.step), cw = Math.max(next - x, 1);
      const top = Math.max(...row.values) || 1;
      row.values.forEach((c, j) => {
        if (!c) return;
        const y0 = Y(row.bins[j]), y1 = Y(row.bins[j + 1]);
        ctx.fillStyle = `rgba(40,90,200,${0.15 + 0.85 * (c / top)})`;
        ctx.fillRect(x, y1, cw, Math.max(y0 - y1, 1));
      });
    });
    ctx.fillStyle = "#666"; ctx.strokeStyle = "#ccc";
    ctx.strokeRect(PAD.left, PAD.top, pw, ph);
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    const yTicks = niceTicks(lo, hi, 4), xTicks = niceTicks(first, last, 5).filter((t) => t <= last);
    const tiny = (hi - lo) * 1e-9;
    for (const v of yTicks) ctx.fillText(fmt(Math.abs(v) < tiny ? 0 : v), PAD.left - 4, Y(v));
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    for (const s of xTicks) ctx.fillText(fmt(s), X(s) + (X(s + gap) - X(s)) / 2, h - PAD.bottom + 4);
    ctx.fillStyle = "#888"; ctx.textAlign = "right"; ctx.textBaseline = "bottom";
    ctx.fillText("step", w - PAD.right, h - 1);
    ctx.textAlign = "left"; ctx.textBaseline = "top"; ctx.fillText("value", 2, 0);
    Object.assign(info, { steps: rows.map((row) => row.step), xTicks, yTicks });
    return info;
  }

  // markdown: the HTML the server rendered (markdown-it with HTML off: safe), else the text as
  // text. The HTML is parsed inert (DOMParser runs no scripts) and only its nodes are moved in.
  const markdownPanel = simple("markdown", async (body, spec, runs, source, ctx, root) => {
    const box = el("div", "fp-markdown");
    if (spec.html) {
      const doc = new DOMParser().parseFromString(`<div>${spec.html}</div>`, "text/html");
      for (const bad of doc.querySelectorAll("script, style, iframe, object, embed, link, meta")) bad.remove();
      for (const n of doc.querySelectorAll("*")) for (const a of [...n.attributes]) if (/^on/i.test(a.name) || /^\s*javascript:/i.test(a.value)) n.removeAttribute(a.name);
      box.append(...doc.body.firstChild.childNodes);
    } else {
      for (const para of String(spec.text || "").split(/\n{2,}/)) box.append(el("p", "", para));
    }
    body.append(box);
    root.fulmen = { kind: "markdown" };
  });

  const KINDS = {
    line: linePanel, scalar: scalarPanel, bar: barPanel, scatter: scatterPanel, parallel: parallelPanel,
    table: tablePanel, media: mediaPanel, histogram: histogramPanel, markdown: markdownPanel,
  };

  function mountPanel(root, spec, source, opts) {
    const ctx = opts && opts._ctx ? opts._ctx : makeContext(source, opts);
    const make = KINDS[spec && spec.kind];
    if (!make) {
      root.replaceChildren(el("p", "muted", `unknown panel kind ${JSON.stringify(spec && spec.kind)}; known: ${Object.keys(KINDS).join(", ")}`));
      return { update() {}, destroy() {}, ready: Promise.resolve() };
    }
    const w = spec.layout && spec.layout.w;
    if (w) root.style.gridColumn = `span ${Math.max(1, Math.min(12, w))}`;
    return make(root, spec, source, ctx);
  }

  // ------------------------------------------------------------------ the grid (and its editor)

  function mountGrid(root, layoutIn, source, opts) {
    const o = opts || {};
    let layout = normalize(JSON.parse(JSON.stringify(layoutIn || {})));
    const ctx = makeContext(source, { ...o, settings: layout.settings });
    root.classList.add("fp-grid-root");
    let mounted = [];
    let saveTimer = null;

    function changed() {
      ctx.settings = layout.settings = layout.settings || {};
      if (!o.onChange) return;
      if (o.onDirty) o.onDirty();
      clearTimeout(saveTimer);
      saveTimer = setTimeout(() => o.onChange(JSON.parse(JSON.stringify(layout))), o.debounce === undefined ? 400 : o.debounce);
    }

    function render() {
      for (const m of mounted) m.destroy();
      mounted = [];
      root.replaceChildren();
      layout.sections.forEach((section, si) => {
        const sec = el("section", "fp-section");
        sec.dataset.name = section.name;
        const head = el("div", "fp-section-head");
        const toggle = el("button", "fp-collapse", section.collapsed ? "▸" : "▾");
        toggle.type = "button"; toggle.title = "collapse";
        toggle.addEventListener("click", () => { section.collapsed = !section.collapsed; changed(); render(); });
        const name = el("h3", "fp-section-name", `${section.name} (${(section.panels || []).length})`);
        head.append(toggle, name);
        if (o.editable) {
          head.append(button("+ panel", "fp-add-panel", () => openEditor(sec, section, null)));
          head.append(button("rename", "fp-rename", () => { const n = prompt("section name", section.name); if (n) { section.name = n; changed(); render(); } }));
          head.append(button("remove section", "fp-remove-section", () => { layout.sections.splice(si, 1); changed(); render(); }));
        }
        sec.append(head);
        const grid = el("div", "panels fp-grid");
        sec.append(grid);
        root.append(sec);
        if (section.collapsed) { grid.hidden = true; return; }
        (section.panels || []).forEach((spec, pi) => {
          const box = el("div");
          grid.append(box);
          const m = mountPanel(box, spec, source, { _ctx: ctx });
          mounted.push(m);
          if (o.editable) {
            const tools = el("span", "fp-tools");
            tools.append(button("⚙", "fp-edit", () => openEditor(sec, section, pi), "panel settings"));
            tools.append(button("×", "fp-remove", () => { section.panels.splice(pi, 1); changed(); render(); }, "remove panel"));
            const h = box.querySelector(".fp-head");
            if (h) h.append(tools);
          }
        });
      });
      if (o.editable) root.append(button("+ section", "fp-add-section", () => { const n = prompt("section name", "new section"); if (n) { layout.sections.push({ name: n, panels: [], collapsed: false }); changed(); render(); } }));
      root.dataset.panels = String(mounted.length);
    }

    function openEditor(sec, section, index) {
      const old = sec.querySelector(".fp-editor");
      if (old) old.remove();
      const spec = index === null ? { kind: "line", y: [] } : JSON.parse(JSON.stringify(section.panels[index]));
      const form = editor(spec, ctx.choices, (done) => {
        form.remove();
        if (!done) return;
        if (index === null) section.panels.push(done); else section.panels[index] = done;
        changed(); render();
      });
      sec.querySelector(".fp-section-head").after(form);
    }

    render();
    const grid = {
      root,
      context: ctx,
      layout: () => JSON.parse(JSON.stringify(layout)),
      update(next) { layout = normalize(JSON.parse(JSON.stringify(next))); ctx.settings = layout.settings; render(); return grid.ready(); },
      setSettings(patch) {
        layout.settings = { ...(layout.settings || {}), ...patch };
        ctx.settings = layout.settings;
        for (const k of Object.keys(patch)) if (patch[k] === null || patch[k] === undefined) delete layout.settings[k];
        changed();
        return Promise.all(mounted.map((m) => (m.settingsChanged ? m.settingsChanged() : null)));
      },
      refresh() { ctx.refresh(); return Promise.all(mounted.map((m) => m.refresh && m.refresh())); },
      resetZoom() { const xs = [...ctx.zoom.keys()]; for (const x of xs) ctx.setZoom(x, null, null); },
      ready() { return Promise.all(mounted.map((m) => m.ready)); },
      panels: () => mounted.slice(),
      destroy() { clearTimeout(saveTimer); for (const m of mounted) m.destroy(); mounted = []; root.replaceChildren(); },
    };
    return grid;
  }

  function button(label, cls, onClick, title) {
    const b = el("button", cls, label);
    b.type = "button";
    if (title) b.title = title;
    b.addEventListener("click", onClick);
    return b;
  }

  // the settings form of one panel: its kind's fields, as plain inputs
  const FIELDS = {
    line: [["title", "text"], ["y", "keys"], ["x", "x"], ["smoothing.type", ["none", "exponential", "running", "gaussian"]], ["smoothing.amount", "number"], ["logx", "bool"], ["logy", "bool"], ["groupby", "groupby"], ["band", ["minmax", "stddev", "none"]], ["max_runs", "number"]],
    scalar: [["title", "text"], ["metric", "metric"], ["agg", ["last", "min", "max", "mean"]]],
    bar: [["title", "text"], ["metric", "metric"], ["agg", ["last", "min", "max", "mean"]], ["groupby", "groupby"]],
    scatter: [["title", "text"], ["x", "column"], ["y", "column"], ["color", "column"]],
    parallel: [["title", "text"], ["columns", "columns"]],
    table: [["title", "text"], ["columns", "columns"], ["compare", "bool"], ["diff_only", "bool"]],
    media: [["title", "text"], ["key", "text"]],
    histogram: [["title", "text"], ["key", "text"]],
    markdown: [["title", "text"], ["text", "area"]],
  };

  function getPath(o, path) { return path.split(".").reduce((c, p) => (c && typeof c === "object" ? c[p] : undefined), o); }
  function setPath(o, path, v, copy) {
    const parts = path.split("."), last = parts.pop();
    let c = o;
    for (const p of parts) { c[p] = !c[p] || typeof c[p] !== "object" ? {} : copy ? { ...c[p] } : c[p]; c = c[p]; }
    if (v === undefined || v === "" || v === null) delete c[last]; else c[last] = v;
  }

  function editor(spec, choices, done) {
    const form = el("form", "fp-editor");
    const kind = el("select", "fp-kind");
    for (const k of Object.keys(KINDS)) { const op = el("option", "", k); op.value = k; kind.append(op); }
    kind.value = spec.kind;
    const fields = el("div", "fp-fields");
    const lists = { keys: choices.keys || [], x: choices.x || ["_step", "_runtime", "_timestamp"], groupby: choices.groupby || ["group"], metric: choices.keys || [], column: choices.columns || [], columns: choices.columns || [] };
    let inputs = [];
    function build() {
      fields.replaceChildren();
      inputs = [];
      for (const [name, type] of FIELDS[kind.value]) {
        const label = el("label", "fp-field", name + " ");
        let input;
        const value = getPath(spec, name);
        if (Array.isArray(type)) {
          input = el("select");
          for (const v of type) { const op = el("option", "", v); op.value = v; input.append(op); }
          input.value = value === undefined ? type[0] : value;
        } else if (type === "bool") {
          input = el("input"); input.type = "checkbox"; input.checked = !!value;
        } else if (type === "x" || type === "groupby") {
          input = el("select");
          const opts = type === "groupby" ? ["", ...lists.groupby] : ["", ...lists.x];
          for (const v of opts) { const op = el("option", "", v || (type === "groupby" ? "none" : "(workspace)")); op.value = v; input.append(op); }
          input.value = value || "";
        } else if (type === "area") {
          input = el("textarea"); input.value = value || ""; input.rows = 4;
        } else {
          input = el("input");
          input.type = type === "number" ? "number" : "text";
          if (type === "number") input.step = "any";
          input.value = Array.isArray(value) ? value.join(", ") : value === undefined ? "" : String(value);
          const list = lists[type];
          if (list && list.length) {
            const id = `fp-list-${type}`;
            if (!document.getElementById(id)) { const dl = el("datalist"); dl.id = id; for (const v of list) { const op = el("option"); op.value = v; dl.append(op); } document.body.append(dl); }
            input.setAttribute("list", id);
          }
        }
        input.name = name;
        label.append(input);
        fields.append(label);
        inputs.push([name, type, input]);
      }
    }
    kind.addEventListener("change", build);
    build();
    const ok = button("save", "fp-save", () => {
      const out = { kind: kind.value };
      if (spec.layout) out.layout = spec.layout;
      for (const [name, type, input] of inputs) {
        let v;
        if (type === "bool") v = input.checked || undefined;
        else if (type === "number") v = input.value === "" ? undefined : Number(input.value);
        else if (type === "keys" || type === "columns") v = input.value.split(",").map((s) => s.trim()).filter(Boolean);
        else v = input.value === "" ? undefined : input.value;
        if (name === "groupby" && v === undefined && kind.value === "line") v = null;
        setPath(out, name, v);
      }
      if (out.smoothing && !out.smoothing.type) delete out.smoothing;
      done(out);
    });
    const cancel = button("cancel", "fp-cancel", () => done(null));
    form.addEventListener("submit", (e) => { e.preventDefault(); ok.click(); });
    form.append(el("label", "fp-field", "kind "), kind, fields, ok, cancel);
    form.querySelector("label").append(kind);
    return form;
  }

  window.FulmenPanels = {
    PALETTE, color, rankRuns, fmt, smooth, dig, xyChart, decodeHistory,
    apiSource, embeddedSource, mountPanel, mountGrid, defaultLayout, normalize, flatPanels,
    kinds: Object.keys(KINDS),
  };
})();
