/**
 * train and eval refuse --loss-on and --template-kwargs where the data is no instruction records
 * (prompt/completion or messages): plain text is learnt on every token through no template, and a
 * classifier's data has no completions. train refuses them before the weights load (its fixtures'
 * model.safetensors is junk), eval once the model is loaded (it reads its data then).
 */
import { join } from "node:path";
import { assert, assertEquals } from "./assert.ts";
import { fixtureModel, tempModelDir } from "./model_helpers.ts";
import { GPT2, runCli, withTempDir } from "./train_helpers.ts";

const TEXT = "tests/fixtures/data/tiny.txt";
const IMAGES = "tests/fixtures/images/folder";

/** A copy of fixture model `name` whose model.safetensors is not a checkpoint. */
async function unloadable(name: string): Promise<string> {
  const dir = await tempModelDir(fixtureModel(name));
  await Deno.writeTextFile(join(dir, "model.safetensors"), "not a checkpoint");
  return dir;
}

Deno.test("train: --loss-on and --template-kwargs are refused for data that is no instruction records, before the weights load", async () => {
  const models = {
    "causal-lm": await unloadable("gpt2"),
    "seq-cls": await unloadable("roberta"),
    "token-cls": await unloadable("bert"),
    "image-cls": await unloadable("vit"),
  };
  try {
    await withTempDir("hartley-setup-flags-", async (dir) => {
      const cases: [keyof typeof models, string[], string][] = [
        [
          "causal-lm",
          ["--data", TEXT, "--loss-on", "all"],
          `--loss-on all does not apply to --data ${TEXT}: plain text, learnt on every token; ` +
          "it applies to instruction records (prompt/completion or messages)",
        ],
        [
          "causal-lm",
          ["--data", "brown", "--template-kwargs", `{"x": 1}`],
          "--template-kwargs does not apply to --data brown: plain text",
        ],
        [
          "causal-lm",
          ["--data", TEXT, "--loss-on", "all", "--template-kwargs", `{"x": 1}`],
          `--loss-on all, --template-kwargs do not apply to --data ${TEXT}: plain text, learnt on every ` +
          "token; they apply to instruction records",
        ],
        // the other tasks refuse them as flags of causal LMs alone
        ["seq-cls", ["--task", "seq-cls", "--loss-on", "all"], "--loss-on does not apply to task seq-cls"],
        [
          "token-cls",
          ["--task", "token-cls", "--data", "tests/fixtures/data/ner.parquet", "--template-kwargs", "{}"],
          "--template-kwargs does not apply to task token-cls",
        ],
        ["image-cls", ["--data", IMAGES, "--loss-on", "all"], "--loss-on does not apply to task image-cls"],
      ];
      const wrong: string[] = [];
      for (const [task, args, message] of cases) {
        const run = ["train", "--model", models[task], "--out", join(dir, "run"), "--seq-len", "8"];
        const r = await runCli([...run, ...args]);
        if (r.code !== 2 || !r.err.includes(message)) {
          wrong.push(`${task} ${args.join(" ")}: ${r.code} ${r.err}`);
        }
      }
      assertEquals(wrong, []);
    });
  } finally {
    for (const dir of Object.values(models)) await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("eval: --loss-on and --template-kwargs are refused for plain text", async () => {
  const r = await runCli(["eval", "--model", GPT2, "--data", TEXT, "--seq-len", "8", "--loss-on", "all"]);
  assert(
    r.code === 2 && r.err.includes(`--loss-on all does not apply to --data ${TEXT}: plain text`),
    `${r.code} ${r.err}`,
  );
  const kwargs = await runCli([
    "eval",
    "--model",
    GPT2,
    "--data",
    TEXT,
    "--seq-len",
    "8",
    "--template-kwargs",
    `{"x": 1}`,
  ]);
  assert(
    kwargs.code === 2 && kwargs.err.includes(`--template-kwargs does not apply to --data ${TEXT}`),
    `${kwargs.code} ${kwargs.err}`,
  );
});
