/**
 * What the data readers tell their callers: warnings go to `onWarning` alone (a library user
 * captures or silences them; the CLI prints them on stderr as before), the shape of the images
 * read, and the progress of the long data phases as the CLI shows it (a line on a pipe; none
 * with --quiet).
 */
import { join } from "node:path";
import { loadHfConfig, parseHfConfig, type VitConfig } from "../lib/io/hf_config.ts";
import { parseImageProcessorConfig } from "../lib/io/image.ts";
import { loadTokenizer } from "../lib/io/tokenizer.ts";
import { loadModelTokenizer } from "../lib/models/load.ts";
import { readImageData, readImages } from "../lib/train/image_data.ts";
import { instructionDataset } from "../lib/train/instruct.ts";
import { readClassificationFile } from "../lib/train/readers.ts";
import { ImageBatches } from "../lib/train/tasks.ts";
import { readTaggedFile } from "../lib/train/token_data.ts";
import { type DataSpec, loadSplits } from "../lib/cli/setup.ts";
import { assert, assertEquals } from "./assert.ts";
import { cliProcess, GPT2, withTempDir, writeToyData } from "./train_helpers.ts";

const MODELS = new URL("./fixtures/models/", import.meta.url).pathname;
const IMAGES = new URL("./fixtures/images/", import.meta.url).pathname;
const VIT = join(MODELS, "vit");
const vit = parseHfConfig(JSON.parse(await Deno.readTextFile(join(VIT, "config.json"))), "vit") as VitConfig;
const processor = parseImageProcessorConfig(null, vit, "defaults"); // resize to 32×32

/** `fn`'s result and what it wrote through console.error, a line an entry. */
async function stderrOf<T>(fn: () => Promise<T>): Promise<{ value: T; err: string[] }> {
  const err: string[] = [], error = console.error;
  console.error = (...a: unknown[]) => void err.push(a.join(" "));
  try {
    return { value: await fn(), err };
  } finally {
    console.error = error;
  }
}

/** `fn` run with no onWarning, then with one: each run's console.error lines and the warnings told. */
async function warningsOf(
  fn: (onWarning?: (message: string) => void) => Promise<unknown>,
): Promise<{ silent: string[]; told: string[]; printed: string[] }> {
  const silent = (await stderrOf(() => fn())).err;
  const told: string[] = [];
  const printed = (await stderrOf(() => fn((m) => told.push(m)))).err;
  return { silent, told, printed };
}

/** The CSV of a label that matches a given class name only ignoring case. */
const FOLDED_CSV = "text,label\na,Positive\nb,neg\n";
const folded = (path: string) =>
  `${path}:2: label "Positive" is taken as "POSITIVE" of the labels ["neg","POSITIVE"]`;

/** A CoNLL file with a tag that is not an entity tag among entity tags. */
const ODD_CONLL = "Ada B-PER\nsang MISC\n";
const oddTag = (path: string) => `${path}: tag "MISC" (an entity of type "ISC" to seqeval`;

/** The fixture image folder skips its notes.txt. */
const skipped = (dir: string) => `${dir}: skipped 1 file not PNG or JPEG (cat/notes.txt)`;

/** The data of `spec` read as train and eval read it, with `model`'s config and tokenizer. */
async function splitsOf(spec: Partial<DataSpec> & { data: string }, model: string, labels?: string[]) {
  const config = await loadHfConfig(model);
  if (labels) config.labels = labels;
  const tokenizer = config.modelType === "vit" ? null : await loadTokenizer(join(model, "tokenizer.json"));
  const full: DataSpec = { task: "seq-cls", evalFraction: 0, seqLen: 16, batchSize: 2, seed: 0, ...spec };
  return await loadSplits(full, config, tokenizer, model, labels?.length);
}

const BERT = join(MODELS, "bert");

Deno.test("readClassificationFile: a label matched ignoring case is told to onWarning alone; the CLI prints it", async () => {
  await withTempDir("hartley_warn_cls_", async (dir) => {
    const path = `${dir}/d.csv`;
    await Deno.writeTextFile(path, FOLDED_CSV);
    const r = await warningsOf((onWarning) =>
      readClassificationFile(path, { labels: ["neg", "POSITIVE"], onWarning })
    );
    assertEquals([r.silent, r.printed], [[], []], "nothing on stderr");
    assertEquals(r.told.length, 1, r.told.join("\n"));
    assert(r.told[0].startsWith(folded(path)), r.told[0]);
    const cli = await stderrOf(() => splitsOf({ data: path }, BERT, ["neg", "POSITIVE"]));
    assert(cli.err.length === 1 && cli.err[0].startsWith(folded(path)), cli.err.join("\n"));
  });
});

