/**
 * What the data setup reads, and when: eval reads, tokenizes and decodes its one file once; image
 * splits decode only the rows a run keeps (--eval-fraction, --max-train, --max-eval), in the order
 * and with the pixels of decoding them all; a run started on plain text with --loss-on all or
 * --template-kwargs (which older versions accepted and ignored) resumes; warnings and errors
 * printed while a progress bar is drawn on a terminal start on a line of their own.
 */
import { join, resolve } from "node:path";
import { loadHfConfig } from "../lib/io/hf_config.ts";
import { parseImageProcessorConfig } from "../lib/io/image.ts";
import type { VitConfig } from "../lib/io/hf_config.ts";
import { type DataSpec, loadSplits } from "../lib/cli/setup.ts";
import { ArgsError, withArgs } from "../lib/cli/args.ts";
import { readImageData } from "../lib/train/image_data.ts";
import { splitByFraction } from "../lib/train/split.ts";
import { Progress } from "../lib/train/progress.ts";
import { Tokenizer } from "../lib/io/tokenizer.ts";
import type { ImageBatches, ImageExample } from "../lib/train/tasks.ts";
import { readRunLog } from "../lib/train/log.ts";
import { assert, assertEquals } from "./assert.ts";
import { FOLDER_FILES, GPT2, runCli, withTempDir, writeToyData } from "./train_helpers.ts";

const MODELS = new URL("./fixtures/models/", import.meta.url).pathname;
const IMAGES = new URL("./fixtures/images/", import.meta.url).pathname;
const VIT = join(MODELS, "vit");
const BERT = join(MODELS, "bert");
const FOLDER = `${IMAGES}folder`;

/** `fn`'s result, and how often Deno.readFile read each file (by absolute path) meanwhile. */
async function readsOf<T>(fn: () => Promise<T>): Promise<{ value: T; reads: Map<string, number> }> {
  const deno = Deno as { readFile: typeof Deno.readFile };
  const readFile = deno.readFile;
  const reads = new Map<string, number>();
  deno.readFile = (path, opts) => {
    const at = resolve(String(path));
    reads.set(at, (reads.get(at) ?? 0) + 1);
    return readFile(path, opts);
  };
  try {
    return { value: await fn(), reads };
  } finally {
    deno.readFile = readFile;
  }
}

/** The reads of files below `dir`, by path relative to it (sorted). */
function readsBelow(reads: Map<string, number>, dir: string): [string, number][] {
  const base = resolve(dir) + "/";
  return [...reads].filter(([p]) => p.startsWith(base)).map(([p, n]) =>
    [p.slice(base.length), n] as [string, number]
  )
    .sort(([a], [b]) => a < b ? -1 : 1);
}

Deno.test("eval reads, tokenizes and decodes its one file once, and decodes only the --max-eval images", async () => {
  await withTempDir("hartley_eval_reads_", async (dir) => {
    // labelled text: read once
    const toy = await writeToyData(dir, 12);
    const text = await readsOf(() =>
      runCli(["eval", "--model", BERT, "--data", toy, "--seq-len", "12", "--json"])
    );
    assertEquals(text.value.code, 0, text.value.err);
    assertEquals(text.reads.get(resolve(toy)), 1, "reads of the labelled file");
    // tagged sentences: read once (a head trained here: the fixture's is a sequence classifier's)
    const tagged = `${dir}/tags.jsonl`;
    const sentences = [
      { tokens: ["Ada", "went", "to", "Paris"], ner_tags: ["B-PER", "O", "O", "B-LOC"] },
      { tokens: ["Paris", "met", "Ada"], ner_tags: ["B-LOC", "O", "B-PER"] },
    ];
    await Deno.writeTextFile(tagged, sentences.map((s) => JSON.stringify(s)).join("\n") + "\n");
    const head = await runCli([
      ...["train", "--model", BERT, "--task", "token-cls", "--data", tagged, "--method", "head"],
      ...["--steps", "1", "--eval-fraction", "0", "--seq-len", "12", "--out", `${dir}/tok`, "--quiet"],
    ]);
    assertEquals(head.code, 0, head.err);
    const tags = await readsOf(() =>
      runCli(["eval", "--model", `${dir}/tok/model`, "--data", tagged, "--seq-len", "12", "--json"])
    );
    assertEquals(tags.value.code, 0, tags.value.err);
    assertEquals(tags.reads.get(resolve(tagged)), 1, "reads of the tagged file");
    // an image folder: each image decoded once, its skipped file told once
    const images = await readsOf(() => runCli(["eval", "--model", VIT, "--data", FOLDER, "--json"]));
    assertEquals(images.value.code, 0, images.value.err);
    assertEquals(readsBelow(images.reads, FOLDER), FOLDER_FILES.map((f) => [f, 1]));
    assertEquals(images.value.err.match(/skipped 1 file/g)?.length, 1, images.value.err);
    assertEquals(JSON.parse(images.value.out).examples, 6);
    // --max-eval: the images evaluated alone are decoded
    const two = await readsOf(() =>
      runCli(["eval", "--model", VIT, "--data", FOLDER, "--max-eval", "2", "--json"])
    );
    assertEquals(two.value.code, 0, two.value.err);
    assertEquals(readsBelow(two.reads, FOLDER), [["cat/cat0.png", 1], ["cat/cat1.jpg", 1]]);
    assertEquals(JSON.parse(two.value.out).examples, 2);
  });
});

