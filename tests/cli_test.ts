import { ArgsError, helpText, parseCommand, stopTexts } from "../lib/cli/args.ts";
import { DEMO_ARGS } from "../lib/cli/train.ts";
import { explainDeviceError } from "../lib/cli/errors.ts";
import { PRETRAIN_DEFAULT } from "../lib/cli/pretrain.ts";
import { applyEnvironment, MAX_BINDING_ENV } from "../lib/cli/environment.ts";
import { BINDING_LIMIT } from "../lib/gpu/bands.ts";
import { pathExists } from "../lib/io/paths.ts";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { type TensorData, writeSafetensors } from "../lib/io/safetensors_write.ts";
import { tempModelDir } from "./model_helpers.ts";
import { findCheckpoint, loadCheckpoint } from "../lib/train/checkpoint.ts";
import { readRunLog } from "../lib/train/log.ts";
import { assert, assertEquals, assertThrows } from "./assert.ts";
import { cliProcess, GPT2, runCli, tinyRun, withTempDir, writeToyData } from "./train_helpers.ts";

const SPEC = {
  name: "demo",
  summary: "a test command",
  flags: {
    lr: { type: "number", default: 0.1, min: 0, help: "learning rate" },
    steps: { type: "integer", min: 1, help: "steps" },
    mode: { type: "string", choices: ["a", "b"], default: "a", help: "mode" },
    quiet: { type: "boolean", help: "quiet" },
  },
} as const;

Deno.test("args: typed values, defaults, and errors that name the flag", () => {
  const ok = parseCommand(SPEC, ["--lr", "0.5", "--steps=3", "--quiet"]);
  assert(!ok.help);
  if (!ok.help) {
    assertEquals(ok.values, { lr: 0.5, steps: 3, mode: "a", quiet: true });
    assertEquals([...ok.given].sort(), ["lr", "quiet", "steps"]);
  }
  assertEquals(parseCommand(SPEC, ["-h"]).help, true);
  assertThrows(() => parseCommand(SPEC, ["--lr", "fast"]), "--lr 'fast' is not a number");
  assertThrows(() => parseCommand(SPEC, ["--lr=-1"]), "below the minimum 0");
  assertThrows(() => parseCommand(SPEC, ["--lr", "-1"]), "--lr -1 is below the minimum 0");
  assertThrows(() => parseCommand(SPEC, ["--mode", "-a"]), "must be written --mode=VALUE");
  assertThrows(() => parseCommand(SPEC, ["--steps", "2.5"]), "--steps '2.5' is not an integer");
  assertThrows(() => parseCommand(SPEC, ["--mode", "c"]), "--mode 'c' is not one of a, b");
  assertThrows(() => parseCommand(SPEC, ["--lrr", "1"]), "unknown option '--lrr' (did you mean --lr?)");
  assertThrows(() => parseCommand(SPEC, ["--steps"]), "needs a value");
  assertThrows(() => parseCommand(SPEC, ["extra"]), "unexpected argument 'extra'");
  const e = assertThrows(() => parseCommand(SPEC, ["--nope"]));
  assert(e instanceof ArgsError);
  const help = helpText(SPEC);
  assert(help.includes("--lr N") && help.includes("[default 0.1]") && help.includes("(a | b)"), help);
});

Deno.test("cli: bad flags exit 2 with a pointer to --help; --help exits 0", async () => {
  const bad = await runCli(["train", "--bogus"]);
  assertEquals(bad.code, 2);
  assert(bad.err.includes("unknown option '--bogus'") && bad.err.includes("train --help"), bad.err);
  const method = await runCli(["train", "--method", "magic"]);
  assertEquals(method.code, 2);
  assert(method.err.includes("--method 'magic' is not one of ssh, lora, fourierft, full, head"), method.err);
  const both = await runCli(["train", "--resume", "--overwrite", "--out", "/nonexistent/run"]);
  assertEquals(both.code, 2);
  for (const cmd of ["train", "eval", "merge", "inspect", "pretrain", "info"]) {
    const help = await runCli([cmd, "--help"]);
    assertEquals(help.code, 0, `${cmd} --help`);
    assert(help.out.startsWith(`usage: deno run -A cli.ts ${cmd}`), help.out);
  }
  assert((await runCli(["train", "--help"])).out.includes("--energy-ratio"));
  // pretrain's help shows the command that made models/default: deno.json's task, word for word
  const tasks = JSON.parse(await Deno.readTextFile("deno.json")).tasks;
  assertEquals(tasks["pretrain-default"], `deno run -A cli.ts ${PRETRAIN_DEFAULT}`);
  assert((await runCli(["pretrain", "--help"])).out.includes(PRETRAIN_DEFAULT));
  assertEquals((await runCli(["nope"])).code, 2);
  // help before the command's name is the command's help (it ran the command: train ran the demo)
  const before = await runCli(["--help", "train"]);
  assert(before.code === 0 && before.out.startsWith("usage: deno run -A cli.ts train"), before.out);
  assertEquals((await runCli(["--help", "nope"])).code, 2);
  const chat = await runCli([
    "predict",
    "--model",
    "tests/fixtures/models/roberta",
    "--text",
    "hi",
    "--chat",
    "--system",
    "s",
  ]);
  assert(chat.code === 2 && chat.err.includes("--chat, --system do not apply to a seq-cls model"), chat.err);
  const labels = await runCli(["predict", "--model", GPT2, "--text", "hi", "--labels", "a,b"]);
  assert(
    labels.code === 2 && labels.err.includes("--labels does not apply to a causal-lm model"),
    labels.err,
  );
  const two = await runCli([
    "inspect",
    "--model",
    GPT2,
    "--layer",
    "h.0",
    "--log",
    "l.jsonl",
    "--svg",
    "x.svg",
  ]);
  assert(two.code === 2 && two.err.includes("--svg names one file"), two.err);
  const merge = await runCli(["merge", "--model", GPT2]);
  assertEquals(merge.code, 2);
  assert(merge.err.includes("--adapter DIR is required"), merge.err);
});

