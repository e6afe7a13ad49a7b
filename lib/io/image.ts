/**
 * ViT image preprocessing on decoded RGB pixels, as transformers' ViT image processor does it:
 * resize (bilinear) to the model's size, rescale by 1/255, normalise with the mean and std of
 * `preprocessor_config.json` (0.5 / 0.5 when there is none), channels first.
 *
 * The resize is the antialiased bilinear filter of Pillow and torchvision (a triangle filter
 * whose support widens by the downscale factor, pixel centres at +0.5). On 8-bit input it
 * follows Pillow's fixed-point arithmetic and gives Pillow's `resize(size, BILINEAR)` bit for
 * bit; float input is filtered in float64.
 * @module
 */
import { join } from "node:path";
import type { VitConfig } from "./hf_config.ts";

/** Interleaved RGB pixels, row-major: data[(y · width + x) · 3 + c]. */
export interface RgbImage {
  /** Pixels per row. */
  width: number;
  /** Rows. */
  height: number;
  /** 8-bit values 0..255, or floats on the same 0..255 scale. */
  data: Uint8Array | Uint8ClampedArray | Float32Array;
}

/** The preprocessing steps and constants. */
export interface ImageProcessorConfig {
  /** Output height when resizing. */
  height: number;
  /** Output width when resizing. */
  width: number;
  /** Resize to width × height (do_resize). */
  doResize: boolean;
  /** Multiply by rescaleFactor (do_rescale). */
  doRescale: boolean;
  /** The rescale factor, 1/255 by default (rescale_factor). */
  rescaleFactor: number;
  /** Subtract imageMean and divide by imageStd (do_normalize). */
  doNormalize: boolean;
  /** Mean subtracted per channel (R, G, B), after rescaling (image_mean). */
  imageMean: [number, number, number];
  /** Divisor per channel (R, G, B), after the mean (image_std). */
  imageStd: [number, number, number];
}

/** A preprocessor_config.json that this module cannot follow, or an image of the wrong size. */
export class ImageError extends Error {
  /** Always "ImageError". */
  override name = "ImageError";
}

/** PIL's code for bilinear resampling, the only one supported. */
const BILINEAR = 2;

/**
 * Preprocessing for a ViT model in `dir`: its preprocessor_config.json when present, else the
 * defaults (resize to the config's image_size, rescale 1/255, mean 0.5, std 0.5).
 */
export async function loadImageProcessorConfig(
  dir: string,
  config: VitConfig,
): Promise<ImageProcessorConfig> {
  const path = join(dir, "preprocessor_config.json");
  let json: unknown = null;
  try {
    json = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    if (e instanceof SyntaxError) throw new ImageError(`${path}: invalid JSON (${e.message})`);
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return parseImageProcessorConfig(json, config, path);
}

/** {@link loadImageProcessorConfig} from parsed JSON (null: defaults); `path` names errors. */
export function parseImageProcessorConfig(
  json: unknown,
  config: VitConfig,
  path: string,
): ImageProcessorConfig {
  const j = (json ?? {}) as Record<string, unknown>;
  const bool = (k: string, d: boolean): boolean => {
    const v = j[k] ?? d;
    if (typeof v !== "boolean") throw new ImageError(`${path}: "${k}" must be true or false, got ${v}`);
    return v;
  };
  const triple = (k: string): [number, number, number] => {
    const v = j[k] ?? [0.5, 0.5, 0.5];
    if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === "number" && Number.isFinite(x))) {
      throw new ImageError(`${path}: "${k}" must be 3 numbers (R, G, B), got ${JSON.stringify(v)}`);
    }
    return v as [number, number, number];
  };
  const resample = j.resample ?? BILINEAR;
  if (resample !== BILINEAR) {
    throw new ImageError(
      `${path}: resample ${JSON.stringify(resample)} is not supported (only ${BILINEAR}, bilinear)`,
    );
  }
  const [height, width] = size(j.size, config.imageSize, path);
  // DeiT's processor crops after resizing (ViT's has no crop): not followed here, so refused
  if (bool("do_center_crop", false)) {
    throw new ImageError(
      `${path}: "do_center_crop": true is not supported (resize then center crop, as DeiT's processor does); ` +
        `expected no center crop, as ViT's image processor does`,
    );
  }
  const rescaleFactor = j.rescale_factor ?? 1 / 255;
  if (typeof rescaleFactor !== "number" || !(rescaleFactor > 0)) {
    throw new ImageError(`${path}: "rescale_factor" must be a positive number, got ${rescaleFactor}`);
  }
  const imageStd = triple("image_std");
  if (imageStd.some((s) => s === 0)) throw new ImageError(`${path}: "image_std" has a zero`);
  return {
    height,
    width,
    doResize: bool("do_resize", true),
    doRescale: bool("do_rescale", true),
    rescaleFactor,
    doNormalize: bool("do_normalize", true),
    imageMean: triple("image_mean"),
    imageStd,
  };
}

