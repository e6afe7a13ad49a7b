import { parseHfConfig, type VitConfig } from "../lib/io/hf_config.ts";
import { parseImageProcessorConfig, preprocessImage } from "../lib/io/image.ts";
import { decodeImage, ImageFileError, readImageFile } from "../lib/io/image_files.ts";
import { deflateSync } from "node:zlib";
import { relative } from "node:path";
import { DataError } from "../lib/train/data_error.ts";
import { readImageData, readImages } from "../lib/train/image_data.ts";
import { assert, assertClose, assertEquals, assertRejects } from "./assert.ts";
import { FOLDER_FILES, runCli, withTempDir } from "./train_helpers.ts";

const IMAGES = new URL("./fixtures/images/", import.meta.url).pathname;
const VIT = new URL("./fixtures/models/vit/", import.meta.url).pathname;
const vit = parseHfConfig(JSON.parse(await Deno.readTextFile(`${VIT}config.json`)), "vit") as VitConfig;
const processor = parseImageProcessorConfig(null, vit, "defaults"); // resize to 32×32, mean 0.5, std 0.5
const pixelsOf = (p: Float32Array | (() => Float32Array)) => typeof p === "function" ? p() : p;

Deno.test("decodeImage: PNG (every mode, interlaced) and JPEG (4:4:4, 4:2:0, gray) decode as Pillow does", async () => {
  const { pillow, images } = JSON.parse(await Deno.readTextFile(`${IMAGES}decoded.json`));
  assertEquals(pillow, "12.3.0");
  const names = Object.keys(images);
  assertEquals(names.length, 11);
  for (const name of names) {
    const want = images[name];
    const got = await readImageFile(`${IMAGES}files/${name}`);
    assertEquals([got.width, got.height], [want.width, want.height], name);
    assertEquals(Array.from(got.data), want.rgb, `${name} (Pillow mode ${want.mode})`);
  }
});

Deno.test("decodeImage: 16-bit gray is clipped to 255 as Pillow 12.3 converts I;16 to RGB; 16-bit color keeps the high byte", async () => {
  // 4×2 samples, big-endian; Pillow's Image.open(f).convert("RGB") gives the gray values below
  const samples = [0, 1, 254, 255, 256, 1000, 65535, 300];
  const png16 = (colorType: number, channels: number) => {
    const ihdr = new Uint8Array(13);
    const v = new DataView(ihdr.buffer);
    v.setUint32(0, 4);
    v.setUint32(4, 2);
    ihdr.set([16, colorType, 0, 0, 0], 8);
    const raw = new Uint8Array(2 * (1 + 4 * channels * 2));
    const r = new DataView(raw.buffer);
    samples.forEach((s, i) => {
      for (let c = 0; c < channels; c++) r.setUint16(1 + (i >> 2) + 2 * ((i * channels) + c), s);
    });
    return new Uint8Array([
      ...PNG_SIGNATURE,
      ...pngChunk("IHDR", ihdr),
      ...pngChunk("IDAT", deflateSync(raw)),
      ...pngChunk("IEND", new Uint8Array()),
    ]);
  };
  const gray = await decodeImage(png16(0, 1), "gray16.png");
  assertEquals(Array.from(gray.data), [0, 1, 254, 255, 255, 255, 255, 255].flatMap((g) => [g, g, g]));
  const rgb = await decodeImage(png16(2, 3), "rgb16.png");
  assertEquals(Array.from(rgb.data), samples.flatMap((s) => [s >> 8, s >> 8, s >> 8]));
});

