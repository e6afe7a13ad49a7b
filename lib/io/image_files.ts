/**
 * PNG and JPEG files decoded to 8-bit RGB, as Pillow's `Image.open(f).convert("RGB")` (what
 * transformers' image processors start from) gives them: alpha dropped, gray and bilevel
 * replicated over the three channels, palettes looked up. 16-bit color and gray-with-alpha samples
 * are cut to their high byte, as Pillow reads them; 16-bit gray without alpha is clipped to 255, as
 * Pillow opens it (mode I;16) and converts it to RGB.
 * The EXIF orientation (a JPEG's APP1 Exif segment, a PNG's eXIf chunk or ImageMagick's "Raw
 * profile type exif" text) is applied after decoding, as transformers' `load_image` and `datasets`'
 * Image feature apply `ImageOps.exif_transpose`; where the EXIF has none, the XMP packet's
 * `tiff:Orientation` (JPEG APP1, PNG iTXt), as Pillow's `getexif` falls back to it.
 * Truncated files are refused as Pillow refuses them; a PNG that ends without its IEND chunk is
 * read, as Pillow reads it. CMYK (4-component) JPEGs, YCCK-coded ones too, are refused: the JPEG
 * decoder converts only gray, YCbCr and RGB JPEGs to RGB (Pillow reads CMYK with libjpeg, then
 * converts it itself).
 * Through the pinned npm packages `fast-png` (JavaScript) and `@jsquash/jpeg` (MozJPEG compiled
 * to WebAssembly: the libjpeg-turbo lineage Pillow links, with its inverse DCT and interpolated
 * chroma); this module is the only one that imports them. Both decode the test files exactly as
 * Pillow 12 does.
 * @module
 */
import { inflateSync } from "node:zlib";
import { convertIndexedToRgb, decode as decodePng } from "fast-png";
import decodeJpeg, { init as initJpeg } from "@jsquash/jpeg/decode.js";
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
  const markers = jpg ? jpegInfo(bytes) : null;
  if (markers?.components === 4) {
    throw new ImageFileError(
      `${source}: CMYK JPEG: convert it to RGB first (e.g. Pillow's Image.open(f).convert("RGB")); ` +
        `the JPEG decoder here gives RGB from gray, YCbCr and RGB JPEGs only`,
    );
  }
  try {
    return markers ? orient(await jpegToRgb(bytes), markers.orientation) : pngToRgb(bytes);
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

/** What libjpeg prints while decoding (warnings, errors): kept for messages instead of reaching stderr. */
const jpegMessages: string[] = [];
let jpegReady: Promise<void> | null = null;
/** JPEG decodes one at a time, so that each reads its own messages. */
let jpegQueue: Promise<unknown> = Promise.resolve();

function jpegToRgb(bytes: Uint8Array): Promise<RgbImage> {
  const run = jpegQueue.then(() => jpegAlone(bytes));
  jpegQueue = run.catch(() => {});
  return run;
}

async function jpegAlone(bytes: Uint8Array): Promise<RgbImage> {
  const keep = (s: string) => void jpegMessages.push(s);
  await (jpegReady ??= initJpeg({ print: keep, printErr: keep } as Parameters<typeof initJpeg>[0]));
  jpegMessages.length = 0;
  let decoded: Awaited<ReturnType<typeof decodeJpeg>>;
  try {
    decoded = await decodeJpeg(bytes.slice().buffer); // the decoder takes a whole ArrayBuffer
  } catch (e) {
    // libjpeg's errors end in exit(1): its message says why
    throw new Error(jpegMessages.join("; ") || (e as Error).message || String(e));
  }
  // libjpeg pads a cut file and goes on; Pillow refuses it ("image file is truncated")
  if (jpegMessages.some((m) => m.includes("Premature end of JPEG file"))) {
    throw new Error("the file is truncated (it ends before the image data does)");
  }
  const { width, height, data } = decoded;
  const out = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) for (let c = 0; c < 3; c++) out[i * 3 + c] = data[i * 4 + c];
  return { width, height, data: out };
}

/**
 * The JPEG's component count (from its frame header) and orientation: its first Exif segment's,
 * else its (last) XMP segment's, as Pillow keeps them in `info["exif"]` and `info["xmp"]`. Bytes
 * between segments that start none are skipped, as Pillow and libjpeg skip them.
 */
