import { getGpu } from "../lib/gpu/mod.ts";
import { loadModel } from "../lib/models/load.ts";
import type { BertOutput } from "../lib/models/bert.ts";
import { encoderSelfAttention } from "../lib/models/encoder.ts";
import { fusedProjection } from "../lib/nn/fused_linear.ts";
import { Linear } from "../lib/nn/linear.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { noGrad, Tensor, tidy } from "../lib/tensor/mod.ts";
import { assert, assertClose, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { encoderSuite } from "./encoder_suite.ts";
import { editedModel, expectUsefulGrad, fixtureBatch, release, trainStep } from "./encoder_test_helpers.ts";

const DIR = "tests/fixtures/models/bert";
const QUERY = "bert.encoder.layer.0.attention.self.query";

encoderSuite({
  name: "bert",
  architecture: "BertForSequenceClassification",
  padded: true,
  gradParams: [`${QUERY}.weight`, "bert.embeddings.LayerNorm.weight"],
  missing: { name: "bert.encoder.layer.1.attention.self.key.weight", shape: [64, 64] },
  reshaped: [{
    name: "bert.encoder.layer.0.intermediate.dense.weight",
    shape: [64, 128],
    expected: [128, 64],
  }],
});

Deno.test("bert: train-mode backward gives finite gradients on the classifier and a plain Linear", async () => {
  const gpu = await getGpu();
  const trainable = ["classifier.weight", "classifier.bias", `${QUERY}.weight`, `${QUERY}.bias`];
  const { model, batch, evalLoss, trainLoss } = await trainStep(gpu, DIR, trainable);
  assert(Number.isFinite(trainLoss) && trainLoss !== evalLoss, `dropout changes the loss: ${trainLoss}`);
  assertEquals(model.linears.get(QUERY)!.adapter, null);
  for (const key of trainable) await expectUsefulGrad(model.parameters.get(key)!, key);
  assertEquals(model.parameters.get("bert.embeddings.word_embeddings.weight")!.grad, null);
  // back in eval mode, dropout is off again
  model.train(false);
  const loss = noGrad(() => tidy(() => model.forward(batch).loss!));
  assertClose([await loss.item()], [0.6915551424026489], 1e-5, "eval loss");
  loss.dispose();
  release(model, batch);
});

Deno.test("bert: the bare BertModel gives the encoder output and the pooler's", async () => {
  const gpu = await getGpu();
  const dir = await editedModel(DIR, (tensors) => {
    for (const name of Object.keys(tensors)) {
      if (name.startsWith("bert.")) tensors[name.slice(5)] = tensors[name];
      delete tensors[name];
    }
  }, (json) => json.architectures = ["BertModel"]);
  try {
    const model = await loadModel(gpu, dir);
    assertEquals(model.task, "base");
    const { batch, ref } = await fixtureBatch(gpu, DIR);
    batch.labels = undefined;
    const out = noGrad(() => tidy(() => model.forward(batch))) as BertOutput;
    assert(out.logits === out.hidden && out.loss === undefined && out.pooled, "base outputs");
    const hidden = await out.hidden.toArray();
    assertClose(hidden, await ref.readF32("hidden_last"), 1e-4, "hidden");
    // pooler_output = tanh(dense(hidden[:, 0]))
    const w = await model.parameters.get("pooler.dense.weight")!.toArray();
    const bias = await model.parameters.get("pooler.dense.bias")!.toArray();
    const [b, t, h] = out.hidden.shape;
    const expected = Array.from({ length: b * h }, (_, k) => {
      const [row, o] = [Math.floor(k / h), k % h];
      let s = bias[o];
      for (let i = 0; i < h; i++) s += w[o * h + i] * hidden[row * t * h + i];
      return Math.tanh(s);
    });
    assertEquals(out.pooled.shape, [b, h]);
    assertClose(await out.pooled.toArray(), expected, 1e-5, "pooled");
    for (const x of [out.hidden, out.pooled]) x.dispose();
    release(model, batch);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bert: wrong inputs are rejected with what was expected", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, DIR);
  const { batch } = await fixtureBatch(gpu, DIR);
  const run = (b: typeof batch) => noGrad(() => tidy(() => model.forward(b)));
  assertThrows(() => run({ ...batch, inputIds: undefined }), "no inputIds");
  assertThrows(
    () => run({ ...batch, tokenTypeIds: new Int32Array(5) }),
    "tokenTypeIds has 5 values, expected 2×16",
  );
  assertThrows(
    () => run({ ...batch, tokenTypeIds: new Int32Array(32).fill(2) }),
    /token_type_embeddings\.weight: .*id 2 .* outside \[0, 2\)/,
  );
  assertThrows(() => run({ ...batch, attentionMask: new Int32Array(3) }), "attention_mask has 3 values");
  const long = Tensor.from(gpu, new Int32Array(65).fill(5), [1, 65]);
  assertThrows(() => run({ inputIds: long }), "65 tokens per row is more than the model's 64 positions");
  const labels = Tensor.from(gpu, new Int32Array([0, 1, 1]), [3]);
  assertThrows(() => run({ ...batch, labels }), "classification labels must be i32 [2]");
  await assertRejects(
    () => loadModel(gpu, DIR, { task: "causal-lm" }),
    Error,
    'task "causal-lm" is not supported',
  );
  for (const t of [long, labels]) t.dispose();
  release(model, batch);
});

Deno.test("encoder self-attention: the fused q/k/v product equals the separate layers", async () => {
  const gpu = await getGpu();
  const rng = new Prng(11);
  const [b, t, heads, d] = [3, 7, 3, 5];
  const width = heads * d;
  const layers = ["query", "key", "value"].map((name) =>
    new Linear(
      name,
      Tensor.from(gpu, rng.normals(width * width), [width, width]),
      Tensor.from(gpu, rng.normals(width), [width]),
    )
  );
  const x = Tensor.from(gpu, rng.normals(b * t * width), [b, t, width], { requiresGrad: true });
  // rows with 0, 2 and 4 padded keys
  const mask = Tensor.from(
    gpu,
    Int32Array.from({ length: b * t }, (_, i) => (i % t < t - 2 * Math.floor(i / t) ? 1 : 0)),
    [b, t],
  );
  const upstream = Tensor.from(gpu, rng.normals(b * t * width), [b, t, width]);
  const run = async () => {
    const out = encoderSelfAttention(layers[0], layers[1], layers[2], x, {
      numHeads: heads,
      headDim: d,
      mask,
      probsDropout: { p: 0.4, key: { seed: 3, step: 1, site: 2 } },
    });
    out.backward(upstream);
    const values = [await out.toArray(), await x.grad!.toArray()];
    out.dispose();
    x.grad!.dispose();
    x.grad = null;
    return values;
  };
  assert(fusedProjection(layers, x) !== null, "the three layers fuse");
  const fused = await run();
  // a trainable weight keeps the layers apart: they run one by one
  layers[1].weight.requiresGrad = true;
  assert(fusedProjection(layers, x) === null, "a trained weight keeps them apart");
  const separate = await run();
  ["output", "dx"].forEach((what, i) => assertClose(separate[i], fused[i], 1e-6, what));
});