Deno.test("decodeImage: other formats and broken files are clear errors naming the file", async () => {
  await assertRejects(
    () => decodeImage(new TextEncoder().encode("GIF89a..."), "a.gif"),
    ImageFileError,
    "a.gif: not a PNG or JPEG file",
  );
  const png = await Deno.readFile(`${IMAGES}files/rgb.png`);
  await assertRejects(
    () => decodeImage(png.subarray(0, 60), "cut.png"),
    ImageFileError,
    "cut.png: cannot decode the PNG",
  );
  // Adam7-interlaced 1-bit gray (bit depth and interlace method in the IHDR): refused with the reason
  const interlaced = png.slice(0, 60);
  interlaced.set([1, 0], 24);
  interlaced[28] = 1;
  await assertRejects(
    () => decodeImage(interlaced, "adam7.png"),
    ImageFileError,
    "adam7.png: cannot decode the PNG file: an interlaced PNG of 1-bit samples is not supported",
  );
  const jpg = await Deno.readFile(`${IMAGES}files/rgb.jpg`);
  await assertRejects(
    () => decodeImage(jpg.subarray(0, 30), "cut.jpg"),
    ImageFileError,
    "cut.jpg: cannot decode the JPEG",
  );
  await assertRejects(
    () => readImageFile(`${IMAGES}absent.png`),
    ImageFileError,
    "absent.png: file not found",
  );
});

Deno.test("decodeImage: the EXIF orientation (PNG eXIf, JPEG Exif in either byte order) is applied as exif_transpose", async () => {
  // pixel i (row-major) of each stored 3×2 image is (40·i, 100 + i, 200 + i); where each lands when upright
  const upright: Record<string, [number, number, number[]]> = {
    1: [3, 2, [0, 1, 2, 3, 4, 5]],
    2: [3, 2, [2, 1, 0, 5, 4, 3]], // mirrored left–right
    3: [3, 2, [5, 4, 3, 2, 1, 0]], // turned 180°
    4: [3, 2, [3, 4, 5, 0, 1, 2]], // mirrored top–bottom
    5: [2, 3, [0, 3, 1, 4, 2, 5]], // transposed
    6: [2, 3, [3, 0, 4, 1, 5, 2]], // turned 90° clockwise
    7: [2, 3, [5, 2, 4, 1, 3, 0]], // transversed
    8: [2, 3, [2, 5, 1, 4, 0, 3]], // turned 90° counter-clockwise
  };
  for (const [o, [w, h, order]] of Object.entries(upright)) {
    const got = await readImageFile(`${IMAGES}exif/orient${o}.png`);
    assertEquals([got.width, got.height], [w, h], `orientation ${o}`);
    assertEquals(Array.from(got.data), order.flatMap((i) => [40 * i, 100 + i, 200 + i]), `orientation ${o}`);
  }
  // the same as Pillow 12.3's exif_transpose(...).convert("RGB"), PNGs and JPEGs
  const { pillow, images } = JSON.parse(await Deno.readTextFile(`${IMAGES}exif/expected.json`));
  assertEquals([pillow, Object.keys(images).length], ["12.3.0", 10]);
  for (
    const [name, want] of Object.entries(images) as [
      string,
      { width: number; height: number; rgb: number[] },
    ][]
  ) {
    const got = await readImageFile(`${IMAGES}exif/${name}`);
    assertEquals([got.width, got.height, Array.from(got.data)], [want.width, want.height, want.rgb], name);
  }
});

/** The 8 bytes every PNG file starts with. */
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** A PNG chunk with its CRC. */
function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const body = new Uint8Array([...new TextEncoder().encode(type), ...data]);
  let crc = ~0;
  for (const b of body) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  const out = new Uint8Array(body.length + 8);
  const v = new DataView(out.buffer);
  v.setUint32(0, data.length);
  out.set(body, 4);
  v.setUint32(out.length - 4, ~crc >>> 0);
  return out;
}

/** A PNG's chunks, the signature first, without those of type `drop`, with `extra` after IHDR. */
function rechunk(png: Uint8Array, drop: string, extra: Uint8Array[]): Uint8Array {
  const v = new DataView(png.buffer, png.byteOffset);
  const parts = [png.subarray(0, 8)];
  for (let i = 8; i < png.length;) {
    const end = i + 12 + v.getUint32(i);
    const type = String.fromCharCode(...png.subarray(i + 4, i + 8));
    if (type !== drop) parts.push(png.subarray(i, end));
    if (type === "IHDR") parts.push(...extra);
    i = end;
  }
  return new Uint8Array(parts.flatMap((p) => [...p]));
}