/** `fn`'s result, and the rows (by their "row N" marks) the tokenizer encoded meanwhile. */
async function encodedRowsOf<T>(fn: () => Promise<T>): Promise<{ value: T; rows: Set<number> }> {
  const proto = Tokenizer.prototype, encode = proto.encode;
  const rows = new Set<number>();
  proto.encode = function (text, opts) {
    for (const m of text.matchAll(/row (\d+)/g)) rows.add(Number(m[1]));
    return encode.call(this, text, opts);
  };
  try {
    return { value: await fn(), rows };
  } finally {
    proto.encode = encode;
  }
}

Deno.test("eval on instruction records reads the file once and tokenizes only the --max-eval rows", async () => {
  await withTempDir("hartley_eval_instructions_", async (dir) => {
    const record = (i: number) => JSON.stringify({ prompt: `Say row ${i}:`, completion: ` row ${i} said.` });
    const many = `${dir}/many.jsonl`, five = `${dir}/five.jsonl`;
    await Deno.writeTextFile(many, Array.from({ length: 300 }, (_, i) => record(i)).join("\n") + "\n");
    await Deno.writeTextFile(five, Array.from({ length: 5 }, (_, i) => record(i)).join("\n") + "\n");
    const args = ["eval", "--model", GPT2, "--seq-len", "16", "--json"];
    const { value: { value: cut, reads }, rows } = await encodedRowsOf(() =>
      readsOf(() => runCli([...args, "--data", many, "--max-eval", "5"]))
    );
    assertEquals(cut.code, 0, cut.err);
    assertEquals(reads.get(resolve(many)), 1, "reads of the instruction file");
    assertEquals([...rows].sort((a, b) => a - b), [0, 1, 2, 3, 4], "rows tokenized");
    // the metrics of the first five rows alone
    const alone = await runCli([...args, "--data", five]);
    assertEquals(alone.code, 0, alone.err);
    assertEquals({ ...JSON.parse(cut.out), data: five }, JSON.parse(alone.out));
  });
});

const vit = await loadHfConfig(VIT);
const processor = parseImageProcessorConfig(null, vit as VitConfig, "defaults");

/** An image folder of three classes of 7, 10 and 13 links to the fixture images (in a mixed order). */
async function linkedFolder(dir: string): Promise<string> {
  for (const [c, cls] of ["a", "b", "c"].entries()) {
    await Deno.mkdir(`${dir}/images/${cls}`, { recursive: true });
    for (let i = 0; i < 7 + 3 * c; i++) {
      const target = `${FOLDER}/${FOLDER_FILES[(i * 5 + c) % 6]}`;
      await Deno.symlink(target, `${dir}/images/${cls}/${String(i).padStart(2, "0")}.png`);
    }
  }
  return `${dir}/images`;
}

/** An example's label and pixels, comparable. */
function contents(e: ImageExample): [number, number[]] {
  return [e.label, Array.from(typeof e.pixels === "function" ? e.pixels() : e.pixels)];
}

/**
 * The train and eval examples of `spec` as they were chosen when every image was decoded first:
 * all read, held out by --eval-fraction (stratified by label, seeded), then cut to --max-train and
 * --max-eval.
 */
