import { getGpu } from "../lib/gpu/mod.ts";
import { loadModel } from "../lib/models/load.ts";
import type { VitOutput } from "../lib/models/vit.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { noGrad, Tensor, tidy } from "../lib/tensor/mod.ts";
import { assert, assertClose, assertEquals, assertThrows, relL2 } from "./assert.ts";
import { encoderSuite } from "./encoder_suite.ts";
import { editedModel, expectUsefulGrad, fixtureBatch, release, trainStep } from "./encoder_test_helpers.ts";

const DIR = "tests/fixtures/models/vit";
const QUERY = "vit.encoder.layer.0.attention.attention.query";
const EMBED = ["vit.embeddings.cls_token", "vit.embeddings.position_embeddings"];
const PATCH = "vit.embeddings.patch_embeddings.projection";

encoderSuite({
  name: "vit",
  architecture: "ViTForImageClassification",
  padded: false, // images: no padded positions
  gradParams: [`${QUERY}.weight`, `${PATCH}.weight`, ...EMBED],
  missing: { name: "vit.embeddings.cls_token", shape: [1, 1, 64] },
  reshaped: [
    { name: "vit.embeddings.position_embeddings", shape: [1, 16, 68], expected: [1, 17, 64] },
    { name: `${PATCH}.weight`, shape: [64, 12, 4, 4], expected: [64, 3, 8, 8] },
  ],
});

Deno.test("vit: the classifier reads [CLS] of the final LayerNorm's output (lastHiddenState)", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, DIR);
  const { batch, ref } = await fixtureBatch(gpu, DIR);
  const out = noGrad(() => tidy(() => model.forward(batch))) as VitOutput;
  const last = await out.lastHiddenState.toArray();
  const w = await model.parameters.get("classifier.weight")!.toArray();
  const bias = await model.parameters.get("classifier.bias")!.toArray();
  const [b, t, h] = out.lastHiddenState.shape, labels = bias.length;
  const logits = Array.from({ length: b * labels }, (_, k) => {
    const [row, o] = [Math.floor(k / labels), k % labels];
    let s = bias[o];
    for (let i = 0; i < h; i++) s += w[o * h + i] * last[row * t * h + i];
    return s;
  });
  assertClose(logits, await ref.readF32("logits"), 1e-4, "logits from lastHiddenState");
  // hidden is the encoder output before that LayerNorm (the fixture's hidden_last)
  assert(relL2(await out.hidden.toArray(), last) > 0.5, "hidden and lastHiddenState differ");
  for (const x of [out.logits, out.hidden, out.lastHiddenState, out.loss!]) x.dispose();
  release(model, batch);
});

Deno.test("vit: backward gives finite gradients on the classifier, a plain Linear and the embeddings", async () => {
  const gpu = await getGpu();
  const trainable = ["classifier.weight", "classifier.bias", `${QUERY}.weight`, ...EMBED, `${PATCH}.weight`];
  const { model, batch, evalLoss, trainLoss } = await trainStep(gpu, DIR, trainable);
  // the fixture's config has no dropout: train mode computes the same loss
  assertClose([trainLoss], [evalLoss], 1e-6, "train-mode loss");
  assertEquals(model.linears.get(QUERY)!.adapter, null);
  for (const key of trainable) await expectUsefulGrad(model.parameters.get(key)!, key);
  assertEquals(model.parameters.get(`${PATCH}.bias`)!.grad, null);
  release(model, batch);
});

