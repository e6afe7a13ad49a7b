import { loadForUse } from "../lib/cli/load.ts";
import { loadSplits } from "../lib/cli/setup.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import { ATTENTION_PATH, noGrad, tidy } from "../lib/tensor/mod.ts";
import { findCheckpoint, loadCheckpoint } from "../lib/train/checkpoint.ts";
import { readRunLog, RunLog } from "../lib/train/log.ts";
import { formatDuration, Progress } from "../lib/train/progress.ts";
import { toModelBatch } from "../lib/train/tasks.ts";
import { downsampleMax, heatmapSvg, linePlotSvg, ticks } from "../lib/viz/svg.ts";
import { assert, assertClose, assertEquals } from "./assert.ts";
import { GPT2, runCli, tinyRun, withTempDir, writeToyData } from "./train_helpers.ts";

/** Logits of `dir` (+ adapter) on the first rows of `data`. */
async function logitsOf(model: string, adapter: string | undefined, data: string): Promise<Float32Array> {
  const gpu = await getGpu();
  const l = await loadForUse(gpu, { model, adapter });
  try {
    const spec = { task: l.task, data, evalData: data, evalFraction: 0, seqLen: 12, batchSize: 8, seed: 0 };
    const splits = await loadSplits(spec, l.config, l.tokenizer, model, l.numLabels);
    const batch = splits.eval!.batch({ epoch: 0, step: 0 });
    const read = tidy(() =>
      noGrad(() => ({ logits: l.model.forward(toModelBatch(l.model, batch, l.task)).logits.readLater() }))
    );
    gpu.stream.flush();
    return await read.logits;
  } finally {
    l.peft?.detach();
    l.model.dispose();
  }
}

/** `hartley eval ... --json` of a model (and adapter) on `data` at 12 tokens. */
function evalJson(data: string, model: string[]) {
  return runCli(["eval", ...model, "--data", data, "--seq-len", "12", "--json"]);
}

for (const method of ["ssh", "lora"]) {
  Deno.test(`train → merge → eval round trip (${method}): the merged model reproduces the adapter model`, async () => {
    await withTempDir("hartley_roundtrip_", async (dir) => {
      const data = await writeToyData(dir, 32);
      const run = await runCli(
        tinyRun(data, `${dir}/run`, [
          "--method",
          method,
          "--steps",
          "4",
          "--lr",
          method === "lora" ? "0.01" : "0.1",
        ]),
      );
      assertEquals(run.code, 0, run.err);
      const log = await readRunLog(`${dir}/run/log.jsonl`);
      assertEquals(log.map((r) => r.type), ["start", "train", "eval", "checkpoint", "end"]);
      const mergeArgs = [
        "merge",
        "--model",
        GPT2,
        "--adapter",
        `${dir}/run/adapter`,
        "--out",
        `${dir}/merged`,
      ];
      const merged = await runCli(mergeArgs);
      assertEquals(merged.code, 0, merged.err);
      const config = JSON.parse(await Deno.readTextFile(`${dir}/merged/config.json`));
      assertEquals(config.architectures, ["GPT2ForSequenceClassification"]);
      assertEquals(
        config.id2label,
        { "0": "fruit", "1": "hard" },
        "the data's class names, kept by the adapter",
      );
      const a = await logitsOf(GPT2, `${dir}/run/adapter`, data);
      const b = await logitsOf(`${dir}/merged`, undefined, data);
      assertClose(b, a, 1e-4, "merged vs adapter logits");
      const evalA = await evalJson(data, ["--model", GPT2, "--adapter", `${dir}/run/adapter`]);
      const evalB = await evalJson(data, ["--model", `${dir}/merged`]);
      assertEquals(evalA.code, 0, evalA.err);
      assertEquals(evalB.code, 0, evalB.err);
      const ra = JSON.parse(evalA.out), rb = JSON.parse(evalB.out);
      assertEquals(rb.accuracy, ra.accuracy);
      assert(Math.abs(rb.loss - ra.loss) < 1e-4, `eval loss ${rb.loss} vs ${ra.loss}`);
      // the fused attention path gives the same evaluation
      const fused = await evalJson(data, ["--model", `${dir}/merged`, "--attention", "fused"]);
      assertEquals(fused.code, 0, fused.err);
      assert(
        Math.abs(JSON.parse(fused.out).loss - rb.loss) < 1e-5,
        `fused eval loss ${fused.out} vs ${rb.loss}`,
      );
      assertEquals(ATTENTION_PATH.path, "auto", "eval restores the attention path");
      // merging again over an existing directory is refused (nothing written is lost)
      const again = await runCli(mergeArgs);
      assertEquals(again.code, 2);
      assert(again.err.includes("already exists: pass --overwrite"), again.err);
    });
  });
}