/** A JPEG's segments with the APP1 Exif one replaced by `app1` (a payload, or nothing). */
function reExif(jpg: Uint8Array, app1: Uint8Array | null): Uint8Array {
  for (let i = 2;;) {
    const end = i + 2 + ((jpg[i + 2] << 8) | jpg[i + 3]);
    if (jpg[i + 1] === 0xe1) {
      const seg = app1 ? [0xff, 0xe1, (app1.length + 2) >> 8, (app1.length + 2) & 255, ...app1] : [];
      return new Uint8Array([...jpg.subarray(0, i), ...seg, ...jpg.subarray(end)]);
    }
    i = end;
  }
}

Deno.test("decodeImage: the XMP tiff:Orientation where the EXIF has none, and PNG's Raw profile exif, as Pillow's getexif", async () => {
  const bytes = (s: string) => new TextEncoder().encode(s);
  const xmp = (o: number, attr: boolean) =>
    `<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/"` +
    (attr ? ` tiff:Orientation="${o}"/>` : `><tiff:Orientation>${o}</tiff:Orientation></rdf:Description>`) +
    `</rdf:RDF></x:xmpmeta>`;
  const itxt = (text: string, compressed: boolean) =>
    pngChunk(
      "iTXt",
      new Uint8Array([
        ...bytes("XML:com.adobe.xmp\0"),
        compressed ? 1 : 0,
        0,
        0, // no language tag
        0, // no translated keyword
        ...(compressed ? deflateSync(bytes(text)) : bytes(text)),
      ]),
    );
  const decoded = async (b: Uint8Array) => {
    const { width, height, data } = await decodeImage(b, "x");
    return [width, height, Array.from(data)];
  };
  const png6 = await Deno.readFile(`${IMAGES}exif/orient6.png`);
  const png1 = await Deno.readFile(`${IMAGES}exif/orient1.png`);
  const want6 = await decoded(png6);
  const plain = await decoded(rechunk(png6, "eXIf", []));
  assert(JSON.stringify(plain) !== JSON.stringify(want6));
  // XMP as an attribute or an element, plain or compressed, where there is no eXIf
  for (const [attr, compressed] of [[true, false], [false, true]]) {
    assertEquals(await decoded(rechunk(png6, "eXIf", [itxt(xmp(6, attr), compressed)])), want6);
  }
  // an eXIf that says 1 wins over the XMP
  assertEquals(await decoded(rechunk(png1, "", [itxt(xmp(6, true), false)])), await decoded(png1));
  // ImageMagick's hex text of the Exif (with its Exif\0\0), where there is no eXIf
  const exif6 = (() => {
    const v = new DataView(png6.buffer, png6.byteOffset);
    for (let i = 8;; i += 12 + v.getUint32(i)) {
      if (String.fromCharCode(...png6.subarray(i + 4, i + 8)) === "eXIf") {
        return png6.subarray(i + 8, i + 8 + v.getUint32(i));
      }
    }
  })();
  const hex = [..."Exif\0\0"].map((c) => c.charCodeAt(0)).concat([...exif6])
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  const raw = `\nexif\n${String(6 + exif6.length).padStart(8)}\n${hex.replace(/(.{72})/g, "$1\n")}\n`;
  const ztxt = pngChunk(
    "zTXt",
    new Uint8Array([...bytes("Raw profile type exif\0"), 0, ...deflateSync(bytes(raw))]),
  );
  assertEquals(await decoded(rechunk(png6, "eXIf", [ztxt])), want6);

  // JPEG: an XMP segment where there is no Exif one, or where the Exif has no orientation
  const jpg = await Deno.readFile(`${IMAGES}exif/orient6_mm.jpg`);
  const want = await decoded(jpg);
  const xmpSeg = bytes("http://ns.adobe.com/xap/1.0/\0" + xmp(6, true));
  assert(JSON.stringify(await decoded(reExif(jpg, null))) !== JSON.stringify(want));
  assertEquals(await decoded(reExif(jpg, xmpSeg)), want);
  const noTag = new Uint8Array([...bytes("Exif\0\0MM\0*"), 0, 0, 0, 8, 0, 0]); // an IFD0 of no entries
  const both = reExif(jpg, noTag);
  const at = both.indexOf(0xe1, 2) - 1;
  const withXmp = new Uint8Array([
    ...both.subarray(0, at),
    0xff,
    0xe1,
    (xmpSeg.length + 2) >> 8,
    (xmpSeg.length + 2) & 255,
    ...xmpSeg,
    ...both.subarray(at),
  ]);
  assertEquals(await decoded(withXmp), want);
});