Deno.test("cli: bad data files fail with the file, the line and what was wrong; nothing is written", async () => {
  await withTempDir("hartley_cli_", async (dir) => {
    const missing = await runCli(tinyRun(`${dir}/none.jsonl`, `${dir}/run`, ["--steps", "1"]));
    assertEquals(missing.code, 1);
    assert(missing.err.includes(`${dir}/none.jsonl: file not found`), missing.err);
    const broken = await runCli(
      tinyRun("tests/fixtures/data/bad_json.jsonl", `${dir}/run`, ["--steps", "1"]),
    );
    assertEquals(broken.code, 1);
    assert(broken.err.includes("bad_json.jsonl:3: malformed JSON"), broken.err);
    const noModel = await runCli(["train", "--model", `${dir}/nomodel`, "--out", `${dir}/run`]);
    assertEquals(noModel.code, 1);
    assert(noModel.err.includes(`${dir}/nomodel: the folder does not exist`), noModel.err);
    assert(!(await findCheckpoint(`${dir}/run`)), "no checkpoint written");
  });
});

Deno.test("cli: labels that do not fit the head, and an adapter made for another model", async () => {
  await withTempDir("hartley_cli_", async (dir) => {
    // a sequence classifier with a 2-label head (the head is initialised: the checkpoint has none)
    const model = `${dir}/cls2`;
    await Deno.mkdir(model);
    for (const f of ["model.safetensors", "tokenizer.json"]) {
      await Deno.copyFile(`${GPT2}/${f}`, `${model}/${f}`);
    }
    const config = JSON.parse(await Deno.readTextFile(`${GPT2}/config.json`));
    config.architectures = ["GPT2ForSequenceClassification"];
    config.id2label = { "0": "fruit", "1": "hard" };
    await Deno.writeTextFile(`${model}/config.json`, JSON.stringify(config));
    const three = await writeToyData(dir, 12, 1, ["fruit", "hard", "cloud"]);
    const r = await runCli([
      "train",
      "--model",
      model,
      "--data",
      three,
      "--steps",
      "1",
      "--out",
      `${dir}/run`,
      "--quiet",
    ]);
    assertEquals(r.code, 1);
    assert(r.err.includes(`label "cloud" is not one of the labels ["fruit","hard"]`), r.err);
    const ints = `${dir}/ints.jsonl`;
    await Deno.writeTextFile(ints, '{"text": "apple", "label": 0}\n{"text": "rock", "label": 2}\n');
    const r2 = await runCli([
      "train",
      "--model",
      model,
      "--data",
      ints,
      "--steps",
      "1",
      "--out",
      `${dir}/run`,
      "--quiet",
    ]);
    assertEquals(r2.code, 1);
    assert(r2.err.includes("does not fit the head's 2 labels"), r2.err);

    const data = await writeToyData(dir, 8);
    const other = await runCli([
      "eval",
      "--model",
      "tests/fixtures/models/llama",
      "--adapter",
      "tests/fixtures/adapters/gpt2-lora",
      "--data",
      data,
      "--task",
      "seq-cls",
    ]);
    assertEquals(other.code, 1);
    assert(/transformer\.h\.0\.attn\.c_attn/.test(other.err), other.err);
  });
});

Deno.test("cli: a NaN loss stops training with a message and keeps the last good checkpoint", async () => {
  await withTempDir("hartley_cli_", async (dir) => {
    const data = await writeToyData(dir, 24);
    const r = await runCli(tinyRun(data, `${dir}/run`, [
      "--steps",
      "6",
      "--lr",
      "1e38",
      "--head-lr",
      "1e38",
      "--max-grad-norm",
      "0",
      "--log-every",
      "1",
      "--save-every",
      "1",
    ]));
    assertEquals(r.code, 1);
    assert(/loss became (NaN|Infinity|-Infinity)|holds NaN or infinity/.test(r.err), r.err);
    assert(r.err.includes("last good checkpoint"), r.err);
    const ckpt = await loadCheckpoint(`${dir}/run`);
    assert(ckpt.state.step >= 1 && ckpt.state.step < 6, `checkpoint at step ${ckpt.state.step}`);
    const logged = (await readRunLog(`${dir}/run/log.jsonl`)).filter((x) => x.type === "checkpoint");
    assertEquals(logged[logged.length - 1].step, ckpt.state.step);
  });
});

