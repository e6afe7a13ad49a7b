import { assert, assertEquals } from "./assert.ts";
import { GPT2, runCli, withTempDir } from "./train_helpers.ts";

Deno.test("cli: an integer label only the eval data has is refused by its file and line, not a larger head", async () => {
  await withTempDir("hartley_eval_ids_", async (dir) => {
    const rows = (labels: number[]) =>
      labels.map((l, i) => JSON.stringify({ text: `t${i}`, label: l })).join("\n");
    await Deno.writeTextFile(`${dir}/train.jsonl`, rows([0, 1, 0, 1]));
    await Deno.writeTextFile(`${dir}/dev.jsonl`, rows([1, 2]));
    const args = ["train", "--model", GPT2, "--task", "seq-cls", "--data", `${dir}/train.jsonl`];
    const r = await runCli([
      ...args,
      "--eval-data",
      `${dir}/dev.jsonl`,
      "--steps",
      "1",
      "--out",
      `${dir}/run`,
      "--quiet",
    ]);
    assertEquals(r.code, 1, r.err);
    assert(
      r.err.includes(`${dir}/dev.jsonl:2: label 2 (id 2) does not fit the head's 2 labels (ids 0..1)`),
      r.err,
    );
  });
});