Deno.test("decodeImage: cut, CMYK and IEND-less files as Pillow takes them; libjpeg prints nothing", async () => {
  const jpg = await Deno.readFile(`${IMAGES}files/photo.jpg`);
  const cut = jpg.subarray(0, Math.floor(jpg.length * 0.9));
  // libjpeg pads a cut scan with gray and goes on; Pillow refuses the file ("image file is truncated"), even without EOI alone
  for (const bytes of [cut, jpg.subarray(0, jpg.length - 2)]) {
    await assertRejects(
      () => decodeImage(bytes, "cut.jpg"),
      ImageFileError,
      "cut.jpg: cannot decode the JPEG file: the file is truncated",
    );
  }
  // decodes at once keep their own outcomes
  const settled = await Promise.allSettled([cut, jpg, cut, jpg].map((b) => decodeImage(b, "x.jpg")));
  assertEquals(settled.map((r) => r.status), ["rejected", "fulfilled", "rejected", "fulfilled"]);
  await assertRejects(
    () => readImageFile(`${IMAGES}exif/cmyk.jpg`),
    ImageFileError,
    `exif/cmyk.jpg: CMYK JPEG: convert it to RGB first`,
  );
  // a PNG that ends without IEND reads as the whole file; one cut inside a chunk is refused
  const png = await Deno.readFile(`${IMAGES}files/rgb.png`);
  const whole = await decodeImage(png, "rgb.png");
  const noEnd = await decodeImage(png.subarray(0, png.length - 12), "no_iend.png");
  assertEquals([noEnd.width, noEnd.height, Array.from(noEnd.data)], [13, 9, Array.from(whole.data)]);
  await assertRejects(
    () => decodeImage(png.subarray(0, png.length - 20), "cut.png"),
    ImageFileError,
    "cut.png: cannot decode the PNG file: the file is truncated (in its IDAT chunk)",
  );
  // libjpeg's warnings and errors go into the messages, not to stderr
  const script = `import { decodeImage } from "./lib/io/image_files.ts";
    const jpg = await Deno.readFile("tests/fixtures/images/files/photo.jpg");
    for (const n of [jpg.length - 100, 30]) await decodeImage(jpg.subarray(0, n), "cut.jpg").catch(() => {});`;
  const run = await new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    cwd: new URL("..", import.meta.url).pathname,
    env: { NO_COLOR: "1" },
  }).output();
  assertEquals([run.code, new TextDecoder().decode(run.stderr)], [0, ""]);
});

Deno.test("readImageData: an image folder (classes in sorted order, other files ignored)", async () => {
  const data = await readImageData(`${IMAGES}folder`, processor);
  assertEquals(data.labelNames, ["cat", "dog"]);
  assertEquals(data.examples.map((e) => e.label), [0, 0, 0, 1, 1, 1]);
  const first = pixelsOf(data.examples[0].pixels);
  assertEquals(first.length, 3 * 32 * 32);
  const direct = preprocessImage(await readImageFile(`${IMAGES}folder/cat/cat0.png`), processor);
  assertEquals(Array.from(first), Array.from(direct), "decoded, resized once, normalised per batch");
  // red-ish cats, blue-ish dogs: the red channel's mean tells them apart
  const red = (e: { pixels: Float32Array | (() => Float32Array) }) =>
    pixelsOf(e.pixels).subarray(0, 1024).reduce((a, b) => a + b) / 1024;
  assert(
    red(data.examples[1]) > 0.2 && red(data.examples[4]) < -0.2,
    `${red(data.examples[1])}, ${red(data.examples[4])}`,
  );
  await assertRejects(
    () => readImageData(`${IMAGES}folder`, processor, { labels: ["cat"] }),
    DataError,
    `label "dog" is not one of the training data's ["cat"]`,
  );
  // resizing off: a wrongly sized image is refused when read, naming its file
  await assertRejects(
    () => readImageData(`${IMAGES}folder`, { ...processor, doResize: false }),
    DataError,
    "cat0.png: the image is 16×16; the model takes 32×32 and its preprocessor_config.json turns resizing off",
  );
  await withTempDir("hartley_imgdir_", async (dir) => {
    await Deno.mkdir(`${dir}/.ipynb_checkpoints`); // hidden: no class
    await Deno.mkdir(`${dir}/empty`);
    await assertRejects(() => readImageData(dir, processor), DataError, `${dir}/empty: no PNG or JPEG files`);
  });
});

