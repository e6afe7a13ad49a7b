/**
 * CMYK JPEGs (4 components: CMYK as Pillow saves it, YCCK-coded, without an Adobe segment,
 * progressive), which Pillow reads with libjpeg and converts to RGB itself, but the JPEG decoder
 * here cannot ("Unsupported color conversion request"): refused naming the file and why. And junk
 * between a JPEG's segments, which Pillow and libjpeg skip.
 */
import { decodeImage, ImageFileError } from "../lib/io/image_files.ts";
import { assertEquals, assertRejects } from "./assert.ts";

const IMAGES = new URL("./fixtures/images/", import.meta.url).pathname;

/** A JPEG's segments before its scan: the marker and where the segment starts and ends. */
function segments(jpg: Uint8Array): { marker: number; start: number; end: number }[] {
  const out = [];
  for (let i = 2; jpg[i + 1] !== 0xda;) {
    const end = i + 2 + ((jpg[i + 2] << 8) | jpg[i + 3]);
    out.push({ marker: jpg[i + 1], start: i, end });
    i = end;
  }
  return out;
}

/** `jpg` with `bytes` put in at `at`. */
function insert(jpg: Uint8Array, at: number, bytes: number[]): Uint8Array {
  return Uint8Array.from([...jpg.subarray(0, at), ...bytes, ...jpg.subarray(at)]);
}

const REFUSED = 'CMYK JPEG: convert it to RGB first (e.g. Pillow\'s Image.open(f).convert("RGB")); ' +
  "the JPEG decoder here gives RGB from gray, YCbCr and RGB JPEGs only";

Deno.test("decodeImage: CMYK JPEGs, YCCK-coded, without an Adobe segment or progressive, are refused naming the file and why", async () => {
  const cmyk = await Deno.readFile(`${IMAGES}exif/cmyk.jpg`);
  const adobe = segments(cmyk).find((s) => s.marker === 0xee)!;
  // the Adobe segment's transform flag (its last byte): 0 CMYK as is, 2 YCCK
  assertEquals(cmyk[adobe.end - 1], 0);
  const ycck = cmyk.slice();
  ycck[adobe.end - 1] = 2;
  const variants: Record<string, Uint8Array> = {
    "cmyk.jpg": cmyk,
    "ycck.jpg": ycck,
    "no_adobe.jpg": Uint8Array.from([...cmyk.subarray(0, adobe.start), ...cmyk.subarray(adobe.end)]),
    "progressive.jpg": await Deno.readFile(`${IMAGES}cmyk/progressive.jpg`),
  };
  for (const [name, bytes] of Object.entries(variants)) {
    await assertRejects(() => decodeImage(bytes, name), ImageFileError, `${name}: ${REFUSED}`);
  }
});

Deno.test("decodeImage: junk between JPEG segments is skipped as Pillow skips it: a CMYK frame after it, an Exif orientation", async () => {
  const junk = [0x00, 0x13, 0x37, 0xff, 0x00];
  const cmyk = await Deno.readFile(`${IMAGES}exif/cmyk.jpg`);
  const junkCmyk = insert(cmyk, segments(cmyk)[0].end, junk);
  await assertRejects(() => decodeImage(junkCmyk, "junk.jpg"), ImageFileError, `junk.jpg: ${REFUSED}`);
  // junk after the JFIF segment, before the Exif one (orientation 6): Pillow turns the image as without it
  const { images } = JSON.parse(await Deno.readTextFile(`${IMAGES}exif/expected.json`));
  const want = images["orient6_mm.jpg"];
  const oriented = await Deno.readFile(`${IMAGES}exif/orient6_mm.jpg`);
  const [jfif, exif] = segments(oriented);
  assertEquals([jfif.marker, exif.marker], [0xe0, 0xe1]);
  const got = await decodeImage(insert(oriented, jfif.end, junk), "junk_exif.jpg");
  assertEquals([got.width, got.height, Array.from(got.data)], [want.width, want.height, want.rgb]);
  // markers without a segment (RST0, TEM) after SOI are stepped over, as Pillow does
  const bare = [0xff, 0xd0, 0xff, 0x01];
  await assertRejects(
    () => decodeImage(insert(cmyk, 2, bare), "rst.jpg"),
    ImageFileError,
    `rst.jpg: ${REFUSED}`,
  );
  const stepped = await decodeImage(insert(oriented, 2, bare), "rst_exif.jpg");
  assertEquals([stepped.width, stepped.height, Array.from(stepped.data)], [
    want.width,
    want.height,
    want.rgb,
  ]);
});
