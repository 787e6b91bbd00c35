// The VadExplorer front end: a waveform canvas with the speech regions of one or two VAD
// setups (A above the middle line, B below), their parameters as sliders, their agreement,
// and the regions as tables. Drag on the canvas to zoom; click a region to hear it.
// The kernel sends min/max envelopes and, on a click, that region's samples (msg:custom).

/** @import { AnyModel, Render } from "@anywidget/types" */
/** @import { ExplorerKernelMessage, ExplorerModel, ExplorerPageMessage, Knob } from "./protocol.js" */
/** @typedef {AnyModel<ExplorerModel>} Model */
/** @typedef {"main" | "compare"} SetName  setup A and setup B */

// The knobs (ranges, steps, units) come from the kernel's one table (the `knobs` trait,
// _constants.KNOBS), so a slider offers exactly what the VAD accepts.

/**
 * A knob's value as its label shows it: as many decimals as its step, then its unit.
 * @param {Knob} knob @param {number} v
 */
function knobText(knob, v) {
  const digits = knob.step < 1 ? Math.ceil(-Math.log10(knob.step)) : 0;
  return `${v.toFixed(digits)}${knob.unit ? ` ${knob.unit}` : ""}`;
}

/**
 * The value a knob left at null (the backend's own) stands for with backend `vad`.
 * @param {Knob} knob @param {string} vad
 */
function ownValue(knob, vad) {
  return knob.own?.[vad] ?? knob.default ?? knob.min;
}
const THRESHOLDS = ["speech_threshold", "energy_threshold_db"];
const thresholdKnob = (/** @type {string} */ vad) => (vad === "energy" ? "energy_threshold_db" : "speech_threshold");
/**
 * Where each setup's state lives among the traits.
 * @type {Record<SetName, {
 *   name: string, vad: "vad" | "compare_vad", params: "params" | "compare_params",
 *   regions: "regions" | "compare_regions", rowClass: string,
 * }>}
 */
const SETS = {
  main: { name: "A", vad: "vad", params: "params", regions: "regions", rowClass: "fwx-region-row" },
  compare: {
    name: "B", vad: "compare_vad", params: "compare_params", regions: "compare_regions", rowClass: "fwx-compare-row",
  },
};
const SET_NAMES = /** @type {SetName[]} */ (Object.keys(SETS));
const DB_FLOOR = -80;  // the energy curve's scale: DB_FLOOR..0 dBFS, bottom to top
const BAND = 10;       // px (CSS): each set's region bar, above and below the waveform
const AXIS = 18;       // px (CSS): the time axis
const CLICK_PX = 4;    // a drag shorter than this is a click
// A lost answer (a restarted kernel) must not hold the sliders for ever; loading a model
// for its first run can take many seconds.
const REQUEST_TIMEOUT_MS = 60_000;

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag @param {string} className @param {Partial<HTMLElementTagNameMap[K]>} props
 * @returns {HTMLElementTagNameMap[K]}
 */
function h(tag, className, props = {}) {
  return Object.assign(document.createElement(tag), { className, ...props });
}

/**
 * m:ss, with as many decimals as the tick step needs.
 * @param {number} s @param {number} step
 */
function clock(s, step = 1) {
  const digits = step < 0.1 ? 2 : step < 1 ? 1 : 0;
  const rounded = Number(s.toFixed(digits));  // so that 59.96 s reads 1:00, not 0:60
  const m = Math.floor(rounded / 60);
  return `${m}:${(rounded - m * 60).toFixed(digits).padStart(digits ? digits + 3 : 2, "0")}`;
}

/** @param {number} seconds @param {number} px */
function tickStep(seconds, px) {
  for (const step of [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800]) {
    if ((step / seconds) * px >= 70) return step;
  }
  return 3600;
}

/**
 * A buffer from msg:custom (a DataView or an ArrayBuffer) as aligned Float32 values.
 * @param {DataView | ArrayBuffer} buffer
 */
function floats(buffer) {
  if (buffer instanceof ArrayBuffer) return new Float32Array(buffer);
  const bytes = buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength);
  return new Float32Array(/** @type {ArrayBuffer} */ (bytes));
}

