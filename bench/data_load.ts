/**
 * The data path before any GPU work, at two sizes four times apart: synthetic files of the shapes
 * users bring (GLUE-style CSV and TSV pairs, JSONL texts, tagged sentences, a plain-text corpus;
 * Brown corpus words) read, split and tokenized, each phase timed at `--rows` and 4 × `--rows`. A
 * time that grows about 4× is linear; about 16×, quadratic.
 *
 *     deno run -A bench/data_load.ts [--rows 5000] [--tokenizer models/default/tokenizer.json]
 * @module
 */
import { join } from "node:path";
import { benchArgs } from "./args.ts";
import { table } from "./stats.ts";
import { loadTokenizer } from "../lib/io/tokenizer.ts";
import { loadBrownText } from "../lib/train/datasets.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { readClassificationFile, recordFieldNames } from "../lib/train/readers.ts";
import { splitByFraction } from "../lib/train/split.ts";
import { ClassificationDataset, fileTokens } from "../lib/train/data.ts";
import { BatchIterator } from "../lib/train/batches.ts";
import { readTaggedFile, TokenClassificationDataset } from "../lib/train/token_data.ts";

const { values: v } = benchArgs(import.meta.url, {
  rows: { type: "string", default: "5000" },
  tokenizer: { type: "string", default: "models/default/tokenizer.json" },
});
const rows = Number(v.rows);
const tokenizer = await loadTokenizer(v.tokenizer!);
const words = (await loadBrownText()).split(/\s+/).filter((w) => w.length > 0);
const rng = new Prng(7);
/** `n` consecutive corpus words from a random place. */
const sentence = (n: number) => {
  const at = rng.below(words.length - n);
  return words.slice(at, at + n).join(" ");
};
const csvField = (s: string) => /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;

/** The synthetic files of `n` rows each, written into `dir`. */
async function writeFiles(dir: string, n: number): Promise<void> {
  const lines = (f: (i: number) => string) => Array.from({ length: n }, (_, i) => f(i)).join("");
  const pair = () => [sentence(15 + rng.below(10)), sentence(15 + rng.below(10))];
  await Deno.writeTextFile(
    join(dir, "pairs.csv"),
    "sentence1,sentence2,label\n" + lines((i) => `${pair().map(csvField).join(",")},${i % 3}\n`),
  );
  await Deno.writeTextFile(
    join(dir, "pairs.tsv"),
    "id\tquestion1\tquestion2\tlabel\n" + lines((i) => `${i}\t${pair().join("\t")}\t${i % 2}\n`),
  );
  await Deno.writeTextFile(
    join(dir, "texts.jsonl"),
    lines((i) => JSON.stringify({ text: sentence(10 + rng.below(40)), label: i % 5 }) + "\n"),
  );
  await Deno.writeTextFile(
    join(dir, "tagged.jsonl"),
    lines(() => {
      const ws = sentence(5 + rng.below(25)).split(" ");
      return JSON.stringify({ tokens: ws, ner_tags: ws.map((w) => /^[A-Z]/.test(w) ? "B-PER" : "O") }) + "\n";
    }),
  );
  await Deno.writeTextFile(join(dir, "corpus.txt"), lines(() => sentence(5 + rng.below(15)) + "\n"));
}

/** The phases timed, each on the files in `dir`. */
const PHASES: [string, (dir: string) => Promise<unknown> | unknown][] = [
  ["read CSV pairs", (dir) => readClassificationFile(join(dir, "pairs.csv"))],
  ["read TSV pairs", (dir) => readClassificationFile(join(dir, "pairs.tsv"))],
  ["read JSONL texts", (dir) => readClassificationFile(join(dir, "texts.jsonl"))],
  ["CSV field names", (dir) => recordFieldNames(join(dir, "pairs.csv"))],
  ["stratified split", async (dir) => {
    const data = await readClassificationFile(join(dir, "texts.jsonl"));
    return splitByFraction(data.examples, { fraction: 0.1, seed: 0, stratify: (e) => e.label });
  }],
  ["tokenize pairs (every row)", async (dir) => {
    const data = await readClassificationFile(join(dir, "pairs.csv"));
    const set = new ClassificationDataset(data.examples, tokenizer, { maxLength: 128 });
    for (let i = 0; i < set.size; i++) set.row(i);
  }],
  ["group by length", async (dir) => {
    const data = await readClassificationFile(join(dir, "texts.jsonl"));
    const set = new ClassificationDataset(data.examples, tokenizer, { maxLength: 128 });
    new BatchIterator(set, { batchSize: 16, groupByLength: true }).order(0);
  }],
  ["tagged sentences → rows", async (dir) => {
    const data = await readTaggedFile(join(dir, "tagged.jsonl"));
    const set = new TokenClassificationDataset(data.examples, tokenizer, { maxLength: 128 });
    for (let i = 0; i < set.size; i++) set.row(i);
  }],
  ["causal LM text → tokens", (dir) => fileTokens(join(dir, "corpus.txt"), tokenizer)],
];

const dir = await Deno.makeTempDir({ prefix: "hartley-data-load-" });
try {
  const ms: number[][] = PHASES.map(() => []);
  for (const n of [rows, 4 * rows]) {
    await writeFiles(dir, n);
    for (const [k, [, phase]] of PHASES.entries()) {
      const t0 = performance.now();
      await phase(dir);
      ms[k].push(performance.now() - t0);
    }
  }
  console.log(`${v.tokenizer}; Brown corpus words; ${new Date().toISOString()}`);
  console.log(table(
    ["phase", `${rows} rows ms`, `${4 * rows} rows ms`, "growth"],
    PHASES.map(([name], k) => [
      name,
      ms[k][0].toFixed(0),
      ms[k][1].toFixed(0),
      `${(ms[k][1] / ms[k][0]).toFixed(1)}×`,
    ]),
  ));
} finally {
  await Deno.remove(dir, { recursive: true });
}
