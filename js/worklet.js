// AudioWorkletProcessor "fw-capture": device-rate input -> 16 kHz mono float32 chunks
// posted to the main thread. Bundled as text and loaded from a Blob URL (see capture.js).
import { Chunker, Resampler, mixToMono } from "./resampler.js";

/** @import { WorkletCommand, WorkletMessage } from "./protocol.js" */

const OUT_RATE = 16000;
const CHUNK = 1600;                     // 100 ms
const LEVEL_WINDOW = OUT_RATE / 20;     // 50 ms -> 20 level messages per second

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.resampler = new Resampler(sampleRate, OUT_RATE);
    this.chunker = new Chunker(CHUNK, (samples) => this.post(samples, false));
    this.mono = new Float32Array(128);
    this.out = new Float32Array(this.resampler.maxOutput(128));
    this.sumSquares = 0;
    this.levelCount = 0;
    this.stopped = false;
    this.port.onmessage = (/** @type {MessageEvent<WorkletCommand>} */ event) => {
      if (event.data?.type === "flush") this.flush();
    };
  }

  /**
   * @param {Float32Array<ArrayBuffer>} samples
   * @param {boolean} final
   */
  post(samples, final) {
    this.port.postMessage(/** @satisfies {WorkletMessage} */ ({ type: "chunk", samples, final }), [samples.buffer]);
  }

  /** @param {Float32Array[][]} inputs */
  process(inputs) {
    if (this.stopped) return false;  // lets the node be collected
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;  // source not connected (yet)
    const frames = channels[0].length;
    if (this.mono.length < frames) {  // render quantum is 128 today; stay correct if it grows
      this.mono = new Float32Array(frames);
      this.out = new Float32Array(this.resampler.maxOutput(frames));
    }
    mixToMono(channels, this.mono);
    const n = this.resampler.process(frames === this.mono.length ? this.mono : this.mono.subarray(0, frames), this.out);
    this.meter(n);
    this.chunker.push(this.out, n);
    return true;
  }

  /**
   * RMS in dBFS of the 16 kHz signal (what the kernel's VAD sees), every 50 ms.
   * @param {number} n
   */
  meter(n) {
    for (let i = 0; i < n; i++) this.sumSquares += this.out[i] * this.out[i];
    this.levelCount += n;
    if (this.levelCount >= LEVEL_WINDOW) {
      const db = 10 * Math.log10(this.sumSquares / this.levelCount + 1e-12);
      this.port.postMessage(/** @satisfies {WorkletMessage} */ ({ type: "level", db }));
      this.sumSquares = 0;
      this.levelCount = 0;
    }
  }

  flush() {
    if (this.stopped) return;
    this.chunker.push(this.out, this.resampler.flush(this.out));
    this.post(this.chunker.flush(), true);
    this.stopped = true;
  }
}

registerProcessor("fw-capture", CaptureProcessor);