function size(v: unknown, imageSize: number, path: string): [number, number] {
  const positive = (n: unknown) => Number.isSafeInteger(n) && (n as number) > 0;
  if (v == null) return [imageSize, imageSize];
  if (positive(v)) return [v as number, v as number];
  const o = v as { height?: unknown; width?: unknown };
  if (typeof o === "object" && positive(o.height) && positive(o.width)) {
    return [o.height as number, o.width as number];
  }
  throw new ImageError(
    `${path}: "size" must be {"height", "width"} or one number, positive integers, got ${JSON.stringify(v)}`,
  );
}

/**
 * One image → pixel values, channels first [3, height, width]. Without resizing, the image
 * must already have the configured size.
 */
export function preprocessImage(image: RgbImage, cfg: ImageProcessorConfig): Float32Array {
  checkImage(image);
  let pixels: ArrayLike<number> = image.data;
  if (cfg.doResize) pixels = resizeBilinear(image, cfg.width, cfg.height).data;
  else if (image.width !== cfg.width || image.height !== cfg.height) {
    throw new ImageError(
      `image is ${image.width}×${image.height}, the model takes ${cfg.width}×${cfg.height} and resizing is off`,
    );
  }
  const plane = cfg.width * cfg.height;
  const out = new Float32Array(3 * plane);
  const scale = cfg.doRescale ? cfg.rescaleFactor : 1;
  for (let c = 0; c < 3; c++) {
    const mean = cfg.doNormalize ? cfg.imageMean[c] : 0, std = cfg.doNormalize ? cfg.imageStd[c] : 1;
    for (let i = 0; i < plane; i++) out[c * plane + i] = (pixels[i * 3 + c] * scale - mean) / std;
  }
  return out;
}

/** A batch of images → pixel values [n, 3, height, width]. */
export function preprocessImages(images: readonly RgbImage[], cfg: ImageProcessorConfig): Float32Array {
  const per = 3 * cfg.width * cfg.height;
  const out = new Float32Array(images.length * per);
  images.forEach((img, i) => out.set(preprocessImage(img, cfg), i * per));
  return out;
}

/**
 * Resize with the antialiased bilinear filter (see the module doc): a horizontal pass, then a
 * vertical one, each skipped when that size does not change. 8-bit input gives 8-bit output
 * computed as Pillow does (22-bit fixed-point weights, rounding to 8 bits after each pass);
 * float input gives float output computed in float64.
 */
export function resizeBilinear(image: RgbImage, width: number, height: number): RgbImage {
  checkImage(image);
  if (!(Number.isInteger(width) && width >= 1 && Number.isInteger(height) && height >= 1)) {
    throw new ImageError(`resize target must be positive integers, got ${width}×${height}`);
  }
  if (width === image.width && height === image.height) return { width, height, data: image.data.slice() };
  const data = image.data instanceof Float32Array
    ? resizeFloat(image.data, image.width, image.height, width, height)
    : resize8(image.data, image.width, image.height, width, height);
  return { width, height, data };
}

/**
 * Each output sample's taps along one axis, in flat tables: output o reads the inputs
 * start[o] .. start[o] + count[o] - 1 with the weights weight[o · stride + k], k < count[o].
 */
interface Taps<W extends Float64Array | Int32Array> {
  start: Int32Array;
  count: Int32Array;
  /** Weights per output in `weight`: the largest count. */
  stride: number;
  weight: W;
}

/** Pillow's fixed point for 8-bit resampling: weights scaled by 2^22, sums rounded. */
const SHIFT = 22, ONE = 1 << SHIFT, HALF = 1 << (SHIFT - 1);

