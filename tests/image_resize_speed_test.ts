/**
 * The specialised resize of lib/io/image.ts against the implementation it replaced, kept here as
 * the reference (also timed by bench/image_resize.ts): byte for byte on 8-bit input, value for
 * value on float input, at awkward sizes.
 * @module
 */
import { assert, assertEquals } from "./assert.ts";
import { resizeBilinear, type RgbImage } from "../lib/io/image.ts";
import { Prng } from "../lib/spectral/prng.ts";

/** The input samples start.. of one output sample, with float and fixed-point weights. */
interface Tap {
  start: number;
  w: Float64Array;
  fixed: Int32Array;
}

const ONE = 2 ** 22, HALF = 2 ** 21;

/** The resize as it was before the 8-bit path was specialised (input checks left out). */
export function referenceResizeBilinear(image: RgbImage, width: number, height: number): RgbImage {
  let data: RgbImage["data"] = image.data.slice();
  if (width !== image.width) {
    const taps = weights(image.width, width), out = like(data, image.height * width * 3);
    for (let y = 0; y < image.height; y++) {
      for (let c = 0; c < 3; c++) {
        filterLine(data, y * image.width * 3 + c, 3, out, y * width * 3 + c, 3, taps);
      }
    }
    data = out;
  }
  if (height !== image.height) {
    const taps = weights(image.height, height), out = like(data, height * width * 3);
    for (let i = 0; i < width * 3; i++) filterLine(data, i, width * 3, out, i, width * 3, taps);
    data = out;
  }
  return { width, height, data };
}

function like(data: RgbImage["data"], length: number): Float32Array | Uint8Array {
  return data instanceof Float32Array ? new Float32Array(length) : new Uint8Array(length);
}

function filterLine(
  src: RgbImage["data"],
  inBase: number,
  inStep: number,
  dst: Float32Array | Uint8Array,
  outBase: number,
  outStep: number,
  taps: Tap[],
): void {
  const float = dst instanceof Float32Array;
  for (let o = 0; o < taps.length; o++) {
    const { start, w, fixed } = taps[o];
    let s = 0;
    if (float) {
      for (let k = 0; k < w.length; k++) s += w[k] * src[inBase + (start + k) * inStep];
      dst[outBase + o * outStep] = s;
    } else {
      s = HALF;
      for (let k = 0; k < fixed.length; k++) s += fixed[k] * src[inBase + (start + k) * inStep];
      dst[outBase + o * outStep] = Math.min(255, Math.max(0, Math.floor(s / ONE)));
    }
  }
}

function weights(inSize: number, outSize: number): Tap[] {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale;
  const taps: Tap[] = [];
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const start = Math.max(Math.trunc(center - support + 0.5), 0);
    const end = Math.min(Math.trunc(center + support + 0.5), inSize);
    const w = new Float64Array(end - start);
    let sum = 0;
    for (let i = start; i < end; i++) {
      const t = Math.abs((i - center + 0.5) / filterScale);
      w[i - start] = t < 1 ? 1 - t : 0;
      sum += w[i - start];
    }
    for (let k = 0; k < w.length; k++) w[k] /= sum;
    const fixed = Int32Array.from(w, (x) => Math.trunc(x * ONE + (x < 0 ? -0.5 : 0.5)));
    taps.push({ start, w, fixed });
  }
  return taps;
}

/** [width, height, outWidth, outHeight]: degenerate, prime, mixed-direction and extreme shapes. */
const SIZES: [number, number, number, number][] = [
  [1, 1, 1, 1],
  [1, 1, 224, 224],
  [1, 1, 3, 1],
  [1, 9, 1, 4],
  [9, 1, 4, 1],
  [1, 17, 5, 224],
  [17, 1, 224, 5],
  [2, 2, 1, 1],
  [7, 13, 11, 5],
  [13, 7, 5, 11],
  [31, 37, 31, 3],
  [31, 37, 2, 37],
  [97, 89, 224, 224],
  [1000, 3, 224, 224],
  [3, 1000, 224, 224],
  [997, 1, 1, 1],
  [1, 997, 1, 1],
  [32, 32, 224, 224],
  [500, 375, 224, 224],
  [1024, 768, 224, 224],
  [223, 225, 224, 224],
];

/** Random 8-bit pixels, or only 0 and 255 (the extremes, where rounding and clamping show). */
function pixels8(rng: Prng, length: number, extremes: boolean): Uint8Array {
  return Uint8Array.from({ length }, () => extremes ? 255 * rng.below(2) : rng.below(256));
}

/** The index of the first difference, or -1. */
function firstDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return i;
  return -1;
}

function assertSameResize(image: RgbImage, outWidth: number, outHeight: number, what: string): void {
  const expected = referenceResizeBilinear(image, outWidth, outHeight);
  const actual = resizeBilinear(image, outWidth, outHeight);
  const label = `${what} ${image.width}×${image.height} → ${outWidth}×${outHeight}`;
  assertEquals([actual.width, actual.height], [outWidth, outHeight], label);
  assertEquals(actual.data.constructor.name, expected.data.constructor.name, `${label}: array type`);
  const at = firstDifference(actual.data, expected.data);
  assert(at < 0, `${label}: value ${at} is ${actual.data[at]}, the reference gives ${expected.data[at]}`);
}

Deno.test("8-bit resize is byte-identical to the reference implementation", () => {
  const rng = new Prng(11);
  for (const [w, h, ow, oh] of SIZES) {
    for (const extremes of [false, true]) {
      assertSameResize({ width: w, height: h, data: pixels8(rng, w * h * 3, extremes) }, ow, oh, "8-bit");
    }
  }
});

Deno.test("8-bit resize: constant 255 and a Uint8ClampedArray view give what the reference gives", () => {
  const rng = new Prng(12);
  for (const [w, h, ow, oh] of SIZES) {
    assertSameResize({ width: w, height: h, data: new Uint8Array(w * h * 3).fill(255) }, ow, oh, "all 255");
    // a view into a larger buffer, at an odd offset
    const clamped = Uint8ClampedArray.from(pixels8(rng, w * h * 3 + 8, false)).subarray(5, 5 + w * h * 3);
    assertSameResize({ width: w, height: h, data: clamped }, ow, oh, "Uint8ClampedArray");
  }
});

Deno.test("float resize is value-identical to the reference implementation", () => {
  const rng = new Prng(13);
  for (const [w, h, ow, oh] of SIZES) {
    const data = Float32Array.from({ length: w * h * 3 }, () => 255 * rng.uniform());
    assertSameResize({ width: w, height: h, data }, ow, oh, "float");
  }
});
