// An integer class or tag id that only --eval-data has is refused by its file and line; it used to
// make the new head one class larger than the training data's.
import { assert, assertEquals } from "./assert.ts";
import { GPT2, runCli, withTempDir } from "./train_helpers.ts";

const TAIL = ["--steps", "1", "--quiet"];

Deno.test("cli: an integer label only the eval data has is refused by its file and line, not a larger head", async () => {
  await withTempDir("hartley_eval_ids_", async (dir) => {
    const rows = (labels: number[]) =>
      labels.map((l, i) => JSON.stringify({ text: `t${i}`, label: l })).join("\n");
    await Deno.writeTextFile(`${dir}/train.jsonl`, rows([0, 1, 0, 1]));
    await Deno.writeTextFile(`${dir}/dev.jsonl`, rows([1, 2]));
    const r = await runCli([
      ...["train", "--model", GPT2, "--task", "seq-cls", "--data", `${dir}/train.jsonl`],
      ...["--eval-data", `${dir}/dev.jsonl`, "--out", `${dir}/run`, ...TAIL],
    ]);
    assertEquals(r.code, 1, r.err);
    assert(
      r.err.includes(`${dir}/dev.jsonl:2: label 2 (id 2) does not fit the head's 2 labels (ids 0..1)`),
      r.err,
    );
  });
});

Deno.test("cli: a tag id only the eval data has is refused by its file and line, not a larger head", async () => {
  await withTempDir("hartley_eval_tags_", async (dir) => {
    const rows = (tags: number[][]) =>
      tags.map((t) => JSON.stringify({ tokens: t.map((_, i) => `w${i}`), ner_tags: t })).join("\n");
    await Deno.writeTextFile(`${dir}/train.jsonl`, rows([[0, 1, 0], [1, 0]]));
    await Deno.writeTextFile(`${dir}/dev.jsonl`, rows([[0, 1], [0, 2]]));
    const r = await runCli([
      ...["train", "--model", GPT2, "--task", "token-cls", "--data", `${dir}/train.jsonl`],
      ...["--eval-data", `${dir}/dev.jsonl`, "--out", `${dir}/run`, ...TAIL],
    ]);
    assertEquals(r.code, 1, r.err);
    assert(
      r.err.includes(`${dir}/dev.jsonl:2:`) && r.err.includes("does not fit the head's 2 labels"),
      r.err,
    );
  });
});