/** @param {SetName} set @param {Record<string, Knob>} table */
function buildPanel(set, table) {
  const panel = h("fieldset", "fwx-panel");
  panel.dataset.set = set;
  const legend = h("legend", "fwx-legend");
  const swatch = h("span", "fwx-swatch");
  const select = h("select", "fwx-vad", { title: `VAD backend of setup ${SETS[set].name}` });
  legend.append(swatch, ` ${SETS[set].name} `, select);
  const knobs = h("div", "fwx-knobs");
  panel.append(legend, knobs);
  /** @type {Record<string, { row: HTMLLabelElement, input: HTMLInputElement, value: HTMLSpanElement }>} */
  const sliders = {};
  for (const [param, knob] of Object.entries(table)) {
    const row = h("label", "fwx-knob");
    const range = { min: String(knob.min), max: String(knob.max), step: String(knob.step) };
    const input = h("input", "fwx-slider", { type: "range", ...range });
    Object.assign(input.dataset, { param, set });
    const value = h("span", "fwx-value");
    row.append(h("span", "fwx-knob-label", { textContent: knob.label }), input, value);
    knobs.append(row);
    sliders[param] = { row, input, value };
  }
  return { panel, select, sliders };
}

/** @param {HTMLElement} el @param {Record<string, Knob>} table */
function buildUI(el, table) {
  const ui = {
    root: h("div", "fwx-root"),
    panels: { main: buildPanel("main", table), compare: buildPanel("compare", table) },
    agreement: h("div", "fwx-agreement"),
    canvas: h("canvas", "fwx-canvas"),
    zoomOut: h("button", "fwx-zoom-out", { type: "button", textContent: "Zoom out", title: "show twice as much" }),
    fit: h("button", "fwx-fit", { type: "button", textContent: "Whole recording" }),
    left: h("button", "fwx-pan", { type: "button", textContent: "◀", title: "earlier" }),
    right: h("button", "fwx-pan", { type: "button", textContent: "▶", title: "later" }),
    window: h("span", "fwx-window"),
    status: h("div", "fwx-status"),
    tables: { main: h("div", "fwx-table"), compare: h("div", "fwx-table") },
  };
  const controls = h("div", "fwx-controls");
  controls.append(ui.panels.main.panel, ui.panels.compare.panel);
  const nav = h("div", "fwx-nav");
  nav.append(ui.left, ui.right, ui.zoomOut, ui.fit, ui.window,
    h("span", "fwx-hint", { textContent: "Drag on the waveform to zoom, click a region to play it." }));
  const tables = h("div", "fwx-tables");
  tables.append(ui.tables.main, ui.tables.compare);
  ui.root.append(controls, ui.agreement, ui.canvas, nav, ui.status, tables);
  el.replaceChildren(ui.root);
  return ui;
}

/**
 * A window's waveform (min and max per bin) and energy curve, from an `envelope` message.
 * @typedef {{
 *   start: number, end: number, bins: number, mins: Float32Array, maxs: Float32Array,
 *   db: Float32Array, dbStart: number, dbStep: number,
 * }} Envelope
 */