Deno.test("device errors become advice: out of memory or a binding over the limit names the command's flags, once", () => {
  const e = explainDeviceError(new Error("Not enough memory left")) as Error;
  for (
    const flag of [
      "--gradient-checkpointing",
      "--attention fused",
      "--batch-size",
      "--seq-len",
      "--dtype f16",
    ]
  ) {
    assert(e.message.includes(flag), `${flag} in: ${e.message}`);
  }
  // eval has no --gradient-checkpointing; advice passed on again is not wrapped twice
  const forEval = explainDeviceError(new Error("Not enough memory left"), [
    "attention",
    "batch-size",
    "seq-len",
  ]);
  const again = explainDeviceError(forEval, ["gradient-checkpointing"]) as Error;
  assertEquals(again, forEval);
  assert(
    !again.message.includes("--gradient-checkpointing") && again.message.includes("--attention"),
    again.message,
  );
  assertEquals(again.message.match(/ran out of memory/g)?.length, 1, again.message);
  // a kernel's binding over the device's limit (lib/gpu/stream.ts): what makes the batch's tensors smaller
  const over = new Error(
    "elementwise.gelu_x4: binding 0 (an unnamed buffer) spans 201326592 bytes, over this device's largest " +
      "storage binding (134217728 bytes)",
  );
  const advice = explainDeviceError(over, ["batch-size", "seq-len"]) as Error;
  assert(
    advice.message.includes("201326592") && advice.message.includes("Lower --batch-size"),
    advice.message,
  );
  assert(advice.message.includes("--seq-len") && !advice.message.includes("--grad-accum"), advice.message);
  assert((explainDeviceError(over) as Error).message.includes("--grad-accum"));
  const lost = explainDeviceError(new Error("GPU device was lost")) as Error;
  assert(lost.message.includes("--resume") && lost.message.includes("checkpoints"), lost.message);
  // a command that keeps no checkpoints (eval, predict, chat) is told only what it can change
  const forChat = explainDeviceError(new Error("GPU device was lost"), ["max-new-tokens"]) as Error;
  assertEquals(
    forChat.message,
    "the GPU device was lost (GPU device was lost). If it recurs, try a smaller model",
  );
  const evalLost = explainDeviceError(new Error("GPU device was lost"), ["batch-size", "seq-len"]) as Error;
  assert(evalLost.message.endsWith(". If it recurs, lower --batch-size or --seq-len"), evalLost.message);
  assert(!(explainDeviceError(over, ["batch-size"]) as Error).message.includes("checkpoints"));
  const other = new Error("something else");
  assertEquals(explainDeviceError(other), other);
});

Deno.test("inspect: model summary, energy heatmap with positions, and a loss curve", async () => {
  await withTempDir("hartley_cli_", async (dir) => {
    const svg = `${dir}/energy.svg`;
    const r = await runCli([
      "inspect",
      "--model",
      GPT2,
      "--layer",
      "h.1.attn.c_attn",
      "--n",
      "40",
      "--svg",
      svg,
    ]);
    assertEquals(r.code, 0, r.err);
    assert(r.out.includes("2 layers, hidden 64"), r.out);
    // what it wrote is a message, on stderr: stdout holds the summary alone
    assert(r.err.includes(`wrote ${svg}`) && !r.out.includes("wrote "), r.out);
    const text = await Deno.readTextFile(svg);
    assert(text.includes("transformer.h.1.attn.c_attn: dht energy"), text.slice(0, 300));
    assert((text.match(/stroke="#e8002a"/g) ?? []).length >= 2, "positions marked");
    // an --n past the layer's size is clamped to what its transform can pick (the dft's mirror classes)
    const all = [
      "inspect",
      "--model",
      GPT2,
      "--layer",
      "h.1.attn.c_attn",
      "--n",
      "100000",
      "--svg",
      svg,
      "--overwrite",
    ];
    for (const transform of ["dht", "dft"]) {
      const a = await runCli([...all, "--transform", transform]);
      assertEquals(a.code, 0, a.err);
    }
    const log = `${dir}/log.jsonl`;
    await Deno.writeTextFile(
      log,
      [
        '{"type":"start","step":0,"method":"ssh","data":"x","task":"seq-cls"}',
        '{"type":"train","step":10,"loss":0.7}',
        '{"type":"train","step":20,"loss":0.5}',
        '{"type":"eval","step":20,"loss":0.55}',
      ]
        .join("\n") + "\n",
    );
    const c = await runCli(["inspect", "--log", log, "--svg", `${dir}/loss.svg`]);
    assertEquals(c.code, 0, c.err);
    assert((await Deno.readTextFile(`${dir}/loss.svg`)).includes(">eval loss</text>"));
    const bad = await runCli(["inspect", "--model", GPT2, "--layer", "nope", "--svg", `${dir}/nope.svg`]);
    assertEquals(bad.code, 2);
    assert(bad.err.includes("matches no linear layer"), bad.err);
  });
});

