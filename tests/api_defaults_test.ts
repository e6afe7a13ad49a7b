/**
 * What the library path load → attach → train → evaluate leaves out: the head's learning rate
 * where no head trains, the task where the model's head says it; and `toModelBatch` for a loop
 * of one's own.
 */
import {
  adapterGroups,
  attachAdapter,
  type BatchSource,
  evaluate,
  getGpu,
  loadModel,
  sshConfig,
  tensor,
  toModelBatch,
  train,
} from "../mod.ts";
import { TWO_ROW_BATCH as BATCH } from "./model_helpers.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";

const ROBERTA = new URL("./fixtures/models/roberta", import.meta.url).pathname;

/** {@link BATCH} at every step. */
const DATA: BatchSource = {
  size: 2,
  stepsPerEpoch: 1,
  positionAt: (step) => ({ epoch: step, step: 0 }),
  batch: () => BATCH,
};

Deno.test("adapterGroups: headLr may be left out where the adapter trains no head, and is asked for where it does", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, ROBERTA, { task: "seq-cls" });
  try {
    const frozenHead = await attachAdapter(model, sshConfig({ n: 100 }));
    const groups = adapterGroups(frozenHead, { lr: 0.1 });
    assertEquals(groups.map((g) => [g.name, g.lr]), [["adapter", 0.1]]);
    frozenHead.detach();
    const trainedHead = await attachAdapter(model, sshConfig({ n: 100, taskType: "SEQ_CLS" }));
    assertThrows(
      () => adapterGroups(trainedHead, { lr: 0.1 }),
      /modules_to_save \(classifier\..*give headLr/,
    );
    const both = adapterGroups(trainedHead, { lr: 0.1, headLr: 0.01 });
    assertEquals(both.map((g) => [g.name, g.lr]), [["adapter", 0.1], ["head", 0.01]]);
  } finally {
    model.dispose();
  }
});

Deno.test("train and evaluate take the model's task unless told; another task is refused", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, ROBERTA, { task: "seq-cls" });
  try {
    const peft = await attachAdapter(model, sshConfig({ n: 100, taskType: "SEQ_CLS" }));
    const groups = adapterGroups(peft, { lr: 0.1, headLr: 0.01 });
    const run = { model, data: DATA, groups, totalSteps: 1, warmupSteps: 0, seed: 0 };
    const done = await train(run);
    assertEquals([done.status, done.steps, done.losses.length], ["done", 1, 1]);
    await assertRejects(
      () => train({ ...run, task: "token-cls" }),
      Error,
      `task "token-cls", but the model has a seq-cls head`,
    );

    const result = await evaluate(model, [BATCH]);
    assertEquals([result.examples, result.targets], [2, 2]);
    assert(result.accuracy !== undefined, "a classifier's evaluation has an accuracy");
    const told = await evaluate(model, [BATCH], "seq-cls");
    assertEquals(told.loss, result.loss);
    await assertRejects(
      () => evaluate(model, [BATCH], "causal-lm"),
      Error,
      `evaluate: task "causal-lm", but`,
    );
  } finally {
    model.dispose();
  }
});

Deno.test("train and evaluate refuse a model without a head", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, ROBERTA, { task: "base" });
  try {
    const run = { model, data: DATA, groups: [], totalSteps: 1, warmupSteps: 0, seed: 0 };
    await assertRejects(() => train(run), Error, "train: the model has no head");
    await assertRejects(() => evaluate(model, [BATCH]), Error, "evaluate: the model has no head");
  } finally {
    model.dispose();
  }
});

Deno.test("toModelBatch (mod.ts) turns a BatchIterator's batch into the model's inputs, labels shaped for the task", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, ROBERTA, { task: "seq-cls" });
  try {
    const logits = tensor.tidy(() => {
      const batch = toModelBatch(model, BATCH, "seq-cls");
      assertEquals([batch.inputIds!.shape, batch.labels!.shape], [[2, 4], [2]]);
      return model.forward(batch).logits;
    });
    assertEquals(logits.shape, [2, 3]);
    logits.dispose();
    const unlabelled = tensor.tidy(() => toModelBatch(model, BATCH, "seq-cls", false).labels);
    assertEquals(unlabelled, undefined);
  } finally {
    model.dispose();
  }
});
