/**
 * Instruction tuning's tokenizing (instructionDataset: each conversation rendered by its chat
 * template and tokenized, the assistant turns marked): milliseconds per conversation by turns, for
 * a ChatML template and Qwen3's (tests/fixtures/chat_templates), with the GPT-2 fixture's
 * tokenizer; each turn 40 words. Then the same for 6-turn conversations on the worker pool
 * (instructionDatasetOnWorkers: every core, the workers' start included) beside one thread, as a
 * ratio. A CPU measurement: the time of a data set's setup, before any step.
 *
 *     deno run -A bench/instruct_tokens.ts [--conversations 300] [--pooled 3000]
 * @module
 */
import { benchArgs } from "./args.ts";
import { table } from "./stats.ts";
import { chatTemplate } from "../lib/io/chat_template.ts";
import { loadTokenizer } from "../lib/io/tokenizer.ts";
import { type Instruction, instructionDataset } from "../lib/train/instruct.ts";
import { instructionDatasetOnWorkers } from "../lib/train/instruct_workers.ts";
import { tokenizingWorkerCount } from "../lib/train/tokenizing_pool.ts";

const { values: v } = benchArgs(import.meta.url, {
  conversations: { type: "string", default: "300" },
  pooled: { type: "string", default: "3000" },
});
const count = Number(v.conversations);
const root = new URL("../", import.meta.url);
const tokenizer = await loadTokenizer(new URL("tests/fixtures/models/gpt2/tokenizer.json", root).pathname);
const CHATML =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + " +
  "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const templates = {
  chatml: chatTemplate(CHATML, "chatml"),
  qwen3: chatTemplate(
    await Deno.readTextFile(new URL("tests/fixtures/chat_templates/qwen3.jinja", root)),
    "qwen3",
  ),
};
const words = "the jury said it was over and the city went home after a long day of work".split(" ");
const text = (seed: number) =>
  Array.from({ length: 40 }, (_, i) => words[(i * 7 + seed) % words.length]).join(" ");

const conversations = (n: number, turns: number) =>
  Array.from({ length: n }, (_, k): Instruction => ({
    messages: Array.from(
      { length: turns },
      (_, i) => ({ role: i % 2 ? "assistant" : "user", content: text(k + i) }),
    ),
    completionFrom: 0,
  }));

const rows: string[][] = [];
for (const turns of [2, 6, 16]) {
  const examples = conversations(count, turns);
  const row = [String(turns)];
  for (const template of Object.values(templates)) {
    const t0 = performance.now();
    instructionDataset(examples, tokenizer, { seqLen: 4096, template });
    row.push(((performance.now() - t0) / count).toFixed(2));
  }
  rows.push(row);
}
console.log(`${count} conversations of 40-word turns, GPT-2 fixture tokenizer; ms per conversation\n`);
console.log(table(["turns", ...Object.keys(templates)], rows));

const pooled = conversations(Number(v.pooled), 6), pooledRows: string[][] = [];
for (const template of Object.values(templates)) {
  const opts = { seqLen: 4096, template };
  let t0 = performance.now();
  instructionDataset(pooled, tokenizer, opts);
  const here = performance.now() - t0;
  t0 = performance.now();
  await instructionDatasetOnWorkers(pooled, tokenizer, opts);
  const workers = performance.now() - t0;
  pooledRows.push([
    template.source,
    (here / 1000).toFixed(2),
    (workers / 1000).toFixed(2),
    (here / workers).toFixed(2),
  ]);
}
console.log(
  `\n${pooled.length} 6-turn conversations, one thread beside ${tokenizingWorkerCount()} workers ` +
    `(${navigator.hardwareConcurrency} cores); seconds\n`,
);
console.log(table(["template", "one thread", "workers", "ratio"], pooledRows));