async function decodedFirst(spec: DataSpec): Promise<{ train: ImageExample[]; eval: ImageExample[] }> {
  const all = (await readImageData(spec.data, processor)).examples;
  const split = spec.evalFraction > 0
    ? splitByFraction(all, { fraction: spec.evalFraction, seed: spec.seed, stratify: (e) => e.label })
    : { train: all, heldOut: [] };
  return {
    train: split.train.slice(0, spec.maxTrain ?? Infinity),
    eval: split.heldOut.slice(0, spec.maxEval ?? Infinity),
  };
}

Deno.test("image splits decode only the rows they keep: the same examples, order and pixels as decoding all first", async () => {
  await withTempDir("hartley_image_rows_", async (dir) => {
    const folder = await linkedFolder(dir);
    const specs: [Partial<DataSpec> & { data: string }, number][] = [
      [{ data: folder, evalFraction: 0.3, maxTrain: 9, maxEval: 4, seed: 3 }, 13],
      [{ data: folder, evalFraction: 0.25, maxTrain: 5 }, 5 + 8],
      [{ data: folder, maxTrain: 4 }, 4],
      // path-only structs: each row kept reads its file
      [{ data: `${IMAGES}layouts/paths.parquet`, evalFraction: 0.5, maxTrain: 1, seed: 2 }, 3],
    ];
    for (const [given, decoded] of specs) {
      const spec: DataSpec = {
        task: "image-cls",
        evalFraction: 0,
        seqLen: 0,
        batchSize: 2,
        seed: 0,
        quiet: true,
        ...given,
      };
      const { value: splits, reads } = await readsOf(() => loadSplits(spec, vit, null, VIT, 5));
      const imageReads = [...reads].filter(([p]) => /\.(png|jpe?g)$/.test(p));
      assertEquals(
        imageReads.reduce((n, [, k]) => n + k, 0),
        decoded,
        `images decoded for ${JSON.stringify(given)}`,
      );
      const want = await decodedFirst(spec);
      // held, not streamed: these splits fit the default --image-memory
      const train = (splits.train as ImageBatches).examples as ImageExample[],
        held = (splits.eval as ImageBatches | null)?.examples as ImageExample[] | undefined;
      assertEquals(train.map(contents), want.train.map(contents), `train ${JSON.stringify(given)}`);
      assertEquals((held ?? []).map(contents), want.eval.map(contents), `eval ${JSON.stringify(given)}`);
    }
  });
});

Deno.test("train --resume continues a run started on plain text with --loss-on all and --template-kwargs (as older versions recorded it)", async () => {
  await withTempDir("hartley_resume_plain_", async (dir) => {
    const text = `${dir}/text.txt`;
    await Deno.writeTextFile(text, "The jury said it was over, and the city went home.\n".repeat(20));
    const out = `${dir}/run`;
    const first = await runCli([
      ...["train", "--model", GPT2, "--data", text, "--seq-len", "8", "--batch-size", "4", "--steps", "4"],
      ...["--stop-at", "2", "--n", "24", "--eval-fraction", "0", "--out", out, "--quiet"],
    ]);
    assertEquals(first.code, 0, first.err);
    // what a version that accepted and ignored the two flags on plain text saved in its checkpoint
    const file = `${out}/checkpoint/trainer_state.json`;
    const state = JSON.parse(await Deno.readTextFile(file));
    state.args.push("--loss-on", "all", "--template-kwargs", `{"x": 1}`);
    state.fingerprint.lossOn = "all";
    state.fingerprint.templateVariables = { x: 1 };
    await Deno.writeTextFile(file, JSON.stringify(state));
    const resumed = await runCli(["train", "--resume", "--out", out, "--quiet"]);
    assertEquals(resumed.code, 0, resumed.err);
    const log = await readRunLog(`${out}/log.jsonl`);
    assertEquals(log.filter((r) => r.type === "end").map((r) => r.step), [4]);
    // a new run on plain text is still refused them
    const fresh = await runCli([
      ...["train", "--model", GPT2, "--data", text, "--seq-len", "8", "--steps", "1", "--loss-on", "all"],
      ...["--out", `${dir}/fresh`, "--quiet"],
    ]);
    assertEquals(fresh.code, 2, fresh.err);
    assert(fresh.err.includes("--loss-on all does not apply"), fresh.err);
  });
});

