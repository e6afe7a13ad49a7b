import {
  adapterGroups,
  attachAdapter,
  BatchIterator,
  ClassificationDataset,
  type EvalResult,
  getGpu,
  loadCheckpoint,
  loadModel,
  loadModelTokenizer,
  sshConfig,
  train,
  type TrainResult,
} from "../mod.ts";
import { readRunLog } from "../lib/train/log.ts";
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { GPT2, runCli, tinyRun, withTempDir, writeToyData } from "./train_helpers.ts";

/** GPT-2 as a 2-class classifier with SSH, and 16 short rows of alternating labels, 4 a batch. */
async function smallClassifier() {
  const gpu = await getGpu();
  const model = await loadModel(gpu, GPT2, { task: "seq-cls", numLabels: 2 });
  const tokenizer = await loadModelTokenizer(model.config);
  model.config.padTokenId ??= tokenizer.padId;
  const peft = await attachAdapter(model, sshConfig({ n: 8, taskType: "SEQ_CLS" }));
  const examples = Array.from({ length: 16 }, (_, i) => ({ text: `row ${i}`, label: i % 2 }));
  const data = new BatchIterator(new ClassificationDataset(examples, tokenizer, { maxLength: 8 }), {
    batchSize: 4,
  });
  return { model, peft, data };
}

/**
 * Train the GPT-2 fixture for up to 6 steps, evaluating after each with `score(step)` standing in
 * for the held-out accuracy (or loss); `stopAt` ends the session there with a checkpoint, `resume`
 * continues from it.
 */
async function scripted(
  out: string,
  score: (step: number) => number,
  opts: { metric?: "accuracy" | "loss" | "pearson"; patience?: number; stopAt?: number; resume?: boolean } =
    {},
): Promise<{ result: TrainResult; saves: string[] }> {
  const { model, peft, data } = await smallClassifier();
  try {
    const resumeFrom = opts.resume ? await loadCheckpoint(out) : undefined;
    let step = resumeFrom?.state.step ?? 0;
    const saves: string[] = [];
    const result = await train({
      model,
      task: "seq-cls",
      data,
      groups: adapterGroups(peft, { lr: 0.01, headLr: 0.01 }),
      totalSteps: 6,
      warmupSteps: 0,
      seed: 0,
      evalEvery: 1,
      evaluate: () => {
        step++;
        const v = score(step);
        const r: EvalResult = opts.metric === "loss"
          ? { loss: v, examples: 16, targets: 16 }
          : { loss: 1, accuracy: v, examples: 16, targets: 16 };
        return Promise.resolve(r);
      },
      outDir: out,
      writeWeights: async (dir) => {
        saves.push(`${dir.slice(out.length + 1)}@${step}`);
        await peft.save(`${dir}/adapter`);
      },
      resumeFrom,
      shouldStop: (done) => done === opts.stopAt,
      best: { metric: opts.metric, save: true, patience: opts.patience },
    });
    return { result, saves };
  } finally {
    model.dispose();
  }
}

const ACCURACY = [0, 0.5, 0.7, 0.6, 0.7, 0.9, 0.95]; // by step; 0.7 again at step 4 is not better

Deno.test("best: keeps each better evaluation's weights and stops after `patience` that are not better", async () => {
  await withTempDir("hartley_best_", async (out) => {
    const { result, saves } = await scripted(out, (s) => ACCURACY[s], { patience: 2 });
    assertEquals(result.status, "early");
    assertEquals(result.steps, 4);
    assertEquals(result.best, { step: 2, metric: "accuracy", value: 0.7, since: 2 });
    assertEquals(saves.filter((s) => s.startsWith("best")), ["best@1", "best@2"]);
    assert((await Deno.stat(`${out}/best/adapter/adapter_model.safetensors`)).isFile);
    // the checkpoint written at the end knows the best evaluation
    assertEquals((await loadCheckpoint(out)).state.best, result.best);
  });
});

Deno.test("best: by loss, lower is better; without patience the run goes on", async () => {
  await withTempDir("hartley_best_loss_", async (out) => {
    const loss = [0, 2, 1.5, 1.6, 1.4, 1.45, 1.45];
    const { result } = await scripted(out, (s) => loss[s], { metric: "loss" });
    assertEquals(result.status, "done");
    assertEquals(result.steps, 6);
    assertEquals(result.best, { step: 4, metric: "loss", value: 1.4, since: 2 });
  });
});

Deno.test("best: a resumed run stops early at the same step as an uninterrupted one", async () => {
  await withTempDir("hartley_best_resume_", async (out) => {
    const first = await scripted(out, (s) => ACCURACY[s], { patience: 2, stopAt: 3 });
    assertEquals([first.result.status, first.result.best?.since], ["stopped", 1]);
    const rest = await scripted(out, (s) => ACCURACY[s], { patience: 2, resume: true });
    assertEquals([rest.result.status, rest.result.steps], ["early", 4]);
    assertEquals(rest.result.best, { step: 2, metric: "accuracy", value: 0.7, since: 2 });
  });
});

Deno.test("--save-best writes OUT/best/adapter; --save-best and --early-stop need --eval-every", async () => {
  await withTempDir("hartley_best_cli_", async (dir) => {
    const data = await writeToyData(dir, 24);
    const run = await runCli(
      tinyRun(data, `${dir}/run`, ["--steps", "3", "--eval-every", "1", "--save-best"]),
    );
    assertEquals(run.code, 0, run.err);
    assert((await Deno.stat(`${dir}/run/best/adapter/adapter_config.json`)).isFile);
    const noEvery = await runCli(tinyRun(data, `${dir}/run2`, ["--steps", "3", "--early-stop", "2"]));
    assertEquals(noEvery.code, 2);
    assert(noEvery.err.includes("--early-stop counts evaluations: give --eval-every STEPS too"), noEvery.err);
    // the end's evaluation alone has no best to choose: the final weights are the run's output
    const noBest = await runCli(tinyRun(data, `${dir}/run3`, ["--steps", "3", "--save-best"]));
    assertEquals(noBest.code, 2);
    assert(
      noBest.err.includes("--save-best keeps the best of the evaluations every --eval-every STEPS"),
      noBest.err,
    );
  });
});

