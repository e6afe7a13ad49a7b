/**
 * Parquet image splits laid out as the Hub's image data sets are (tests/fixtures/images/layouts/,
 * written by make_layouts.py): string labels without ClassLabel metadata, the image and label
 * columns by their `datasets` names (cifar10's `img`, cifar100's two ClassLabels, beans' `labels`),
 * and the path-only image structs Dataset.to_parquet writes for images loaded from files.
 */
import { loadHfConfig, type VitConfig } from "../lib/io/hf_config.ts";
import { parseImageProcessorConfig } from "../lib/io/image.ts";
import { type DataSpec, loadSplits } from "../lib/cli/setup.ts";
import { DataError } from "../lib/train/data_error.ts";
import { readImageData, readImages } from "../lib/train/image_data.ts";
import type { ImageBatches } from "../lib/train/tasks.ts";
import { assertEquals, assertRejects } from "./assert.ts";
import { runCli, withTempDir } from "./train_helpers.ts";

const IMAGES = new URL("./fixtures/images/", import.meta.url).pathname;
const LAYOUTS = `${IMAGES}layouts/`;
const VIT = new URL("./fixtures/models/vit/", import.meta.url).pathname;
const config = await loadHfConfig(VIT);
const processor = parseImageProcessorConfig(null, config as VitConfig, "defaults"); // 32×32
const labelled = async (path: string, labelField?: string) => {
  const data = await readImageData(path, processor, { labelField });
  return [data.labelNames, data.examples.map((e) => e.label)];
};

Deno.test("image Parquet with string labels: the names come back, and an eval split in another order maps by them", async () => {
  assertEquals(await labelled(`${LAYOUTS}strings_train.parquet`), [["cat", "dog"], [0, 0, 1, 1]]);
  // the eval split lists the dogs first: by its own first-seen order they would be class 0
  const spec: DataSpec = {
    task: "image-cls",
    data: `${LAYOUTS}strings_train.parquet`,
    evalData: `${LAYOUTS}strings_eval.parquet`,
    evalFraction: 0,
    seqLen: 0,
    batchSize: 2,
    seed: 0,
  };
  const splits = await loadSplits(spec, config, null, VIT);
  assertEquals(splits.labelNames, ["cat", "dog"]); // the adapter saves them
  assertEquals((splits.eval as ImageBatches).examples.map((e) => e.label), [1, 1, 0, 0]);
});

Deno.test("image Parquet columns: the Image column and the label column by their datasets names", async () => {
  const cats = [["cat", "dog"], [0, 0, 1, 1]];
  assertEquals(await labelled(`${LAYOUTS}cifar10.parquet`), cats); // img, label
  assertEquals(await labelled(`${LAYOUTS}beans.parquet`), cats); // image, labels
  assertEquals(await labelled(`${LAYOUTS}species.parquet`), cats); // id, photo (Image), species (ClassLabel)
  assertEquals((await readImages(`${LAYOUTS}cifar10.parquet`, processor)).length, 4);
  // two Image columns: the one named "image" (scene_parse_150's image beside its annotation), else none
  const segments = await readImageData(`${LAYOUTS}segments.parquet`, processor);
  const red = segments.examples[0].pixels;
  assertEquals((typeof red === "function" ? red() : red)[0], Math.fround((200 / 255 - 0.5) / 0.5)); // a cat
  await assertRejects(
    () => readImages(`${LAYOUTS}two_images.parquet`, processor),
    DataError,
    `two_images.parquet: 2 image columns (left, right), none named "image" or "img"`,
  );
  await assertRejects(
    () => readImages(`${LAYOUTS}names.parquet`, processor),
    DataError,
    `names.parquet: row 1: "image" holds a string, not an image struct ({bytes, path})`,
  );
  // cifar100: two ClassLabels, and --label-field names the one to learn
  await assertRejects(
    () => labelled(`${LAYOUTS}cifar100.parquet`),
    DataError,
    `cifar100.parquet: no "label" column, and 2 ClassLabel columns (fine_label, coarse_label): name one ` +
      `(--label-field, or labelField)`,
  );
  assertEquals(await labelled(`${LAYOUTS}cifar100.parquet`, "coarse_label"), [["plant", "animal"], [
    1,
    1,
    1,
    1,
  ]]);
  await assertRejects(
    () => labelled(`${LAYOUTS}cifar100.parquet`, "fine"),
    DataError,
    `cifar100.parquet: no "fine" column (the columns are img, fine_label, coarse_label)`,
  );
  // a split without images is named as such, not as a column holding no bytes
  const pairs = new URL("./fixtures/data/pairs.parquet", import.meta.url).pathname;
  const noImage = `pairs.parquet: no image column (a column of {bytes, path} image structs, or one named ` +
    `"image" or "img"); the columns are premise, hypothesis, label`;
  await assertRejects(() => readImages(pairs, processor), DataError, noImage);
  await assertRejects(() => labelled(pairs), DataError, noImage);
  // the label field of JSONL pixel arrays; a folder's labels are its class folders
  await withTempDir("hartley_imglabelfield_", async (dir) => {
    const image = Array.from({ length: 2 * 2 * 3 }, (_, i) => i * 20);
    const line = (tag: string) => JSON.stringify({ image, width: 2, height: 2, tag }) + "\n";
    await Deno.writeTextFile(`${dir}/px.jsonl`, line("b") + line("a"));
    assertEquals(await labelled(`${dir}/px.jsonl`, "tag"), [["b", "a"], [0, 1]]);
    await assertRejects(
      () => labelled(`${dir}/px.jsonl`),
      DataError,
      `px.jsonl:1: missing field "label" (or name the label field: --label-field, or labelField); ` +
        `the fields are image, width, height, tag`,
    );
  });
  await assertRejects(
    () => labelled(`${IMAGES}folder`, "label"),
    DataError,
    `folder: --label-field (labelField) does not apply to an image folder: its class folders are the labels`,
  );
});

Deno.test("image Parquet of path-only structs (Dataset.to_parquet of images loaded from files): the files are read", async () => {
  const data = await readImageData(`${LAYOUTS}paths.parquet`, processor);
  assertEquals([data.labelNames, data.examples.map((e) => e.label)], [["cat", "dog"], [0, 0, 1, 1]]);
  // the path is relative to the Parquet file's folder
  const [file] = await readImages(`${IMAGES}folder/dog/dog2.png`, processor);
  const example = data.examples[3].pixels;
  assertEquals(Array.from(typeof example === "function" ? example() : example), Array.from(file.pixels()));
  assertEquals((await readImages(`${LAYOUTS}paths.parquet`, processor)).length, 4);
  await withTempDir("hartley_imgpaths_", async (dir) => {
    await Deno.copyFile(`${LAYOUTS}paths.parquet`, `${dir}/paths.parquet`);
    const missing = `${dir}/paths.parquet: row 1: "image" has no bytes, and its path ` +
      `"../folder/cat/cat0.png" (${dir.replace(/\/[^/]+$/, "")}/folder/cat/cat0.png) is not a file`;
    await assertRejects(() => readImageData(`${dir}/paths.parquet`, processor), DataError, missing);
    await assertRejects(() => readImages(`${dir}/paths.parquet`, processor), DataError, missing);
  });
});

Deno.test("eval --label-field on an image split: it applies to image-cls", async () => {
  const args = ["eval", "--model", VIT, "--data", `${LAYOUTS}cifar100.parquet`, "--json"];
  const run = await runCli([...args, "--label-field", "coarse_label"]);
  assertEquals(run.code, 0, run.err);
  assertEquals(JSON.parse(run.out).examples, 4);
});
