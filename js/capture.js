// Microphone plumbing: getUserMedia -> AudioContext -> "fw-capture" worklet, error mapping,
// and the environment report the kernel uses for diagnostics.

/* global WORKLET_SOURCE */ // the bundled worklet.js as text, supplied by js/build.mjs

/** @import { Env, WorkletCommand, WorkletMessage } from "./protocol.js" */

const FINAL_TIMEOUT_MS = 1000;  // a suspended context never answers the flush
const RESUME_TIMEOUT_MS = 1000; // resume() stays pending while autoplay policy blocks it

/** A failed capture; `code` is one of the kernel's capture error codes (diagnose.py). */
export class CaptureError extends Error {
  /** @param {string} code @param {string} message @param {string} name */
  constructor(code, message, name = "") {
    super(message);
    this.code = code;
    this.name = name;
  }
}

/** @type {Record<string, string>} */
const CODES = {
  NotAllowedError: "permission-denied",
  SecurityError: "permission-denied",
  NotFoundError: "no-device",
  NotReadableError: "device-busy",
  OverconstrainedError: "overconstrained",
};

/** @param {any} err  whatever getUserMedia or the audio graph threw */
function toCaptureError(err) {
  if (err instanceof CaptureError) return err;
  const name = err?.name ?? "";
  // OverconstrainedError often has an empty message but names the failing constraint.
  const message = err?.message || (err?.constraint ? `constraint "${err.constraint}" cannot be satisfied` : String(err));
  let code = CODES[name] ?? "capture-failed";
  if (code === "permission-denied" && /permissions? policy|feature policy|not allowed in this document/i.test(message)) {
    code = "blocked-by-policy";
  } else if (code === "permission-denied" && /by system|system permission|operating system/i.test(message)) {
    code = "os-blocked";  // Chrome on macOS: "Permission denied by system"
  }
  return new CaptureError(code, message, name);
}

/**
 * Does this document's permissions policy let it use the microphone? true/false, or null when the
 * browser cannot tell (Firefox, Safari: no document.permissionsPolicy / featurePolicy).
 * An <iframe> without allow="microphone" (cross-origin), or one that says allow="microphone 'none'",
 * and VS Code's notebook webviews answer false.
 */
export function policyAllowsMicrophone() {
  const policy = document.permissionsPolicy ?? document.featurePolicy;
  try {
    return typeof policy?.allowsFeature === "function" ? Boolean(policy.allowsFeature("microphone")) : null;
  } catch {
    return null;
  }
}

/**
 * NotAllowedError while the site's permission reads "granted": the OS withholds the device
 * (macOS privacy settings), not the user.
 * @param {CaptureError} err
 */
async function refine(err) {
  if (err.code === "permission-denied" && (await micPermission()) === "granted") {
    return new CaptureError("os-blocked", `${err.message} (the site's permission is "granted")`, err.name);
  }
  return err;
}

/**
 * @typedef {{ samples: Float32Array<ArrayBuffer>, final: boolean, t: number }} Chunk  16 kHz samples; t: capture time (epoch ms)
 * @typedef {{
 *   context: AudioContext, rate: number, deviceId: string, deviceLabel: string, stop: () => Promise<void>,
 * }} Capture
 */

const now = () => performance.timeOrigin + performance.now();
const sleep = (/** @type {number} */ ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Start capturing. Must be called from a user gesture (click): the AudioContext is created
 * before the first await so that autoplay policies let it run.
 * onChunk({samples, final, t}) gets 16 kHz float32 chunks; onLevel(db) ~20 times a second;
 * onEnded() when the device stops delivering (unplugged, revoked).
 * Resolves to {context, rate, deviceId, deviceLabel, stop()}; rejects with a CaptureError.
 * @param {{
 *   deviceId?: string, onChunk: (chunk: Chunk) => void, onLevel?: (db: number) => void, onEnded?: () => void,
 * }} options
 * @returns {Promise<Capture>}
 */
export async function startCapture({ deviceId = "", onChunk, onLevel, onEnded }) {
  if (!window.isSecureContext) {
    throw new CaptureError("insecure-context", `origin ${location.origin}: window.isSecureContext is false`);
  }
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new CaptureError("no-media-devices", "navigator.mediaDevices.getUserMedia is undefined");
  }
  if (policyAllowsMicrophone() === false) {
    throw new CaptureError("blocked-by-policy", 'document.permissionsPolicy.allowsFeature("microphone") is false');
  }

  // Default rate = the audio device's own rate; forcing 16 kHz breaks Firefox's MediaStreamSource.
  const context = new AudioContext();
  const resumed = context.resume().catch(() => {});  // rejects if we close the context below
  /** @type {MediaStream | undefined} */
  let stream;
  /** @type {MediaStreamAudioSourceNode} */
  let source;
  /** @type {AudioWorkletNode} */
  let node;
  /** @type {MediaStreamTrack} */
  let track;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: {
        deviceId: deviceId ? { exact: deviceId } : undefined,
        echoCancellation: false,
        noiseSuppression: false,
        autoGainControl: false,
        channelCount: { ideal: 1 },
      },
    });
    const url = URL.createObjectURL(new Blob([WORKLET_SOURCE], { type: "text/javascript" }));
    try {
      await context.audioWorklet.addModule(url);
    } finally {
      URL.revokeObjectURL(url);
    }
    await Promise.race([resumed, sleep(RESUME_TIMEOUT_MS)]);
    if (context.state !== "running") {
      throw new CaptureError("context-suspended", `The AudioContext stayed "${context.state}" after resume().`);
    }
    [track] = stream.getAudioTracks();
    source = context.createMediaStreamSource(stream);
    node = new AudioWorkletNode(context, "fw-capture", { numberOfInputs: 1, numberOfOutputs: 1 });
  } catch (err) {
    for (const t of stream?.getTracks() ?? []) t.stop();
    context.close().catch(() => {});
    throw await refine(toCaptureError(err));
  }

  /** @type {(delivered: boolean) => void} */
  let finished = () => {};  // resolves gotFinal when the final chunk has been delivered
  /** @type {Promise<boolean>} */
  const gotFinal = new Promise((resolve) => (finished = resolve));
  node.port.onmessage = (/** @type {MessageEvent<WorkletMessage>} */ { data }) => {
    if (data.type === "level") onLevel?.(data.db);
    if (data.type === "chunk") {
      if (data.final) finished(true);
      onChunk({ samples: data.samples, final: data.final, t: now() });
    }
  };
  track.addEventListener("ended", () => onEnded?.());
  source.connect(node);
  node.connect(context.destination);  // silent (the processor writes no output) but keeps it pulled

  let stopping = null;
  const stop = () =>
    (stopping ??= (async () => {
      node.port.postMessage(/** @satisfies {WorkletCommand} */ ({ type: "flush" }));
      const delivered = await Promise.race([gotFinal, sleep(FINAL_TIMEOUT_MS)]);
      node.port.onmessage = null;
      for (const t of stream.getTracks()) t.stop();
      source.disconnect();
      node.disconnect();
      await context.close().catch(() => {});
      // The kernel must always see a final chunk, even when the worklet could not answer.
      if (!delivered) onChunk({ samples: new Float32Array(0), final: true, t: now() });
    })());

  const settings = track.getSettings?.() ?? {};
  return { context, rate: context.sampleRate, deviceId: settings.deviceId ?? "", deviceLabel: track.label, stop };
}