Deno.test("readTaggedFile: stray tags, and tags matched ignoring case, are told to onWarning alone; the CLI prints them", async () => {
  await withTempDir("hartley_warn_tags_", async (dir) => {
    const conll = `${dir}/d.conll`;
    await Deno.writeTextFile(conll, ODD_CONLL);
    const odd = await warningsOf((onWarning) => readTaggedFile(conll, { onWarning }));
    assertEquals([odd.silent, odd.printed], [[], []], "nothing on stderr");
    assertEquals(odd.told.length, 1, odd.told.join("\n"));
    assert(odd.told[0].startsWith(oddTag(conll)), odd.told[0]);
    const cli = await stderrOf(() => splitsOf({ task: "token-cls", data: conll }, BERT));
    assert(cli.err.length === 1 && cli.err[0].startsWith(oddTag(conll)), cli.err.join("\n"));
    // records: the tags' reader looks them up among a head's names as the text readers do
    const jsonl = `${dir}/d.jsonl`;
    await Deno.writeTextFile(jsonl, JSON.stringify({ tokens: ["Ada", "sang"], ner_tags: ["b-per", "O"] }));
    const cased = await warningsOf((onWarning) =>
      readTaggedFile(jsonl, { labels: ["O", "B-PER"], onWarning })
    );
    assertEquals([cased.silent, cased.printed], [[], []], "nothing on stderr");
    assertEquals(cased.told.length, 1, cased.told.join("\n"));
    assert(cased.told[0].startsWith(`${jsonl}:1: label "b-per" is taken as "B-PER"`), cased.told[0]);
  });
});

Deno.test("readImageData and readImages: skipped files and folders matched ignoring case are told to onWarning alone; the CLI prints them", async () => {
  const folder = `${IMAGES}folder`;
  const labelled = await warningsOf((onWarning) => readImageData(folder, processor, { onWarning }));
  assertEquals([labelled.silent, labelled.printed, labelled.told], [[], [], [skipped(folder)]]);
  const unlabelled = await warningsOf((onWarning) => readImages(folder, processor, { onWarning }));
  assertEquals([unlabelled.silent, unlabelled.printed, unlabelled.told], [[], [], [skipped(folder)]]);
  const cased = await warningsOf((onWarning) =>
    readImageData(folder, processor, { labels: ["CAT", "DOG"], onWarning })
  );
  assertEquals([cased.silent, cased.printed], [[], []], "nothing on stderr");
  assertEquals(cased.told.length, 2, cased.told.join("\n"));
  assert(cased.told[0].startsWith(`${folder}/cat: label "cat" is taken as "CAT"`), cased.told[0]);
  assertEquals(cased.told[1], skipped(folder));
  // predict's reading is checked with its progress display, below
  const cli = await stderrOf(() => splitsOf({ task: "image-cls", data: folder }, VIT));
  assertEquals(cli.err, [skipped(folder)]);
});

Deno.test("readImageData: imageShape is the [3, height, width] of the examples, as ImageBatches takes it", async () => {
  const big = { ...processor, height: 24, width: 40 };
  for (const path of [`${IMAGES}folder`, `${IMAGES}images.parquet`]) {
    const data = await readImageData(path, big);
    assertEquals(data.imageShape, [3, 24, 40], path);
    const batch = new ImageBatches(data.examples, data.imageShape, 2).batch({ epoch: 0, step: 0 });
    assertEquals(batch.shape, [2, 3, 24, 40], path);
    const pixels = data.examples[0].pixels;
    assertEquals((typeof pixels === "function" ? pixels() : pixels).length, 3 * 24 * 40, path);
  }
  await withTempDir("hartley_image_shape_", async (dir) => {
    const path = `${dir}/pixels.jsonl`;
    await Deno.writeTextFile(
      path,
      JSON.stringify({ image: [0, 64, 128, 255, 32, 16], width: 2, height: 1, label: 0 }),
    );
    assertEquals((await readImageData(path, big)).imageShape, [3, 24, 40]);
  });
});

