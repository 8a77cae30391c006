// fulmen's runs table: window.FulmenRunTable (plain ES2019, no build step, no modules).
//
//   FulmenRunTable.mount(el, opts) -> {update(opts), selected(), selectedRuns(), refresh(), rows(n),
//                                      run(id), state(), destroy(), timing}
//   opts: source     a source (see below)
//         columns    ["name", "state", "config.lr", "summary.val/loss", ...] (nested: config.model.depth)
//         pinned     columns kept in view on horizontal scroll (sticky left), default ["name"]
//         sort       "-created" | "name" | "config.lr" | "-summary.val/loss" ... ("-": descending)
//         filters    a filter expression (or a list of them, all must hold), see parseFilter
//         onSelect(runIds, runs)  the ticked runs changed (they drive the compare link and charts)
//         onHighlight(runId|null) the pointer is over a run's row (null: left the table)
//         onChange(state)         the user changed columns, pins, sort or filter ({columns, pinned,
//                                 sort, filter}: what a workspace saves)
//         onLoad({total, rows})   the first rows of a new view (or of a refresh) arrived
//         color(runId)            the swatch colour (default FulmenPanels.color, else a hash)
//         runUrl(run)             the name's link (none: plain text)
//         url                     keep the view in the page's query string (col, pin, sort, filter)
//         initial                 {total, runs, sort, columns}: the first page, if it came with the page
//         fields                  more config./summary. paths to fetch with each run (not shown)
//         selected                run ids ticked at the start
//
// A source answers runs() (every run, as GET .../runs answers them: the table sorts and filters
// them itself). A source that also answers query({sort, filters, fields, search, limit, offset})
// (GET .../runs with those parameters: {total, runs}) and columns() (GET .../columns) is paged
// through instead, a block of rows at a time as they scroll into view: a project of 10,000 runs
// never loads them all. FulmenRunTable.apiSource({entity, project}) is such a source.
//
// User text is only ever written with textContent. One file for the table and its filter language
// (parsed here, evaluated here for a source without a server): what a page, a panel or a report
// exported to one HTML file needs, with no build step.
"use strict";
(function () {
  const ROW_H = 26, HEAD_H = 30, BLOCK = 100, MAX_INFLIGHT = 4, SEL_W = 28, SWATCH_W = 22;
  // the run's own fields a filter names (the server's RUN_FIELDS) and their aliases
  const RUN_FIELDS = ["id", "name", "state", "group", "job_type", "tags", "created", "updated", "runtime", "rows"];
  const ALIASES = { duration: "runtime", job: "job_type", job_type: "job_type" };
  const OPS = [">=", "<=", "!=", "==", "=", "<", ">", "~"];
  const enc = encodeURIComponent;

  // built-in columns: key -> {label, sort (server sort name), width, get(run)}
  const BUILTIN = {
    name: { label: "name", sort: "name", width: 200, get: (r) => r.name || r.id },
    state: { label: "state", sort: "state", width: 84, get: (r) => (r.stale ? "stale" : r.state) },
    id: { label: "id", sort: "id", width: 100, get: (r) => r.id },
    group: { label: "group", sort: "group", width: 120, get: (r) => r.group },
    job_type: { label: "job type", sort: "job_type", width: 100, get: (r) => r.job_type },
    tags: { label: "tags", width: 140, get: (r) => (r.tags || []).join(", ") },
    notes: { label: "notes", width: 160, get: (r) => r.notes },
    created: { label: "created", sort: "created", width: 130, get: (r) => when(r.created) },
    updated: { label: "updated", sort: "updated", width: 130, get: (r) => when(r.updated) },
    duration: { label: "duration", sort: "runtime", width: 90, get: (r) => duration(r.runtime) },
    rows: { label: "rows", sort: "rows", width: 80, get: (r) => r.rows },
  };
  const DEFAULT_COLUMNS = ["state", "name", "tags", "group", "created", "duration"];
  const DEFAULT_PINNED = ["name"];
  const DEFAULT_SORT = "-created";

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function hashColor(id) {
    let h = 2166136261;
    for (let i = 0; i < id.length; i++) { h ^= id.charCodeAt(i); h = Math.imul(h, 16777619); }
    return `hsl(${(h >>> 0) % 360}, 68%, 44%)`;
  }

  function fmt(v) {
    if (!Number.isFinite(v)) return String(v);
    if (Number.isInteger(v) && Math.abs(v) < 1e15) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(3);
    return String(Number(v.toPrecision(5)));
  }

  function text(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "number") return fmt(v);
    if (typeof v === "string") return v;
    if (typeof v === "object" && !Array.isArray(v) && typeof v._type === "string") return `(${v._type})`;
    return JSON.stringify(v);
  }

  function when(ts) {
    if (!ts) return "";
    const d = new Date(ts * 1000), p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
  }

  function duration(s) {
    if (!(s >= 0)) return "";
    if (s < 60) return `${s.toFixed(1)} s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`;
    return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  }

  // a nested value by dotted path (a key that itself holds dots is tried whole too)
  function dig(obj, path) {
    if (obj === null || typeof obj !== "object") return undefined;
    if (Object.prototype.hasOwnProperty.call(obj, path)) return obj[path];
    let cur = obj;
    for (const p of path.split(".")) {
      if (cur === null || typeof cur !== "object") return undefined;
      cur = cur[p];
    }
    return cur;
  }

  // ------------------------------------------------------------------ filter expressions

  class FilterError extends Error {}

  // A filter expression: conditions joined by "and" (also "&&" or ","), each FIELD OP VALUE.
  //   FIELD  config.<path> | summary.<path> | id name state group job_type tags created updated
  //          runtime (or duration) rows | a bare config or summary key (lr: config.lr if a run has
  //          it, else summary.lr); `back quotes` for a key with spaces or operators in it
  //   OP     = (or ==) != < <= > >= ~ (contains, case-insensitive)
  //   VALUE  a number, true, false, null, "a string" or 'a string', or a bare word; created and
  //          updated also take a date (2026-01-31 or 2026-01-31T12:00)
  // A single bare word (or quoted text) alone searches names and ids.
  // known: {config: Set, summary: Set} of paths, for bare keys. Answers {terms, search}; throws
  // a FilterError naming the expression, the place and what was expected.
  function parseFilter(source, known) {
    const s = String(source || "");
    let i = 0;
    const fail = (what, at) => {
      throw new FilterError(`filter ${JSON.stringify(s)}: ${what} (at character ${(at === undefined ? i : at) + 1})`);
    };
    const space = () => { while (i < s.length && /\s/.test(s[i])) i++; };
    const quoted = () => {
      const q = s[i], start = i;
      let out = "";
      i++;
      while (i < s.length && s[i] !== q) {
        if (s[i] === "\\" && i + 1 < s.length) { i++; out += { n: "\n", t: "\t" }[s[i]] || s[i]; } else out += s[i];
        i++;
      }
      if (i >= s.length) fail(`unclosed ${q === "`" ? "back quote" : "quote"}`, start);
      i++;
      return out;
    };
    const word = () => {
      const start = i;
      while (i < s.length && !/[\s=!<>~,&]/.test(s[i])) i++;
      return s.slice(start, i);
    };
    const terms = [];
    space();
    if (i >= s.length) return { terms, search: null };
    // one bare word or quoted text alone: a search of names and ids
    {
      const save = i;
      const w = s[i] === '"' || s[i] === "'" ? quoted() : word();
      space();
      if (i >= s.length && w && !/^(and|or)$/i.test(w)) return { terms, search: w };
      i = save;
    }
    for (;;) {
      space();
      const at = i;
      if (i >= s.length) fail("expected a condition after 'and'");
      const raw = s[i] === "`" ? quoted() : word();
      if (!raw) fail(`expected a field name, found ${JSON.stringify(s[i])}`);
      const field = resolve(raw, known, (msg) => fail(msg, at));
      space();
      const op = OPS.find((o) => s.startsWith(o, i));
      if (!op) fail(i >= s.length ? `expected an operator (= != < <= > >= ~) after ${JSON.stringify(raw)}`
        : `expected an operator (= != < <= > >= ~) after ${JSON.stringify(raw)}, found ${JSON.stringify(s.slice(i, i + 8))}`);
      i += op.length;
      space();
      const vat = i;
      let value;
      if (i >= s.length) fail(`expected a value after '${op}'`);
      if (s[i] === '"' || s[i] === "'") value = quoted();
      else {
        const w = word();
        if (!w) fail(`expected a value after '${op}', found ${JSON.stringify(s[i])}`);
        value = bare(w);
      }
      terms.push(check({ field, op: op === "==" ? "=" : op, value }, (msg) => fail(msg, vat)));
      space();
      if (i >= s.length) break;
      if (s.startsWith("&&", i)) { i += 2; continue; }
      if (s[i] === ",") { i++; continue; }
      const next = word();
      if (/^and$/i.test(next)) continue;
      if (/^or$/i.test(next) || s.startsWith("||", i)) fail("'or' is not supported: every condition must hold (join them with 'and')", i - next.length);
      fail(`expected 'and' or the end, found ${JSON.stringify(next || s.slice(i, i + 8))}`, i - next.length);
    }
    return { terms, search: null };
  }

  function bare(w) {
    if (/^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(w)) return Number(w);
    if (w === "true") return true;
    if (w === "false") return false;
    if (w === "null") return null;
    return w;
  }

  function resolve(raw, known, fail) {
    const lower = raw.toLowerCase();
    if (RUN_FIELDS.includes(lower)) return lower;
    if (ALIASES[lower]) return ALIASES[lower];
    const dot = raw.indexOf(".");
    if (dot > 0) {
      const head = raw.slice(0, dot).toLowerCase(), rest = raw.slice(dot + 1);
      if ((head === "config" || head === "summary") && rest) return `${head}.${rest}`;
    }
    if (known && known.config && known.config.has(raw)) return `config.${raw}`;
    if (known && known.summary && known.summary.has(raw)) return `summary.${raw}`;
    return fail(`unknown field ${JSON.stringify(raw)}: write config.<key>, summary.<key> or one of ${RUN_FIELDS.join(", ")}`);
  }

  function check(term, fail) {
    const { field, op } = term;
    let { value } = term;
    if ((field === "created" || field === "updated") && typeof value === "string") {
      const t = Date.parse(value);
      if (!Number.isFinite(t)) fail(`${field} takes a date (2026-01-31 or 2026-01-31T12:00) or UNIX seconds, not ${JSON.stringify(value)}`);
      value = t / 1000;
    }
    if (field === "tags" && !["=", "!=", "~"].includes(op)) fail(`tags takes = (has the tag), != or ~, not ${op}`);
    if (value === null && op !== "=" && op !== "!=") fail(`null compares with = or != only, not ${op}`);
    return { field, op, value };
  }

  // the server's filter= parameter of one condition
  const serverFilter = (t) => `${t.field}${t.op}${JSON.stringify(t.value)}`;

  // the same conditions, in the browser (a source without query(): an embedded report)
  function fieldValue(run, field) {
    if (field.startsWith("config.")) return dig(run.config || {}, field.slice(7));
    if (field.startsWith("summary.")) return dig(run.summary || {}, field.slice(8));
    return run[field];
  }

  function rank(v) { return typeof v === "number" ? 1 : typeof v === "string" ? 2 : 3; }

  function cmp(a, b) { // SQLite's order: numbers before text before the rest
    if (typeof a === "boolean") a = Number(a);
    if (typeof b === "boolean") b = Number(b);
    const ra = rank(a), rb = rank(b);
    if (ra !== rb) return ra - rb;
    if (ra === 3) { a = JSON.stringify(a); b = JSON.stringify(b); }
    return a < b ? -1 : a > b ? 1 : 0;
  }

  function holds(run, t) {
    const v = fieldValue(run, t.field);
    if (t.field === "tags") {
      const tags = Array.isArray(v) ? v : [];
      if (t.op === "~") return tags.some((x) => String(x).toLowerCase().includes(String(t.value).toLowerCase()));
      return tags.includes(t.value) === (t.op === "=");
    }
    if (t.value === null) return (v === null || v === undefined) === (t.op === "=");
    if (v === null || v === undefined) return false;
    if (t.op === "~") return text(v).toLowerCase().includes(String(t.value).toLowerCase());
    const c = cmp(v, t.value);
    return { "=": c === 0, "!=": c !== 0, "<": c < 0, "<=": c <= 0, ">": c > 0, ">=": c >= 0 }[t.op];
  }

  // ------------------------------------------------------------------ the API source

  function apiSource({ entity, project, base = "/api/v1" }) {
    const root = `${base}/entities/${enc(entity)}/projects/${enc(project)}`;
    async function get(url) {
      const r = await fetch(url, { headers: { accept: "application/json" } });
      if (!r.ok) {
        let detail = `${r.status}`;
        try { const body = await r.json(); detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail); } catch (e) { /* not JSON */ }
        throw new Error(detail);
      }
      return r.json();
    }
    const source = {
      entity, project,
      query(q) {
        const p = new URLSearchParams();
        p.set("sort", q.sort || DEFAULT_SORT);
        p.set("limit", String(q.limit || BLOCK));
        p.set("offset", String(q.offset || 0));
        if (q.search) p.set("search", q.search);
        for (const f of q.filters || []) p.append("filter", f);
        for (const f of q.fields || []) p.append("field", f);
        return get(`${root}/runs?${p}`);
      },
      columns() { return get(`${root}/columns`); },
      async runs() { // every run (for panels and exports): paged through, 10,000 at a time
        const out = [];
        for (let offset = 0; ; offset += 10000) {
          const page = await source.query({ sort: DEFAULT_SORT, limit: 10000, offset });
          out.push(...page.runs);
          if (!page.runs.length || out.length >= page.total) return out;
        }
      },
    };
    return source;
  }

  // ------------------------------------------------------------------ the table

  const isData = (c) => c.startsWith("config.") || c.startsWith("summary.");
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

  function readUrl() {
    const q = new URLSearchParams(location.search), out = {};
    if (q.has("col")) out.columns = q.getAll("col").filter(Boolean);
    if (q.has("pin")) out.pinned = q.getAll("pin").filter(Boolean);
    if (q.has("sort")) out.sort = q.get("sort");
    if (q.has("filter")) out.filter = q.get("filter");
    return out;
  }

  class RunTable {
    constructor(root, opts) {
      this.root = root;
      this.opts = { ...opts };
      this.source = opts.source;
      const fromUrl = opts.url ? readUrl() : {};
      this.defaults = {
        columns: (opts.columns || DEFAULT_COLUMNS).slice(),
        pinned: (opts.pinned || DEFAULT_PINNED).slice(),
        sort: opts.sort || DEFAULT_SORT,
        filter: Array.isArray(opts.filters) ? opts.filters.join(" and ") : opts.filters || "",
      };
      this.view = {
        columns: fromUrl.columns || this.defaults.columns.slice(),
        pinned: fromUrl.pinned || this.defaults.pinned.slice(),
        sort: fromUrl.sort || this.defaults.sort,
        filter: fromUrl.filter !== undefined ? fromUrl.filter : this.defaults.filter,
      };
      this.sel = new Map((opts.selected || []).map((id) => [id, { id }]));
      this.known = null; // {config: Set, summary: Set} once columns() answered
      this.columnInfo = null;
      this.gen = 0;
      this.total = 0;
      this.blocks = new Map(); // remote: block index -> runs
      this.pending = new Map(); // block index -> promise
      this.all = null; // local: every run of the source
      this.list = null; // local: the filtered, sorted runs
      this.rendered = new Map(); // row index -> element
      this.highlight = null;
      this.timing = {};
      this.parsed = { terms: [], search: null };
      this.build();
      this.applyFilterText(this.view.filter, false);
      this.start(opts.initial);
    }

    get remote() { return typeof this.source.query === "function"; }

    // ---------------------------------------------------------- DOM skeleton

    build() {
      const r = this.root;
      r.classList.add("rt");
      r.replaceChildren();
      const bar = el("div", "rt-bar");
      this.filterBox = el("input", "rt-filter");
      this.filterBox.type = "text";
      this.filterBox.autocomplete = "off";
      this.filterBox.spellcheck = false;
      this.filterBox.placeholder = "filter, e.g. config.lr > 0.01 and state = finished (a word alone searches names)";
      this.filterBox.setAttribute("aria-label", "filter runs");
      this.filterBox.value = this.view.filter;
      let typing;
      this.filterBox.addEventListener("input", () => {
        clearTimeout(typing);
        // while typing, only a complete expression applies; Enter or leaving the box shows errors
        typing = setTimeout(() => this.applyFilterText(this.filterBox.value, true, true), 400);
      });
      this.filterBox.addEventListener("change", () => { clearTimeout(typing); this.applyFilterText(this.filterBox.value, true); });
      this.filterBox.addEventListener("keydown", (e) => { if (e.key === "Enter") { clearTimeout(typing); this.applyFilterText(this.filterBox.value, true); } });
      this.picker = el("details", "rt-picker");
      const summary = el("summary", "", "columns");
      this.pickerList = el("div", "rt-picker-list");
      this.picker.append(summary, this.pickerList);
      this.picker.addEventListener("toggle", () => { if (this.picker.open) this.renderPicker(); });
      this.count = el("span", "rt-count");
      bar.append(this.picker, this.filterBox, this.count);
      this.onOutside = (e) => { if (this.picker.open && !this.picker.contains(e.target)) this.picker.open = false; };
      document.addEventListener("mousedown", this.onOutside);
      this.error = el("div", "rt-error");
      this.error.setAttribute("role", "alert");
      this.error.hidden = true;
      this.scroller = el("div", "rt-scroll");
      this.canvas = el("div", "rt-canvas");
      this.head = el("div", "rt-head");
      this.body = el("div", "rt-body");
      this.canvas.append(this.head, this.body);
      this.scroller.append(this.canvas);
      r.append(bar, this.error, this.scroller);
      let scheduled = false;
      this.onScroll = () => {
        if (scheduled) return;
        scheduled = true;
        requestAnimationFrame(() => { scheduled = false; this.renderRows(); });
      };
      this.scroller.addEventListener("scroll", this.onScroll, { passive: true });
      this.body.addEventListener("mouseleave", () => this.hover(null));
      this.onResize = () => this.renderRows();
      window.addEventListener("resize", this.onResize);
    }

    // ---------------------------------------------------------- columns

    cols() {
      const pinned = this.view.columns.filter((c) => this.view.pinned.includes(c));
      const rest = this.view.columns.filter((c) => !this.view.pinned.includes(c));
      let left = SEL_W + SWATCH_W;
      return [...pinned, ...rest].map((key) => {
        const b = BUILTIN[key];
        const col = b ? { key, ...b } : {
          key, label: key, sort: isData(key) ? key : null, width: Math.max(90, Math.min(220, 36 + key.length * 7)),
          get: (r) => text(fieldValue(r, key)),
        };
        col.pinned = this.view.pinned.includes(key);
        if (col.pinned) { col.left = left; left += col.width; }
        return col;
      });
    }

    fields() {
      const wanted = [...this.view.columns.filter(isData), ...(this.opts.fields || []).filter(isData)];
      return wanted.length ? [...new Set(wanted)] : ["name"]; // "name" alone: no config or summary
    }

    // ---------------------------------------------------------- data

    async start(initial) {
      if (this.remote && this.source.columns) {
        this.source.columns().then((c) => this.setKeys(c), (e) => {
          if (this.waitingForKeys) this.showError(`could not list the keys for filter ${JSON.stringify(this.view.filter)}: ${e.message || e}`);
        });
      }
      if (this.remote && initial && this.initialFits(initial)) {
        // the first rows came with the page: no request before they are on screen
        this.total = initial.total;
        this.blocks.set(0, initial.runs.slice(0, BLOCK));
        this.paint();
        this.loaded(true);
        return;
      }
      await this.reload();
    }

    initialFits(initial) {
      const cols = new Set(initial.columns || []);
      return (initial.sort || DEFAULT_SORT) === this.view.sort && !this.parsed.terms.length && !this.parsed.search && !this.waitingForKeys
        && this.fields().every((f) => f === "name" || cols.has(f)) && initial.runs.length >= Math.min(BLOCK, initial.total);
    }

    setKeys(answer) {
      const paths = answer.paths || { config: answer.config || {}, summary: answer.summary || {} };
      this.columnInfo = { config: paths.config || {}, summary: paths.summary || {} };
      this.known = { config: new Set(Object.keys(this.columnInfo.config)), summary: new Set(Object.keys(this.columnInfo.summary)) };
      if (this.picker.open) this.renderPicker();
      // a filter with bare keys waits for the list of keys
      if (this.waitingForKeys) {
        this.waitingForKeys = false;
        this.applyFilterText(this.view.filter, false);
        if (this.remote) this.reload(true); else if (this.all) { this.relist(); this.paint(); }
      }
    }

    localColumns() {
      const info = { config: {}, summary: {} };
      const walk = (obj, prefix, into) => {
        for (const [k, v] of Object.entries(obj || {})) {
          if (v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length && !("_type" in v)) walk(v, `${prefix}${k}.`, into);
          else into[prefix + k] = (into[prefix + k] || 0) + 1;
        }
      };
      for (const r of this.all || []) { walk(r.config, "", info.config); walk(r.summary, "", info.summary); }
      this.setKeys({ paths: info });
    }

    query() {
      const filters = this.parsed.terms.map(serverFilter);
      return { sort: this.view.sort, filters, fields: this.fields(), search: this.parsed.search || undefined };
    }

    // a new view (sort, filter or fetched fields changed): start over from the first block
    async reload(keepRows) {
      const gen = ++this.gen;
      this.pending.clear();
      if (!this.remote) {
        if (!this.all || !keepRows) {
          try { this.all = await this.source.runs(); } catch (e) { this.showError(`could not load the runs: ${e.message || e}`); return; }
          if (gen !== this.gen) return;
          this.localColumns();
        }
        this.relist();
        this.paint();
        this.loaded(false);
        return;
      }
      const old = this.blocks;
      this.blocks = new Map();
      try {
        await this.fetchBlock(0, gen);
      } catch (e) {
        if (gen === this.gen) { this.blocks = old; this.showError(`the server refused this view: ${e.message || e}`); }
        return;
      }
      if (gen !== this.gen) return;
      this.clearError();
      this.rendered.forEach((row) => row.remove());
      this.rendered.clear();
      this.paint();
      this.loaded(false);
    }

    // the rows in view again (live runs: states and summaries change)
    async refresh() {
      if (!this.remote) return this.reload();
      const gen = this.gen;
      const wanted = new Set([0, ...this.visibleBlocks()]);
      try {
        await Promise.all([...wanted].map((b) => this.fetchBlock(b, gen, true)));
      } catch (e) { return; }
      if (gen !== this.gen) return;
      this.rendered.forEach((row) => row.remove());
      this.rendered.clear();
      this.paint();
      this.loaded(true);
    }

    fetchBlock(b, gen, force) {
      if (!force && this.blocks.has(b)) return Promise.resolve();
      if (!force && this.pending.has(b)) return this.pending.get(b);
      const p = this.source.query({ ...this.query(), limit: BLOCK, offset: b * BLOCK }).then((page) => {
        if (gen !== this.gen) return;
        this.pending.delete(b);
        this.total = page.total;
        this.blocks.set(b, page.runs);
        for (const r of page.runs) if (this.sel.has(r.id)) this.sel.set(r.id, r);
      }, (e) => { this.pending.delete(b); throw e; });
      this.pending.set(b, p);
      return p;
    }

    relist() {
      const { terms, search } = this.parsed;
      let list = (this.all || []).filter((r) => terms.every((t) => holds(r, t)));
      if (search) {
        const s = search.toLowerCase();
        list = list.filter((r) => String(r.name || "").toLowerCase().includes(s) || String(r.id).toLowerCase().includes(s));
      }
      const desc = this.view.sort.startsWith("-"), key = this.view.sort.replace(/^[-+]/, "");
      const field = { id: "id", run_id: "id" }[key] || key;
      const dir = desc ? -1 : 1;
      list = list.map((r, i) => [r, fieldValue(r, field), i]);
      list.sort((a, b) => {
        const na = a[1] === null || a[1] === undefined, nb = b[1] === null || b[1] === undefined;
        if (na || nb) return na === nb ? a[2] - b[2] : na ? 1 : -1; // no value: last, either way
        return dir * cmp(a[1], b[1]) || dir * ((a[0].created || 0) - (b[0].created || 0));
      });
      this.list = list.map((x) => x[0]);
      this.total = this.list.length;
    }

    rowAt(i) {
      if (!this.remote) return this.list ? this.list[i] : undefined;
      const block = this.blocks.get(Math.floor(i / BLOCK));
      return block ? block[i % BLOCK] : undefined;
    }

    loadedCount() {
      if (!this.remote) return this.list ? this.list.length : 0;
      let n = 0;
      this.blocks.forEach((b) => { n += b.length; });
      return n;
    }

    // the first runs in the table's order (loaded ones only)
    rows(n) {
      const out = [], max = Math.min(n === undefined ? this.total : n, this.total);
      for (let i = 0; i < max; i++) { const r = this.rowAt(i); if (!r) break; out.push(r); }
      return out;
    }

    loaded(initial) {
      if (this.opts.onLoad) this.opts.onLoad({ total: this.total, rows: this.rows(BLOCK), initial });
    }

    // ---------------------------------------------------------- filter

    applyFilterText(value, user, quiet) {
      let parsed;
      try {
        parsed = parseFilter(value, this.known);
      } catch (e) {
        if (!(e instanceof FilterError)) throw e;
        // a bare key may be a config or summary key not known yet: wait for the list
        if (!this.known && (!this.remote || this.source.columns) && /unknown field/.test(e.message)) {
          this.waitingForKeys = true;
          this.view.filter = value;
          return;
        }
        if (!quiet) this.showError(e.message);
        return;
      }
      this.clearError();
      const changed = !same(parsed, this.parsed) || value !== this.view.filter;
      this.parsed = parsed;
      this.view.filter = value;
      if (user && changed) { this.changed(); this.reload(true); }
    }

    showError(message) {
      this.error.textContent = message;
      this.error.hidden = false;
      this.root.dataset.error = "1";
    }

    clearError() {
      this.error.textContent = "";
      this.error.hidden = true;
      delete this.root.dataset.error;
    }

    // the user changed the view: tell the page, and the URL
    changed() {
      const state = this.state();
      if (this.opts.url) {
        const q = new URLSearchParams(location.search);
        for (const k of ["col", "pin", "sort", "filter"]) q.delete(k);
        if (!same(state.columns, this.defaults.columns)) for (const c of state.columns) q.append("col", c);
        if (!same(state.pinned, this.defaults.pinned)) {
          if (state.pinned.length) for (const c of state.pinned) q.append("pin", c); else q.append("pin", "");
        }
        if (state.sort !== this.defaults.sort) q.set("sort", state.sort);
        if (state.filter !== this.defaults.filter) q.set("filter", state.filter);
        const search = q.toString();
        history.replaceState(history.state, "", `${location.pathname}${search ? "?" + search : ""}${location.hash}`);
      }
      if (this.opts.onChange) this.opts.onChange(state);
    }

    state() {
      return { columns: this.view.columns.slice(), pinned: this.view.pinned.slice(), sort: this.view.sort, filter: this.view.filter };
    }

    // ---------------------------------------------------------- painting

    paint() {
      const cols = this.colsNow = this.cols(); // the columns of every row until the next paint
      this.width = SEL_W + SWATCH_W + cols.reduce((a, c) => a + c.width, 0);
      this.canvas.style.width = `${this.width}px`;
      this.canvas.style.height = `${HEAD_H + this.total * ROW_H}px`;
      this.renderHead(cols);
      this.rendered.forEach((row) => row.remove());
      this.rendered.clear();
      this.renderRows();
      const n = this.sel.size;
      this.count.textContent = `${this.total} run${this.total === 1 ? "" : "s"}${n ? `, ${n} selected` : ""}`;
      this.root.dataset.total = String(this.total);
      this.root.dataset.rows = String(this.loadedCount());
      this.root.dataset.sort = this.view.sort;
      if (this.total === 0) {
        const empty = el("div", "rt-empty", this.view.filter ? "no run matches the filter" : "no runs");
        empty.style.top = `${HEAD_H}px`;
        this.body.replaceChildren(empty);
      } else this.body.querySelector(".rt-empty")?.remove();
    }

    cell(col, cls) {
      const c = el("div", `rt-cell col-${col.key.replace(/[^a-z0-9]/gi, "_")}${cls ? " " + cls : ""}`);
      c.style.width = `${col.width}px`;
      if (col.pinned) { c.classList.add("rt-pinned"); c.style.left = `${col.left}px`; }
      return c;
    }

    renderHead(cols) {
      const row = el("div", "rt-row rt-headrow");
      row.style.width = `${this.width}px`;
      const sel = el("div", "rt-cell rt-sel rt-pinned");
      sel.style.left = "0px";
      const all = el("input");
      all.type = "checkbox";
      all.title = "clear the selection";
      all.checked = this.sel.size > 0;
      all.indeterminate = this.sel.size > 0 && this.sel.size < this.total; // some runs, not all
      all.disabled = this.sel.size === 0;
      all.addEventListener("change", () => { this.sel.clear(); this.paint(); this.selectionChanged(); });
      sel.append(all);
      const sw = el("div", "rt-cell rt-swatchcell rt-pinned");
      sw.style.left = `${SEL_W}px`;
      row.append(sel, sw);
      const desc = this.view.sort.startsWith("-"), sortKey = this.view.sort.replace(/^[-+]/, "");
      for (const col of cols) {
        const c = this.cell(col);
        c.dataset.col = col.key;
        const label = el("span", "rt-label", col.label);
        label.title = col.sort ? `${col.key}: click to sort` : col.key;
        if (col.sort) {
          c.classList.add("rt-sortable");
          if (col.sort === sortKey) { c.classList.add(desc ? "rt-desc" : "rt-asc"); label.textContent += desc ? " ▼" : " ▲"; }
          label.addEventListener("click", () => this.setSort(col.sort === sortKey && desc ? col.sort : `-${col.sort}`, true));
        }
        const pin = el("button", "rt-pin", col.pinned ? "◂" : "▹");
        pin.type = "button";
        pin.title = col.pinned ? `unpin ${col.key}` : `pin ${col.key} (keep it in view)`;
        pin.addEventListener("click", (e) => { e.stopPropagation(); this.togglePin(col.key); });
        const rm = el("button", "rt-remove", "×");
        rm.type = "button";
        rm.title = `hide ${col.key}`;
        rm.addEventListener("click", (e) => { e.stopPropagation(); this.showColumns(this.view.columns.filter((k) => k !== col.key), true); });
        c.append(label, pin, rm);
        row.append(c);
      }
      this.head.replaceChildren(row);
    }

    visibleRange() {
      const top = Math.max(0, this.scroller.scrollTop - HEAD_H), h = this.scroller.clientHeight || 400;
      const first = Math.max(0, Math.floor(top / ROW_H) - 4);
      const last = Math.min(this.total, Math.ceil((top + h) / ROW_H) + 4);
      return [first, last];
    }

    visibleBlocks() {
      const [first, last] = this.visibleRange(), out = [];
      for (let b = Math.floor(first / BLOCK); b <= Math.floor(Math.max(first, last - 1) / BLOCK); b++) out.push(b);
      return out;
    }

    renderRows() {
      const [first, last] = this.visibleRange();
      for (const [i, row] of this.rendered) {
        if (i < first || i >= last || row.run !== this.rowAt(i)) { row.remove(); this.rendered.delete(i); }
      }
      const cols = this.colsNow || this.cols(), frag = document.createDocumentFragment(), missing = new Set();
      for (let i = first; i < last; i++) {
        if (this.rendered.has(i)) continue;
        const r = this.rowAt(i);
        if (!r) missing.add(Math.floor(i / BLOCK));
        const row = r ? this.renderRow(r, cols) : this.placeholder(cols);
        row.run = r;
        row.style.top = `${HEAD_H + i * ROW_H}px`;
        row.dataset.index = String(i);
        this.rendered.set(i, row);
        frag.append(row);
      }
      this.body.append(frag);
      if (!this.timing.firstRows && this.rowAt(first)) {
        this.timing.firstRows = performance.now(); // navigation start to the first rows drawn
        this.root.dataset.painted = "1";
      }
      if (this.remote && missing.size) this.fetchMissing(missing);
    }

    fetchMissing(blocks) {
      const gen = this.gen;
      for (const b of blocks) {
        if (this.pending.size >= MAX_INFLIGHT) break;
        if (this.pending.has(b)) continue;
        this.fetchBlock(b, gen).then(() => {
          if (gen !== this.gen) return;
          this.root.dataset.rows = String(this.loadedCount());
          this.canvas.style.height = `${HEAD_H + this.total * ROW_H}px`;
          this.renderRows();
        }, (e) => { if (gen === this.gen) this.showError(`could not load rows: ${e.message || e}`); });
      }
    }

    placeholder(cols) {
      const row = el("div", "rt-row rt-loading");
      row.style.width = `${this.width}px`;
      const c = el("div", "rt-cell", "loading…");
      c.style.left = `${SEL_W + SWATCH_W}px`;
      c.style.width = `${cols.length ? cols[0].width : 120}px`;
      c.classList.add("rt-pinned");
      row.append(c);
      return row;
    }

    renderRow(r, cols) {
      const row = el("div", "rt-row");
      row.style.width = `${this.width}px`;
      row.dataset.run = r.id;
      if (this.sel.has(r.id)) row.classList.add("rt-selected");
      if (this.highlight === r.id) row.classList.add("rt-hl");
      const sel = el("div", "rt-cell rt-sel rt-pinned");
      sel.style.left = "0px";
      const box = el("input");
      box.type = "checkbox";
      box.checked = this.sel.has(r.id);
      box.title = "select (compare, charts)";
      box.addEventListener("change", () => this.toggle(r, box.checked));
      sel.append(box);
      const swc = el("div", "rt-cell rt-swatchcell rt-pinned");
      swc.style.left = `${SEL_W}px`;
      const sw = el("span", "rt-swatch");
      sw.style.background = this.colorOf(r.id);
      swc.append(sw);
      row.append(sel, swc);
      for (const col of cols) {
        const c = this.cell(col);
        if (col.key === "name") {
          const name = col.get(r);
          if (this.opts.runUrl) { const a = el("a", "", name); a.href = this.opts.runUrl(r); c.append(a); } else c.textContent = name;
          c.title = name;
        } else if (col.key === "state") {
          const st = col.get(r);
          c.append(el("span", `state state-${st}`, st));
        } else {
          const v = col.get(r);
          c.textContent = v === null || v === undefined ? "" : String(v);
          if (c.textContent.length > 12) c.title = c.textContent;
          if (isData(col.key) && typeof fieldValue(r, col.key) === "number") c.classList.add("rt-num");
        }
        row.append(c);
      }
      row.addEventListener("mouseenter", () => this.hover(r.id));
      return row;
    }

    colorOf(id) {
      if (this.opts.color) return this.opts.color(id);
      if (window.FulmenPanels && typeof window.FulmenPanels.color === "function") return window.FulmenPanels.color(id);
      return hashColor(id);
    }

    hover(id) {
      if (id === this.highlight) return;
      this.setHighlight(id);
      if (this.opts.onHighlight) this.opts.onHighlight(id);
    }

    setHighlight(id) {
      this.highlight = id;
      for (const row of this.rendered.values()) row.classList.toggle("rt-hl", !!row.run && row.run.id === id);
    }

    // ---------------------------------------------------------- user actions

    toggle(run, on) {
      if (on) this.sel.set(run.id, run); else this.sel.delete(run.id);
      for (const row of this.rendered.values()) if (row.run && row.run.id === run.id) row.classList.toggle("rt-selected", on);
      const n = this.sel.size;
      this.count.textContent = `${this.total} run${this.total === 1 ? "" : "s"}${n ? `, ${n} selected` : ""}`;
      const all = this.head.querySelector(".rt-sel input");
      if (all) { all.checked = n > 0; all.indeterminate = n > 0 && n < this.total; all.disabled = n === 0; }
      this.selectionChanged();
    }

    selectionChanged() {
      if (this.opts.onSelect) this.opts.onSelect([...this.sel.keys()], [...this.sel.values()]);
    }

    setSort(sort, user) {
      if (sort === this.view.sort) return;
      this.view.sort = sort;
      if (user) this.changed();
      this.reload(true);
    }

    togglePin(key) {
      const p = this.view.pinned;
      this.view.pinned = p.includes(key) ? p.filter((k) => k !== key) : [...p, key];
      this.changed();
      this.paint();
    }

    showColumns(columns, user) {
      const before = this.fields();
      this.view.columns = [...new Set(columns)];
      this.view.pinned = this.view.pinned.filter((k) => this.view.columns.includes(k));
      if (user) this.changed();
      if (this.picker.open) this.renderPicker();
      if (this.remote && !same(before, this.fields())) this.reload(true);
      else this.paint();
    }

    renderPicker() {
      const list = this.pickerList;
      const prior = list.querySelector(".rt-picker-find");
      const find = prior || el("input", "rt-picker-find");
      if (!prior) {
        find.type = "search";
        find.placeholder = "find a column";
        find.addEventListener("input", () => this.renderPicker());
      }
      const needle = find.value.trim().toLowerCase();
      const frag = document.createDocumentFragment();
      const info = this.columnInfo || { config: {}, summary: {} };
      const groups = [
        ["run", Object.keys(BUILTIN).map((k) => [k, null])],
        ["config", Object.entries(info.config).map(([k, n]) => [`config.${k}`, n])],
        ["summary", Object.entries(info.summary).map(([k, n]) => [`summary.${k}`, n])],
      ];
      let shown = 0;
      for (const [title, items] of groups) {
        const hits = items.filter(([k]) => !needle || k.toLowerCase().includes(needle));
        if (!hits.length) continue;
        frag.append(el("div", "rt-picker-group", title));
        for (const [key, n] of hits) {
          if (shown++ >= 500) break; // find narrows a longer list
          const label = el("label", "rt-picker-item");
          const box = el("input");
          box.type = "checkbox";
          box.value = key;
          box.checked = this.view.columns.includes(key);
          box.addEventListener("change", () => {
            this.showColumns(box.checked ? [...this.view.columns, key] : this.view.columns.filter((c) => c !== key), true);
          });
          label.append(box, document.createTextNode(` ${key}`));
          if (n !== null) label.append(el("span", "rt-muted", ` ${n}`));
          frag.append(label);
        }
      }
      if (!this.columnInfo) frag.append(el("div", "rt-muted", "loading the keys…"));
      list.replaceChildren(find, frag);
      if (prior) find.focus();
    }

    // ---------------------------------------------------------- the handle's update()

    update(opts) {
      opts = opts || {};
      Object.assign(this.opts, opts);
      if (opts.source && opts.source !== this.source) { this.source = opts.source; this.all = null; this.blocks = new Map(); }
      let reload = !!opts.source;
      if (opts.highlight !== undefined) this.setHighlight(opts.highlight);
      if (opts.selected) { this.sel = new Map(opts.selected.map((id) => [id, this.sel.get(id) || { id }])); }
      if (opts.pinned) this.view.pinned = opts.pinned.slice();
      if (opts.columns) {
        const before = this.fields();
        this.view.columns = [...new Set(opts.columns)];
        if (!same(before, this.fields())) reload = true;
      }
      if (opts.fields) reload = true;
      if (opts.sort && opts.sort !== this.view.sort) { this.view.sort = opts.sort; reload = true; }
      if (opts.filters !== undefined) {
        const text = Array.isArray(opts.filters) ? opts.filters.join(" and ") : opts.filters || "";
        this.filterBox.value = text;
        this.applyFilterText(text, false);
        reload = true;
      }
      if (reload) return this.reload(!opts.source);
      this.paint();
      return Promise.resolve();
    }

    destroy() {
      this.gen++;
      this.scroller.removeEventListener("scroll", this.onScroll);
      window.removeEventListener("resize", this.onResize);
      document.removeEventListener("mousedown", this.onOutside);
      this.root.replaceChildren();
      this.root.classList.remove("rt");
    }
  }

  function mount(el, opts) {
    if (!opts || !opts.source) throw new Error("FulmenRunTable.mount(el, opts): opts.source is required (a source with runs())");
    const t = new RunTable(el, opts);
    return {
      update: (o) => t.update(o),
      selected: () => [...t.sel.keys()],
      selectedRuns: () => [...t.sel.values()],
      refresh: () => t.refresh(),
      rows: (n) => t.rows(n),
      run: (id) => t.sel.get(id) || t.rows().find((r) => r.id === id),
      state: () => t.state(),
      destroy: () => t.destroy(),
      get total() { return t.total; },
      timing: t.timing,
      table: t,
    };
  }

  window.FulmenRunTable = { mount, apiSource, parseFilter, serverFilter, holds, FilterError, BUILTIN: Object.keys(BUILTIN), DEFAULT_COLUMNS };
})();