Deno.test("readImages names a file it cannot decode as readImageData does (from the working folder)", async () => {
  await withTempDir("hartley_imgbad_", async (dir) => {
    await Deno.mkdir(`${dir}/cat`);
    await Deno.writeTextFile(`${dir}/cat/bad.png`, "not an image");
    const named = `${relative(Deno.cwd(), `${dir}/cat/bad.png`)}: not a PNG or JPEG file`;
    await assertRejects(() => readImageData(dir, processor), DataError, named);
    await assertRejects(() => readImages(dir, processor), DataError, named);
    await assertRejects(() => readImages(`${dir}/cat/bad.png`, processor), DataError, named);
  });
});

Deno.test("image folders: links to class folders and files are followed, loops are not, skipped files are counted", async () => {
  const lines: string[] = [];
  const onWarning = (message: string) => void lines.push(message);
  await withTempDir("hartley_imglinks_", async (dir) => {
    await Deno.mkdir(`${dir}/cat`);
    for (const f of ["cat0.png", "cat1.jpg", "cat2.png", "notes.txt"]) {
      await Deno.symlink(`${IMAGES}folder/cat/${f}`, `${dir}/cat/${f}`);
    }
    await Deno.symlink(`${IMAGES}folder/dog`, `${dir}/dog`);
    await Deno.symlink(dir, `${dir}/cat/loop`); // back to the top: not followed again
    await Deno.writeTextFile(`${dir}/dog.gif`, ""); // a file beside the classes: no class
    const data = await readImageData(dir, processor, { onWarning });
    assertEquals(data.labelNames, ["cat", "dog"]);
    assertEquals(data.examples.map((e) => e.label), [0, 0, 0, 1, 1, 1]);
    assertEquals(lines, [`${dir}: skipped 1 file not PNG or JPEG (cat/notes.txt)`]);
    const unlabelled = await readImages(dir, processor, { onWarning });
    assertEquals(unlabelled.map((x) => x.source.slice(dir.length + 1)), FOLDER_FILES);
    assertEquals(lines[1], `${dir}: skipped 2 files not PNG or JPEG (e.g. cat/notes.txt)`);
    await Deno.symlink(`${dir}/absent.png`, `${dir}/cat/broken.png`);
    await assertRejects(
      () => readImageData(dir, processor),
      DataError,
      `${dir}/cat/broken.png: a broken link (its target does not exist)`,
    );
  });
});