Deno.test("--gradient-checkpointing trains to the same losses and adapter", async () => {
  await withTempDir("hartley_ckpt_", async (dir) => {
    const data = await writeToyData(dir, 32);
    const run = async (out: string, extra: string[]) => {
      const r = await runCli(tinyRun(data, `${dir}/${out}`, ["--steps", "4", "--log-every", "1", ...extra]));
      assertEquals(r.code, 0, r.err);
      const log = await readRunLog(`${dir}/${out}/log.jsonl`);
      return log.filter((x) => x.type === "train").map((x) => x.loss as number);
    };
    const plain = await run("plain", []), ckpt = await run("ckpt", ["--gradient-checkpointing"]);
    assertEquals(plain.length, 4);
    assertClose(ckpt, plain, 1e-6, "train losses");
    const logits = [
      await logitsOf(GPT2, `${dir}/plain/adapter`, data),
      await logitsOf(GPT2, `${dir}/ckpt/adapter`, data),
    ];
    assertClose(logits[1], logits[0], 1e-5, "logits of the trained adapters");
  });
});

Deno.test("evaluations and checkpoints off the --log-every cadence leave the loss window whole, as transformers' Trainer", async () => {
  await withTempDir("hartley_logwin_", async (dir) => {
    const data = await writeToyData(dir, 40);
    const run = async (out: string, logEvery: string) => {
      const opts = ["--steps", "8", "--eval-every", "3", "--save-every", "3", "--seed", "3"];
      const r = await runCli(tinyRun(data, `${dir}/${out}`, [...opts, "--log-every", logEvery]));
      assertEquals(r.code, 0, r.err);
      const log = await readRunLog(`${dir}/${out}/log.jsonl`);
      return log.filter((x) => x.type === "train").map((x) => [x.step, x.loss as number] as const);
    };
    const steps = (await run("each", "1")).map(([, loss]) => loss);
    assertEquals(steps.length, 8);
    const windows = await run("four", "4");
    assertEquals(windows.map(([step]) => step), [4, 8], "logged steps");
    const means = [0, 4].map((from) => steps.slice(from, from + 4).reduce((a, b) => a + b) / 4);
    assertClose(windows.map(([, loss]) => loss), means, 1e-6, "each record's loss: the mean of its 4 steps");
  });
});

Deno.test("--method head trains only the classifier and writes a model directory that eval loads", async () => {
  await withTempDir("hartley_head_", async (dir) => {
    const data = await writeToyData(dir, 24);
    const run = await runCli(tinyRun(data, `${dir}/run`, ["--method", "head", "--steps", "3"]));
    assertEquals(run.code, 0, run.err);
    const start = (await readRunLog(`${dir}/run/log.jsonl`))[0];
    assertEquals(start.trainable, 2 * 64); // score.weight [2, 64], no bias
    const ev = await evalJson(data, ["--model", `${dir}/run/model`]);
    assertEquals(ev.code, 0, ev.err);
    assert(JSON.parse(ev.out).accuracy >= 0, ev.out);
    assert(await findCheckpoint(`${dir}/run`), "checkpoint kept for --resume");
    const ckpt = await loadCheckpoint(`${dir}/run`);
    assertEquals(ckpt.state.step, 3);
    assertEquals(ckpt.optimizer.names, ["score.weight"]);
  });
});

