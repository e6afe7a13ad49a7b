/**
 * PNG and JPEG files decoded to 8-bit RGB, as Pillow's `Image.open(f).convert("RGB")` (what
 * transformers' image processors start from) gives them: alpha dropped, gray and bilevel
 * replicated over the three channels, palettes looked up. 16-bit samples are cut to their high
 * byte, as Pillow reads 16-bit RGB (none of the test files is 16-bit; Pillow opens 16-bit gray as
 * 32-bit integers, which it may convert otherwise).
 * Through the pinned npm packages `fast-png` (JavaScript) and `@jsquash/jpeg` (MozJPEG compiled
 * to WebAssembly: the libjpeg-turbo lineage Pillow links, with its inverse DCT and interpolated
 * chroma); this module is the only one that imports them. Both decode the test files exactly as
 * Pillow 12 does.
 * @module
 */
import { convertIndexedToRgb, decode as decodePng } from "fast-png";
import decodeJpeg from "@jsquash/jpeg/decode.js";
import type { RgbImage } from "./image.ts";

/** An image file that cannot be decoded (not PNG or JPEG, or corrupt). */
export class ImageFileError extends Error {
  /** Always "ImageFileError". */
  override name = "ImageFileError";
}

/** File name endings of the formats {@link decodeImage} reads. */
export const IMAGE_FILE = /\.(png|jpe?g)$/i;

/** Decode the PNG or JPEG file `bytes` (from `source`, for messages) into 8-bit RGB. */
export async function decodeImage(bytes: Uint8Array, source: string): Promise<RgbImage> {
  const png = bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47;
  const jpg = bytes[0] === 0xff && bytes[1] === 0xd8;
  if (!png && !jpg) {
    throw new ImageFileError(`${source}: not a PNG or JPEG file (convert other formats first)`);
  }
  try {
    return png ? pngToRgb(bytes) : await jpegToRgb(bytes);
  } catch (e) {
    throw new ImageFileError(
      `${source}: cannot decode the ${png ? "PNG" : "JPEG"} file: ${(e as Error).message}`,
    );
  }
}

/** Read and decode the image file at `path`. */
export async function readImageFile(path: string): Promise<RgbImage> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new ImageFileError(`${path}: file not found`);
    throw e;
  }
  return decodeImage(bytes, path);
}

async function jpegToRgb(bytes: Uint8Array): Promise<RgbImage> {
  const copy = bytes.slice(); // the decoder takes a whole ArrayBuffer
  const { width, height, data } = await decodeJpeg(copy.buffer);
  const out = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) for (let c = 0; c < 3; c++) out[i * 3 + c] = data[i * 4 + c];
  return { width, height, data: out };
}

function pngToRgb(bytes: Uint8Array): RgbImage {
  // IHDR's bit depth and interlace method (bytes 24 and 28): fast-png misreads Adam7 rows of packed samples
  if (bytes[28] === 1 && bytes[24] < 8) {
    throw new Error(`an interlaced PNG of ${bytes[24]}-bit samples is not supported: save it non-interlaced`);
  }
  const img = decodePng(bytes);
  const { width, height, depth, channels } = img;
  const n = width * height;
  const out = new Uint8Array(n * 3);
  if (img.palette) {
    const rgb = convertIndexedToRgb(img); // RGB, or RGBA when the palette has transparency
    const k = rgb.length / n;
    for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) out[i * 3 + c] = rgb[i * k + c];
    return { width, height, data: out };
  }
  const samples = unpack(img.data, width, height, depth, channels);
  const gray = channels <= 2;
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) out[i * 3 + c] = samples[i * channels + (gray ? 0 : c)];
  }
  return { width, height, data: out };
}

/**
 * Samples as 8-bit values: 16-bit ones by their high byte, packed 1/2/4-bit gray scaled to 0–255
 * (1-bit to 0 or 255), rows of packed samples starting on a byte as PNG stores them.
 */
function unpack(
  data: Uint8Array | Uint8ClampedArray | Uint16Array,
  width: number,
  height: number,
  depth: number,
  channels: number,
): ArrayLike<number> {
  if (depth === 8) return data;
  if (depth === 16) return Uint8Array.from(data, (v) => v >> 8);
  const perRow = Math.ceil((width * channels * depth) / 8);
  const scale = 255 / (2 ** depth - 1);
  const out = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let s = 0; s < width * channels; s++) {
      const bit = s * depth;
      const byte = data[y * perRow + (bit >> 3)];
      const v = (byte >> (8 - depth - (bit & 7))) & (2 ** depth - 1);
      out[y * width * channels + s] = v * scale;
    }
  }
  return out;
}