/** A terminal that records what is written to it. */
function fakeTerminal(): {
  sink: { writeSync(p: Uint8Array): number; isTerminal(): boolean };
  text: () => string;
} {
  const written: string[] = [];
  return {
    sink: {
      writeSync: (b: Uint8Array) => (written.push(new TextDecoder().decode(b)), b.length),
      isTerminal: () => true,
    },
    text: () => written.join(""),
  };
}

/** `fn` run with console.error captured: what it printed there, a line an entry. */
async function consoleErrorOf(fn: () => Promise<void> | void): Promise<string[]> {
  const lines: string[] = [], error = console.error;
  console.error = (...a: unknown[]) => void lines.push(a.join(" "));
  try {
    await fn();
  } finally {
    console.error = error;
  }
  return lines;
}

Deno.test("a warning printed while a progress bar is drawn on a terminal goes above the bar, which is redrawn below it", async () => {
  const term = fakeTerminal();
  const bar = new Progress(10, { sink: term.sink, label: "decoding images", now: () => 0 });
  bar.update(3);
  const drawn = term.text();
  const printed = await consoleErrorOf(() => Progress.print("data.parquet: row 7: label taken as CAT"));
  assertEquals(printed, [], "nothing through console.error while the bar is drawn");
  assertEquals(
    term.text(),
    drawn + "\r\x1b[2Kdata.parquet: row 7: label taken as CAT\n" + bar.line(),
    "the bar's line cleared, the warning, the bar again",
  );
  bar.done();
  // no bar drawn: the warning goes to stderr as before
  const later = await consoleErrorOf(() => Progress.print("a later warning"));
  assertEquals(later, ["a later warning"]);
});

Deno.test("eval: an error thrown while images decode under a progress bar on a terminal starts on a fresh line", async () => {
  await withTempDir("hartley_bar_error_", async (dir) => {
    for (const cls of ["a", "b"]) {
      await Deno.mkdir(`${dir}/images/${cls}`, { recursive: true });
      for (let i = 0; i < 130; i++) {
        await Deno.symlink(
          `${FOLDER}/cat/cat0.png`,
          `${dir}/images/${cls}/${String(i).padStart(3, "0")}.png`,
        );
      }
    }
    await Deno.writeTextFile(`${dir}/images/b/999.png`, "not a PNG");
    const stderr = Deno.stderr as unknown as { writeSync: unknown; isTerminal: unknown };
    const term = fakeTerminal();
    stderr.writeSync = term.sink.writeSync;
    stderr.isTerminal = term.sink.isTerminal;
    let r;
    try {
      r = await runCli(["eval", "--model", VIT, "--data", `${dir}/images`]);
    } finally {
      delete stderr.writeSync;
      delete stderr.isTerminal;
    }
    assertEquals(r.code, 1, r.err);
    assert(r.err.includes("999.png: not a PNG or JPEG file"), r.err);
    const shown = term.text();
    // eval decodes each batch's images as it goes: the error comes under its bar
    assert(shown.includes("eval batches"), JSON.stringify(shown.slice(-200)));
    assert(shown.endsWith("\n"), `the bar's line is ended: ${JSON.stringify(shown.slice(-120))}`);
  });
});

Deno.test("cli: an error while a bar is drawn on a terminal (any command's) is printed on a fresh line", async () => {
  const term = fakeTerminal();
  const bar = new Progress(10, { sink: term.sink, label: "loading", now: () => 0 });
  bar.update(3);
  const r = await runCli([
    "merge",
    "--model",
    GPT2,
    "--adapter",
    join(MODELS, "no-such-adapter"),
    "--out",
    "x",
  ]);
  assertEquals(r.code, 1, r.err);
  assert(term.text().endsWith(bar.line() + "\n"), JSON.stringify(term.text().slice(-40)));
  bar.done();
});

Deno.test("a flag error thrown while a bar is drawn on a terminal is printed on a fresh line", async () => {
  const term = fakeTerminal();
  const bar = new Progress(10, { sink: term.sink, label: "tokenizing", now: () => 0 });
  const spec = { name: "x", summary: "a command that fails", flags: {} };
  const printed = await consoleErrorOf(async () => {
    const code = await withArgs(spec, [], () => {
      bar.update(3);
      throw new ArgsError("--data: no rows");
    });
    assertEquals(code, 2);
  });
  assert(printed[0]?.startsWith("hartley x: --data: no rows"), printed.join("|"));
  assert(term.text().endsWith(bar.line() + "\n"), JSON.stringify(term.text().slice(-40)));
  bar.done();
});