Deno.test("demo: the head alone, then SSH, on SpamAssassin; the last line compares them", async () => {
  await withTempDir("hartley_demo_", async (dir) => {
    // the demo's own options, cut down to a few steps (later options win)
    const small = ["--max-train", "32", "--max-eval", "24", "--seq-len", "8", "--out", dir, "--quiet"];
    const run = await runCli(["train", ...DEMO_ARGS, ...small]);
    assertEquals(run.code, 0, run.err);
    const last = run.out.trim().split("\n").at(-1)!;
    assert(/^demo: held-out accuracy \d\.\d{4} -> \d\.\d{4}$/.test(last), last);
    for (const sub of ["head-only", "ssh"]) {
      const evals = (await readRunLog(`${dir}/${sub}/log.jsonl`)).filter((r) => r.type === "eval");
      assertEquals(evals.at(-1)?.examples, 24, `${sub} evaluated the held-out e-mails`);
    }
    await Deno.stat(`${dir}/ssh/adapter/adapter_config.json`);
  });
});

Deno.test("eval reads a pair task's fields named by --text-field and --pair-field", async () => {
  await withTempDir("hartley_pairs_", async (dir) => {
    const csv = "claim,evidence,label\nthe sky is blue,a clear day,1\nfish fly,fish swim,0\n";
    await Deno.writeTextFile(`${dir}/pairs.csv`, csv);
    const base = ["eval", "--model", "tests/fixtures/models/bert", "--data", `${dir}/pairs.csv`, "--json"];
    const ok = await runCli([...base, "--text-field", "claim", "--pair-field", "evidence"]);
    assertEquals(ok.code, 0, ok.err);
    assertEquals(JSON.parse(ok.out).examples, 2);
    const half = await runCli([...base, "--pair-field", "evidence"]);
    assertEquals(half.code, 1);
    assert(half.err.includes('the pair field "evidence" needs the text field named too'), half.err);
  });
});

Deno.test("predict (loading as eval and merge do) refuses a head the checkpoint lacks and no adapter restores", async () => {
  const gpt2 = "tests/fixtures/models/gpt2"; // a causal LM: its seq-cls head would be random
  const p = await runCli(["predict", "--model", gpt2, "--task", "seq-cls", "--text", "hello"]);
  assertEquals(p.code, 2);
  assert(p.err.includes(`has no seq-cls head ("score.weight" is not in its checkpoint)`), p.err);
});

Deno.test("--stop: \\n and \\t stand for a newline and a tab", () => {
  assertEquals(stopTexts(undefined), []);
  assertEquals(stopTexts(""), []);
  assertEquals(stopTexts("\\n\\n"), ["\n\n"]);
  assertEquals(stopTexts("a\\tb\\\\n"), ["a\tb\\n"]);
});

Deno.test("cli: HARTLEY_MAX_BINDING plans for small bindings; the run trains as with the device's", async () => {
  await withTempDir("hartley_binding_", async (dir) => {
    const data = await writeToyData(dir, 24);
    // subprocesses: `deno test --parallel` shares this process's environment between test files
    const train = (limit: string, out: string) =>
      cliProcess(tinyRun(data, out, ["--epochs", "1", "--method", "ssh"]), {
        env: { [MAX_BINDING_ENV]: limit },
      });
    // 96 KiB: the GPT-2 fixture's 512 × 64 f32 token table (128 KiB) is read in bands, the activations fit
    const [whole, banded] = await Promise.all([train("", `${dir}/whole`), train("96KiB", `${dir}/banded`)]);
    assertEquals([whole.code, banded.code], [0, 0], banded.err);
    const weights = async (run: string) => {
      const file = await openSafetensors(`${run}/adapter/adapter_model.safetensors`);
      return await Promise.all(file.names.map(async (k) => [k, Array.from(await file.readF32(k))] as const));
    };
    assertEquals(await weights(`${dir}/banded`), await weights(`${dir}/whole`));
    const bad = await train("lots", `${dir}/bad`);
    assertEquals(bad.code, 2, "a usage mistake");
    assert(bad.err.includes(`${MAX_BINDING_ENV}: expected a byte count`), bad.err);
  });
});

Deno.test("applyEnvironment: HARTLEY_MAX_BINDING sets the planned binding limit until put back", () => {
  const restore = applyEnvironment((name) => name === MAX_BINDING_ENV ? "96KiB" : undefined);
  try {
    assertEquals(BINDING_LIMIT.bytes, 96 * 1024);
  } finally {
    restore();
  }
  assertEquals(BINDING_LIMIT.bytes, 0, "put back");
  const bad = assertThrows(() => applyEnvironment(() => "lots"), `${MAX_BINDING_ENV}: expected a byte count`);
  assert(bad instanceof ArgsError, "a usage mistake");
  assertEquals(BINDING_LIMIT.bytes, 0);
});

