// Tests the real DSP that runs in the capture worklet: node --test js/test/
import assert from "node:assert/strict";
import { test } from "node:test";
import { Chunker, Resampler, mixToMono } from "../resampler.js";

const OUT = 16000;

/** @param {number} freq @param {number} rate @param {number} seconds */
function tone(freq, rate, seconds, amplitude = 0.5) {
  const x = new Float32Array(Math.round(rate * seconds));
  for (let i = 0; i < x.length; i++) x[i] = amplitude * Math.sin((2 * Math.PI * freq * i) / rate);
  return x;
}

/**
 * Resample `input` fed in blocks of the given sizes (cycled), plus the final flush.
 * @param {Float32Array} input @param {number} rate @param {number[]} blockSizes
 */
function resample(input, rate, blockSizes = [input.length]) {
  const r = new Resampler(rate, OUT);
  const parts = [];
  for (let i = 0, b = 0; i < input.length; b++) {
    const block = input.subarray(i, i + blockSizes[b % blockSizes.length]);
    const out = new Float32Array(r.maxOutput(block.length));
    parts.push(out.slice(0, r.process(block, out)));
    i += block.length;
  }
  const tail = new Float32Array(r.maxOutput(0));
  parts.push(tail.slice(0, r.flush(tail)));
  return Float32Array.from(parts.flatMap((p) => Array.from(p)));
}

/**
 * Frequency from interpolated upward zero crossings.
 * @param {Float32Array} x @param {number} rate
 */
function frequency(x, rate) {
  const crossings = [];
  for (let i = 1; i < x.length; i++) {
    if (x[i - 1] < 0 && x[i] >= 0) crossings.push(i - 1 + x[i - 1] / (x[i - 1] - x[i]));
  }
  return ((crossings.length - 1) * rate) / (crossings[crossings.length - 1] - crossings[0]);
}

/** @param {Float32Array} x */
function rms(x) {
  let sum = 0;
  for (const v of x) sum += v * v;
  return Math.sqrt(sum / x.length);
}

const settled = (/** @type {Float32Array} */ y) => y.subarray(400, y.length - 400);  // skip the filter's start and end
const gainDb = (/** @type {Float32Array} */ y, /** @type {Float32Array} */ x) => 20 * Math.log10(rms(settled(y)) / rms(x));

for (const rate of [8000, 22050, 44100, 48000, 96000]) {
  test(`440 Hz at ${rate} Hz stays 440 Hz at 16 kHz`, () => {
    const y = resample(tone(440, rate, 2), rate);
    const f = frequency(settled(y), OUT);
    assert.ok(Math.abs(f - 440) < 1, `measured ${f} Hz`);
  });
}

for (const rate of [44100, 48000]) {
  test(`10 kHz at ${rate} Hz is attenuated by at least 40 dB`, () => {
    const x = tone(10000, rate, 1);
    const db = gainDb(resample(x, rate), x);
    console.log(`attenuation of 10 kHz, ${rate} -> 16000 Hz: ${(-db).toFixed(1)} dB`);
    assert.ok(db <= -40, `only ${-db} dB`);
  });

  test(`speech band passes ${rate} -> 16000 Hz nearly unchanged`, () => {
    for (const f of [100, 1000, 4000, 6000]) {
      const x = tone(f, rate, 1);
      const db = gainDb(resample(x, rate), x);
      console.log(`gain at ${f} Hz, ${rate} -> 16000 Hz: ${db.toFixed(3)} dB`);
      assert.ok(Math.abs(db) < 0.1, `${f} Hz: ${db} dB`);
    }
  });
}

test("output has no delay and the expected length", () => {
  const rate = 44100;
  const x = tone(440, rate, 1);
  const y = resample(x, rate);
  assert.equal(y.length, Math.ceil((x.length * OUT) / rate));
  const ideal = tone(440, OUT, 1);
  let worst = 0;
  for (let i = 200; i < y.length - 200; i++) worst = Math.max(worst, Math.abs(y[i] - ideal[i]));
  assert.ok(worst < 1e-3, `max deviation from the ideal 16 kHz tone: ${worst}`);
});

for (const rate of [44100, 48000]) {
  test(`any block split gives the same output as one block (${rate} Hz)`, () => {
    const x = tone(440, rate, 1.5);
    for (let i = 0; i < x.length; i++) x[i] += 0.2 * Math.sin(i * 0.37) * Math.sin(i * 0.0011);
    const whole = resample(x, rate);
    for (const sizes of [[128], [1, 7, 333, 128, 5000, 64, 17]]) {
      const split = resample(x, rate, sizes);
      assert.equal(split.length, whole.length);
      let diff = 0;
      for (let i = 0; i < whole.length; i++) diff = Math.max(diff, Math.abs(split[i] - whole[i]));
      assert.ok(diff < 1e-6, `blocks ${sizes}: max abs diff ${diff}`);
    }
  });
}

test("chunker emits 1600-sample chunks and flushes the remainder", () => {
  /** @type {Float32Array[]} */
  const chunks = [];
  const chunker = new Chunker(1600, (c) => chunks.push(c));
  const x = Float32Array.from({ length: 5000 }, (_, i) => i);
  for (let i = 0; i < x.length; i += 333) chunker.push(x.subarray(i, i + 333));
  assert.deepEqual(chunks.map((c) => c.length), [1600, 1600, 1600]);
  assert.ok(chunks.every((c, k) => c[0] === k * 1600 && c[1599] === k * 1600 + 1599));
  assert.notEqual(chunks[0].buffer, chunks[1].buffer, "each chunk owns its buffer (it gets transferred)");
  const rest = chunker.flush();
  assert.equal(rest.length, 200);
  assert.equal(rest[0], 4800);
  assert.equal(chunker.flush().length, 0);
});

test("chunker push honours the count argument", () => {
  /** @type {number[][]} */
  const chunks = [];
  const chunker = new Chunker(4, (c) => chunks.push(Array.from(c)));
  chunker.push(Float32Array.of(1, 2, 3, 9, 9), 3);
  chunker.push(Float32Array.of(4, 5), 2);
  assert.deepEqual(chunks, [[1, 2, 3, 4]]);
  assert.deepEqual(Array.from(chunker.flush()), [5]);
});

test("stereo and more channels mix to mono by averaging", () => {
  const left = Float32Array.of(1, 0, -1, 0.5);
  const right = Float32Array.of(0, 1, -1, -0.5);
  const out = new Float32Array(4);
  assert.equal(mixToMono([left, right], out), 4);
  assert.deepEqual(Array.from(out), [0.5, 0.5, -1, 0]);
  mixToMono([left, right, Float32Array.of(2, 2, 2, 2)], out);
  assert.deepEqual(Array.from(out), [1, 1, 0, 2 / 3].map(Math.fround));
  mixToMono([left], out);
  assert.deepEqual(out, left);
});