Deno.test("vit: with dropout in the config, train mode drops and backward stays finite", async () => {
  const gpu = await getGpu();
  const dir = await editedModel(DIR, () => {}, (json) => {
    json.hidden_dropout_prob = 0.1;
    json.attention_probs_dropout_prob = 0.1;
  });
  try {
    const trainable = ["classifier.weight", `${QUERY}.weight`, `${QUERY}.bias`];
    const { model, batch, evalLoss, trainLoss } = await trainStep(gpu, dir, trainable);
    assertClose([evalLoss], [1.3980200290679932], 1e-5, "eval loss (no dropout)");
    assert(Number.isFinite(trainLoss) && trainLoss !== evalLoss, `dropout changes the loss: ${trainLoss}`);
    for (const key of trainable) await expectUsefulGrad(model.parameters.get(key)!, key);
    release(model, batch);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * A copy of the fixture as a bare ViTModel (no "vit." prefix, no classifier) with the pooler's
 * dense weight [64, 64] and bias given, and config.json's pooler_act set (undefined: absent).
 */
function bareVit(pooler: { weight: Float32Array; bias: Float32Array }, act?: string): Promise<string> {
  return editedModel(DIR, (t) => {
    for (const name of Object.keys(t)) {
      if (name.startsWith("vit.")) t[name.slice(4)] = t[name];
      delete t[name];
    }
    t["pooler.dense.weight"] = { dtype: "F32", shape: [64, 64], data: pooler.weight };
    t["pooler.dense.bias"] = { dtype: "F32", shape: [64], data: pooler.bias };
  }, (json) => {
    json.architectures = ["ViTModel"];
    if (act) json.pooler_act = act;
    else delete json.pooler_act;
  });
}

Deno.test("vit: the bare ViTModel gives the encoder output, last_hidden_state and the pooler's", async () => {
  const gpu = await getGpu();
  const rng = new Prng(3);
  const dir = await bareVit({
    weight: rng.normals(64 * 64).map((v) => v * 0.02),
    bias: new Float32Array(64),
  });
  try {
    const model = await loadModel(gpu, dir);
    const cls = await loadModel(gpu, DIR);
    assertEquals(model.task, "base");
    const { batch, ref } = await fixtureBatch(gpu, DIR);
    batch.labels = undefined;
    const out = noGrad(() => tidy(() => model.forward(batch))) as VitOutput;
    const full = noGrad(() => tidy(() => cls.forward(batch))) as VitOutput;
    assert(out.logits === out.lastHiddenState && out.loss === undefined && out.pooled, "base outputs");
    assertClose(await out.hidden.toArray(), await ref.readF32("hidden_last"), 1e-4, "hidden");
    assertClose(await out.lastHiddenState.toArray(), await full.lastHiddenState.toArray(), 1e-6, "last");
    assertEquals(out.pooled.shape, [2, 64]);
    assert((await out.pooled.toArray()).every((v) => Math.abs(v) < 1), "pooled is a tanh");
    for (const o of [out, full]) for (const x of Object.values(o)) if (x instanceof Tensor) x.dispose();
    release(model, batch);
    cls.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("vit: the pooler applies config.json's pooler_act (tanh by default), as ViTPooler does", async () => {
  const gpu = await getGpu();
  const { batch } = await fixtureBatch(gpu, DIR);
  batch.labels = undefined;
  const acts: [string | undefined, (v: number) => number][] = [[undefined, Math.tanh], [
    "relu",
    (v) => Math.max(v, 0),
  ]];
  for (const [act, f] of acts) {
    const rng = new Prng(3);
    const dir = await bareVit(
      { weight: rng.normals(64 * 64).map((v) => v * 0.3), bias: rng.normals(64) },
      act,
    );
    try {
      const model = await loadModel(gpu, dir);
      const out = noGrad(() => tidy(() => model.forward(batch))) as VitOutput;
      const last = await out.lastHiddenState.toArray(), [b, t, h] = out.lastHiddenState.shape;
      const w = await model.parameters.get("pooler.dense.weight")!.toArray();
      const bias = await model.parameters.get("pooler.dense.bias")!.toArray();
      const want = Array.from({ length: b * h }, (_, k) => {
        const [row, o] = [Math.floor(k / h), k % h];
        let s = bias[o];
        for (let i = 0; i < h; i++) s += w[o * h + i] * last[row * t * h + i];
        return f(s);
      });
      assertClose(await out.pooled!.toArray(), want, 1e-4, `pooler_act ${act ?? "(default)"}`);
      for (const x of Object.values(out)) if (x instanceof Tensor) x.dispose();
      model.dispose();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
  for (const x of Object.values(batch)) if (x instanceof Tensor) x.dispose();
});

Deno.test("vit: wrong inputs are rejected with what was expected", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, DIR);
  const { batch } = await fixtureBatch(gpu, DIR);
  const run = (b: typeof batch) => noGrad(() => tidy(() => model.forward(b)));
  const want = "expected f32 [batch, 3, 32, 32]";
  assertThrows(() => run({ labels: batch.labels }), `no pixelValues (${want})`);
  const small = Tensor.zeros(gpu, [2, 3, 16, 16]), gray = Tensor.zeros(gpu, [2, 1, 32, 32]);
  assertThrows(
    () => run({ pixelValues: small }),
    "pixelValues must be f32 [batch, 3, 32, 32], got f32 [2, 3, 16, 16]",
  );
  assertThrows(() => run({ pixelValues: gray }), "got f32 [2, 1, 32, 32]");
  const labels = Tensor.from(gpu, new Int32Array([5, 0]), [2]);
  assertThrows(() => run({ ...batch, labels }), "target 5 at 0 is outside [0, 5)");
  for (const t of [small, gray, labels]) t.dispose();
  release(model, batch);
});