Deno.test("train on a Parquet split: its ClassLabel names label the written model", async () => {
  await withTempDir("hartley_parquet_", async (dir) => {
    const data = new URL("./fixtures/data/spam_gzip.parquet", import.meta.url).pathname;
    const options = "--method head --steps 2 --batch-size 2 --eval-fraction 0.25".split(" ");
    const run = await runCli(tinyRun(data, `${dir}/run`, options));
    assertEquals(run.code, 0, run.err);
    const config = JSON.parse(await Deno.readTextFile(`${dir}/run/model/config.json`));
    assertEquals(config.id2label, { "0": "ham", "1": "spam" });
    assertEquals(config.architectures, ["GPT2ForSequenceClassification"]);
  });
});

Deno.test("predict labels a data file as eval scores it; one --text in plain words; argument errors", async () => {
  await withTempDir("hartley_predict_", async (dir) => {
    const data = await writeToyData(dir, 24);
    const run = await runCli(tinyRun(data, `${dir}/run`, ["--steps", "4"]));
    assertEquals(run.code, 0, run.err);
    const adapter = ["--model", GPT2, "--adapter", `${dir}/run/adapter`];
    const ev = await evalJson(data, adapter);
    assertEquals(ev.code, 0, ev.err);
    // two classes: GLUE's MCC and F1 beside the accuracy
    const scores = JSON.parse(ev.out);
    assert(typeof scores.mcc === "number" && typeof scores.f1 === "number", ev.out);
    const out = `${dir}/predictions.jsonl`;
    const p = await runCli([
      "predict",
      ...adapter,
      "--data",
      data,
      "--seq-len",
      "12",
      "--out",
      out,
      "--labels",
      "fruit,hard",
    ]);
    assertEquals(p.code, 0, p.err);
    const rows = (await Deno.readTextFile(out)).trim().split("\n").map((l) => JSON.parse(l));
    const labels = (await Deno.readTextFile(data)).trim().split("\n").map((l) => JSON.parse(l).label);
    assertEquals(rows.length, 24);
    assertEquals(rows.map((r) => r.label === "fruit" ? 0 : 1), rows.map((r) => r.id));
    const accuracy = rows.filter((r, i) => r.label === labels[i]).length / rows.length;
    assertClose([accuracy], [JSON.parse(ev.out).accuracy], 1e-9, "predict's accuracy against eval's");
    // the adapter knows the class names of its training data: no --labels needed
    const one = await runCli(["predict", ...adapter, "--text", "apple berry melon"]);
    assertEquals(one.code, 0, one.err);
    assert(/^(fruit|hard) \(0\.\d+\)$/.test(one.out), one.out);
    const lm = await runCli([
      "predict",
      "--model",
      GPT2,
      "--text",
      "apple berry",
      "--max-new-tokens",
      "5",
      "--json",
    ]);
    assertEquals(lm.code, 0, lm.err);
    const g = JSON.parse(lm.out);
    assertEquals([g.prompt, g.tokens <= 5, g.output], ["apple berry", true, "apple berry" + g.completion]);
    const both = await runCli(["predict", "--model", GPT2, "--text", "a", "--data", data]);
    assertEquals(both.code, 2);
    assert(both.err.startsWith("hartley predict: give either --text TEXT or --data PATH"), both.err);
    const wrong = await runCli(["predict", ...adapter, "--text", "a", "--labels", "x,y,z"]);
    assertEquals(wrong.code, 2, wrong.err);
    assert(wrong.err.includes("--labels names 3 classes, but the model's head has 2"), wrong.err);
  });
});

