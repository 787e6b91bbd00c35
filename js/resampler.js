// Pure DSP for the capture worklet: mix to mono, resample to 16 kHz, cut into chunks.
// No browser globals, so node's test runner exercises exactly the code the worklet runs.

const CUTOFF_HZ = 7200;      // -6 dB point, below the 8 kHz output Nyquist
const TRANSITION_HZ = 1600;  // passband to ~6.4 kHz, stopband from ~8 kHz
const STOPBAND_DB = 70;      // Kaiser design target
const PHASES = 256;          // kernel table resolution per input sample (linear interpolation between)

/**
 * Zeroth-order modified Bessel function of the first kind (Kaiser window).
 * @param {number} x
 */
function besselI0(x) {
  let sum = 1, term = 1;
  for (let k = 1; term > 1e-12 * sum; k++) {
    term *= (x / (2 * k)) ** 2;
    sum += term;
  }
  return sum;
}

/** @param {number} a @param {number} b */
function gcd(a, b) {
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * Streaming resampler with a Kaiser-windowed sinc low-pass.
 * Output sample j sits exactly at input time j * inRate / outRate (no delay): the
 * filter looks `halfWidth` input samples ahead, which it holds back between calls.
 * Positions are tracked as exact integer fractions, so any split of the input
 * into blocks yields bit-identical output.
 */
export class Resampler {
  /** @param {number} inRate @param {number} outRate */
  constructor(inRate, outRate = 16000) {
    inRate = Math.round(inRate);
    const g = gcd(inRate, outRate);
    this.num = inRate / g;   // input samples advanced per output sample = num / den
    this.den = outRate / g;

    // Anti-aliasing band relative to the lower of the two Nyquist frequencies.
    const nyquist = Math.min(inRate, outRate) / 2;
    const cutoff = Math.min(CUTOFF_HZ, 0.9 * nyquist) / inRate;           // cycles per input sample
    const transition = Math.min(TRANSITION_HZ, 2 * (nyquist - cutoff * inRate)) / inRate;
    const beta = 0.1102 * (STOPBAND_DB - 8.7);
    const taps = Math.ceil((STOPBAND_DB - 7.95) / (2.285 * 2 * Math.PI * transition)) + 1;
    const M = Math.ceil(taps / 2);
    this.halfWidth = M;
    this.taps = 2 * M;

    // table[ph * taps + j] = h(ph / PHASES + M - 1 - j): the weights of input samples
    // i0-M+1 .. i0+M for an output at i0 + ph/PHASES. One extra phase for interpolation.
    this.table = new Float32Array((PHASES + 1) * this.taps);
    const i0beta = besselI0(beta);
    for (let ph = 0; ph <= PHASES; ph++) {
      for (let j = 0; j < this.taps; j++) {
        const d = ph / PHASES + M - 1 - j;
        const r = d / M;
        if (Math.abs(r) > 1) continue;
        const x = 2 * cutoff * d;
        const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
        const window = besselI0(beta * Math.sqrt(1 - r * r)) / i0beta;
        this.table[ph * this.taps + j] = 2 * cutoff * sinc * window;
      }
    }

    this.buf = new Float32Array(this.taps + 4096);
    // Where the input stands; reset() sets them.
    this.len = 0;   // samples held in buf
    this.pos = 0;   // integer part of the next output position in buf
    this.frac = 0;  // fractional part, in units of 1/den
    this.reset();
  }

  /** Forget all input; the next sample is time 0 again. */
  reset() {
    // Zeros before the first sample stand for the silence before capture started.
    this.buf.fill(0);
    this.len = this.halfWidth;
    this.pos = this.halfWidth;
    this.frac = 0;
  }

  /**
   * Largest number of samples process() can write for `inputLength` input samples.
   * @param {number} inputLength
   */
  maxOutput(inputLength) {
    return Math.ceil(((inputLength + this.halfWidth) * this.den) / this.num) + 1;
  }

  /**
   * Resample `input` into `output` (length >= maxOutput(input.length)); returns the count written.
   * @param {Float32Array} input
   * @param {Float32Array} output
   */
  process(input, output) {
    let n = 0;
    for (let i = 0; i < input.length; ) {
      const take = Math.min(input.length - i, this.buf.length - this.len);
      for (let k = 0; k < take; k++) this.buf[this.len + k] = input[i + k];
      this.len += take;
      i += take;
      n = this._emit(output, n, this.len - this.halfWidth);
    }
    return n;
  }

  /**
   * Emit the outputs still held back by the look-ahead (padding with silence), then reset.
   * @param {Float32Array} output
   */
  flush(output) {
    const end = this.len;
    this.buf.fill(0, this.len, this.len + this.halfWidth);
    this.len += this.halfWidth;
    const n = this._emit(output, 0, end);
    this.reset();
    return n;
  }

  /**
   * Write every output whose position lies before `limit` (in buf indices), then drop
   * the input no later output can reach.
   * @param {Float32Array} output
   * @param {number} n
   * @param {number} limit
   */
  _emit(output, n, limit) {
    const { buf, table, taps, num, den } = this;
    const step = Math.floor(num / den), stepFrac = num % den;
    let pos = this.pos, frac = this.frac;
    while (pos < limit) {
      const p = (frac * PHASES) / den;
      const ph = Math.floor(p);
      const a = ph * taps, b = a + taps, base = pos - this.halfWidth + 1;
      let s0 = 0, s1 = 0;
      for (let j = 0; j < taps; j++) {
        const x = buf[base + j];
        s0 += x * table[a + j];
        s1 += x * table[b + j];
      }
      output[n++] = s0 + (p - ph) * (s1 - s0);
      pos += step;
      frac += stepFrac;
      if (frac >= den) { frac -= den; pos++; }
    }
    const drop = Math.min(pos - this.halfWidth + 1, this.len);
    if (drop > 0) {
      buf.copyWithin(0, drop, this.len);
      this.len -= drop;
      pos -= drop;
    }
    this.pos = pos;
    this.frac = frac;
    return n;
  }
}

/**
 * Average `channels` (arrays of equal length) into `out`; returns the frame count.
 * @param {Float32Array[]} channels
 * @param {Float32Array} out
 */
export function mixToMono(channels, out) {
  const frames = channels[0].length;
  const count = channels.length;
  if (count === 1) {
    out.set(channels[0]);
    return frames;
  }
  for (let i = 0; i < frames; i++) {
    let sum = 0;
    for (let c = 0; c < count; c++) sum += channels[c][i];
    out[i] = sum / count;
  }
  return frames;
}

/** Groups samples into fixed-size chunks; each full chunk is a fresh array (it gets transferred). */
export class Chunker {
  /** @param {number} size @param {(chunk: Float32Array<ArrayBuffer>) => void} onChunk */
  constructor(size, onChunk) {
    this.size = size;
    this.onChunk = onChunk;
    this.chunk = new Float32Array(size);
    this.fill = 0;
  }

  /** @param {Float32Array} samples @param {number} count */
  push(samples, count = samples.length) {
    for (let i = 0; i < count; i++) {
      this.chunk[this.fill++] = samples[i];
      if (this.fill === this.size) {
        this.onChunk(this.chunk);
        this.chunk = new Float32Array(this.size);
        this.fill = 0;
      }
    }
  }

  /** The partial chunk (possibly empty); the chunker starts over. */
  flush() {
    const rest = this.chunk.slice(0, this.fill);
    this.fill = 0;
    return rest;
  }
}
