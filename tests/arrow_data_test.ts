/**
 * `datasets`' own on-disk format: Arrow IPC files (the cache's NAME-train.arrow) and the folders of
 * `Dataset.save_to_disk`, read wherever a Parquet split is (tests/fixtures/data/arrow/, written by
 * tools/make_arrow_fixtures.ts from the Parquet fixtures' rows: the same data in both formats).
 */
import { join } from "node:path";
import { ArrowError, readArrow } from "../lib/io/arrow.ts";
import { loadHfConfig, type VitConfig } from "../lib/io/hf_config.ts";
import { parseImageProcessorConfig } from "../lib/io/image.ts";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { DataError } from "../lib/train/data_error.ts";
import { decodeImageList, listImageData, listImages } from "../lib/train/image_data.ts";
import { readInstructions } from "../lib/train/instruct.ts";
import {
  readClassificationFile,
  readTextDocuments,
  readTexts,
  recordClassLabels,
  recordFieldNames,
} from "../lib/train/readers.ts";
import { readTaggedFile } from "../lib/train/token_data.ts";
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { runCli, tinyRun, withTempDir } from "./train_helpers.ts";

const DATA = new URL("./fixtures/data/", import.meta.url).pathname;
const ARROW = `${DATA}arrow/`;
const IMAGES = new URL("./fixtures/images/", import.meta.url).pathname;
/** A save_to_disk folder of the 8 rows of spam_snappy.parquet in 2 shards (5 and 3 rows). */
const SPAM_SPLIT = `${ARROW}spam_dict/train`;

/** `value` without its `path` and its examples' `source` (the file read, and where in it). */
function unsourced<T>(value: T): unknown {
  return JSON.parse(JSON.stringify(value, (key, v) => key === "source" || key === "path" ? undefined : v));
}

Deno.test("Arrow: a stream file, a file-format file and a save_to_disk folder give the Parquet split's examples", async () => {
  const parquet = await readClassificationFile(`${DATA}spam_snappy.parquet`);
  assertEquals(parquet.labelNames, ["ham", "spam"]);
  for (const path of [`${ARROW}spam-train.arrow`, `${ARROW}spam_file_format.arrow`, SPAM_SPLIT]) {
    assertEquals(unsourced(await readClassificationFile(path)), unsourced(parquet), path);
  }
  // rows numbered across the folder's shards: row 6 is the second shard's first
  const split = await readClassificationFile(SPAM_SPLIT);
  assertEquals(split.examples.map((e) => e.source), parquet.examples.map((_, i) => `${SPAM_SPLIT}:${i + 1}`));
  assertEquals(await readTexts(`${ARROW}spam-train.arrow`), await readTexts(`${DATA}spam_snappy.parquet`));
  assertEquals(await readTextDocuments(SPAM_SPLIT), await readTextDocuments(`${DATA}spam_snappy.parquet`));
  await assertRejects(
    () => readTextDocuments(SPAM_SPLIT, { textField: "body" }),
    DataError,
    `${SPAM_SPLIT}: no column "body" (name the text column: --text-field, or textField); the columns are text, label`,
  );
  // tagged words (List(ClassLabel) tags) and conversations (lists of structs)
  const ner = await readTaggedFile(`${ARROW}ner-train.arrow`);
  assertEquals(unsourced(ner), unsourced(await readTaggedFile(`${DATA}ner.parquet`)));
  assertEquals(ner.labelNames, ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]);
  assertEquals(
    unsourced(await readInstructions(`${ARROW}chat-train.arrow`)),
    unsourced(await readInstructions(`${DATA}chat.parquet`)),
  );
});

Deno.test("Arrow: columns and ClassLabel names from the schema; a DatasetDict folder is refused naming its splits", async () => {
  assertEquals(await recordFieldNames(SPAM_SPLIT), ["text", "label"]);
  assertEquals(await recordFieldNames(`${ARROW}ner-train.arrow`), ["tokens", "ner_tags"]);
  assertEquals([...await recordClassLabels(SPAM_SPLIT)], [["label", ["ham", "spam"]]]);
  assertEquals(
    [...await recordClassLabels(`${ARROW}ner-train.arrow`)],
    [["ner_tags", ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]]],
  );
  const dict = `${ARROW}spam_dict`;
  const refusal =
    `${dict}: a DatasetDict (the folder DatasetDict.save_to_disk writes, of splits train, test): ` +
    `give one split's folder, e.g. ${dict}/train`;
  await assertRejects(() => readClassificationFile(dict), DataError, refusal);
  await assertRejects(() => recordFieldNames(dict), DataError, refusal);
});