function jpegInfo(bytes: Uint8Array): { components: number; orientation: number } {
  let components = 0, exif: number | null | undefined, xmp: Uint8Array | undefined;
  let i = 2;
  while (i + 4 <= bytes.length) {
    const marker = bytes[i + 1];
    if (bytes[i] !== 0xff || marker === 0xff) { // junk, or a fill byte before a marker
      i++;
      continue;
    }
    // an escaped 0xFF (junk too), or a marker without a segment: TEM, RST0–7, SOI
    if (marker === 0x00 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd8)) {
      i += 2;
      continue;
    }
    if (marker === 0xda || marker === 0xd9) break; // start of scan, end of image
    const end = i + 2 + ((bytes[i + 2] << 8) | bytes[i + 3]);
    const seg = bytes.subarray(i + 4, end);
    const sof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (sof) components = seg[5] ?? 0;
    else if (marker === 0xe1 && exif === undefined && ascii(seg.subarray(0, 6)) === "Exif\0\0") {
      exif = tiffOrientation(seg.subarray(6));
    } else if (marker === 0xe1 && ascii(seg.subarray(0, XMP_JPEG.length)) === XMP_JPEG) {
      xmp = seg.subarray(XMP_JPEG.length);
    }
    i = end;
  }
  return { components, orientation: exif ?? xmpOrientation(xmp) };
}

/** The header of a JPEG's XMP segment. */
const XMP_JPEG = "http://ns.adobe.com/xap/1.0/\0";

/**
 * The EXIF Orientation (tag 0x0112) in IFD0 of TIFF-structured data (either byte order, after an
 * optional `Exif\0\0`); null when there is none or the data is malformed.
 */
function tiffOrientation(t: Uint8Array): number | null {
  if (ascii(t.subarray(0, 6)) === "Exif\0\0") t = t.subarray(6);
  const little = ascii(t.subarray(0, 2)) === "II";
  if (t.length < 8 || !(little || ascii(t.subarray(0, 2)) === "MM")) return null;
  const v = new DataView(t.buffer, t.byteOffset, t.length);
  const ifd = v.getUint32(4, little);
  if (ifd + 2 > t.length) return null;
  for (let k = 0, n = v.getUint16(ifd, little); k < n; k++) {
    const e = ifd + 2 + 12 * k;
    if (e + 12 > t.length) break;
    // a SHORT (type 3) value sits in the entry's first two value bytes
    if (v.getUint16(e, little) === 0x0112) {
      return v.getUint16(e + 2, little) === 3 ? v.getUint16(e + 8, little) : 1;
    }
  }
  return null;
}

/** The first `tiff:Orientation` digit of an XMP packet, found as Pillow's `getexif` finds it; else 1. */
function xmpOrientation(xmp: Uint8Array | undefined): number {
  const m = xmp && /tiff:Orientation(="|>)([0-9])/.exec(new TextDecoder("latin1").decode(xmp));
  return m ? Number(m[2]) : 1;
}

function ascii(b: Uint8Array): string {
  return String.fromCharCode(...b);
}

/** Where pixel (x, y) of the result comes from in a w × h image, per EXIF orientation (2–8). */
const ORIENTATIONS: Record<number, (x: number, y: number, w: number, h: number) => [number, number]> = {
  2: (x, y, w) => [w - 1 - x, y], // mirrored left–right
  3: (x, y, w, h) => [w - 1 - x, h - 1 - y], // rotated 180°
  4: (x, y, _w, h) => [x, h - 1 - y], // mirrored top–bottom
  5: (x, y) => [y, x], // transposed
  6: (x, y, _w, h) => [y, h - 1 - x], // turned 90° clockwise to display
  7: (x, y, w, h) => [w - 1 - y, h - 1 - x], // transversed
  8: (x, y, w) => [w - 1 - y, x], // turned 90° counter-clockwise to display
};

/** The image turned upright as Pillow's `ImageOps.exif_transpose` does; other orientations leave it. */
function orient(image: RgbImage, orientation: number): RgbImage {
  const from = ORIENTATIONS[orientation];
  if (!from) return image;
  const { width: w, height: h, data } = image;
  const [width, height] = orientation >= 5 ? [h, w] : [w, h];
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const [sx, sy] = from(x, y, w, h);
      for (let c = 0; c < 3; c++) out[(y * width + x) * 3 + c] = data[(sy * w + sx) * 3 + c];
    }
  }
  return { width, height, data: out };
}