Deno.test("cli: warmup steps are counted as transformers counts them (⌈ratio · steps⌉)", async () => {
  await withTempDir("hartley_warmup_", async (dir) => {
    const data = await writeToyData(dir, 24);
    // 0.1 · 4 steps: one warmup step (rounding would give none)
    const r = await runCli(
      tinyRun(data, `${dir}/run`, ["--steps", "4", "--warmup-ratio", "0.1", "--log-every", "1"]),
    );
    assertEquals(r.code, 0, r.err);
    const steps = (await readRunLog(`${dir}/run/log.jsonl`)).filter((x) => x.type === "train");
    // the first step warms up from 0; the next ones decay linearly from the full rate over 3 steps
    assertEquals(steps.map((x) => Number((x.lr_adapter as number).toFixed(6))), [0, 0.1, 0.066667, 0.033333]);
  });
});

Deno.test("cli: --max-eval keeps a causal LM's first held-out windows (train and eval)", async () => {
  await withTempDir("hartley_maxeval_", async (dir) => {
    const words = "the cat sat on a mat and the dog ran far away from home while birds sang".split(" ");
    await Deno.writeTextFile(
      `${dir}/lm.txt`,
      Array.from({ length: 1500 }, (_, i) => words[(i * 7) % 16]).join(" "),
    );
    const common = ["--model", GPT2, "--data", `${dir}/lm.txt`, "--seq-len", "16", "--max-eval", "3"];
    const r = await runCli(["train", ...common, "--steps", "2", "--out", `${dir}/run`, "--quiet"]);
    assertEquals(r.code, 0, r.err);
    const evals = (await readRunLog(`${dir}/run/log.jsonl`)).filter((x) => x.type === "eval");
    assertEquals(evals.map((x) => x.examples), [3]);
    const e = await runCli(["eval", ...common, "--json"]);
    assertEquals([e.code, JSON.parse(e.out).examples], [0, 3], e.err);
    // windows longer than the model's positions: a usage error before anything is written
    const long = await runCli(["train", ...common, "--seq-len", "100", "--out", `${dir}/long`]);
    assertEquals(long.code, 2);
    assert(long.err.includes("--seq-len 100 is more than the 64 positions"), long.err);
    assert(!(await Deno.stat(`${dir}/long`).catch(() => null)), "nothing written");
  });
});

Deno.test("cli: --overwrite removes the old run only once the new one has checked its data and model", async () => {
  await withTempDir("hartley_overwrite_", async (dir) => {
    const data = await writeToyData(dir, 24);
    const out = `${dir}/run`;
    assertEquals((await runCli(tinyRun(data, out, ["--steps", "1"]))).code, 0);
    const bad = await runCli(tinyRun(`${dir}/missing.jsonl`, out, ["--steps", "1", "--overwrite"]));
    assertEquals(bad.code, 1, bad.err);
    assert(await Deno.stat(`${out}/adapter/adapter_config.json`), "the old run is kept");
    assert((await readRunLog(`${out}/log.jsonl`)).some((x) => x.type === "end"), "its log too");
    const again = await runCli(tinyRun(data, out, ["--steps", "2", "--overwrite"]));
    assertEquals(again.code, 0, again.err);
    const log = await readRunLog(`${out}/log.jsonl`);
    assertEquals(log.filter((x) => x.type === "start").length, 1, "a fresh log");
  });
});

Deno.test("cli: without --model, eval and merge load the adapter's base; merge never writes over its adapter or base", async () => {
  await withTempDir("hartley_base_", async (dir) => {
    const data = await writeToyData(dir, 24);
    assertEquals((await runCli(tinyRun(data, `${dir}/run`, ["--steps", "1"]))).code, 0);
    const adapter = `${dir}/run/adapter`;
    const evalArgs = ["--adapter", adapter, "--data", data, "--seq-len", "12", "--json"];
    const withBase = await runCli(["eval", ...evalArgs]);
    const withModel = await runCli(["eval", "--model", GPT2, ...evalArgs]);
    assertEquals([withBase.code, withModel.code], [0, 0], withBase.err);
    assertEquals(JSON.parse(withBase.out), JSON.parse(withModel.out), "the same model: the adapter's base");
    assert(withBase.err.includes("the adapter's base_model_name_or_path"), withBase.err);
    const summary = await runCli(["inspect", "--adapter", adapter]);
    assertEquals(summary.code, 0, summary.err);
    assert(summary.out.includes(`model     ${GPT2}`), summary.out);
    // not into the adapter, nor a folder holding it or the base model
    for (
      const [out, holds] of [[adapter, "the adapter"], [`${dir}/run`, "the adapter"], [dir, "the adapter"]]
    ) {
      const over = await runCli(["merge", "--adapter", adapter, "--out", out, "--overwrite"]);
      assertEquals(over.code, 2);
      assert(over.err.includes(`--out ${out} holds ${holds}`), over.err);
    }
    const copy = await tempModelDir(GPT2);
    try {
      // the base named directly, or through a link to it
      await Deno.symlink(copy, `${dir}/link`);
      for (const model of [copy, `${dir}/link`]) {
        const args = ["--model", model, "--adapter", adapter, "--out", copy, "--overwrite"];
        const base = await runCli(["merge", ...args]);
        assertEquals(base.code, 2);
        assert(base.err.includes(`--out ${copy} holds the base model`), base.err);
      }
      assert(await pathExists(`${copy}/model.safetensors`), "the base is kept");
    } finally {
      await Deno.remove(copy, { recursive: true });
    }
    // an --out holding other things: the merged model replaces the model files alone
    await Deno.mkdir(`${dir}/models/other`, { recursive: true });
    await Deno.writeTextFile(`${dir}/models/notes.txt`, "mine");
    await Deno.writeTextFile(`${dir}/models/model-00002-of-00002.safetensors`, "a stale shard");
    const into = await runCli([
      "merge",
      "--model",
      GPT2,
      "--adapter",
      adapter,
      "--out",
      `${dir}/models`,
      "--overwrite",
    ]);
    assertEquals(into.code, 0, into.err);
    assert(await pathExists(`${dir}/models/other`) && await pathExists(`${dir}/models/notes.txt`), "kept");
    assert(!(await pathExists(`${dir}/models/model-00002-of-00002.safetensors`)), "old weights go");
    assert(await pathExists(`${dir}/models/model.safetensors`));
    assert(await pathExists(`${adapter}/adapter_model.safetensors`), "the adapter is kept");
    // a base that is not a folder here (a hub name) needs --model
    const configPath = `${adapter}/adapter_config.json`;
    const config = JSON.parse(await Deno.readTextFile(configPath));
    await Deno.writeTextFile(
      configPath,
      JSON.stringify({ ...config, base_model_name_or_path: "openai-community/gpt2" }),
    );
    const hub = await runCli(["eval", "--adapter", adapter, "--data", data, "--seq-len", "12"]);
    assertEquals(hub.code, 2);
    assert(
      hub.err.includes("was trained on openai-community/gpt2") && hub.err.includes("--model DIR"),
      hub.err,
    );
    // an adapter that names no base (PEFT's own, saved from a model it did not name) needs --model
    await Deno.writeTextFile(configPath, JSON.stringify({ ...config, base_model_name_or_path: null }));
    const none = await runCli(["merge", "--adapter", adapter, "--out", `${dir}/m2`]);
    assertEquals(none.code, 2);
    assert(none.err.includes("names no base model") && none.err.includes("--model DIR"), none.err);
  });
});