Deno.test("run log: a resumed run drops what was logged after its checkpoint", async () => {
  await withTempDir("hartley_log_", async (dir) => {
    const path = `${dir}/log.jsonl`;
    const log = await RunLog.open(path);
    for (let s = 0; s <= 5; s++) {
      await log.write({ type: "train", step: s, loss: s === 5 ? NaN : 1 / (s + 1) });
    }
    log.close();
    const all = await readRunLog(path);
    assertEquals(all.length, 6);
    assertEquals(all[5].loss, "NaN");
    await Deno.writeTextFile(path, '{"type":"train","step":6,"lo', { append: true }); // cut mid-write
    assertEquals((await readRunLog(path)).length, 6);
    const resumed = await RunLog.open(path, { resumeAt: 3 });
    await resumed.write({ type: "resume", step: 3 });
    resumed.close();
    assertEquals((await readRunLog(path)).map((r) => r.step), [0, 1, 2, 3, 3]);
  });
});

Deno.test("run log: a log removed or replaced mid-run is written again from the open file, and said so", async () => {
  await withTempDir("hartley_log_", async (dir) => {
    const path = `${dir}/run/log.jsonl`, told: string[] = [];
    const log = await RunLog.open(path, { onWarning: (m) => told.push(m) });
    await log.write({ type: "start", step: 0 });
    await log.write({ type: "train", step: 1, loss: 2 });
    await Deno.remove(`${dir}/run`, { recursive: true }); // the run's folder deleted while it runs
    await log.write({ type: "train", step: 2, loss: 1 });
    assertEquals((await readRunLog(path)).map((r) => r.step), [0, 1, 2]);
    assertEquals(told.length, 1);
    assert(told[0].includes("was removed while the run wrote it"), told[0]);
    await Deno.writeTextFile(`${dir}/other.jsonl`, "");
    await Deno.rename(`${dir}/other.jsonl`, path); // another file put in its place
    await log.write({ type: "end", step: 3 });
    log.close();
    assertEquals((await readRunLog(path)).map((r) => r.step), [0, 1, 2, 3]);
    assert(told[1].includes("was replaced"), told[1]);
    // writes not awaited one by one, after a removal: in order, the records kept
    const again = await RunLog.open(path, { onWarning: (m) => told.push(m) });
    await again.write({ type: "start", step: 0 });
    await Deno.remove(path);
    await Promise.all([1, 2, 3].map((step) => again.write({ type: "train", step })));
    again.close();
    assertEquals((await readRunLog(path)).map((r) => r.step), [0, 1, 2, 3]);
    assertEquals(told.length, 3, "said once");
  });
});

Deno.test("progress: plain lines every interval with loss, tokens/s and ETA; a bar on a terminal", () => {
  let t = 0;
  const written: string[] = [];
  const sink = (tty: boolean) => ({
    writeSync: (b: Uint8Array) => (written.push(new TextDecoder().decode(b)), b.length),
    isTerminal: () => tty,
  });
  const p = new Progress(100, { sink: sink(false), now: () => t, plainInterval: 10, label: "ssh" });
  p.update(0);
  t = 5000;
  p.update(10, { tokens: 5000 }); // within the interval: nothing
  t = 10000;
  p.update(20, { loss: 0.5, tokens: 10000 });
  assertEquals(written.length, 2);
  assertEquals(written[1], "ssh  20/100   20%  loss 0.5000  1000 tok/s  ETA 40s\n");
  t = 50000;
  p.update(100, { loss: 0.25, tokens: 50000 });
  p.done();
  assertEquals(written.length, 3, "the last step is drawn once");
  assert(written[2].includes("done in 50s"), written[2]);
  written.length = 0;
  const bar = new Progress(4, { sink: sink(true), now: () => t });
  bar.update(2);
  assert(written[0].startsWith("\r\x1b[2K[############------------]"), JSON.stringify(written[0]));
  assertEquals(formatDuration(3725), "1h02m");
  assertEquals(formatDuration(65), "1m05s");
});