/** Normalised triangle-filter taps of each output sample along one axis. */
function weights(inSize: number, outSize: number): Taps<Float64Array> {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale; // the bilinear (triangle) filter has support 1
  const start = new Int32Array(outSize), count = new Int32Array(outSize);
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    start[o] = Math.max(Math.trunc(center - support + 0.5), 0);
    count[o] = Math.min(Math.trunc(center + support + 0.5), inSize) - start[o];
  }
  const stride = count.reduce((m, n) => Math.max(m, n), 0);
  const weight = new Float64Array(outSize * stride);
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale, w = weight.subarray(o * stride, o * stride + count[o]);
    let sum = 0;
    for (let k = 0; k < w.length; k++) {
      const t = Math.abs((start[o] + k - center + 0.5) / filterScale);
      w[k] = t < 1 ? 1 - t : 0;
      sum += w[k];
    }
    for (let k = 0; k < w.length; k++) w[k] /= sum;
  }
  return { start, count, stride, weight };
}

/**
 * `taps` in Pillow's fixed point, for the 8-bit passes. Their sums are int32: the weights are
 * ≥ 0 (a triangle) and multiply 8-bit values, so a sum is at most HALF + 255 · (an output's
 * weight total), and a total is 2^22 plus at most half a unit per tap of rounding. That stays
 * below 2^31 for fewer than ~8 million taps (a side shrunk ~4 million times), checked here.
 */
function fixedPoint(taps: Taps<Float64Array>): Taps<Int32Array> {
  const weight = Int32Array.from(taps.weight, (x) => Math.trunc(x * ONE + (x < 0 ? -0.5 : 0.5)));
  for (let o = 0; o < taps.count.length; o++) {
    let total = 0;
    for (let k = 0; k < taps.count[o]; k++) total += weight[o * taps.stride + k];
    if (HALF + 255 * total >= 2 ** 31) {
      throw new ImageError(
        `resize: an output pixel averaging ${taps.count[o]} input pixels overflows the 8-bit path's ` +
          `int32 sums; expected fewer than ~8 million (a side shrunk less than ~4 million times)`,
      );
    }
  }
  return { ...taps, weight };
}