Deno.test("cli: RoBERTa trains on text pairs (its tokenizer's second-text type ids are not read)", async () => {
  await withTempDir("hartley_pairs_", async (dir) => {
    const model = "tests/fixtures/models/roberta", data = "tests/fixtures/data/pairs.csv";
    const r = await runCli(
      ["train", "--model", model, "--data", data, "--steps", "1", "--eval-fraction", "0", "--batch-size", "2"]
        .concat(["--out", `${dir}/run`, "--quiet"]),
    );
    assertEquals(r.code, 0, r.err);
  });
});

Deno.test("cli: pretrain trains a fresh model and exports it whole (no file of an older export stays)", async () => {
  await withTempDir("hartley_pretrain_", async (dir) => {
    const words = "the cat sat on a mat and the dog ran far away from home while birds sang".split(" ");
    await Deno.writeTextFile(
      `${dir}/lm.txt`,
      Array.from({ length: 1500 }, (_, i) => words[(i * 5) % 16]).join(" "),
    );
    await Deno.mkdir(`${dir}/export`);
    await Deno.writeTextFile(`${dir}/export/tokenizer_config.json`, '{"chat_template": "stale"}');
    const args = [
      "pretrain",
      ...["--family", "gpt2", "--layers", "1", "--hidden", "16", "--heads", "2", "--positions", "32"],
      ...["--tokenizer", "tests/fixtures/tokenizers/bytelevel_bpe.json", "--data", `${dir}/lm.txt`],
      ...["--seq-len", "16", "--batch-size", "2", "--steps", "2", "--max-eval", "2"],
      ...["--out", `${dir}/run`, "--quiet"],
    ];
    // before anything runs: a folder with no earlier export is replaced only with --overwrite, and
    // one holding the run never
    const stranger = await runCli([...args, "--export", `${dir}/export`]);
    assertEquals(stranger.code, 2, stranger.err);
    assert(
      stranger.err.includes("holds files but no earlier export (pretraining.json): pass --overwrite"),
      stranger.err,
    );
    const own = await runCli([...args, "--export", dir]);
    assertEquals(own.code, 2, own.err);
    assert(own.err.includes(`--export ${dir} holds the run directory --out ${dir}/run`), own.err);
    assert(!(await pathExists(`${dir}/run`)), "nothing ran");
    await Deno.writeTextFile(`${dir}/export/pretraining.json`, "{}"); // an earlier export: replaced
    const r = await runCli([...args, "--export", `${dir}/export`]);
    assertEquals(r.code, 0, r.err);
    const files: string[] = [];
    for await (const e of Deno.readDir(`${dir}/export`)) files.push(e.name);
    assert(!files.includes("tokenizer_config.json"), `${files}`);
    assert(
      ["config.json", "model.safetensors", "pretraining.json"].every((f) => files.includes(f)),
      `${files}`,
    );
    const record = JSON.parse(await Deno.readTextFile(`${dir}/export/pretraining.json`));
    assertEquals([record.steps, record.held_out.windows], [2, 2]);
  });
});