function pngToRgb(bytes: Uint8Array): RgbImage {
  // IHDR's bit depth and interlace method (bytes 24 and 28): fast-png misreads Adam7 rows of packed samples
  if (bytes[28] === 1 && bytes[24] < 8) {
    throw new Error(`an interlaced PNG of ${bytes[24]}-bit samples is not supported: save it non-interlaced`);
  }
  const { bytes: whole, orientation } = pngChunks(bytes);
  return orient(pngPixels(whole), orientation);
}

function pngPixels(bytes: Uint8Array): RgbImage {
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

/** IEND: what {@link pngChunks} appends to a file that ends without it. */
const IEND = Uint8Array.of(0, 0, 0, 0, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82);

/**
 * The PNG's bytes, with IEND appended when the file ends after a whole chunk without it (Pillow
 * reads such files), and its orientation: the eXIf chunk's, else that of a "Raw profile type exif"
 * text, else the XMP packet's (the "XML:com.adobe.xmp" text), as Pillow's `getexif` looks for them.
 * A chunk cut short is an error.
 */
function pngChunks(bytes: Uint8Array): { bytes: Uint8Array; orientation: number } {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  let exif: Uint8Array | undefined, rawExif: Uint8Array | undefined, xmp: Uint8Array | undefined;
  const orientation = () => {
    const tiff = exif ?? rawExif;
    return (tiff && tiffOrientation(tiff)) ?? xmpOrientation(xmp);
  };
  for (let i = 8; i < bytes.length;) {
    const type = ascii(bytes.subarray(i + 4, i + 8));
    if (i + 12 > bytes.length || i + 12 + v.getUint32(i) > bytes.length) {
      throw new Error(`the file is truncated (in its ${type || "last"} chunk)`);
    }
    const data = bytes.subarray(i + 8, i + 8 + v.getUint32(i));
    if (type === "IEND") return { bytes, orientation: orientation() };
    if (type === "eXIf") exif = data;
    const text = type === "tEXt" || type === "zTXt" || type === "iTXt" ? pngText(type, data) : null;
    if (text?.keyword === "Raw profile type exif") rawExif = rawProfile(text.value);
    if (text?.keyword === "XML:com.adobe.xmp") xmp = text.value;
    i += 12 + data.length;
  }
  const whole = new Uint8Array(bytes.length + IEND.length);
  whole.set(bytes);
  whole.set(IEND, bytes.length);
  return { bytes: whole, orientation: orientation() };
}

/** A PNG text chunk's keyword and (inflated) text; null when it is malformed, as Pillow skips it. */
function pngText(type: string, data: Uint8Array): { keyword: string; value: Uint8Array } | null {
  const nul = data.indexOf(0);
  if (nul < 0) return null;
  const keyword = ascii(data.subarray(0, nul));
  let value = data.subarray(nul + 1), compressed = type === "zTXt";
  if (type === "zTXt") value = value.subarray(1); // compression method
  if (type === "iTXt") {
    // compression flag and method, then a language tag and a translated keyword, each ended by NUL
    compressed = value[0] === 1;
    const lang = value.indexOf(0, 2);
    const translated = lang < 0 ? -1 : value.indexOf(0, lang + 1);
    if (translated < 0) return null;
    value = value.subarray(translated + 1);
  }
  try {
    return { keyword, value: compressed ? new Uint8Array(inflateSync(value)) : value };
  } catch {
    return null;
  }
}

/** The bytes of ImageMagick's hex "Raw profile" text (a name line and a length line, then hex). */
function rawProfile(text: Uint8Array): Uint8Array {
  const hex = new TextDecoder("latin1").decode(text).split("\n").slice(3).join("").replace(/\s/g, "");
  const out = new Uint8Array(hex.length >> 1);
  for (let k = 0; k < out.length; k++) out[k] = parseInt(hex.slice(2 * k, 2 * k + 2), 16);
  return out;
}

/**
 * Samples as 8-bit values: 16-bit ones by their high byte, but 16-bit gray (one channel) clipped to
 * 255 as Pillow's I;16 → RGB conversion does; packed 1/2/4-bit gray scaled to 0–255 (1-bit to 0 or
 * 255), rows of packed samples starting on a byte as PNG stores them.
 */
function unpack(
  data: Uint8Array | Uint8ClampedArray | Uint16Array,
  width: number,
  height: number,
  depth: number,
  channels: number,
): ArrayLike<number> {
  if (depth === 8) return data;
  if (depth === 16) return Uint8Array.from(data, channels === 1 ? (v) => Math.min(v, 255) : (v) => v >> 8);
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
