// The Transcriber front end: Record/Stop, level meter, device picker, model badge,
// error box and transcript, wired to the widget's traits and custom messages.
import { CaptureError, gatherEnv, listInputs, playSamples, startCapture, watchEnv } from "./capture.js";

/** @import { AnyModel, Render } from "@anywidget/types" */
/** @import { Capture } from "./capture.js" */
/** @import { ChunkHeader, KernelMessage, PageMessage, Problem, Segment, TranscriberModel } from "./protocol.js" */
/** @typedef {AnyModel<TranscriberModel>} Model */

const ERROR_WAIT_MS = 1000;  // how long the kernel gets to turn an error into the `error` trait

// Shown only when the kernel does not answer an error in time (busy or dead); the real
// hints live in Python (diagnose.py).
/** @type {Record<string, [string, string]>} */
const FALLBACK = {
  "insecure-context": ["This page is not a secure context, so the browser hides the microphone.",
    "Open Jupyter at https://… or http://localhost (for a remote server, use an SSH tunnel)."],
  "no-media-devices": ["This browser exposes no microphone API (navigator.mediaDevices is missing).",
    "Use a current Chrome, Edge, Firefox or Safari on https://… or http://localhost."],
  "permission-denied": ["Microphone access was denied.",
    "Allow the microphone for this site (icon in the address bar), then press Record again."],
  "no-device": ["No microphone was found.", "Connect a microphone, or pick another input device."],
  "device-busy": ["The microphone could not be opened.",
    "Close other applications using it and check the system's privacy settings."],
  "overconstrained": ["The chosen input device is not available.", "Pick another device, or the default one."],
  "context-suspended": ["The browser kept audio processing suspended.",
    "Click Record again; allow sound/autoplay for this site if the browser blocks it."],
  "blocked-by-policy": ["This page's permissions policy blocks the microphone (a frame without allow=\"microphone\"?).",
    "Open the notebook in a browser tab of its own (JupyterLab at http://localhost:<port>)."],
  "os-blocked": ["The operating system withholds the microphone from the browser.",
    "Allow the browser in the system's privacy settings for the microphone, then restart it."],
  "capture-failed": ["Audio capture failed.", "Try again, or another browser or input device."],
};

const BUTTON = { idle: "● Record", starting: "Starting…", recording: "■ Stop", stopping: "Stopping…" };
const START_WAIT_MS = 5000;  // how long the kernel gets to accept a take
const HELD_CHUNKS = 100;     // chunks kept while the kernel has not accepted the take yet (10 s)