Deno.test("Arrow: a file that is not Arrow, a value past a safe integer and a map column are refused by name", async () => {
  await withTempDir("hartley_arrow_", async (dir) => {
    await Deno.writeTextFile(join(dir, "notes.arrow"), "text,label\nhello,1\n");
    await assertRejects(
      () => readClassificationFile(join(dir, "notes.arrow")),
      DataError,
      `${dir}/notes.arrow: not an Arrow file`,
    );
    // a save_to_disk folder whose shard is not Arrow names the shard
    await Deno.writeTextFile(
      join(dir, "state.json"),
      JSON.stringify({ _data_files: [{ filename: "notes.arrow" }] }),
    );
    await assertRejects(
      () => readClassificationFile(dir),
      DataError,
      `${dir}/notes.arrow: not an Arrow file`,
    );
  });
  await assertRejects(
    () => readClassificationFile(`${ARROW}big_id`),
    DataError,
    `${ARROW}big_id: row 3 (data-00001-of-00002.arrow), column "label": 1152921504606846976 does not fit a safe ` +
      `integer`,
  );
  await assertRejects(
    () => readTexts(`${ARROW}map_column.arrow`),
    DataError,
    `${ARROW}map_column.arrow: column "counts" holds Arrow Map values`,
  );
});

Deno.test("Arrow: an image split saved by save_to_disk lists and decodes as its Parquet split does", async () => {
  const config = await loadHfConfig(new URL("./fixtures/models/vit/", import.meta.url).pathname);
  const processor = parseImageProcessorConfig(null, config as VitConfig, "defaults");
  const decoded = async (path: string) => {
    const list = await listImageData(path, processor);
    const examples = await decodeImageList(list);
    const pixels = examples.map((e) => Array.from(typeof e.pixels === "function" ? e.pixels() : e.pixels));
    return { names: list.labelNames, labels: examples.map((e) => e.label), pixels };
  };
  // bytes in the cells; and paths alone, relative to the save_to_disk folder
  const bytes = await decoded(`${ARROW}images`);
  assertEquals(bytes, await decoded(`${IMAGES}images.parquet`));
  assertEquals([bytes.names, bytes.labels], [["cat", "dog"], [0, 0, 1, 1]]);
  assertEquals(await decoded(`${ARROW}image_paths`), await decoded(`${IMAGES}layouts/paths.parquet`));
  assertEquals(
    (await listImages(`${ARROW}images`, processor)).map((image) => image.source),
    [1, 2, 3, 4].map((row) => `${ARROW}images: row ${row}`),
  );
});

Deno.test("train: a seq-cls run on a save_to_disk folder, its ClassLabel names the head's classes", async () => {
  await withTempDir("hartley_arrow_train_", async (dir) => {
    const run = await runCli(tinyRun(SPAM_SPLIT, `${dir}/run`, ["--steps", "1"]));
    assertEquals(run.code, 0, run.err);
    const weights = await openSafetensors(`${dir}/run/adapter/adapter_model.safetensors`);
    assertEquals(JSON.parse(weights.metadata["hartley.labels"]), ["ham", "spam"]);
  });
});

Deno.test("eval of a saved split with string labels, on a head without class names, says how it numbered them", async () => {
  const bert = ["eval", "--model", "tests/fixtures/models/bert", "--seq-len", "12"];
  const strings = await runCli([...bert, "--data", `${ARROW}spam_strings`]);
  assertEquals(strings.code, 0, strings.err);
  assert(
    strings.err.includes("names no classes") && strings.err.includes("order of appearance"),
    strings.err,
  );
  // a saved split with ClassLabel names fixes its ids itself
  const named = await runCli([...bert, "--data", SPAM_SPLIT]);
  assertEquals(named.code, 0, named.err);
  assert(!named.err.includes("names no classes"), named.err);
});

Deno.test("Arrow: a missing file and a folder given as a file are refused by name, as readers' files are", async () => {
  await withTempDir("hartley_arrow_read_", async (dir) => {
    const missing = join(dir, "none.arrow");
    await assertRejects(() => readArrow(missing), ArrowError, `${missing}: file not found`);
    const folder = join(dir, "folder.arrow");
    await Deno.mkdir(folder);
    await assertRejects(() => readArrow(folder), ArrowError, `${folder}: is a directory, not a data file`);
  });
});