/** @param {string} ua */
export function detectBrowser(ua) {
  if (/Edg(e|A|iOS)?\//.test(ua)) return "edge";
  if (/(Firefox|FxiOS)\//.test(ua)) return "firefox";
  if (/(Chrome|Chromium|CriOS)\//.test(ua)) return "chrome";
  if (/Safari\//.test(ua)) return "safari";
  return "other";
}

async function micPermission() {
  try {
    return (await navigator.permissions.query({ name: "microphone" })).state;
  } catch {
    return "unknown";  // Permissions API missing, or "microphone" not a known name (older Firefox)
  }
}

/** Audio inputs as [{id, label}]; ids and labels stay empty until permission is granted. */
export async function listInputs() {
  try {
    const devices = await navigator.mediaDevices.enumerateDevices();
    return devices.filter((d) => d.kind === "audioinput").map((d) => ({ id: d.deviceId, label: d.label }));
  } catch {
    return [];
  }
}

/**
 * The `env` message body (see the contract). `context` is the running AudioContext or null.
 * @param {AudioContext | null} [context]
 * @returns {Promise<Env>}
 */
export async function gatherEnv(context = null) {
  const mediaDevices = Boolean(navigator.mediaDevices);
  return {
    secure_context: Boolean(window.isSecureContext),
    origin: location.origin,
    user_agent: navigator.userAgent,
    browser: detectBrowser(navigator.userAgent),
    media_devices: mediaDevices,
    permission: await micPermission(),
    devices: mediaDevices ? await listInputs() : [],
    context_rate: context?.sampleRate ?? null,
    context_state: context?.state ?? null,
    policy_allows: policyAllowsMicrophone(),
    in_frame: window.top !== window,
  };
}

/**
 * Call onChange when devices or the microphone permission change; returns an unsubscribe function.
 * @param {() => void} onChange
 */
export function watchEnv(onChange) {
  const mediaDevices = navigator.mediaDevices;
  mediaDevices?.addEventListener("devicechange", onChange);
  /** @type {PermissionStatus | null} */
  let status = null;
  let closed = false;
  (async () => {
    try {
      status = await navigator.permissions.query({ name: "microphone" });
      if (closed) return;
      status.addEventListener("change", onChange);
    } catch {
      // no Permissions API for the microphone: devicechange and explicit refreshes remain
    }
  })();
  return () => {
    closed = true;
    mediaDevices?.removeEventListener("devicechange", onChange);
    status?.removeEventListener("change", onChange);
  };
}

/**
 * Play 16 kHz (or any rate) mono float32 samples; resolves when done (or at once if it cannot).
 * @param {Float32Array<ArrayBuffer>} samples
 * @param {number} [rate]
 */
export async function playSamples(samples, rate = 16000) {
  if (!samples.length) return;
  const context = new AudioContext();
  try {
    await Promise.race([context.resume(), sleep(RESUME_TIMEOUT_MS)]);
    const buffer = context.createBuffer(1, samples.length, rate);
    buffer.copyToChannel(samples, 0);
    const source = context.createBufferSource();
    source.buffer = buffer;
    source.connect(context.destination);
    const ended = new Promise((resolve) => (source.onended = resolve));
    source.start();
    await Promise.race([ended, sleep((samples.length / rate) * 1000 + 1000)]);
  } finally {
    context.close().catch(() => {});
  }
}
