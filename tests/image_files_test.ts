import { parseHfConfig, type VitConfig } from "../lib/io/hf_config.ts";
import { parseImageProcessorConfig, preprocessImage } from "../lib/io/image.ts";
import { decodeImage, ImageFileError, readImageFile } from "../lib/io/image_files.ts";
import { DataError } from "../lib/train/readers.ts";
import { readImageData, readImages } from "../lib/train/image_data.ts";
import { assert, assertClose, assertEquals, assertRejects } from "./assert.ts";
import { runCli, withTempDir } from "./train_helpers.ts";

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

Deno.test("readImageData: a datasets Parquet split (image structs, ClassLabel names) and JSONL pixel arrays", async () => {
  const data = await readImageData(`${IMAGES}images.parquet`, processor);
  assertEquals(data.labelNames, ["cat", "dog"]);
  assertEquals(data.examples.map((e) => e.label), [0, 0, 1, 1]);
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
    assertEquals(rows.map((r) => r.file.split("/").slice(-2).join("/")), [
      "cat/cat0.png",
      "cat/cat1.jpg",
      "cat/cat2.png",
      "dog/dog0.png",
      "dog/dog1.jpg",
      "dog/dog2.png",
    ]);
    const right = rows.filter((r, i) => r.id === (i < 3 ? 0 : 1)).length;
    assertClose([right / 6], [JSON.parse(all.out).accuracy], 1e-9, "predict's accuracy against eval's");
    const one = await runCli(["predict", ...model, "--data", `${IMAGES}folder/dog/dog1.jpg`]);
    assertEquals([one.code, one.out], [0, `${rows[4].label} (${rows[4].probability})`]);
  });
});