Deno.test("best: patience reached at the last evaluation is no early stop; an early-stopped run stays over", async () => {
  await withTempDir("hartley_best_end_", async (out) => {
    const { result } = await scripted(out, (s) => s === 1 ? 0.9 : 0.5, { patience: 5 });
    assertEquals([result.status, result.steps, result.best?.since], ["done", 6, 5]);
  });
  await withTempDir("hartley_best_over_", async (out) => {
    const first = await scripted(out, (s) => ACCURACY[s], { patience: 2 });
    assertEquals([first.result.status, first.result.steps], ["early", 4]);
    assertEquals((await loadCheckpoint(out)).state.stoppedEarly, true);
    const again = await scripted(out, (s) => ACCURACY[s], { patience: 2, resume: true });
    assertEquals([again.result.status, again.result.steps, again.saves], ["early", 4, []]);
    // with its output written (as the CLI writes it after the stop), the CLI refuses to resume it
    await Deno.mkdir(`${out}/adapter`);
    const cli = await runCli(["train", "--resume", "--out", out, "--quiet"]);
    assertEquals(cli.code, 2);
    assert(cli.err.includes("stopped early at step 4 (best accuracy 0.7000 at step 2); it is over"), cli.err);
  });
});

Deno.test("best: a NaN metric is never better, counts towards patience, and stays in the log", async () => {
  await withTempDir("hartley_best_nan_", async (out) => {
    // NaN before any best is not one; after it, two NaN in a row end the run as two worse ones do
    const scores = [0, NaN, 0.5, NaN, NaN, 0.9, 0.95];
    const { result, saves } = await scripted(out, (s) => scores[s], { patience: 2 });
    assertEquals([result.status, result.steps], ["early", 4]);
    assertEquals(result.best, { step: 2, metric: "accuracy", value: 0.5, since: 2 });
    assertEquals(saves.filter((s) => s.startsWith("best")), ["best@2"]);
    assert(Number.isNaN(result.evals[0].accuracy!), "the NaN evaluation is reported");
  });
  // NaN from the start: as transformers' EarlyStoppingCallback, the first sets the reference and each
  // later one counts, so patience 2 ends the run at the third; a resumed run counts on where it stopped
  await withTempDir("hartley_best_nan_first_", async (out) => {
    const { result } = await scripted(out, () => NaN, { patience: 2 });
    assertEquals([result.status, result.steps, result.best], ["early", 3, undefined]);
    await scripted(out, () => NaN, { patience: 2, stopAt: 2 });
    const resumed = await scripted(out, () => NaN, { patience: 2, resume: true });
    assertEquals([resumed.result.status, resumed.result.steps], ["early", 3]);
    // a best after NaN ones starts its own count
    const late = await scripted(out, (s) => (s < 3 ? NaN : s === 3 ? 0.5 : 0.4), { patience: 2 });
    assertEquals([late.result.status, late.result.steps, late.result.best?.step], ["early", 5, 3]);
  });
  // a metric the evaluation does not report at all is still an error
  await withTempDir("hartley_best_absent_", async (out) => {
    const absent = await scripted(out, (s) => s, { metric: "pearson" }).catch((e) => e);
    assert(
      absent instanceof Error && absent.message.includes("the evaluation reports no pearson"),
      String(absent),
    );
  });
});

Deno.test("--save-best on regression data whose held-out labels are all equal (Pearson NaN) runs to the end", async () => {
  await withTempDir("hartley_best_nan_cli_", async (dir) => {
    const words = ["apple", "stone", "cloud", "rain", "iron", "melon"];
    const line = (i: number, label: number) =>
      JSON.stringify({ text: `${words[i % 6]} ${words[(i * 5) % 6]}`, label });
    await Deno.writeTextFile(
      `${dir}/train.jsonl`,
      Array.from({ length: 16 }, (_, i) => line(i, i % 5)).join("\n"),
    );
    await Deno.writeTextFile(`${dir}/dev.jsonl`, Array.from({ length: 8 }, (_, i) => line(i, 3)).join("\n"));
    const r = await runCli([
      ...tinyRun(`${dir}/train.jsonl`, `${dir}/run`, ["--steps", "4", "--eval-every", "2", "--save-best"]),
      "--eval-data",
      `${dir}/dev.jsonl`,
      "--regression",
    ].filter((a, i, all) => a !== "--eval-fraction" && all[i - 1] !== "--eval-fraction"));
    assertEquals(r.code, 0, r.err);
    const evals = (await readRunLog(`${dir}/run/log.jsonl`)).filter((x) => x.type === "eval");
    assertEquals(evals.map((x) => [x.step, x.pearson]), [[2, "NaN"], [4, "NaN"]]);
    assert(r.err.includes("no best held-out pearson: every evaluation's was NaN"), r.err);
  });
});

Deno.test("train refuses a task the model's head is not for, naming both", async () => {
  const { model, peft, data } = await smallClassifier();
  try {
    await assertRejects(
      () =>
        train({
          model,
          task: "causal-lm",
          data,
          groups: adapterGroups(peft, { lr: 0.01, headLr: 0.01 }),
          totalSteps: 1,
          warmupSteps: 0,
          seed: 0,
        }),
      Error,
      `train: task "causal-lm", but the model has a seq-cls head`,
    );
  } finally {
    model.dispose();
  }
});