function newViewId() {
  return globalThis.crypto?.randomUUID?.() ?? `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

/**
 * What a view offers the session that its model's messages update.
 * @typedef {{
 *   sync(): void, meter(): void, refreshDevices(): Promise<void>, renderSegments(): void,
 *   appendSegment(seg: Segment): void, markPlaying(id: number | null): void,
 * }} View
 */

/**
 * One model's capture and transcript (the fields are explained in sessionFor).
 * @typedef {{
 *   phase: "idle" | "starting" | "recording" | "stopping", capture: Capture | null, stopRequested: boolean,
 *   seq: number, startedAt: number, level: number | null, fallback: Problem | null, fallbackTimer: number,
 *   views: Set<View>, viewId: string, accepted: boolean, held: [ChunkHeader, ArrayBuffer][],
 *   answer: ((msg: KernelMessage) => void) | null, segments: Segment[], testing: boolean, playing: number | null,
 * }} Session
 */

// One capture per model, shared by all its views (a model can be displayed several times).
/** @type {WeakMap<Model, Session>} */
const sessions = new WeakMap();

/** @param {Model} model */
function sessionFor(model) {
  if (!sessions.has(model)) {
    sessions.set(model, {
      phase: "idle",        // idle | starting | recording | stopping
      capture: null,
      stopRequested: false, // stop asked for while still starting
      seq: 0,
      startedAt: 0,
      level: null,          // dBFS from the worklet
      fallback: null,       // local {message, hint} when the kernel did not answer an error
      fallbackTimer: 0,
      views: new Set(),
      // This page's id towards the kernel: a take belongs to one page, and the kernel refuses
      // a second page (another tab) while the first records.
      viewId: newViewId(),
      accepted: false,      // the kernel accepted this page's take: chunks may go
      held: [],             // chunks captured before that answer
      answer: null,         // resolves the wait for started/refused
      segments: [],         // the transcript, appended from `segment` messages
      testing: false,       // the microphone self-test is running
      playing: null,        // id of the segment being played
    });
    const s = /** @type {Session} */ (sessions.get(model));
    model.on("msg:custom", (msg, buffers) => onKernelMessage(model, s, msg, buffers));
    send(model, { type: "hello", view: s.viewId });
  }
  return /** @type {Session} */ (sessions.get(model));
}

/**
 * The comm may already be closed when a notebook drops the widget mid-recording.
 * @param {Model} model
 * @param {PageMessage} content
 * @param {ArrayBuffer[]} [buffers]
 */
function send(model, content, buffers) {
  try {
    model.send(content, undefined, buffers);
  } catch (err) {
    console.warn("funasr-widget: could not send", content.type, err);
  }
}

/** @param {Model} model @param {boolean} value */
function setRecording(model, value) {
  try {
    model.set("recording", value);
    model.save_changes();
  } catch (err) {
    console.warn("funasr-widget: could not set recording", err);
  }
}

/** @param {Session} s */
function notify(s) {
  for (const view of s.views) view.sync();
}

/** @param {Model} model @param {Session} s */
async function sendEnv(model, s) {
  send(model, { type: "env", ...(await gatherEnv(s.capture?.context)) });
}

/** @param {Model} model @param {Session} s @param {CaptureError} err */
function reportError(model, s, { code, name, message }) {
  send(model, { type: "error", code, name, message });
  clearTimeout(s.fallbackTimer);
  s.fallbackTimer = setTimeout(() => {
    if (model.get("error")?.code === code) return;  // the kernel answered (same error as before)
    const [text, hint] = FALLBACK[code] ?? FALLBACK["capture-failed"];
    s.fallback = {
      message: message ? `${text} (${name ? `${name}: ` : ""}${message})` : text,
      hint: `${hint} The kernel did not answer; is it still running?`,
    };
    notify(s);
  }, ERROR_WAIT_MS);
}

/**
 * Chunks go once the kernel has accepted the take; until then (a few ms) they wait.
 * @param {Model} model @param {Session} s @param {import("./capture.js").Chunk} chunk
 */
function sendChunk(model, s, { samples, final, t }) {
  /** @type {ChunkHeader} */
  const header = { type: "chunk", view: s.viewId, seq: s.seq++, t, sample_rate: 16000, dtype: "float32",
    n: samples.length, final };
  if (s.accepted) send(model, header, [samples.buffer]);
  else if (s.held.length < HELD_CHUNKS) s.held.push([header, samples.buffer]);
}

/**
 * The kernel answers `start` with started or refused (another page is recording).
 * @param {Model} model @param {Session} s @param {PageMessage} content
 * @returns {Promise<KernelMessage | { type: "timeout" }>}
 */
function askToStart(model, s, content) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ type: "timeout" }), START_WAIT_MS);
    s.answer = (msg) => {
      clearTimeout(timer);
      resolve(msg);
    };
    send(model, content);
  });
}

/** @param {Model} model @param {Session} s */
async function start(model, s) {
  if (s.phase !== "idle") return;
  s.phase = "starting";
  s.stopRequested = false;
  s.fallback = null;
  s.seq = 0;
  s.accepted = false;
  s.held = [];
  notify(s);
  try {
    // No await before this call: the AudioContext must be created inside the click.
    s.capture = await startCapture({
      deviceId: model.get("device_id"),
      onChunk: (chunk) => sendChunk(model, s, chunk),
      onLevel: (db) => {
        s.level = db;
        for (const view of s.views) view.meter();
      },
      onEnded: () => {
        reportError(model, s, new CaptureError("capture-failed", "The input device stopped delivering audio (unplugged, or access revoked)."));
        stop(model, s);
      },
    });
  } catch (/** @type {any} */ err) {
    s.phase = "idle";
    notify(s);
    reportError(model, s, err instanceof CaptureError ? err : new CaptureError("capture-failed", String(err), err?.name));
    sendEnv(model, s);  // the permission state has probably changed
    return;
  }
  const { context, rate, deviceLabel, deviceId } = s.capture;
  context.addEventListener("statechange", () => s.phase === "recording" && sendEnv(model, s));
  const answer = await askToStart(model, s, { type: "start", view: s.viewId, t: performance.timeOrigin + performance.now(),
    device_rate: rate, device_label: deviceLabel, device_id: deviceId });
  if (answer.type !== "started") {
    const capture = s.capture;
    s.capture = null;
    s.held = [];
    s.phase = "idle";
    await capture.stop();  // nothing was sent: its final chunk is dropped too
    s.fallback = answer.type === "refused" ? { message: answer.message, hint: answer.hint } : {
      message: "The kernel did not answer the start of the recording.",
      hint: "Is the kernel busy or dead? Wait for it, or restart it and run the cell again.",
    };
    notify(s);
    return;
  }
  s.accepted = true;
  for (const [header, buffer] of s.held) send(model, header, [buffer]);
  s.held = [];
  s.phase = "recording";
  s.startedAt = Date.now();
  setRecording(model, true);
  notify(s);
  sendEnv(model, s);  // context rate/state; device labels now that permission is granted
  for (const view of s.views) view.refreshDevices();
  if (s.stopRequested) stop(model, s);
}

/** @param {Model} model @param {Session} s */
async function stop(model, s) {
  if (s.phase === "starting") s.stopRequested = true;
  if (s.phase !== "recording") return;
  s.phase = "stopping";
  notify(s);
  try {
    await /** @type {Capture} */ (s.capture).stop();  // the final chunk has been sent when this resolves
  } finally {
    s.capture = null;
    s.phase = "idle";
    s.level = null;
    setRecording(model, false);
    notify(s);
    sendEnv(model, s);
  }
}

/**
 * Messages from the kernel, handled once per page (not per view).
 * @param {Model} model @param {Session} s @param {KernelMessage} msg @param {DataView[]} buffers
 */
function onKernelMessage(model, s, msg, buffers) {
  if (msg?.type === "stop") stop(model, s);
  else if (msg?.type === "self-test" && (msg.view == null || msg.view === s.viewId)) {
    selfTest(model, s, Number(msg.seconds) || 3);
  } else if (msg?.type === "segment-audio") {
    // One answer per page is in flight: say it arrived, so the kernel takes the next request.
    if (msg.view === s.viewId) send(model, { type: "segment-audio-received", view: s.viewId });
    playSegment(s, msg, buffers);
  }
  else if ((msg?.type === "started" || msg?.type === "refused") && msg.view === s.viewId) s.answer?.(msg);
  else if (msg?.type === "segment" && msg.segment) {
    const seg = msg.segment;
    // The replay may already hold it (it was taken while this message was on its way).
    if (s.segments.some((old) => old.id === seg.id && old.start === seg.start)) return;
    s.segments.push(seg);
    for (const view of s.views) view.appendSegment(seg);
  } else if (msg?.type === "transcript" && (msg.view === null || msg.view === s.viewId)) {
    s.segments = Array.isArray(msg.segments) ? msg.segments : [];
    for (const view of s.views) view.renderSegments();
  }
}

/**
 * The segment's audio, as the kernel holds it (one int16 buffer), played in the browser.
 * @param {Session} s
 * @param {Extract<KernelMessage, { type: "segment-audio" }>} msg
 * @param {DataView[]} buffers
 */
async function playSegment(s, msg, buffers) {
  if (s.playing !== msg.id) return;  // not (or no longer) asked for
  const finish = () => {
    s.playing = null;
    for (const view of s.views) view.markPlaying(null);
  };
  // A DataView from current widget managers; an ArrayBuffer or a typed array from older ones.
  const raw = /** @type {DataView | ArrayBuffer | ArrayBufferView | undefined} */ (buffers?.[0]);
  if (msg.error || !raw) {
    finish();
    return;
  }
  const view = raw instanceof DataView ? raw
    : "buffer" in raw ? new DataView(raw.buffer, raw.byteOffset, raw.byteLength) : new DataView(raw);
  const n = Math.floor(view.byteLength / 2);
  const samples = new Float32Array(n);
  for (let i = 0; i < n; i++) samples[i] = view.getInt16(2 * i, true) / 32767;
  try {
    await playSamples(samples, msg.sample_rate || 16000);
  } finally {
    if (s.playing === msg.id) finish();
  }
}

// "Does my microphone work at all": record a few seconds here, play them back, and let the
// kernel judge the levels (self_test_result).
/** @param {Model} model @param {Session} s @param {number} seconds */
async function selfTest(model, s, seconds) {
  if (s.phase !== "idle" || s.testing) {
    send(model, { type: "self-test-result", view: s.viewId, failed: "capture-failed",
      message: "a recording or a self-test is already running on this page" });
    return;
  }
  s.testing = true;
  s.fallback = null;
  s.level = null;
  notify(s);
  /** @type {Float32Array[]} */
  const pieces = [];
  let capture = null;
  try {
    capture = await startCapture({
      deviceId: model.get("device_id"),
      onChunk: ({ samples }) => samples.length && pieces.push(samples),
      onLevel: (db) => {
        s.level = db;
        for (const view of s.views) view.meter();
      },
    });
    await new Promise((resolve) => setTimeout(resolve, Math.min(Math.max(seconds, 0.5), 10) * 1000));
    await capture.stop();
  } catch (/** @type {any} */ err) {
    s.testing = false;
    s.level = null;
    notify(s);
    const e = err instanceof CaptureError ? err : new CaptureError("capture-failed", String(err), err?.name);
    reportError(model, s, e);
    send(model, { type: "self-test-result", view: s.viewId, failed: e.code, message: e.message });
    sendEnv(model, s);
    return;
  }
  const total = pieces.reduce((n, p) => n + p.length, 0);
  const all = new Float32Array(total);
  let at = 0;
  for (const p of pieces) {
    all.set(p, at);
    at += p.length;
  }
  send(model, { type: "self-test-result", view: s.viewId, sample_rate: 16000, n: total, dtype: "float32" },
    [all.buffer.slice(0)]);
  s.level = null;
  for (const view of s.views) view.meter();
  try {
    await playSamples(all, 16000);  // the user hears what the microphone gave
  } finally {
    s.testing = false;
    notify(s);
  }
}

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag @param {string} className @param {Partial<HTMLElementTagNameMap[K]>} props
 * @returns {HTMLElementTagNameMap[K]}
 */
function h(tag, className, props = {}) {
  return Object.assign(document.createElement(tag), { className, ...props });
}

/** @param {number} seconds */
function clock(seconds) {
  const total = Math.max(0, Math.floor(seconds || 0));
  const pad = (/** @type {number} */ v) => String(v).padStart(2, "0");
  return `${pad(Math.floor(total / 60))}:${pad(total % 60)}`;
}

/**
 * -60..0 dBFS -> 0..100 %
 * @param {number} db
 */
function meterPercent(db) {
  return Math.min(100, Math.max(0, ((db + 60) / 60) * 100));
}

/** @param {HTMLElement} el */
function buildUI(el) {
  const ui = {
    root: h("div", "fw-root"),
    record: h("button", "fw-record", { type: "button" }),
    elapsed: h("span", "fw-elapsed", { textContent: "00:00" }),
    meter: h("div", "fw-meter", { title: "input level, dBFS (-60..0); the line is the energy VAD threshold" }),
    fill: h("div", "fw-meter-fill"),
    threshold: h("div", "fw-threshold"),
    device: h("select", "fw-device", { title: "input device" }),
    model: h("span", "fw-model"),
    status: h("div", "fw-status"),
    error: h("div", "fw-error", { hidden: true }),
    errorMessage: h("div", "fw-error-message"),
    errorHint: h("div", "fw-error-hint"),
    errorFix: h("button", "fw-error-fix", { type: "button", hidden: true }),
    test: h("button", "fw-selftest", { type: "button", textContent: "Test mic",
      title: "record 3 s, play them back and measure the level" }),
    testResult: h("div", "fw-selftest-result", { hidden: true }),
    // Model load failures get their own box so that .fw-error means "capture error" only.
    modelError: h("div", "fw-model-error", { hidden: true }),
    modelErrorMessage: h("div", "fw-model-error-message"),
    modelErrorHint: h("div", "fw-model-error-hint"),
    transcript: h("div", "fw-transcript"),
    partial: h("span", "fw-partial"),
    copy: h("button", "fw-copy", { type: "button", textContent: "Copy all" }),
    stats: h("span", "fw-stats"),
  };
  const bar = h("div", "fw-bar");
  const footer = h("div", "fw-footer");
  bar.append(ui.record, ui.elapsed, ui.meter, ui.device, ui.test, ui.model);
  ui.meter.append(ui.fill, ui.threshold);
  ui.error.setAttribute("role", "alert");
  ui.error.append(ui.errorMessage, ui.errorHint, ui.errorFix);
  ui.modelError.append(ui.modelErrorMessage, ui.modelErrorHint);
  footer.append(ui.copy, ui.stats);
  ui.root.append(bar, ui.status, ui.error, ui.modelError, ui.testResult, ui.transcript, footer);
  el.replaceChildren(ui.root);
  return ui;
}

/**
 * @param {HTMLElement} box @param {HTMLElement} message @param {HTMLElement} hint
 * @param {Problem | null | undefined} err
 */
function showBox(box, message, hint, err) {
  const visible = Boolean(err?.message || err?.code || err?.hint);
  box.hidden = !visible;
  message.textContent = visible ? err?.message || err?.code || "" : "";
  hint.textContent = visible ? err?.hint || "" : "";
}

/** @type {Render<TranscriberModel>} */
function render({ model, el }) {
  const s = sessionFor(model);
  const ui = buildUI(el);
  let clockTimer = 0;
  let copyTimer = 0;

  function updateElapsed() {
    ui.elapsed.textContent = clock((Date.now() - s.startedAt) / 1000);
  }

  function meter() {
    const live = s.phase === "recording" || s.testing;
    ui.fill.style.width = `${live && s.level != null ? meterPercent(s.level) : 0}%`;
  }

  function renderError() {
    const err = model.get("error");
    const shown = err?.message || err?.code ? err : s.fallback;
    showBox(ui.error, ui.errorMessage, ui.errorHint, shown);
    // A hint that comes with a fix (the VAD threshold) gets a button that applies it.
    const fix = shown?.fix && typeof shown.fix === "object" ? Object.entries(shown.fix) : [];
    ui.errorFix.hidden = fix.length === 0;
    ui.errorFix.textContent = fix.length ? `Apply: ${fix.map(([k, v]) => `${k} = ${v}`).join(", ")}` : "";
  }

  function renderSelfTest() {
    const r = model.get("self_test_result") || {};
    ui.testResult.hidden = !r.message;
    ui.testResult.textContent = r.message ? `${r.message}${r.hint ? ` ${r.hint}` : ""}` : "";
    ui.testResult.dataset.ok = r.code === "running" ? "" : String(Boolean(r.ok));
  }

  /** @param {number | null} id */
  function markPlaying(id) {
    for (const line of /** @type {NodeListOf<HTMLElement>} */ (ui.transcript.querySelectorAll(".fw-final"))) {
      line.toggleAttribute("data-playing", id !== null && line.dataset.id === String(id));
    }
  }

  function sync() {
    ui.record.textContent = BUTTON[s.phase];
    ui.record.disabled = s.phase === "starting" || s.phase === "stopping";
    ui.root.classList.toggle("fw-recording", s.phase === "recording");
    ui.device.disabled = s.phase !== "idle" || s.testing;
    ui.test.disabled = s.phase !== "idle" || s.testing;
    ui.test.textContent = s.testing ? "Testing…" : "Test mic";
    ui.record.disabled ||= s.testing;
    clearInterval(clockTimer);
    if (s.phase === "recording") {
      updateElapsed();
      clockTimer = setInterval(updateElapsed, 250);
    }
    meter();
    renderError();
  }

  async function refreshDevices() {
    const inputs = navigator.mediaDevices ? await listInputs() : [];
    const chosen = model.get("device_id") || "";
    // Chrome lists a "default" alias of a real device; our "" option already means that.
    const options = [["", "Default microphone"]];
    inputs.forEach(({ id, label }, i) => {
      if (id && id !== "default") options.push([id, label || `Microphone ${i + 1}`]);
    });
    // Ids are hidden until permission is granted: keep a saved choice selectable meanwhile.
    if (chosen && !options.some(([id]) => id === chosen)) options.push([chosen, "Saved device"]);
    ui.device.replaceChildren(...options.map(([value, textContent]) => h("option", "", { value, textContent })));
    ui.device.value = chosen;
  }

  function renderThreshold() {
    // The line is the energy VAD's own decision level: other VADs do not use it.
    const db = model.get("energy_threshold_db");
    const known = model.get("vad") === "energy" && typeof db === "number" && Number.isFinite(db);
    ui.threshold.hidden = !known;
    if (known) ui.threshold.style.left = `${meterPercent(db)}%`;
  }

  function renderModel() {
    const state = model.get("model_state") || "none";
    const info = model.get("model_info") || {};
    const parts = ["model:", state];
    if (state === "loading") {
      if (info.name) parts.push(info.name);
      parts.push(typeof info.progress === "number" ? `${Math.round(info.progress * 100)}%` : "…");
    } else if (state === "ready") {
      parts.push(`on ${info.device || "?"}`);
      if (info.name) parts.push(`(${info.name})`);
    }
    ui.model.textContent = parts.join(" ");
    ui.model.dataset.state = state;
    // A failed load, or one that has made no progress for long (stalled), says why and what to do.
    showBox(ui.modelError, ui.modelErrorMessage, ui.modelErrorHint, state === "error" || info.stalled ? info : null);
  }

  /**
   * Follow new text only while the user is at the bottom (they may have scrolled up to read).
   * @param {() => void} update
   */
  function keepScrolled(update) {
    const t = ui.transcript;
    const atBottom = t.scrollHeight - t.scrollTop - t.clientHeight < 8;
    update();
    ui.transcript.toggleAttribute("data-empty", !ui.transcript.textContent);
    if (atBottom) t.scrollTop = t.scrollHeight;
  }

  /** @param {Segment} seg */
  function finalLine(seg) {
    // A segment without text: speech the VAD found while no model was loaded.
    const text = seg.text || `(speech ${clock(seg.start)}–${clock(seg.end)}, not transcribed)`;
    const line = h("div", "fw-final", { title: "click to hear what the model heard" });
    line.dataset.id = String(seg.id);
    line.toggleAttribute("data-playable", true);
    line.append(h("span", "fw-time", { textContent: `[${clock(seg.start)}]` }), text);
    return line;
  }

  function renderSegments() {
    keepScrolled(() => ui.transcript.replaceChildren(...s.segments.map(finalLine), ui.partial));
  }

  /** @param {Segment} seg */
  function appendSegment(seg) {
    keepScrolled(() => ui.transcript.insertBefore(finalLine(seg), ui.partial));
  }

  function renderStats() {
    const st = model.get("stats") || {};
    const parts = [];
    if (typeof st.seconds === "number") parts.push(`${st.seconds.toFixed(1)} s kept`);
    /** @type {["lost" | "duplicates" | "rejected", string][]} */
    const counted = [["lost", "lost"], ["duplicates", "duplicate"], ["rejected", "rejected"]];
    for (const [key, word] of counted) if ((st[key] ?? 0) > 0) parts.push(`${st[key]} chunks ${word}`);
    const dropped = st.dropped_seconds ?? 0;
    if (dropped > 0) parts.push(`${dropped.toFixed(1)} s over the recording cap, not kept`);
    ui.stats.textContent = parts.join(" · ");
    ui.stats.dataset.problem = String(parts.length > (typeof st.seconds === "number" ? 1 : 0));
    const reasons = Object.entries(st.rejected_by || {}).map(([k, v]) => `${k}: ${v}`).join(", ");
    ui.stats.title = reasons ? `rejected: ${reasons}` : "audio the kernel has received";
  }

  function renderPartial() {
    keepScrolled(() => (ui.partial.textContent = model.get("partial") || ""));
  }

  function renderStatus() {
    ui.status.textContent = model.get("status") || "";
  }

  function onError() {
    // Any answer from the kernel supersedes the local fallback.
    clearTimeout(s.fallbackTimer);
    s.fallback = null;
    renderError();
  }

  async function copyAll() {
    try {
      await navigator.clipboard.writeText(s.segments.map((seg) => seg.text).filter(Boolean).join(" "));
      ui.copy.textContent = "Copied";
    } catch {
      ui.copy.textContent = "Copy failed";  // no clipboard on insecure pages, or permission refused
    }
    clearTimeout(copyTimer);
    copyTimer = setTimeout(() => (ui.copy.textContent = "Copy all"), 1500);
  }

  const onEnv = () => {
    refreshDevices();
    sendEnv(model, s);
  };

  ui.record.addEventListener("click", () => (s.phase === "idle" ? start(model, s) : stop(model, s)));
  ui.device.addEventListener("change", () => {
    model.set("device_id", ui.device.value);
    model.save_changes();
  });
  ui.copy.addEventListener("click", copyAll);
  ui.errorFix.addEventListener("click", () => send(model, { type: "apply-hint" }));
  // The kernel starts the test (it refuses a result nobody asked for) and answers `self-test`.
  ui.test.addEventListener("click", () => send(model, { type: "self-test", view: s.viewId, seconds: 3 }));
  ui.transcript.addEventListener("click", (event) => {
    const target = /** @type {Partial<HTMLElement>} */ (event.target);
    const line = /** @type {HTMLElement | null | undefined} */ (target.closest?.(".fw-final[data-playable]"));
    if (!line) return;  // a second click asks again (an unanswered one never blocks)
    s.playing = Number(line.dataset.id);
    for (const v of s.views) v.markPlaying(s.playing);
    send(model, { type: "segment-audio", view: s.viewId, id: s.playing });
  });

  /** @type {[string, () => void][]} */
  const listeners = [
    ["change:status", renderStatus],
    ["change:error", onError],
    ["change:model_state", renderModel],
    ["change:model_info", renderModel],
    ["change:partial", renderPartial],
    ["change:stats", renderStats],
    ["change:energy_threshold_db", renderThreshold],
    ["change:vad", renderThreshold],
    ["change:device_id", refreshDevices],
    ["change:self_test_result", renderSelfTest],
  ];
  for (const [event, fn] of listeners) model.on(event, fn);
  const unwatch = watchEnv(onEnv);

  const view = { sync, meter, refreshDevices, renderSegments, appendSegment, markPlaying };
  s.views.add(view);
  renderStats();
  renderStatus();
  renderModel();
  renderThreshold();
  renderSegments();
  renderPartial();
  renderSelfTest();
  sync();
  onEnv();

  return () => {
    s.views.delete(view);
    for (const [event, fn] of listeners) model.off(event, fn);
    unwatch();
    clearInterval(clockTimer);
    clearTimeout(copyTimer);
    // The capture outlives a view only while another view of the same model can stop it.
    if (s.views.size === 0) stop(model, s);
  };
}

export default { render };
