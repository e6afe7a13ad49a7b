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

/** A zeroed array of `data`'s kind: Float32Array for floats, else Uint8Array. */
function like(data: RgbImage["data"], length: number): Float32Array | Uint8Array {
  return data instanceof Float32Array ? new Float32Array(length) : new Uint8Array(length);
}

/** One line of samples (`src[inBase + i · inStep]`) filtered into `dst` at `outBase + o · outStep`. */
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

/** The input samples start.. of one output sample, with float and fixed-point weights. */
interface Tap {
  start: number;
  w: Float64Array;
  fixed: Int32Array;
}

/** Pillow's fixed point for 8-bit resampling: weights scaled by 2^22, sums rounded. */
const ONE = 2 ** 22, HALF = 2 ** 21;

/** Normalised triangle-filter taps of each output sample along one axis (float and fixed point). */
function weights(inSize: number, outSize: number): Tap[] {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filterScale; // the bilinear (triangle) filter has support 1
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
