// fulmen's chart: lines over min/max bands on a canvas, hover tooltip, drag to zoom.
// No dependencies and no network. One chart per panel:
//   const c = new FulmenChart(div, {title, onZoom: (lo, hi) => ...});   // lo = hi = null: reset
//   c.setData([{id, label, color, x, y, lo, hi}], {log: false, xLabel: "_step"});
// x, y, lo, hi are arrays of equal length (null or NaN: a gap); lo/hi may be null (no band).
// What was drawn is kept on the canvas element as `canvas.fulmen` (the tests read it).
"use strict";
(function () {
  const PAD = { left: 56, right: 10, top: 22, bottom: 26 };

  function finite(v) { return v !== null && v !== undefined && Number.isFinite(v); }

  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) return [lo];
    const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const out = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(t);
    return out;
  }

  function fmt(v) {
    if (!finite(v)) return "-";
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2);
    return String(Math.round(v * 1e4) / 1e4);
  }

  class FulmenChart {
    constructor(container, opts) {
      this.opts = opts || {};
      this.container = container;
      container.classList.add("chart");
      const title = document.createElement("div");
      title.className = "chart-title";
      title.textContent = this.opts.title || "";
      this.canvas = document.createElement("canvas");
      this.overlay = document.createElement("canvas");
      this.overlay.className = "chart-overlay";
      this.tip = document.createElement("div");
      this.tip.className = "chart-tip";
      this.tip.hidden = true;
      const box = document.createElement("div");
      box.className = "chart-box";
      box.append(this.canvas, this.overlay, this.tip);
      container.append(title, box);
      this.box = box;
      this.series = [];
      this.log = false;
      this.drag = null;
      this._listen();
    }

    setData(series, options) {
      const o = options || {};
      this.series = series;
      this.log = !!o.log;
      this.xLabel = o.xLabel || "";
      this.yLabel = o.yLabel || "";
      this.draw();
    }

    _size() {
      const w = this.box.clientWidth || 400, h = this.box.clientHeight || 220;
      const r = window.devicePixelRatio || 1;
      for (const c of [this.canvas, this.overlay]) {
        if (c.width !== Math.round(w * r) || c.height !== Math.round(h * r)) {
          c.width = Math.round(w * r); c.height = Math.round(h * r);
          c.style.width = w + "px"; c.style.height = h + "px";
        }
      }
      return { w, h, r };
    }

    _ranges() {
      let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
      const okY = (v) => finite(v) && (!this.log || v > 0);
      for (const s of this.series) {
        for (let i = 0; i < s.x.length; i++) {
          const x = s.x[i];
          if (!finite(x)) continue;
          const vals = [s.y[i], s.lo ? s.lo[i] : null, s.hi ? s.hi[i] : null];
          let any = false;
          for (const v of vals) if (okY(v)) { any = true; if (v < y0) y0 = v; if (v > y1) y1 = v; }
          if (any) { if (x < x0) x0 = x; if (x > x1) x1 = x; }
        }
      }
      if (!finite(x0)) { x0 = 0; x1 = 1; y0 = 0; y1 = 1; }
      if (x0 === x1) { x0 -= 0.5; x1 += 0.5; }
      if (this.log) { y0 = Math.log10(y0); y1 = Math.log10(y1); }
      if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
      const pad = (y1 - y0) * 0.05;
      return { x0, x1, y0: y0 - pad, y1: y1 + pad };
    }

    draw() {
      const { w, h, r } = this._size();
      const ctx = this.canvas.getContext("2d");
      ctx.setTransform(r, 0, 0, r, 0, 0);
      ctx.clearRect(0, 0, w, h);
      const g = this._ranges();
      this.geom = g;
      const pw = w - PAD.left - PAD.right, ph = h - PAD.top - PAD.bottom;
      const X = (x) => PAD.left + ((x - g.x0) / (g.x1 - g.x0)) * pw;
      const Y = (v) => {
        const t = this.log ? (v > 0 ? Math.log10(v) : NaN) : v;
        return PAD.top + (1 - (t - g.y0) / (g.y1 - g.y0)) * ph;
      };
      this.X = X; this.pw = pw;
      // axes and grid
      ctx.font = "11px system-ui, sans-serif";
      ctx.fillStyle = "#666"; ctx.strokeStyle = "#eee"; ctx.lineWidth = 1;
      ctx.textAlign = "right"; ctx.textBaseline = "middle";
      for (const t of niceTicks(g.y0, g.y1, 4)) {
        const y = PAD.top + (1 - (t - g.y0) / (g.y1 - g.y0)) * ph;
        ctx.beginPath(); ctx.moveTo(PAD.left, y); ctx.lineTo(w - PAD.right, y); ctx.stroke();
        ctx.fillText(this.log ? fmt(Math.pow(10, t)) : fmt(t), PAD.left - 4, y);
      }
      ctx.textAlign = "center"; ctx.textBaseline = "top";
      for (const t of niceTicks(g.x0, g.x1, 5)) {
        const x = X(t);
        ctx.beginPath(); ctx.moveTo(x, PAD.top); ctx.lineTo(x, h - PAD.bottom); ctx.stroke();
        ctx.fillText(fmt(t), x, h - PAD.bottom + 4);
      }
      ctx.save();
      ctx.beginPath(); ctx.rect(PAD.left, PAD.top, pw, ph); ctx.clip();
      let points = 0;
      for (const s of this.series) {
        if (s.lo && s.hi) { // the band: every bucket's min and max, so no spike is hidden
          ctx.fillStyle = s.color; ctx.globalAlpha = s.bandAlpha || 0.18;
          let i = 0;
          while (i < s.x.length) {
            while (i < s.x.length && !(finite(s.lo[i]) && finite(s.hi[i]) && finite(s.x[i]))) i++;
            const start = i;
            while (i < s.x.length && finite(s.lo[i]) && finite(s.hi[i]) && finite(s.x[i])) i++;
            if (i > start) {
              ctx.beginPath();
              for (let j = start; j < i; j++) ctx.lineTo(X(s.x[j]), Y(s.hi[j]));
              for (let j = i - 1; j >= start; j--) ctx.lineTo(X(s.x[j]), Y(s.lo[j]));
              if (i - start === 1) ctx.fillRect(X(s.x[start]) - 1, Y(s.hi[start]), 2, Y(s.lo[start]) - Y(s.hi[start]));
              ctx.closePath(); ctx.fill();
            }
          }
          ctx.globalAlpha = 1;
        }
        ctx.strokeStyle = s.color; ctx.lineWidth = s.width || 1.5;
        ctx.beginPath();
        let pen = false, alone = -1;
        for (let i = 0; i < s.x.length; i++) {
          const v = s.y[i];
          if (!finite(v) || !finite(s.x[i]) || (this.log && v <= 0)) { pen = false; continue; }
          points++;
          const px = X(s.x[i]), py = Y(v);
          if (pen) ctx.lineTo(px, py); else { ctx.moveTo(px, py); alone = i; }
          pen = true;
        }
        if (s.dots) { // a scatter: one dot per point, no line
          ctx.fillStyle = s.color;
          for (let i = 0; i < s.x.length; i++) if (finite(s.y[i]) && finite(s.x[i])) ctx.fillRect(X(s.x[i]) - 2, Y(s.y[i]) - 2, 4, 4);
        } else ctx.stroke();
        if (s.x.length === 1 && alone === 0) { ctx.fillStyle = s.color; ctx.fillRect(X(s.x[0]) - 2, Y(s.y[0]) - 2, 4, 4); }
      }
      ctx.restore();
      ctx.fillStyle = "#888"; ctx.textAlign = "right"; ctx.textBaseline = "bottom";
      ctx.fillText(this.xLabel, w - PAD.right, h - 1);
      if (this.yLabel) { ctx.textAlign = "left"; ctx.textBaseline = "top"; ctx.fillText(this.yLabel, 2, 2); }
      this.canvas.fulmen = { series: this.series, range: g, log: this.log, points };
      this.container.dataset.points = String(points);
      this.container.dataset.series = String(this.series.length);
    }

    _dataX(px) {
      const g = this.geom;
      return g.x0 + ((px - PAD.left) / this.pw) * (g.x1 - g.x0);
    }

    _listen() {
      const ov = this.overlay;
      const pos = (e) => { const b = ov.getBoundingClientRect(); return [e.clientX - b.left, e.clientY - b.top]; };
      ov.addEventListener("mousedown", (e) => { this.drag = pos(e)[0]; });
      ov.addEventListener("mousemove", (e) => {
        const [px, py] = pos(e);
        this._hover(px, py);
        if (this.drag !== null) this._band(this.drag, px);
      });
      ov.addEventListener("mouseleave", () => { this.tip.hidden = true; this._clearOverlay(); });
      window.addEventListener("mouseup", (e) => {
        if (this.drag === null) return;
        const a = this.drag; this.drag = null;
        const b = pos(e)[0];
        this._clearOverlay();
        if (Math.abs(b - a) > 4 && this.opts.onZoom && this.geom) {
          const lo = this._dataX(Math.min(a, b)), hi = this._dataX(Math.max(a, b));
          this.opts.onZoom(lo, hi);
        }
      });
      ov.addEventListener("dblclick", () => { if (this.opts.onZoom) this.opts.onZoom(null, null); });
    }

    _clearOverlay() {
      const ctx = this.overlay.getContext("2d");
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, this.overlay.width, this.overlay.height);
    }

    _band(a, b) {
      const ctx = this.overlay.getContext("2d"), r = window.devicePixelRatio || 1;
      ctx.setTransform(r, 0, 0, r, 0, 0);
      ctx.fillStyle = "rgba(60,120,220,0.15)";
      ctx.fillRect(Math.min(a, b), PAD.top, Math.abs(b - a), this.overlay.height / r - PAD.top - PAD.bottom);
    }

    _hover(px, py) {
      if (!this.geom || !this.series.length) return;
      const x = this._dataX(px), rows = [];
      let snapped = null;
      for (const s of this.series) {
        const i = nearest(s.x, x);
        if (i < 0) continue;
        if (snapped === null || Math.abs(s.x[i] - x) < Math.abs(snapped - x)) snapped = s.x[i];
        rows.push({ s, i });
      }
      this._clearOverlay();
      if (snapped === null) return;
      const ctx = this.overlay.getContext("2d"), r = window.devicePixelRatio || 1;
      ctx.setTransform(r, 0, 0, r, 0, 0);
      ctx.strokeStyle = "#999"; ctx.beginPath();
      ctx.moveTo(this.X(snapped), PAD.top); ctx.lineTo(this.X(snapped), this.overlay.height / r - PAD.bottom); ctx.stroke();
      rows.sort((p, q) => (q.s.y[q.i] ?? -Infinity) - (p.s.y[p.i] ?? -Infinity));
      this.tip.replaceChildren();
      const head = document.createElement("div");
      head.className = "tip-x"; head.textContent = `${this.xLabel} ${fmt(snapped)}`;
      this.tip.append(head);
      for (const { s, i } of rows.slice(0, 12)) {
        const line = document.createElement("div");
        const dot = document.createElement("span");
        dot.className = "dot"; dot.style.background = s.color;
        const band = s.lo && s.hi && s.lo[i] !== s.hi[i] ? ` [${fmt(s.lo[i])}, ${fmt(s.hi[i])}]` : "";
        line.append(dot, document.createTextNode(`${s.label}: ${fmt(s.y[i])}${band}`));
        this.tip.append(line);
      }
      this.tip.hidden = false;
      const bw = this.box.clientWidth;
      this.tip.style.left = (px > bw / 2 ? Math.max(0, px - this.tip.offsetWidth - 12) : px + 12) + "px";
      this.tip.style.top = Math.max(0, py - 10) + "px";
    }
  }

  function nearest(xs, x) {
    let lo = 0, hi = xs.length - 1;
    if (hi < 0) return -1;
    while (lo < hi) { const m = (lo + hi) >> 1; if (xs[m] < x) lo = m + 1; else hi = m; }
    if (lo > 0 && Math.abs(xs[lo - 1] - x) < Math.abs(xs[lo] - x)) lo--;
    return lo;
  }

  // exponential moving average with the start-up bias removed (as TensorBoard's slider)
  FulmenChart.ema = function (ys, weight) {
    if (!(weight > 0)) return ys;
    const out = new Array(ys.length);
    let last = 0, n = 0;
    for (let i = 0; i < ys.length; i++) {
      const v = ys[i];
      if (!finite(v)) { out[i] = v; continue; }
      last = last * weight + (1 - weight) * v; n++;
      out[i] = last / (1 - Math.pow(weight, n));
    }
    return out;
  };

  // a histogram-over-steps heat map: rows = [{step, bins: [edges], values: [counts]}], drawn with
  // readable axes: the step on x (ticks at round steps), the value on y (ticks at round values),
  // each cell's shade its count relative to the largest count of its step
  FulmenChart.heatmap = function (container, title, rows) {
    container.classList.add("chart");
    const t = document.createElement("div");
    t.className = "chart-title"; t.textContent = title;
    const canvas = document.createElement("canvas");
    const w = 380, h = 200, r = window.devicePixelRatio || 1;
    canvas.width = w * r; canvas.height = h * r; canvas.style.width = w + "px"; canvas.style.height = h + "px";
    container.append(t, canvas);
    let lo = Infinity, hi = -Infinity;
    for (const row of rows) { lo = Math.min(lo, row.bins[0]); hi = Math.max(hi, row.bins[row.bins.length - 1]); }
    container.dataset.steps = String(rows.length);
    if (!rows.length || !(hi > lo)) return;
    rows = rows.slice().sort((a, b) => a.step - b.step);
    // each step's column reaches to the next step; the last one gets the mean width
    const first = rows[0].step, last = rows[rows.length - 1].step;
    const gap = rows.length > 1 ? (last - first) / (rows.length - 1) : 1;
    const s0 = first, s1 = last + gap;
    const pw = w - PAD.left - PAD.right, ph = h - PAD.top - PAD.bottom;
    const X = (s) => PAD.left + ((s - s0) / (s1 - s0 || 1)) * pw;
    const Y = (v) => PAD.top + (1 - (v - lo) / (hi - lo)) * ph;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(r, 0, 0, r, 0, 0);
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
    ctx.font = "11px system-ui, sans-serif"; ctx.fillStyle = "#666"; ctx.strokeStyle = "#ccc";
    ctx.strokeRect(PAD.left, PAD.top, pw, ph);
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    const yTicks = niceTicks(lo, hi, 4), xTicks = niceTicks(first, last, 5).filter((t) => t <= last);
    const tiny = (hi - lo) * 1e-9; // 0 accumulated in floating point is still 0
    for (const v of yTicks) ctx.fillText(fmt(Math.abs(v) < tiny ? 0 : v), PAD.left - 4, Y(v));
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    for (const s of xTicks) ctx.fillText(fmt(s), X(s) + (X(s + gap) - X(s)) / 2, h - PAD.bottom + 4);
    ctx.fillStyle = "#888"; ctx.textAlign = "right"; ctx.textBaseline = "bottom";
    ctx.fillText("step", w - PAD.right, h - 1);
    ctx.textAlign = "left"; ctx.textBaseline = "top"; ctx.fillText("value", 2, 2);
    canvas.fulmen = { steps: rows.map((row) => row.step), lo, hi, xTicks, yTicks };
  };

  FulmenChart.fmt = fmt;
  window.FulmenChart = FulmenChart;
})();