Deno.test("readImageData: a datasets Parquet split (image structs, ClassLabel names) and JSONL pixel arrays", async () => {
  const data = await readImageData(`${IMAGES}images.parquet`, processor);
  assertEquals(data.labelNames, ["cat", "dog"]);
  assertEquals(data.examples.map((e) => e.label), [0, 0, 1, 1]);
  // the training data's (or a head's) classes: the split's ids are matched by their names
  const named = await readImageData(`${IMAGES}images.parquet`, processor, { labels: ["dog", "cat"] });
  assertEquals([named.labelNames, named.examples.map((e) => e.label)], [["dog", "cat"], [1, 1, 0, 0]]);
  await assertRejects(
    () => readImageData(`${IMAGES}images.parquet`, processor, { labels: ["dog", "bird"] }),
    DataError,
    `images.parquet: row 1: label 0 (class "cat") is not one of the training data's ["dog","bird"]`,
  );
  // constant images stay constant through the resize: (200 / 255 − 0.5) / 0.5 in the red plane of a cat
  const cat = pixelsOf(data.examples[0].pixels);
  assertClose(Array.from(cat.subarray(0, 1024)), new Array(1024).fill((200 / 255 - 0.5) / 0.5), 1e-6);
  await withTempDir("hartley_imgjsonl_", async (dir) => {
    const image = Array.from({ length: 4 * 4 * 3 }, (_, i) => i * 5);
    await Deno.writeTextFile(
      `${dir}/px.jsonl`,
      JSON.stringify({ image, width: 4, height: 4, label: "b" }) + "\n" +
        JSON.stringify({ image, width: 4, height: 4, label: "a" }) + "\n",
    );
    const px = await readImageData(`${dir}/px.jsonl`, processor);
    assertEquals([px.labelNames, px.examples.map((e) => e.label)], [["b", "a"], [0, 1]]);
    // labels go through the text readers' rules: known names, ids below the head's size, no mixing
    await Deno.writeTextFile(
      `${dir}/ids.jsonl`,
      JSON.stringify({ image, width: 4, height: 4, label: 2 }) + "\n",
    );
    await assertRejects(
      () => readImageData(`${dir}/ids.jsonl`, processor, { labels: ["a", "b"] }),
      DataError,
      "ids.jsonl:1: label 2 (id 2) does not fit the head's 2 labels",
    );
    await Deno.writeTextFile(
      `${dir}/mixed.jsonl`,
      JSON.stringify({ image, width: 4, height: 4, label: 0 }) + "\n" +
        JSON.stringify({ image, width: 4, height: 4, label: "a" }) + "\n",
    );
    await assertRejects(
      () => readImageData(`${dir}/mixed.jsonl`, processor),
      DataError,
      "mix integer ids and names",
    );
    // unlabelled, for predict: the same pixels
    const unlabelled = await readImages(`${dir}/px.jsonl`, processor);
    assertEquals(unlabelled.map((x) => x.source.split("/").pop()), ["px.jsonl:1", "px.jsonl:2"]);
    assertEquals(Array.from(unlabelled[0].pixels()), Array.from(pixelsOf(px.examples[0].pixels)));
    await Deno.writeTextFile(`${dir}/x.bmp`, "");
    await assertRejects(
      () => readImageData(`${dir}/x.bmp`, processor),
      DataError,
      "must be a folder of class folders",
    );
  });
});

Deno.test("train a ViT on an image folder; predict labels its images as eval scores them", async () => {
  await withTempDir("hartley_vit_", async (dir) => {
    const options = "--method head --steps 2 --batch-size 2 --eval-fraction 0.34 --quiet".split(" ");
    const run = await runCli([
      "train",
      "--model",
      VIT,
      "--data",
      `${IMAGES}folder`,
      "--out",
      `${dir}/run`,
      ...options,
    ]);
    assertEquals(run.code, 0, run.err);
    assert(/\(\d+\.\d s, 4 images this session\)/.test(run.err), run.err); // 2 steps of 2 images
    const log = (await Deno.readTextFile(`${dir}/run/log.jsonl`)).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    const ev = log.find((r) => r.type === "eval");
    assertEquals([ev.step, ev.examples], [2, 2]); // a third of each class held out, stratified
    assert(ev.accuracy >= 0 && ev.accuracy <= 1, JSON.stringify(ev));
    const model = ["--model", `${dir}/run/model`];
    const all = await runCli(["eval", ...model, "--data", `${IMAGES}folder`, "--json"]);
    assertEquals(all.code, 0, all.err);
    const out = `${dir}/predictions.jsonl`;
    const p = await runCli(["predict", ...model, "--data", `${IMAGES}folder`, "--out", out]);
    assertEquals(p.code, 0, p.err);
    const rows = (await Deno.readTextFile(out)).trim().split("\n").map((l) => JSON.parse(l));
    assertEquals(rows.map((r) => r.file.split("/").slice(-2).join("/")), FOLDER_FILES);
    const right = rows.filter((r, i) => r.id === (i < 3 ? 0 : 1)).length;
    assertClose([right / 6], [JSON.parse(all.out).accuracy], 1e-9, "predict's accuracy against eval's");
    const one = await runCli(["predict", ...model, "--data", `${IMAGES}folder/dog/dog1.jpg`]);
    assertEquals([one.code, one.out], [0, `${rows[4].label} (${rows[4].probability})`]);
  });
});
