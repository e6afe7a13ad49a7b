import {
  adapterGroups,
  attachAdapter,
  BatchIterator,
  CausalLmDataset,
  ClassificationDataset,
  type Dataset,
  getGpu,
  loadModel,
  loadModelTokenizer,
  Prng,
  sshConfig,
  type TaskName,
  type Tokenizer,
  train,
} from "../mod.ts";
import { assert, assertClose, assertEquals } from "./assert.ts";
import { stepBatches, stepsForEpochs } from "../lib/train/trainer.ts";
import { GPT2 } from "./train_helpers.ts";

/**
 * Train a new SSH adapter (and head) on the GPT-2 fixture: each step's loss and the trained
 * values. Dropout stays off (train mode is never switched on), so that runs which batch the same
 * rows differently compute the same thing.
 */
async function trainRun(
  task: TaskName,
  rows: (tokenizer: Tokenizer) => Dataset,
  batchSize: number,
  accumulate: number,
  steps: number,
): Promise<{ losses: number[]; trained: number[]; peak: number }> {
  const gpu = await getGpu();
  const model = await loadModel(gpu, GPT2, { task, numLabels: task === "seq-cls" ? 2 : undefined });
  try {
    const tokenizer = await loadModelTokenizer(model.config);
    model.config.padTokenId ??= tokenizer.padId;
    const peft = await attachAdapter(
      model,
      sshConfig({ n: 24, alpha: 20, taskType: task === "seq-cls" ? "SEQ_CLS" : "CAUSAL_LM" }),
    );
    await gpu.sync();
    gpu.pool.trim();
    gpu.pool.resetPeak();
    const base = gpu.pool.stats().allocated;
    const result = await train({
      model,
      task,
      data: new BatchIterator(rows(tokenizer), { batchSize, shuffle: false }),
      groups: adapterGroups(peft, { lr: 0.1, headLr: 0.01 }),
      totalSteps: steps,
      accumulate,
      warmupSteps: 0,
      seed: 0,
      logEvery: 1,
      setTraining: () => {},
    });
    const peak = gpu.pool.stats().peak - base;
    const trained = (await Promise.all(peft.parameters().map((t) => t.toArray()))).flatMap((a) => [...a]);
    return { losses: result.losses.map((l) => l.loss), trained, peak };
  } finally {
    model.dispose();
  }
}

Deno.test("accumulate: 2 batches of 4 per step train as batches of 8", async () => {
  const rng = new Prng(5);
  const words = [["apple", "berry", "lemon", "melon"], ["stone", "iron", "steel", "brick"]];
  const examples = Array.from({ length: 24 }, (_, i) => ({
    text: Array.from({ length: 2 + rng.below(5) }, () => words[i % 2][rng.below(4)]).join(" "),
    label: i % 2,
  }));
  const rows = (tok: Tokenizer) => new ClassificationDataset(examples, tok, { maxLength: 16, numLabels: 2 });
  const whole = await trainRun("seq-cls", rows, 8, 1, 3);
  const accumulated = await trainRun("seq-cls", rows, 4, 2, 3);
  assertEquals(accumulated.losses.length, 3);
  assertClose(accumulated.losses, whole.losses, 1e-5, "losses");
  assertClose(accumulated.trained, whole.trained, 1e-5, "coefficients and head after 3 steps");
  // one batch of 4 is live at a time
  assert(accumulated.peak < whole.peak, `peak ${accumulated.peak} B should be below ${whole.peak} B`);
});

Deno.test("accumulate: batches count by their targets (a causal LM window cut short)", async () => {
  // 13 tokens make a full window of 8 targets and a padded one of 4
  const rng = new Prng(9);
  const tokens = Int32Array.from({ length: 13 }, () => 3 + rng.below(400));
  const rows = (tok: Tokenizer) => new CausalLmDataset(tokens, 8, tok.padId, { partial: "pad" });
  const whole = await trainRun("causal-lm", rows, 2, 1, 2);
  const accumulated = await trainRun("causal-lm", rows, 1, 2, 2);
  assertClose(accumulated.losses, whole.losses, 1e-5, "losses");
  assertClose(accumulated.trained, whole.trained, 1e-5, "coefficients after 2 steps");
});

Deno.test("accumulate: a step never spans two epochs; epochs count steps as transformers' Trainer", () => {
  // 5 batches an epoch, 4 a step: steps of 4 and 1 batches, then the next epoch from its start
  assertEquals([0, 1, 2, 3].map((s) => stepBatches(s, 4, 5)), [
    { first: 0, count: 4 },
    { first: 4, count: 1 },
    { first: 5, count: 4 },
    { first: 9, count: 1 },
  ]);
  assertEquals([0, 1, 2].map((s) => stepBatches(s, 1, 3)), [0, 1, 2].map((first) => ({ first, count: 1 })));
  // ⌈epochs · ⌈E/k⌉⌉: transformers' max_steps (10 rows in batches of 2, as its tables count them)
  const steps = [[1, 5, 4], [3, 5, 4], [1, 5, 2], [2, 5, 3], [0.25, 5, 1], [0.1, 10, 1], [
    1,
    157,
    1,
  ]] as const;
  assertEquals(steps.map(([e, n, k]) => stepsForEpochs(e, n, k)), [2, 6, 3, 4, 2, 1, 157]);
});
