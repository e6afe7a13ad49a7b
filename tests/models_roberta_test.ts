import { getGpu } from "../lib/gpu/mod.ts";
import { robertaPositionIds } from "../lib/models/bert.ts";
import { loadModel } from "../lib/models/load.ts";
import { noGrad, Tensor, tidy } from "../lib/tensor/mod.ts";
import { FUSIONS } from "../lib/nn/fusions.ts";
import { assert, assertClose, assertEquals, assertThrows } from "./assert.ts";
import { encoderSuite } from "./encoder_suite.ts";
import { editedModel, expectUsefulGrad, fixtureBatch, release, trainStep } from "./encoder_test_helpers.ts";

const DIR = "tests/fixtures/models/roberta";
const VALUE = "roberta.encoder.layer.1.attention.self.value";
const HEAD = [
  "classifier.dense.weight",
  "classifier.dense.bias",
  "classifier.out_proj.weight",
  "classifier.out_proj.bias",
];

Deno.test("roberta: position ids start after padding_idx and skip pad tokens", () => {
  // pad = 1: real tokens count 2, 3, …; pads (anywhere) take 1
  assertEquals(Array.from(robertaPositionIds(Int32Array.from([0, 9, 4, 1, 1]), 1, 5, 1, 10)), [
    2,
    3,
    4,
    1,
    1,
  ]);
  assertEquals(Array.from(robertaPositionIds(Int32Array.from([1, 5, 1, 7, 8, 1]), 2, 3, 1, 10)), [
    1,
    2,
    1,
    2,
    3,
    1,
  ]);
  assertEquals(Array.from(robertaPositionIds(Int32Array.from([3, 3]), 1, 2, 0, 3)), [1, 2]);
  // 8 real tokens need position 9 of a 9-row table
  assertThrows(
    () => robertaPositionIds(new Int32Array(8).fill(4), 1, 8, 1, 9),
    "row 0 has 8 non-pad tokens, needing position id 9; the model has 9 positions (at most 7 tokens per row)",
  );
});

encoderSuite({
  name: "roberta",
  architecture: "RobertaForSequenceClassification",
  padded: true,
  gradParams: [`${VALUE}.weight`, "roberta.embeddings.position_embeddings.weight"],
  missing: { name: "roberta.embeddings.position_embeddings.weight", shape: [80, 64] },
  reshaped: [{ name: "roberta.encoder.layer.1.output.LayerNorm.bias", shape: [8, 8], expected: [64] }],
});

Deno.test("roberta: train-mode backward gives finite gradients on the head and a plain Linear", async () => {
  const gpu = await getGpu();
  const positions = "roberta.embeddings.position_embeddings.weight";
  const words = "roberta.embeddings.word_embeddings.weight";
  const trainable = [...HEAD, `${VALUE}.weight`, positions, words];
  const { model, batch, evalLoss, trainLoss } = await trainStep(gpu, DIR, trainable);
  assert(Number.isFinite(trainLoss) && trainLoss !== evalLoss, `dropout changes the loss: ${trainLoss}`);
  assertEquals(model.linears.get(VALUE)!.adapter, null);
  for (const key of trainable) await expectUsefulGrad(model.parameters.get(key)!, key);
  // padding_idx (1) rows get no gradient, as nn.Embedding(padding_idx=1)
  for (const key of [positions, words]) {
    const g = await model.parameters.get(key)!.grad!.toArray();
    assert(g.subarray(64, 128).every((v) => v === 0), `${key}: the padding row has a gradient`);
  }
  assertEquals(model.parameters.get("roberta.embeddings.LayerNorm.weight")!.grad, null);
  release(model, batch);
});

Deno.test("roberta: a checkpoint without the classification head gets a new one", async () => {
  const gpu = await getGpu();
  const dir = await editedModel(DIR, (t) => {
    for (const name of Object.keys(t)) if (name.startsWith("classifier.")) delete t[name];
  });
  try {
    const model = await loadModel(gpu, dir, { numLabels: 4 });
    const { batch, ref } = await fixtureBatch(gpu, DIR);
    const out = noGrad(() => tidy(() => model.forward(batch)));
    assertEquals(out.logits.shape, [2, 4]);
    assert(Number.isFinite(await out.loss!.item()), "loss");
    assertClose(await out.hidden.toArray(), await ref.readF32("hidden_last"), 1e-4, "backbone unchanged");
    for (const t of [out.logits, out.loss!, out.hidden]) t.dispose();
    release(model, batch);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("roberta: wrong inputs are rejected with what was expected; token types are ignored", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, DIR);
  const { batch } = await fixtureBatch(gpu, DIR);
  const run = (b: typeof batch) => noGrad(() => tidy(() => model.forward(b)));
  // 80 positions, padding_idx 1: at most 78 real tokens per row
  const ids = Tensor.from(gpu, new Int32Array(79).fill(5), [1, 79]);
  assertThrows(() => run({ inputIds: ids }), "row 0 has 79 non-pad tokens, needing position id 80");
  // token types are ignored, as transformers' RoBERTa tokenizers return none: a pair's second
  // text numbered 1 by tokenizer.json's template (past the one-row type table) changes nothing
  const paired = { ...batch, tokenTypeIds: Int32Array.from({ length: 32 }, (_, i) => (i % 16 >= 8 ? 1 : 0)) };
  const logits = async (b: typeof batch) => await run(b).logits.toArray();
  assertEquals(Array.from(await logits(paired)), Array.from(await logits(batch)));
  const big = Tensor.from(gpu, new Int32Array(32).fill(512), [2, 16]);
  assertThrows(() => run({ ...batch, inputIds: big, inputIdsHost: big.host }), /word_embeddings.*id 512/);
  const labels = Tensor.from(gpu, new Int32Array([0, 3]), [2]);
  assertThrows(() => run({ ...batch, labels }), "target 3 at 1 is outside [0, 3)");
  for (const t of [ids, big, labels]) t.dispose();
  release(model, batch);
});

Deno.test("roberta: with the fusions off (one by one layers, separate norms) a train step gives the same loss and gradients", async () => {
  const gpu = await getGpu();
  const run = async () => {
    const { model, batch, trainLoss } = await trainStep(gpu, DIR, HEAD);
    const grads = await Promise.all(HEAD.map((k) => model.parameters.get(k)!.grad!.toArray()));
    release(model, batch);
    return { trainLoss, grads };
  };
  const fused = await run();
  Object.assign(FUSIONS, { qkv: false, ffn: false, norm: false });
  try {
    const separate = await run();
    assertClose([fused.trainLoss], [separate.trainLoss], 1e-6, "train-mode loss");
    HEAD.forEach((k, i) => assertClose(fused.grads[i], separate.grads[i], 1e-5, k));
  } finally {
    Object.assign(FUSIONS, { qkv: true, ffn: true, norm: true });
  }
});