Deno.test("instructionDataset: a row cut to seqLen holds its own ids, not a view of the whole example's", async () => {
  const tok = await loadModelTokenizer(await loadHfConfig(GPT2));
  const completion = " and the city went home, and the jury said it was over.".repeat(20);
  const made = instructionDataset([{ prompt: "The jury said", completion }], tok, { seqLen: 16 });
  assertEquals(made.truncated, 1);
  const ids = made.dataset.row(0).ids as Int32Array;
  assertEquals([ids.length, ids.buffer.byteLength], [16, 16 * 4]);
});

/** A finished progress line of `label` on a pipe: all of its items done. */
const doneLine = (label: string) => new RegExp(`^${label} +(\\d+)/\\1 +100% +done in`, "m");

Deno.test("cli: tokenizing causal-LM text shows its progress on stderr, none with --quiet", async () => {
  await withTempDir("hartley_text_progress_", async (dir) => {
    const line = "The jury said it was over, and the city went home.\n";
    const text = `${dir}/big.txt`;
    await Deno.writeTextFile(text, line.repeat(Math.ceil(1.05 * 2 ** 20 / line.length)));
    const args = ["eval", "--model", GPT2, "--seq-len", "8", "--batch-size", "2", "--max-eval", "2"];
    const shown = await cliProcess([...args, "--data", text]);
    assertEquals(shown.code, 0, shown.err);
    // once: eval's one file is its training and eval text
    assertEquals(shown.err.match(new RegExp(doneLine("tokenizing bytes"), "gm"))?.length, 1, shown.err);
    const quiet = await cliProcess([...args, "--data", text, "--quiet"]);
    assertEquals(quiet.code, 0, quiet.err);
    assert(!quiet.err.includes("tokenizing"), quiet.err);
    // the packaged Brown corpus too
    const brown = await cliProcess([...args, "--data", "brown"]);
    assertEquals(brown.code, 0, brown.err);
    assert(doneLine("tokenizing characters").test(brown.err), brown.err);
  });
});

Deno.test("cli: --group-by-length tokenizes every row before the first step, under its own progress display", async () => {
  await withTempDir("hartley_length_progress_", async (dir) => {
    const data = await writeToyData(dir, 2000);
    const args = [
      ...["train", "--model", GPT2, "--data", data, "--group-by-length", "--steps", "1"],
      ...["--seq-len", "12", "--batch-size", "8", "--eval-fraction", "0", "--save-every", "0"],
    ];
    const shown = await cliProcess([...args, "--out", `${dir}/shown`]);
    assertEquals(shown.code, 0, shown.err);
    const tokenized = shown.err.search(doneLine("tokenizing")), trained = shown.err.search(/^ssh +\d+\/1 /m);
    assert(tokenized >= 0 && trained > tokenized, shown.err);
    const quiet = await cliProcess([...args, "--out", `${dir}/quiet`, "--quiet"]);
    assertEquals(quiet.code, 0, quiet.err);
    assert(!quiet.err.includes("tokenizing"), quiet.err);
  });
});

Deno.test("cli: decoding and classifying many images show their progress on stderr, and skipped files (train and predict)", async () => {
  await withTempDir("hartley_image_progress_", async (dir) => {
    for (const cls of ["cat", "dog"]) {
      await Deno.mkdir(`${dir}/images/${cls}`, { recursive: true });
      for (let i = 0; i < 128; i++) {
        await Deno.symlink(`${IMAGES}folder/${cls}/${cls}0.png`, `${dir}/images/${cls}/${i}.png`);
      }
    }
    const images = `${dir}/images`;
    await Deno.writeTextFile(`${images}/cat/notes.txt`, "");
    const skip = `${images}: skipped 1 file not PNG or JPEG (cat/notes.txt)`;
    const train = await cliProcess([
      ...["train", "--model", VIT, "--data", images, "--method", "head", "--steps", "1", "--batch-size", "2"],
      ...["--eval-fraction", "0", "--save-every", "0", "--out", `${dir}/run`],
    ]);
    assertEquals(train.code, 0, train.err);
    assert(doneLine("decoding images").test(train.err) && train.err.includes(skip), train.err);
    const predict = await cliProcess([
      "predict",
      "--model",
      VIT,
      "--data",
      images,
      "--out",
      `${dir}/p.jsonl`,
    ]);
    assertEquals(predict.code, 0, predict.err);
    assert(doneLine("decoding images").test(predict.err) && predict.err.includes(skip), predict.err);
    assert(doneLine("classifying images").test(predict.err), predict.err);
  });
});