/** A fixed-point sum → its 8-bit value (the shift is Math.floor(s / ONE) for 0 ≤ s < 2^31). */
function to8(s: number): number {
  const v = s >> SHIFT;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** 8-bit RGB resized as Pillow does: horizontal pass, then vertical, rounding to 8 bits after each. */
function resize8(
  data: Uint8Array | Uint8ClampedArray,
  inWidth: number,
  inHeight: number,
  width: number,
  height: number,
): Uint8Array {
  // one array type in the loops below
  let pixels = new Uint8Array(data.buffer, data.byteOffset, data.length);
  if (width !== inWidth) pixels = horizontal8(pixels, inWidth, inHeight, fixedPoint(weights(inWidth, width)));
  if (height !== inHeight) pixels = vertical8(pixels, width, fixedPoint(weights(inHeight, height)));
  return pixels;
}

/** Each row of `src` (`inWidth` RGB pixels a row) filtered by `taps` into a new image. */
function horizontal8(src: Uint8Array, inWidth: number, height: number, taps: Taps<Int32Array>): Uint8Array {
  const width = taps.count.length, dst = new Uint8Array(height * width * 3);
  // two rows at a time share the weight loads; an odd last row is filtered twice in place
  for (let y = 0; y < height; y += 2) {
    const y2 = Math.min(y + 1, height - 1);
    filterRows8(src, y * inWidth * 3, y2 * inWidth * 3, dst, y * width * 3, y2 * width * 3, taps);
  }
  return dst;
}

/**
 * The RGB rows of `src` from `at` and `at2` filtered by `taps` into `dst` from `to` and `to2`.
 * (A function of its own, as are the vertical pass's steps, so that V8 optimises it whole
 * rather than loop by loop.)
 */
function filterRows8(
  src: Uint8Array,
  at: number,
  at2: number,
  dst: Uint8Array,
  to: number,
  to2: number,
  taps: Taps<Int32Array>,
): void {
  const { start, count, stride, weight } = taps;
  for (let o = 0; o < count.length; o++) {
    let r = HALF, g = HALF, b = HALF, r2 = HALF, g2 = HALF, b2 = HALF;
    const n = count[o], w0 = o * stride, first = start[o] * 3;
    for (let k = 0, p = at + first, p2 = at2 + first; k < n; k++, p += 3, p2 += 3) {
      // | 0 keeps V8 in int32; the sums cannot overflow (see fixedPoint)
      const w = weight[w0 + k];
      r = (r + Math.imul(w, src[p])) | 0;
      g = (g + Math.imul(w, src[p + 1])) | 0;
      b = (b + Math.imul(w, src[p + 2])) | 0;
      r2 = (r2 + Math.imul(w, src[p2])) | 0;
      g2 = (g2 + Math.imul(w, src[p2 + 1])) | 0;
      b2 = (b2 + Math.imul(w, src[p2 + 2])) | 0;
    }
    const q = to + o * 3, q2 = to2 + o * 3;
    dst[q] = to8(r);
    dst[q + 1] = to8(g);
    dst[q + 2] = to8(b);
    dst[q2] = to8(r2);
    dst[q2 + 1] = to8(g2);
    dst[q2 + 2] = to8(b2);
  }
}

/**
 * Each column of `src` (`width` RGB pixels a row) filtered by `taps` into a new image, an output
 * row at a time: its input rows weighted into a row of sums, so every access runs along a row.
 */
function vertical8(src: Uint8Array, width: number, taps: Taps<Int32Array>): Uint8Array {
  const { start, count, stride, weight } = taps, rowLength = width * 3;
  const dst = new Uint8Array(count.length * rowLength), sums = new Int32Array(rowLength);
  for (let o = 0; o < count.length; o++) {
    sums.fill(HALF);
    for (let k = 0; k < count[o]; k++) addRow(sums, weight[o * stride + k], src, (start[o] + k) * rowLength);
    roundRow(sums, dst, o * rowLength);
  }
  return dst;
}

/** sums[i] += w · src[at + i] along the row. */
function addRow(sums: Int32Array, w: number, src: Uint8Array, at: number): void {
  for (let i = 0; i < sums.length; i++) sums[i] += Math.imul(w, src[at + i]);
}

/** The row of fixed-point `sums` as 8-bit values into `dst` from `to`. */
function roundRow(sums: Int32Array, dst: Uint8Array, to: number): void {
  for (let i = 0; i < sums.length; i++) dst[to + i] = to8(sums[i]);
}

/** Float RGB resized in float64 (stored as float32 after each pass). */
function resizeFloat(
  data: Float32Array,
  inWidth: number,
  inHeight: number,
  width: number,
  height: number,
): Float32Array {
  let pixels = data;
  if (width !== inWidth) {
    const taps = weights(inWidth, width), out = new Float32Array(inHeight * width * 3);
    for (let y = 0; y < inHeight; y++) {
      for (let c = 0; c < 3; c++) filterLine(pixels, y * inWidth * 3 + c, 3, out, y * width * 3 + c, 3, taps);
    }
    pixels = out;
  }
  if (height !== inHeight) {
    const taps = weights(inHeight, height), out = new Float32Array(height * width * 3);
    for (let i = 0; i < width * 3; i++) filterLine(pixels, i, width * 3, out, i, width * 3, taps);
    pixels = out;
  }
  return pixels;
}

/** One line of samples (`src[inBase + i · inStep]`) filtered into `dst` at `outBase + o · outStep`. */
function filterLine(
  src: Float32Array,
  inBase: number,
  inStep: number,
  dst: Float32Array,
  outBase: number,
  outStep: number,
  taps: Taps<Float64Array>,
): void {
  const { start, count, stride, weight } = taps;
  for (let o = 0; o < count.length; o++) {
    let s = 0;
    for (let k = 0; k < count[o]; k++) s += weight[o * stride + k] * src[inBase + (start[o] + k) * inStep];
    dst[outBase + o * outStep] = s;
  }
}

function checkImage(image: RgbImage): void {
  const { width, height, data } = image;
  if (!(Number.isInteger(width) && width >= 1 && Number.isInteger(height) && height >= 1)) {
    throw new ImageError(`image size must be positive integers, got ${width}×${height}`);
  }
  if (data.length !== width * height * 3) {
    throw new ImageError(
      `a ${width}×${height} RGB image has ${width * height * 3} values, got ${data.length}`,
    );
  }
}