Deno.test("svg: heatmap downsampling, marks and a loss curve", () => {
  const rows = 300, cols = 7;
  const v = Float64Array.from({ length: rows * cols }, (_, i) => i);
  const ds = downsampleMax(v, rows, cols, 100);
  assertEquals([ds.rows, ds.cols, ...ds.by], [100, 7, 3, 1]);
  assertEquals(ds.data[0], 2 * cols); // max of rows 0..2 in column 0
  const svg = heatmapSvg(v, rows, cols, { maxCells: 100, marks: [[0, 0], [299, 6]], title: "T(W)² <x>" });
  assert(svg.startsWith("<svg") && svg.trim().endsWith("</svg>"));
  assertEquals((svg.match(/stroke="#e8002a"/g) ?? []).length, 3); // two marks + the legend swatch
  assert(svg.includes("T(W)² &lt;x&gt;"));
  const plot = linePlotSvg([{ name: "train", points: [[1, 2], [2, 1.5], [3, 1.2]] }], { title: "loss" });
  assert(plot.includes('<path d="M') && plot.includes(">train</text>"));
  assertEquals(ticks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
});

Deno.test("regression (STS-B style): float labels, one output, Pearson and Spearman; merge and predict keep it", async () => {
  await withTempDir("hartley_regression_", async (dir) => {
    const rng = new Prng(4);
    const words = ["apple", "berry", "stone", "iron", "cloud", "rain"];
    const rows = Array.from({ length: 32 }, () => {
      const a = words[rng.below(6)], b = words[rng.below(6)];
      return `${a} ${b},${a === b ? 5 : (rng.below(40) / 10).toFixed(1)}`;
    });
    await Deno.writeTextFile(`${dir}/sts.csv`, "text,score\n" + rows.join("\n") + "\n");
    const opts = "--regression --label-field score --steps 3 --eval-every 3 --eval-fraction 0.25".split(" ");
    const run = await runCli(tinyRun(`${dir}/sts.csv`, `${dir}/run`, opts));
    assertEquals(run.code, 0, run.err);
    const ev = (await readRunLog(`${dir}/run/log.jsonl`)).find((r) => r.type === "eval")!;
    assert(typeof ev.pearson === "number" && typeof ev.spearman === "number", JSON.stringify(ev));
    assertEquals(ev.accuracy, undefined);
    const adapter = ["--model", GPT2, "--adapter", `${dir}/run/adapter`];
    // eval sees the one-output head and scores it as regression without being told
    const again = await runCli([
      "eval",
      ...adapter,
      "--data",
      `${dir}/sts.csv`,
      "--label-field",
      "score",
      "--json",
    ]);
    assertEquals(again.code, 0, again.err);
    assert(typeof JSON.parse(again.out).pearson === "number", again.out);
    const merged = await runCli(["merge", ...adapter, "--out", `${dir}/merged`]);
    assertEquals(merged.code, 0, merged.err);
    const config = JSON.parse(await Deno.readTextFile(`${dir}/merged/config.json`));
    assertEquals([config.problem_type, Object.keys(config.id2label).length], ["regression", 1]);
    const p = await runCli(["predict", "--model", `${dir}/merged`, "--text", "apple apple"]);
    assertEquals(p.code, 0, p.err);
    assert(/^-?\d+(\.\d+)?(e-?\d+)?$/.test(p.out.trim()), `a number, got "${p.out}"`);
    const bad = await runCli(
      tinyRun(`${dir}/sts.csv`, `${dir}/run2`, ["--label-field", "score", "--steps", "1"]),
    );
    assertEquals(bad.code, 1, "without --regression the scores are no class ids");
  });
});

Deno.test("multi-label (label lists): the head learns each label apart; eval, merge and predict keep it", async () => {
  await withTempDir("hartley_multilabel_", async (dir) => {
    // a label per word kind in the text: fruit, hard, weather; a text holds one to three kinds
    const kinds = {
      fruit: ["apple", "berry", "lemon"],
      hard: ["stone", "iron", "brick"],
      weather: ["rain", "snow", "fog"],
    };
    const rng = new Prng(6);
    const names = Object.keys(kinds) as (keyof typeof kinds)[];
    const rows = Array.from({ length: 48 }, () => {
      const present = names.filter(() => rng.below(2) === 1);
      const labels = present.length > 0 ? present : [names[rng.below(3)]];
      const text = labels.flatMap((k) => [kinds[k][rng.below(3)], kinds[k][rng.below(3)]]).join(" ");
      return JSON.stringify({ text, labels });
    });
    await Deno.writeTextFile(`${dir}/tags.jsonl`, rows.join("\n") + "\n");
    const data = ["--label-field", "labels", "--eval-every", "12", "--eval-fraction", "0.25"];
    const run = await runCli(
      tinyRun(`${dir}/tags.jsonl`, `${dir}/run`, [...data, "--steps", "24", "--lr", "0.05"]),
    );
    assertEquals(run.code, 0, run.err);
    const evals = (await readRunLog(`${dir}/run/log.jsonl`)).filter((r) => r.type === "eval");
    const last = evals[evals.length - 1];
    assert(
      typeof last.f1 === "number" && typeof last.f1Macro === "number" && typeof last.accuracy === "number",
      JSON.stringify(last),
    );
    assertEquals(last.mcc, undefined);
    // the adapter remembers the head's problem type: eval scores label sets without being told
    const adapter = ["--model", GPT2, "--adapter", `${dir}/run/adapter`];
    const again = await runCli([
      "eval",
      ...adapter,
      "--data",
      `${dir}/tags.jsonl`,
      "--label-field",
      "labels",
      "--json",
    ]);
    assertEquals(again.code, 0, again.err);
    const scores = JSON.parse(again.out);
    assert(scores.f1 > 0.5, again.out);
    const merged = await runCli(["merge", ...adapter, "--out", `${dir}/merged`]);
    assertEquals(merged.code, 0, merged.err);
    const config = JSON.parse(await Deno.readTextFile(`${dir}/merged/config.json`));
    // the labels are named in the order the data first shows them
    assertEquals([config.problem_type, Object.values(config.id2label).sort()], [
      "multi_label_classification",
      names,
    ]);
    for (const model of [`${dir}/merged`, GPT2]) {
      const extra = model === GPT2 ? ["--adapter", `${dir}/run/adapter`] : [];
      const p = await runCli(["predict", "--model", model, ...extra, "--text", "apple rain", "--json"]);
      assertEquals(p.code, 0, p.err);
      const record = JSON.parse(p.out);
      assert(Array.isArray(record.labels) && Object.keys(record.probabilities).length === 3, p.out);
      assertEquals(
        record.labels,
        Object.keys(record.probabilities).filter((k) => record.probabilities[k] > 0.5),
      );
    }
    // the best evaluation by macro F1 is kept; MCC is not reported for label sets
    const best = await runCli(
      tinyRun(`${dir}/tags.jsonl`, `${dir}/best`, [
        ...data,
        "--steps",
        "12",
        "--save-best",
        "--best-metric",
        "f1-macro",
      ]),
    );
    assertEquals(best.code, 0, best.err);
    assert((await Deno.stat(`${dir}/best/best/adapter`)).isDirectory, "best/adapter");
    const mcc = await runCli(
      tinyRun(`${dir}/tags.jsonl`, `${dir}/mcc`, [
        ...data,
        "--steps",
        "1",
        "--save-best",
        "--best-metric",
        "mcc",
      ]),
    );
    assertEquals(mcc.code, 2, mcc.err);
    assert(mcc.err.includes("report loss, accuracy, f1, f1-macro (3 labels, multi-label)"), mcc.err);
    // a single label where the first example has a list is named
    await Deno.writeTextFile(`${dir}/mixed.jsonl`, `${rows[0]}\n{"text": "apple", "labels": "fruit"}\n`);
    const mixed = await runCli(
      tinyRun(`${dir}/mixed.jsonl`, `${dir}/run2`, ["--label-field", "labels", "--steps", "1"]),
    );
    assertEquals(mixed.code, 1);
    assert(mixed.err.includes(`mixed.jsonl:2: the label "fruit" is not a list`), mixed.err);
  });
});
