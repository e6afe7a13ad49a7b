/**
 * predict checks its flags and reads its --data before the model loads: every task's mistake is
 * reported with a model whose weights cannot load (loading them would fail with another error).
 */
import { join } from "node:path";
import { assert, assertEquals } from "./assert.ts";
import { fixtureModel, tempModelDir } from "./model_helpers.ts";
import { runCli, withTempDir } from "./train_helpers.ts";

/**
 * A copy of fixture model `name` (config.json with `config` over it, tokenizer.json) whose
 * model.safetensors is not a checkpoint. Remove it with Deno.remove.
 */
async function unloadable(name: string, config: Record<string, unknown> = {}): Promise<string> {
  const dir = await tempModelDir(fixtureModel(name), config);
  await Deno.writeTextFile(join(dir, "model.safetensors"), "not a checkpoint");
  return dir;
}

/** Models whose weights cannot load, one per task predict has, and the data files to give them. */
async function withBrokenModels(
  fn: (
    models: Record<string, string>,
    data: (name: string, text: string) => Promise<string>,
  ) => Promise<void>,
): Promise<void> {
  const names = ["O", "B-PER", "I-PER"];
  const models = {
    "seq-cls": await unloadable("roberta"),
    regression: await unloadable("roberta", { id2label: { 0: "score" }, problem_type: "regression" }),
    "multi-label": await unloadable("roberta", { problem_type: "multi_label_classification" }),
    "image-cls": await unloadable("vit"),
    "causal-lm": await unloadable("gpt2"),
    "token-cls": await unloadable("bert", {
      architectures: ["BertForTokenClassification"],
      id2label: Object.fromEntries(names.map((n, i) => [String(i), n])),
    }),
  };
  try {
    await withTempDir("hartley-predict-checks-", (dir) =>
      fn(models, async (name, text) => {
        await Deno.writeTextFile(join(dir, name), text);
        return join(dir, name);
      }));
  } finally {
    for (const dir of Object.values(models)) await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("predict: the model's weights are loaded only after its flags and --data are checked (every task)", async () => {
  await withBrokenModels(async (models, data) => {
    const noField = await data("nofield.jsonl", `{"body": "x"}\n`);
    const texts = await data("texts.jsonl", `{"text": "x"}\n`);
    const lines = await data("notes.txt", "hello\n");
    const badChat = await data("chat.jsonl", `{"messages": "not a list"}\n`);
    const missing = join(Deno.cwd(), "no-such-file.jsonl");
    const cases: [string, string[], number, string][] = [
      ["seq-cls", ["--data", missing], 1, `${missing}: file not found`],
      ["seq-cls", ["--data", noField], 1, `nofield.jsonl:1: no text field`],
      ["seq-cls", ["--data", texts, "--text-field", "body"], 1, `texts.jsonl:1: missing field "body"`],
      [
        "seq-cls",
        ["--text", "hi", "--labels", "a,b"],
        2,
        "--labels names 2 classes, but the model's head has 3",
      ],
      ["seq-cls", ["--text", "hi", "--chat"], 2, "--chat does not apply to a seq-cls model"],
      ["regression", ["--data", noField], 1, `nofield.jsonl:1: no text field`],
      [
        "regression",
        ["--text", "hi", "--labels", "a,b"],
        2,
        "--labels names 2 classes, but the model's head has 1",
      ],
      [
        "multi-label",
        ["--data", lines, "--text-field", "body"],
        1,
        "notes.txt: a .txt file is one text per line",
      ],
      ["image-cls", ["--data", lines], 1, "notes.txt: not a PNG or JPEG file"],
      ["image-cls", ["--text", "hi"], 2, "classifies images: give --data IMAGE"],
      [
        "image-cls",
        ["--data", "tests/fixtures/images/files/rgba.png", "--labels", "a,b"],
        2,
        "--labels names 2 classes, but the model's head has 5",
      ],
      ["causal-lm", ["--data", missing], 1, `${missing}: file not found`],
      ["causal-lm", ["--data", badChat], 1, `chat.jsonl:1: expected "prompt" and "completion"`],
      ["causal-lm", ["--text", "hi", "--labels", "a,b"], 2, "--labels does not apply to a causal-lm model"],
      ["causal-lm", ["--text", "hi", "--template-kwargs", "{"], 2, "--template-kwargs: not JSON"],
      [
        "token-cls",
        ["--text", "Ada", "--labels", "a,b"],
        2,
        "--labels names 2 tags, but the model's head has 3",
      ],
      ["token-cls", ["--text", "Ada", "--seed", "1"], 2, "--seed does not apply to a token-cls model"],
    ];
    const wrong: string[] = [];
    for (const [task, args, code, message] of cases) {
      const r = await runCli(["predict", "--model", models[task as keyof typeof models], ...args]);
      if (r.code !== code || !r.err.includes(message)) {
        wrong.push(`${task} ${args.join(" ")}: ${r.code} ${r.err}`);
      }
    }
    assertEquals(wrong, []);
    // the weights do fail to load: the errors above came first
    const r = await runCli(["predict", "--model", models["seq-cls"], "--text", "hi"]);
    assert(r.code === 1 && r.err.includes("model.safetensors: header length"), r.err);
  });
});

Deno.test("predict: a model without a chat template, and a conversation it cannot ask, are refused before the weights load", async () => {
  await withBrokenModels(async (models, data) => {
    const lm = models["causal-lm"];
    const ask = (turns: { role: string; content: string }[]) => JSON.stringify({ messages: turns });
    const user = { role: "user", content: "hi" }, answer = { role: "assistant", content: "hello" };
    const asked = await data("asked.jsonl", `${ask([user, answer])}\n`);
    const unanswered = await data("unanswered.jsonl", `${ask([user, answer])}\n${ask([user])}\n`);
    const noTemplate = [
      [["--text", "hi", "--chat"], 2, `${lm} has no chat template (tokenizer_config.json`],
      [["--data", asked], 1, `asked.jsonl:1: a conversation needs the model's chat template`],
    ] as const;
    const wrong: string[] = [];
    const check = async (args: readonly string[], code: number, message: string) => {
      const r = await runCli(["predict", "--model", lm, ...args]);
      if (r.code !== code || !r.err.includes(message)) wrong.push(`${args.join(" ")}: ${r.code} ${r.err}`);
    };
    for (const [args, code, message] of noTemplate) await check(args, code, message);
    // with a template: the conversation with no assistant turn, though the first is fine
    await Deno.writeTextFile(
      join(lm, "chat_template.jinja"),
      "{% for m in messages %}{{ m.content }}{% endfor %}",
    );
    await check(
      ["--data", unanswered],
      1,
      `unanswered.jsonl:2: the conversation has no assistant turn to answer`,
    );
    assertEquals(wrong, []);
  });
});

Deno.test("predict: flags that the task or the inputs leave unread are refused before the weights load", async () => {
  await withBrokenModels(async (models, data) => {
    const pairs = await data("pairs.jsonl", `{"a": "x", "b": "y"}\n`);
    const asked = await data("asked.jsonl", `{"prompt": "The jury", "completion": " said"}\n`);
    const image = "tests/fixtures/images/files/rgba.png";
    const cases: [string, string[], string][] = [
      [
        "causal-lm",
        ["--data", pairs, "--text-field", "a", "--pair-field", "b"],
        "--pair-field does not apply to a causal-lm model (--pair-field applies to seq-cls)",
      ],
      [
        "token-cls",
        ["--data", pairs, "--text-field", "a", "--pair-field", "b"],
        "--pair-field does not apply to a token-cls model",
      ],
      [
        "image-cls",
        ["--data", image, "--text-field", "a"],
        "--text-field does not apply to an image-cls model",
      ],
      [
        "image-cls",
        ["--data", image, "--pair-field", "b"],
        "--pair-field does not apply to an image-cls model",
      ],
      ["seq-cls", ["--text", "hi", "--text-field", "a"], "--text-field does not apply to --text"],
      [
        "seq-cls",
        ["--text", "hi", "--text-field", "a", "--pair-field", "b"],
        "--text-field, --pair-field do not apply to --text",
      ],
      [
        "causal-lm",
        ["--data", asked, "--text-field", "prompt"],
        `--text-field does not apply to instruction records`,
      ],
      ["causal-lm", ["--data", asked, "--chat"], `--chat does not apply to instruction records`],
      ["causal-lm", ["--text", "hi", "--seq-len", "8"], "--seq-len does not apply to a causal-lm model"],
      ["image-cls", ["--data", image, "--seq-len", "8"], "--seq-len does not apply to an image-cls model"],
      ["causal-lm", ["--text", "hi", "--template-kwargs", "{}"], "--template-kwargs goes with --chat"],
    ];
    const wrong: string[] = [];
    for (const [task, args, message] of cases) {
      const r = await runCli(["predict", "--model", models[task as keyof typeof models], ...args]);
      if (r.code !== 2 || !r.err.includes(message)) {
        wrong.push(`${task} ${args.join(" ")}: ${r.code} ${r.err}`);
      }
    }
    assertEquals(wrong, []);
  });
});

Deno.test("predict: a causal LM's malformed generation_config.json is refused before the tokenizer and weights load", async () => {
  await withBrokenModels(async (models) => {
    const bad = JSON.stringify({ do_sample: true, top_p: 2 });
    for (const dir of [models["causal-lm"], models["seq-cls"]]) {
      await Deno.writeTextFile(join(dir, "generation_config.json"), bad);
      await Deno.writeTextFile(join(dir, "tokenizer.json"), "not a tokenizer");
    }
    const lm = await runCli(["predict", "--model", models["causal-lm"], "--text", "hi"]);
    assert(
      lm.code === 1 && lm.err.includes(`generation_config.json: "top_p" must be a number in (0, 1], got 2`),
      lm.err,
    );
    // a classifier generates nothing: its generation_config.json is not read
    const cls = await runCli(["predict", "--model", models["seq-cls"], "--text", "hi"]);
    assert(cls.code === 1 && cls.err.includes("tokenizer.json"), cls.err);
  });
});