Deno.test("cli: pretrain's errors name pretrain; --eval-fraction is refused where the split is fixed", async () => {
  await withTempDir("hartley_pretrain_err_", async (dir) => {
    await Deno.writeTextFile(`${dir}/lm.txt`, "the cat sat on a mat ".repeat(200));
    const tiny = [
      ...["--family", "gpt2", "--layers", "1", "--hidden", "16", "--heads", "2", "--positions", "32"],
      ...["--tokenizer", "tests/fixtures/tokenizers/bytelevel_bpe.json", "--steps", "1", "--quiet"],
    ];
    const long = await runCli([
      "pretrain",
      ...tiny,
      "--data",
      `${dir}/lm.txt`,
      "--seq-len",
      "64",
      "--out",
      `${dir}/a`,
    ]);
    assertEquals(long.code, 2, long.err);
    assert(long.err.startsWith("hartley pretrain: --seq-len 64 is more than --positions 32"), long.err);
    assert(long.err.includes("cli.ts pretrain --help"), long.err);
    const brown = await runCli([
      "pretrain",
      ...tiny,
      "--data",
      "brown",
      "--seq-len",
      "16",
      "--eval-fraction",
      "0.2",
      "--out",
      `${dir}/b`,
    ]);
    assertEquals(brown.code, 2, brown.err);
    assert(
      brown.err.startsWith("hartley pretrain: --eval-fraction does not apply to --data brown"),
      brown.err,
    );
    const spam = await runCli([
      "train",
      "--data",
      "spamassassin",
      "--eval-fraction",
      "0.3",
      "--out",
      `${dir}/c`,
    ]);
    assertEquals(spam.code, 2, spam.err);
    assert(spam.err.includes("--eval-fraction does not apply to --data spamassassin"), spam.err);
    const both = await runCli([
      "train",
      "--data",
      `${dir}/lm.txt`,
      "--eval-data",
      `${dir}/lm.txt`,
      "--eval-fraction",
      "0.2",
    ]);
    assertEquals(both.code, 2, both.err);
    assert(both.err.includes("with --eval-data nothing is held out"), both.err);
  });
});

Deno.test("cli: a BERT checkpoint saved without its pooler (a masked LM's) trains a classifier with a new pooler, saved", async () => {
  await withTempDir("hartley_pooler_", async (dir) => {
    const model = await tempModelDir("tests/fixtures/models/bert");
    try {
      const file = await openSafetensors(`${model}/model.safetensors`);
      const kept: Record<string, TensorData> = {};
      for (const k of file.names) {
        if (k.startsWith("bert.pooler.") || k.startsWith("classifier.")) continue;
        const { dtype, shape } = file.info(k);
        kept[k] = { dtype, shape, data: await file.read(k) };
      }
      await writeSafetensors(`${model}/model.safetensors`, kept);
      const data = await writeToyData(dir, 24);
      const out = `${dir}/run`;
      const r = await runCli([
        "train",
        "--model",
        model,
        "--data",
        data,
        "--seq-len",
        "12",
        "--steps",
        "1",
        "--out",
        out,
        "--quiet",
      ]);
      assertEquals(r.code, 0, r.err);
      const config = JSON.parse(await Deno.readTextFile(`${out}/adapter/adapter_config.json`));
      assert(config.modules_to_save.includes("bert.pooler"), JSON.stringify(config.modules_to_save));
      const args = ["--model", model, "--data", data, "--seq-len", "12", "--json"];
      const withAdapter = await runCli(["eval", ...args, "--adapter", `${out}/adapter`]);
      assertEquals(withAdapter.code, 0, withAdapter.err);
      assertEquals(
        (await runCli(["merge", "--model", model, "--adapter", `${out}/adapter`, "--out", `${dir}/merged`]))
          .code,
        0,
      );
      const merged = await runCli(["eval", ...args.slice(2), "--model", `${dir}/merged`]);
      assertEquals(JSON.parse(merged.out).loss, JSON.parse(withAdapter.out).loss);
    } finally {
      await Deno.remove(model, { recursive: true });
    }
  });
});

Deno.test("cli: an image classifier's eval maps class folders to the head's class names", async () => {
  const model = await tempModelDir("tests/fixtures/models/vit", {
    id2label: { 0: "dog", 1: "x", 2: "cat", 3: "y", 4: "z" },
    label2id: { dog: 0, x: 1, cat: 2, y: 3, z: 4 },
  });
  try {
    const folder = "tests/fixtures/images/folder";
    const p = await runCli(["predict", "--model", model, "--data", folder, "--json"]);
    assertEquals(p.code, 0, p.err);
    const records = p.out.trim().split("\n").map((l) => JSON.parse(l));
    const right = records.filter((r) => r.file.includes(`/${r.label}/`)).length;
    const e = await runCli(["eval", "--model", model, "--data", folder, "--json"]);
    assertEquals(e.code, 0, e.err);
    assertEquals(JSON.parse(e.out).accuracy, right / records.length, `${p.out}\n${e.out}`);
  } finally {
    await Deno.remove(model, { recursive: true });
  }
});

