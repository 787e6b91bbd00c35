// The shapes of what crosses between the kernel (funasr_widget/*.py) and the page, and
// between the page and its capture worklet, as JSDoc types: `npm run typecheck` checks every
// use in js/ against them, so a changed field is changed here and in Python together.
// Types only: nothing imports this file at run time.

// --- capture worklet <-> page ---------------------------------------------------------------

/**
 * @typedef {{ type: "chunk", samples: Float32Array<ArrayBuffer>, final: boolean }
 *   | { type: "level", db: number }} WorkletMessage  worklet.js -> capture.js
 * @typedef {{ type: "flush" }} WorkletCommand  capture.js -> worklet.js
 */

// --- Transcriber (transcriber.py) -----------------------------------------------------------

/**
 * A closed segment, in session seconds (events.Final.segment). No text: speech found while
 * no model was loaded.
 * @typedef {{ id: number, start: number, end: number, text?: string }} Segment
 */

/**
 * What the kernel says went wrong: a capture error (`error` trait), a model that failed or
 * stalled (`model_info`), or a refused start. `fix`: knob values that apply the hint.
 * @typedef {{ code?: string, message?: string, hint?: string, fix?: Record<string, number> }} Problem
 */

/**
 * The `env` message body: what the browser can tell about capture (diagnose.clean_env).
 * @typedef {{
 *   secure_context: boolean, origin: string, user_agent: string, browser: string,
 *   media_devices: boolean, permission: string, devices: {id: string, label: string}[],
 *   context_rate: number | null, context_state: string | null, policy_allows: boolean | null,
 *   in_frame: boolean,
 * }} Env
 */

/**
 * One chunk's header; the chunk's samples go as its one buffer (wire.decode_chunk).
 * @typedef {{
 *   type: "chunk", view: string, seq: number, t: number, sample_rate: number,
 *   dtype: "float32", n: number, final: boolean,
 * }} ChunkHeader
 */

/**
 * Page -> kernel (Transcriber._dispatch). `view` names the page a take belongs to.
 * @typedef {ChunkHeader
 *   | { type: "hello", view: string }
 *   | ({ type: "env" } & Env)
 *   | { type: "start", view: string, t: number, device_rate: number, device_label: string, device_id: string }
 *   | { type: "error", code: string, name: string, message: string }
 *   | { type: "self-test-result", view: string, failed: string, message: string }
 *   | { type: "self-test-result", view: string, sample_rate: number, n: number, dtype: "float32" }
 *   | { type: "self-test", view: string, seconds: number }
 *   | { type: "segment-audio", view: string, id: number }
 *   | { type: "segment-audio-received", view: string }
 *   | { type: "apply-hint" }} PageMessage
 */

/**
 * Kernel -> page. A `segment-audio` answer carries one int16 buffer unless it has an `error`;
 * the page that asked says `segment-audio-received` (one answer per page is in flight).
 * `self-test` with a view is for that page (its Test button), with null for any page.
 * @typedef {{ type: "stop" }
 *   | { type: "self-test", view: string | null, seconds: number }
 *   | { type: "started", view: string | null }
 *   | ({ type: "refused", view: string | null } & Problem)
 *   | { type: "segment", segment: Segment }
 *   | { type: "transcript", view: string | null, segments: Segment[] }
 *   | { type: "segment-audio", view: string | null, id: number, error?: string, sample_rate?: number }} KernelMessage
 */

/**
 * The Transcriber's synced traits that the page reads or writes.
 * @typedef {{
 *   status: string,
 *   error: Problem,
 *   recording: boolean,
 *   device_id: string,
 *   stats: Stats,
 *   model_state: "none" | "loading" | "ready" | "error",
 *   model_info: ModelInfo,
 *   partial: string,
 *   self_test_result: SelfTestResult,
 *   vad: string,
 *   energy_threshold_db: number,
 * }} TranscriberModel
 */

/**
 * session.AudioIn.stats(): counts of what arrived and what was refused.
 * @typedef {{
 *   seconds?: number, dropped_seconds?: number, lost?: number, duplicates?: number,
 *   rejected?: number, rejected_by?: Record<string, number>,
 * }} Stats
 */

/** @typedef {Problem & { name?: string, device?: string, progress?: number, stalled?: boolean }} ModelInfo */

/** @typedef {Problem & { ok?: boolean, peak_db?: number, rms_db?: number }} SelfTestResult */

// --- VadExplorer (explorer.py) --------------------------------------------------------------

/**
 * A speech region, in seconds.
 * @typedef {{ start: number, end: number, duration: number }} Region
 */

/**
 * VAD knob values by name (_constants.KNOBS); speech_threshold null: the backend's own.
 * @typedef {Record<string, number | null>} KnobValues
 */

/**
 * One VAD knob as the kernel describes it (vad.knob_table(): _constants.KNOBS); `own`: each
 * backend's own value, which null stands for (speech_threshold).
 * @typedef {{
 *   label: string, type: "int" | "float", min: number, max: number, step: number,
 *   default: number | null, unit: string, doc: string, own?: Record<string, number | null>,
 * }} Knob
 */

/**
 * The VadExplorer's synced traits. `selected`: the region last played (`compare`: of setup B).
 * @typedef {{
 *   vad: string, params: KnobValues, compare_vad: string, compare_params: KnobValues,
 *   regions: Region[], compare_regions: Region[], agreement: number | null,
 *   selected: (Region & { index: number, compare?: boolean }) | null,
 *   duration: number, status: string, view: { start: number, end: number }, backends: string[],
 *   knobs: Record<string, Knob>,
 * }} ExplorerModel
 */

/**
 * Page -> kernel (VadExplorer._on_message).
 * @typedef {{
 *     type: "set", seq: number, view_id: string, vad: string, params: KnobValues,
 *     compare_vad: string, compare_params: KnobValues,
 *   }
 *   | { type: "zoom", start: number, end: number, bins: number }
 *   | { type: "envelope", tag: "overview" | "view", start: number, end: number, bins: number }
 *   | { type: "play", index: number, compare: boolean }} ExplorerPageMessage
 */

/**
 * Kernel -> page. `envelope` carries one float32 buffer: `bins` minima, `bins` maxima, then
 * `db_count` energy frames (dBFS) from `db_start` every `db_step` seconds; `audio` the
 * region's samples; `segmented` answers a `set` (`ms`: how long the kernel took).
 * @typedef {{
 *     type: "envelope", tag: string, start: number, end: number, bins: number,
 *     db_start: number, db_step: number, db_count: number,
 *   }
 *   | { type: "audio", index: number, compare: boolean, sample_rate: number, start: number }
 *   | { type: "segmented", seq: number, view_id: string, ms: number }} ExplorerKernelMessage
 */

export {};