/** @type {Render<ExplorerModel>} */
function render({ model, el }) {
  const table = model.get("knobs");
  const ui = buildUI(el, table);
  const viewId = Math.random().toString(36).slice(2);
  /** @type {{ overview: Envelope | null, detail: Envelope | null }} */
  const env = { overview: null, detail: null };  // envelopes: whole recording, current window
  /** @type {{ seq: number, inFlight: { seq: number, t0: number | null } | null, pending: number | null, timer: number }} */
  const request = { seq: 0, inFlight: null, pending: null, timer: 0 };
  /** @type {{ x0: number, x1: number } | null} */
  let drag = null;      // {x0, x1} in CSS px while dragging
  /** @type {{ source: AudioBufferSourceNode, start: number, duration: number, t0: number } | null} */
  let playing = null;   // {source, start, duration, t0} while a region plays
  /** @type {AudioContext | null} */
  let audio = null;     // AudioContext, made on the first click (autoplay policy)
  let frame = 0;        // requestAnimationFrame id of the next draw
  /** @type {{ input_to_redraw_ms: number, kernel_ms: number }[]} */
  const timings = [];   // {input_to_redraw_ms, kernel_ms}: slider input -> canvas redrawn

  const colors = () => {
    const style = getComputedStyle(ui.root);
    const v = (/** @type {string} */ name) => style.getPropertyValue(name).trim();
    return { wave: v("--fwx-wave"), energy: v("--fwx-energy"), a: v("--fwx-a"), b: v("--fwx-b"),
      fg: v("--fwx-fg"), muted: v("--fwx-muted"), select: v("--fwx-select") };
  };
  const view = () => model.get("view") || { start: 0, end: model.get("duration") || 1 };
  const pixelWidth = () => Math.max(Math.round(ui.canvas.clientWidth * devicePixelRatio), 16);

  // -- setups: sliders <-> traits -------------------------------------------------------

  /** @param {SetName} set */
  function setup(set) {
    const s = SETS[set];
    return { vad: model.get(s.vad), params: { ...model.get(s.params) } };
  }

  const isSelected = (/** @type {SetName} */ set, /** @type {number} */ index) => {
    const selected = model.get("selected");
    return selected != null && selected.index === index && Boolean(selected.compare) === (set === "compare");
  };
  const busy = () => request.inFlight != null || request.pending != null;

  // From the traits; while this view waits for the kernel, the kernel's echoes of older
  // values are ignored (they would make a held slider jump back).
  /** @param {SetName} set */
  function syncPanel(set) {
    if (busy()) return;
    const { select, sliders } = ui.panels[set];
    const { vad, params } = setup(set);
    select.value = vad;
    for (const [param, { input }] of Object.entries(sliders)) {
      const own = params[param] == null;  // the backend's own: shown, and sent back as null until moved
      input.dataset.own = own ? "1" : "";
      input.value = String(own ? ownValue(table[param], vad) : params[param]);
    }
    showKnobs(set);
  }

  function listBackends() {
    for (const set of SET_NAMES) {
      const names = [...(set === "compare" ? [["", "off"]] : []), ...(model.get("backends") || []).map((b) => [b, b])];
      const options = names.map(([value, textContent]) => h("option", "", { value, textContent }));
      ui.panels[set].select.replaceChildren(...options);
    }
  }

  /**
   * The knobs that the chosen backend uses: one of the two thresholds, none when off.
   * @param {SetName} set
   */
  // A knob left at the backend's own shows the chosen backend's value.
  function showKnobs(set) {
    const { select, sliders, panel } = ui.panels[set];
    const vad = select.value;
    panel.toggleAttribute("data-off", !vad);
    for (const [param, { row, input, value }] of Object.entries(sliders)) {
      row.hidden = !vad || (THRESHOLDS.includes(param) && param !== thresholdKnob(vad));
      if (input.dataset.own && vad) input.value = String(ownValue(table[param], vad));
      value.textContent = knobText(table[param], Number(input.value));
    }
  }

  /** @param {ExplorerPageMessage} content */
  const post = (content) => model.send(content);

  function send() {
    const seq = ++request.seq;
    request.inFlight = { seq, t0: request.pending };
    request.pending = null;
    post({ type: "set", seq, view_id: viewId, vad: ui.panels.main.select.value,
      params: values("main"), compare_vad: ui.panels.compare.select.value, compare_params: values("compare") });
    clearTimeout(request.timer);
    request.timer = setTimeout(answered, REQUEST_TIMEOUT_MS);
  }

  /** @param {SetName} set */
  function values(set) {
    /** @type {Record<string, number | null>} */
    const out = {};
    for (const [param, { input }] of Object.entries(ui.panels[set].sliders)) {
      out[param] = input.dataset.own ? null : Number(input.value);
    }
    return out;
  }

  /**
   * Only one request at a time; while it runs, the latest change waits (stale ones are dropped).
   * @param {Event} event
   */
  function changed(event) {
    request.pending = event.timeStamp;
    if (!request.inFlight) send();
  }

  /** @param {Extract<ExplorerKernelMessage, { type: "segmented" }>} [msg]  none: the request timed out */
  function answered(msg) {
    const sent = request.inFlight;
    request.inFlight = null;
    clearTimeout(request.timer);
    if (msg && sent && sent.t0 != null) {
      const t0 = sent.t0;
      // Measured when the redraw with the new regions has happened.
      whenDrawn(() => record({ input_to_redraw_ms: performance.now() - t0, kernel_ms: msg.ms }));
    }
    if (request.pending != null) send();
    else for (const set of SET_NAMES) syncPanel(set);
  }

  /** @param {{ input_to_redraw_ms: number, kernel_ms: number }} timing */
  function record(timing) {
    timings.push(timing);
    if (timings.length > 200) timings.shift();
    ui.root.dataset.timings = JSON.stringify(timings);
  }

  for (const set of SET_NAMES) {
    const { select, sliders } = ui.panels[set];
    select.addEventListener("change", (e) => {
      showKnobs(set);
      changed(e);
    });
    for (const [param, { input, value }] of Object.entries(sliders)) {
      input.addEventListener("input", (e) => {
        input.dataset.own = "";
        value.textContent = knobText(table[param], Number(input.value));
        changed(e);
      });
    }
  }

  // -- the canvas ---------------------------------------------------------------------------

  /** @type {(() => void)[]} */
  const pending = [];
  /** @param {() => void} fn */
  function whenDrawn(fn) {
    pending.push(fn);
    scheduleDraw();
  }

  function scheduleDraw() {
    if (!frame) frame = requestAnimationFrame(draw);
  }

  function layout() {
    const w = ui.canvas.clientWidth;
    const hgt = ui.canvas.clientHeight;
    const top = BAND + 2;
    const bottom = hgt - AXIS - BAND - 2;
    return { w, hgt, top, bottom, mid: (top + bottom) / 2 };
  }

  function draw() {
    frame = 0;
    const canvas = ui.canvas;
    const dpr = devicePixelRatio || 1;
    if (canvas.width !== pixelWidth() || canvas.height !== Math.round(canvas.clientHeight * dpr)) {
      canvas.width = pixelWidth();
      canvas.height = Math.round(canvas.clientHeight * dpr);
    }
    const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const { w, hgt, top, bottom, mid } = layout();
    const c = colors();
    const { start, end } = view();
    const span = end - start || 1;
    const x = (/** @type {number} */ t) => ((t - start) / span) * w;
    const compareOn = Boolean(model.get("compare_vad"));
    ctx.clearRect(0, 0, w, hgt);

    // regions: A over the upper half (all of it without B), B over the lower half
    /** @type {[SetName, string, number, number, number][]} */
    const bands = [["main", c.a, 0, top, compareOn ? mid : bottom], ["compare", c.b, bottom + 2, mid, bottom]];
    for (const [set, color, barY, y0, y1] of bands) {
      if (set === "compare" && !compareOn) continue;
      (model.get(SETS[set].regions) || []).forEach((r, i) => {
        if (r.end < start || r.start > end) return;
        const x0 = Math.max(x(r.start), 0);
        const x1 = Math.min(x(r.end), w);
        ctx.fillStyle = color;
        ctx.globalAlpha = 0.16;
        ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
        ctx.globalAlpha = 1;
        ctx.fillRect(x0, barY, Math.max(x1 - x0, 1), BAND);
        if (isSelected(set, i)) {
          const yTop = Math.min(barY, y0);
          const yBottom = Math.max(barY + BAND, y1);
          ctx.strokeStyle = c.select;
          ctx.lineWidth = 2;
          ctx.strokeRect(x0 + 1, yTop + 1, Math.max(x1 - x0 - 2, 1), yBottom - yTop - 2);
        }
      });
    }

    // waveform: min..max per pixel column, from the finer envelope where it covers the view
    const { detail } = env;
    const e = detail && detail.start <= start + 1e-6 && detail.end >= end - 1e-6 ? detail : env.overview;
    const amp = (bottom - top) / 2;
    if (e) {
      ctx.fillStyle = c.wave;
      const per = (e.end - e.start) / e.bins;  // seconds per bin
      const cols = Math.ceil(w);
      for (let px = 0; px < cols; px++) {
        const t0 = start + (px / w) * span;
        const t1 = start + ((px + 1) / w) * span;
        let i0 = Math.floor((t0 - e.start) / per);
        const i1 = Math.max(Math.ceil((t1 - e.start) / per), i0 + 1);
        if (i1 <= 0 || i0 >= e.bins) continue;
        i0 = Math.max(i0, 0);
        let lo = Infinity;
        let hi = -Infinity;
        for (let i = i0; i < Math.min(i1, e.bins); i++) {
          lo = Math.min(lo, e.mins[i]);
          hi = Math.max(hi, e.maxs[i]);
        }
        const y0 = mid - Math.min(hi, 1) * amp;
        const y1 = mid - Math.max(lo, -1) * amp;
        ctx.fillRect(px, y0, 1, Math.max(y1 - y0, 1));
      }
      // the energy curve (dBFS per 30 ms frame), and the energy VAD's threshold on its scale
      ctx.strokeStyle = c.energy;
      ctx.lineWidth = 1;
      ctx.beginPath();
      const dbY = (/** @type {number} */ db) => bottom - ((Math.max(db, DB_FLOOR) - DB_FLOOR) / -DB_FLOOR) * (bottom - top);
      e.db.forEach((db, i) => {
        const t = e.dbStart + (i + 0.5) * e.dbStep;
        if (i) ctx.lineTo(x(t), dbY(db));
        else ctx.moveTo(x(t), dbY(db));
      });
      ctx.stroke();
      ctx.setLineDash([5, 4]);
      for (const [set, color] of /** @type {[SetName, string][]} */ ([["main", c.a], ["compare", c.b]])) {
        const { vad, params } = setup(set);
        if (vad !== "energy") continue;
        ctx.strokeStyle = color;
        ctx.beginPath();
        ctx.moveTo(0, dbY(Number(params.energy_threshold_db)));
        ctx.lineTo(w, dbY(Number(params.energy_threshold_db)));
        ctx.stroke();
      }
      ctx.setLineDash([]);
    }

    // the time axis
    const step = tickStep(span, w);
    ctx.fillStyle = c.muted;
    ctx.font = `11px ${getComputedStyle(ui.root).fontFamily}`;
    ctx.textBaseline = "top";
    ctx.textAlign = "center";
    ctx.fillRect(0, hgt - AXIS, w, 1);
    for (let t = Math.ceil(start / step) * step; t <= end + 1e-9; t += step) {
      const px = x(t);
      ctx.fillRect(px, hgt - AXIS, 1, 4);
      const label = clock(t, step);
      const half = ctx.measureText(label).width / 2;
      ctx.fillText(label, Math.min(Math.max(px, half), w - half), hgt - AXIS + 5);
    }

    if (drag) {
      ctx.fillStyle = c.select;
      ctx.globalAlpha = 0.2;
      ctx.fillRect(Math.min(drag.x0, drag.x1), 0, Math.abs(drag.x1 - drag.x0), hgt - AXIS);
      ctx.globalAlpha = 1;
    }
    if (playing && audio) {
      const t = playing.start + (audio.currentTime - playing.t0);
      if (t <= playing.start + playing.duration) {
        ctx.fillStyle = c.fg;
        ctx.fillRect(x(t), 0, 1.5, hgt - AXIS);
        scheduleDraw();
      } else {
        playing = null;
      }
    }
    ui.window.textContent = `${clock(start, step)} – ${clock(end, step)} of ${clock(model.get("duration") || 0)}`;
    for (const fn of pending.splice(0)) fn();
  }

  // -- zoom -----------------------------------------------------------------------------------

  /**
   * The kernel keeps the window inside the recording and answers with its envelope.
   * @param {number} start @param {number} end
   */
  function zoom(start, end) {
    post({ type: "zoom", start, end, bins: pixelWidth() });
  }

  /** @param {number} px */
  function timeAt(px) {
    const { start, end } = view();
    return start + (px / ui.canvas.clientWidth) * (end - start);
  }

  /** @param {number} px @param {number} py */
  function hit(px, py) {
    const t = timeAt(px);
    const { mid } = layout();
    const compareOn = Boolean(model.get("compare_vad"));
    /** @type {SetName[]} */
    const order = compareOn && py > mid ? ["compare", "main"] : ["main", "compare"];
    for (const set of order) {
      if (set === "compare" && !compareOn) continue;
      const index = (model.get(SETS[set].regions) || []).findIndex((r) => r.start <= t && t < r.end);
      if (index >= 0) return { set, index };
    }
    return null;
  }

  ui.canvas.addEventListener("pointerdown", (e) => {
    ui.canvas.setPointerCapture(e.pointerId);
    drag = { x0: e.offsetX, x1: e.offsetX };
  });
  ui.canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    drag.x1 = e.offsetX;
    scheduleDraw();
  });
  ui.canvas.addEventListener("pointerup", (e) => {
    if (!drag) return;
    const { x0 } = drag;
    drag = null;
    if (Math.abs(e.offsetX - x0) < CLICK_PX) {
      const found = hit(e.offsetX, e.offsetY);
      if (found) play(found.set, found.index);
    } else {
      zoom(timeAt(Math.min(x0, e.offsetX)), timeAt(Math.max(x0, e.offsetX)));
    }
    scheduleDraw();
  });
  ui.canvas.addEventListener("wheel", (e) => {
    if (!e.ctrlKey && !e.metaKey) return;  // plain wheel scrolls the notebook
    e.preventDefault();
    const { start, end } = view();
    const t = timeAt(e.offsetX);
    const k = e.deltaY > 0 ? 1.5 : 1 / 1.5;
    zoom(t - (t - start) * k, t + (end - t) * k);
  }, { passive: false });
  ui.zoomOut.addEventListener("click", () => {
    const { start, end } = view();
    const span = end - start;
    zoom(start - span / 2, end + span / 2);
  });
  ui.fit.addEventListener("click", () => zoom(0, model.get("duration") || 0));
  for (const [button, dir] of /** @type {[HTMLButtonElement, number][]} */ ([[ui.left, -1], [ui.right, 1]])) {
    button.addEventListener("click", () => {
      const { start, end } = view();
      const shift = ((end - start) / 2) * dir;
      zoom(start + shift, end + shift);
    });
  }

  // -- playback -------------------------------------------------------------------------------

  /** @param {SetName} set @param {number} index */
  function play(set, index) {
    // Made and resumed inside the click: browsers only allow audio that a gesture started.
    audio ??= new AudioContext();
    audio.resume();
    post({ type: "play", index, compare: set === "compare" });
  }

  /** @param {Extract<ExplorerKernelMessage, { type: "audio" }>} msg @param {DataView[]} buffers */
  function onAudio(msg, buffers) {
    if (!audio || !buffers?.length) return;
    const samples = floats(buffers[0]);
    playing?.source.stop();
    const buffer = audio.createBuffer(1, Math.max(samples.length, 1), msg.sample_rate);
    buffer.copyToChannel(samples, 0);
    const source = audio.createBufferSource();
    source.buffer = buffer;
    source.connect(audio.destination);
    source.addEventListener("ended", () => {
      if (playing?.source === source) playing = null;
      scheduleDraw();
    });
    source.start();
    playing = { source, start: msg.start, duration: samples.length / msg.sample_rate, t0: audio.currentTime };
    ui.root.dataset.played = JSON.stringify({ index: msg.index, compare: msg.compare, samples: samples.length });
    scheduleDraw();
  }

  // -- tables, agreement, status --------------------------------------------------------------

  /** @param {SetName} set */
  function renderTable(set) {
    const s = SETS[set];
    const box = ui.tables[set];
    const vad = model.get(s.vad);
    box.hidden = !vad;
    if (!vad) return;
    const regions = model.get(s.regions) || [];
    const table = h("table", "");
    const head = h("tr", "");
    for (const text of ["#", "start", "end", "duration", ""]) head.append(h("th", "", { textContent: text }));
    table.append(h("thead", ""), h("tbody", ""));
    /** @type {HTMLTableSectionElement} */ (table.tHead).append(head);
    regions.forEach((r, i) => {
      const row = h("tr", s.rowClass, { title: "click to play" });
      row.toggleAttribute("data-selected", isSelected(set, i));
      for (const text of [String(i + 1), r.start.toFixed(2), r.end.toFixed(2), `${r.duration.toFixed(2)} s`, "▶"]) {
        row.append(h("td", "", { textContent: text }));
      }
      row.addEventListener("click", () => play(set, i));
      table.tBodies[0].append(row);
    });
    const title = h("div", "fwx-table-title");
    const count = `${regions.length} region${regions.length === 1 ? "" : "s"}`;
    title.append(h("span", "fwx-swatch"), ` ${s.name}: ${vad}, ${count}`);
    box.dataset.set = set;
    const scroller = h("div", "fwx-scroll");
    scroller.append(table);
    box.replaceChildren(title, scroller);
  }

  function renderAgreement() {
    const value = model.get("agreement");
    ui.agreement.hidden = value == null;
    ui.agreement.textContent = value == null ? "" : `A and B agree on ${(value * 100).toFixed(1)} % of 10 ms frames`;
  }

  function renderStatus() {
    ui.status.textContent = model.get("status") || "";
  }

  /** @param {Extract<ExplorerKernelMessage, { type: "envelope" }>} msg @param {DataView[]} buffers */
  function onEnvelope(msg, buffers) {
    const data = floats(buffers[0]);
    const { bins } = msg;
    env[msg.tag === "overview" ? "overview" : "detail"] = {
      start: msg.start, end: msg.end, bins, mins: data.subarray(0, bins), maxs: data.subarray(bins, 2 * bins),
      db: data.subarray(2 * bins, 2 * bins + msg.db_count), dbStart: msg.db_start, dbStep: msg.db_step,
    };
    scheduleDraw();
  }

  /** @param {ExplorerKernelMessage} msg @param {DataView[]} buffers */
  function onCustom(msg, buffers) {
    if (msg?.type === "envelope") onEnvelope(msg, buffers);
    else if (msg?.type === "audio") onAudio(msg, buffers);
    else if (msg?.type === "segmented" && msg.view_id === viewId && msg.seq === request.inFlight?.seq) answered(msg);
  }

  const redraw = () => {
    for (const set of SET_NAMES) renderTable(set);
    scheduleDraw();
  };
  /** @type {[string, (msg: any, buffers: DataView[]) => void][]} */
  const listeners = [
    ["change:regions", redraw],
    ["change:compare_regions", redraw],
    ["change:selected", redraw],
    ["change:view", scheduleDraw],
    ["change:agreement", renderAgreement],
    ["change:status", renderStatus],
    ["msg:custom", onCustom],
  ];
  const resync = () => {
    for (const set of SET_NAMES) syncPanel(set);
    redraw();
  };
  for (const key of ["vad", "params", "compare_vad", "compare_params"]) listeners.push([`change:${key}`, resync]);
  listeners.push(["change:backends", () => {
    listBackends();
    resync();
  }]);
  for (const [event, fn] of listeners) model.on(event, fn);

  // A wider canvas needs a finer envelope.
  let width = 0;
  const resize = new ResizeObserver(() => {
    if (Math.abs(ui.canvas.clientWidth - width) > 32) {
      width = ui.canvas.clientWidth;
      const { start, end } = view();
      post({ type: "envelope", tag: "overview", start: 0, end: model.get("duration") || 0, bins: pixelWidth() });
      post({ type: "envelope", tag: "view", start, end, bins: pixelWidth() });
    }
    scheduleDraw();
  });
  resize.observe(ui.canvas);
  // The canvas takes its colours from the theme when it draws: draw again when it changes.
  const theme = new MutationObserver(scheduleDraw);
  theme.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-name"] });

  listBackends();
  resync();
  renderAgreement();
  renderStatus();

  return () => {
    for (const [event, fn] of listeners) model.off(event, fn);
    resize.disconnect();
    theme.disconnect();
    cancelAnimationFrame(frame);
    clearTimeout(request.timer);
    playing?.source.stop();
    audio?.close();
  };
}

export default { render };