Deno.test("cli: eval says how it numbered the data's labels for a head that names no classes", async () => {
  await withTempDir("hartley_unnamed_", async (dir) => {
    await Deno.writeTextFile(`${dir}/d.csv`, "text,label\napple berry,fruit\nstone rock,hard\n");
    const r = await runCli([
      "eval",
      "--model",
      "tests/fixtures/models/bert",
      "--data",
      `${dir}/d.csv`,
      "--seq-len",
      "12",
    ]);
    assertEquals(r.code, 0, r.err);
    assert(r.err.includes("names no classes") && r.err.includes("fruit = 0, hard = 1"), r.err);
  });
});

Deno.test("cli: a kept head with more outputs than the data's classes: the adapter names them all, eval maps as training did", async () => {
  await withTempDir("hartley_head_names_", async (dir) => {
    // RoBERTa's fixture head has 3 unnamed outputs; the data has 2 classes, "fruit" seen first
    const data = await writeToyData(dir, 16);
    const r = await runCli([
      ...tinyRun(data, `${dir}/run`, ["--steps", "1"]).map((a) =>
        a === GPT2 ? "tests/fixtures/models/roberta" : a
      ),
    ]);
    assertEquals(r.code, 0, r.err);
    assert(r.err.includes("note: the model's head has 3 outputs and the data 2 classes"), r.err);
    const weights = await openSafetensors(`${dir}/run/adapter/adapter_model.safetensors`);
    assertEquals(JSON.parse(weights.metadata["hartley.labels"]), ["fruit", "hard", "LABEL_2"]);
    // the same rows, "hard" first: scored by the adapter's names, not in their order of appearance
    const rows = (await Deno.readTextFile(data)).trim().split("\n");
    await Deno.writeTextFile(`${dir}/flipped.jsonl`, [...rows.slice(1), rows[0]].join("\n") + "\n");
    const args = ["--adapter", `${dir}/run/adapter`, "--seq-len", "12", "--json"];
    const a = await runCli(["eval", "--model", "tests/fixtures/models/roberta", "--data", data, ...args]);
    const b = await runCli([
      "eval",
      "--model",
      "tests/fixtures/models/roberta",
      "--data",
      `${dir}/flipped.jsonl`,
      ...args,
    ]);
    assertEquals([a.code, b.code], [0, 0], a.err + b.err);
    assert(!b.err.includes("order of appearance"), b.err);
    assertEquals(JSON.parse(b.out).accuracy, JSON.parse(a.out).accuracy);
    // a task the adapter was not trained for is named as such
    const other = await runCli([
      "eval",
      "--model",
      "tests/fixtures/models/roberta",
      "--data",
      data,
      ...args,
      "--task",
      "token-cls",
    ]);
    assertEquals(other.code, 2, other.err);
    assert(
      other.err.includes("--task token-cls does not match") && other.err.includes("trained for seq-cls"),
      other.err,
    );
  });
});

Deno.test("cli: --new-head trains a head for the data's classes over a checkpoint's named one; eval and merge follow it", async () => {
  await withTempDir("hartley_new_head_", async (dir) => {
    const model = await tempModelDir("tests/fixtures/models/roberta", {
      id2label: { 0: "north", 1: "south", 2: "east" },
      label2id: { north: 0, south: 1, east: 2 },
    });
    try {
      const data = await writeToyData(dir, 16);
      const run = (extra: string[]) =>
        runCli([
          ...tinyRun(data, `${dir}/run`, ["--steps", "1", ...extra]).map((a) => a === GPT2 ? model : a),
        ]);
      const kept = await run([]);
      assertEquals(kept.code, 1, kept.err);
      assert(kept.err.includes('"fruit" is not one of') && kept.err.includes("--new-head"), kept.err);
      const fresh = await run(["--new-head"]);
      assertEquals(fresh.code, 0, fresh.err);
      const weights = await openSafetensors(`${dir}/run/adapter/adapter_model.safetensors`);
      assertEquals(JSON.parse(weights.metadata["hartley.labels"]), ["fruit", "hard"]);
      assertEquals(weights.info("base_model.model.classifier.out_proj.weight").shape, [2, 64]);
      // the 3-class checkpoint under the adapter's 2-class head, and the merged model alone, agree
      const args = ["--data", data, "--seq-len", "12", "--json"];
      const withAdapter = await runCli([
        "eval",
        "--model",
        model,
        "--adapter",
        `${dir}/run/adapter`,
        ...args,
      ]);
      assertEquals(withAdapter.code, 0, withAdapter.err);
      const merged = await runCli([
        "merge",
        "--model",
        model,
        "--adapter",
        `${dir}/run/adapter`,
        "--out",
        `${dir}/m`,
      ]);
      assertEquals(merged.code, 0, merged.err);
      const alone = await runCli(["eval", "--model", `${dir}/m`, ...args]);
      assertEquals(alone.code, 0, alone.err);
      assertEquals(JSON.parse(alone.out).accuracy, JSON.parse(withAdapter.out).accuracy);
      const config = JSON.parse(await Deno.readTextFile(`${dir}/m/config.json`));
      assertEquals(config.id2label, { 0: "fruit", 1: "hard" });
    } finally {
      await Deno.remove(model, { recursive: true });
    }
  });
});
