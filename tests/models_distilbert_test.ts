// DistilBERT: BERT's layers under other names, without token types. A DistilBERT made from the
// BERT fixture (its token-type row 0 folded into the position table) must compute BERT's hidden
// states, which tests/models_bert_test.ts checks against PyTorch; its heads are checked against
// float64 on the CPU.
import { getGpu } from "../lib/gpu/mod.ts";
import { loadHfConfig } from "../lib/io/hf_config.ts";
import { loadModel } from "../lib/models/load.ts";
import { modelShapes } from "../lib/models/shapes.ts";
import { unsavedHeadModules } from "../lib/peft/targets.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { noGrad, Tensor, tidy } from "../lib/tensor/mod.ts";
import { assert, assertClose, assertEquals } from "./assert.ts";
import { asDistilBert } from "./encoder_test_helpers.ts";
import { fixtureModel } from "./model_helpers.ts";

const BERT = fixtureModel("bert");

Deno.test("distilbert: computes BERT's hidden states from the same weights; the head is pre_classifier → ReLU → classifier at [CLS]", async () => {
  const gpu = await getGpu();
  const dir = await asDistilBert();
  const bert = await loadModel(gpu, BERT);
  const distil = await loadModel(gpu, dir);
  try {
    assertEquals([distil.family, distil.task, distil.initialised.length], ["distilbert", "seq-cls", 0]);
    const [b, t] = [3, 11];
    const rng = new Prng(3);
    const ids = Int32Array.from({ length: b * t }, () => 1 + rng.below(500));
    const attentionMask = Int32Array.from({ length: b * t }, (_, i) => (i % t < t - 3 * (i / t | 0) ? 1 : 0));
    const batch = (labelled = true) => ({
      inputIds: Tensor.from(gpu, ids, [b, t]),
      inputIdsHost: ids,
      attentionMask,
      ...(labelled ? { labels: Tensor.from(gpu, Int32Array.of(0, 2, 1), [b]) } : {}),
    });
    const want = noGrad(() => tidy(() => bert.forward(batch(false))));
    const got = noGrad(() => tidy(() => distil.forward(batch())));
    const hidden = await got.hidden.toArray();
    const mask = (x: Float32Array) => x.map((v, i) => (attentionMask[Math.floor(i / 64)] ? v : 0));
    assertClose(mask(hidden), mask(await want.hidden.toArray()), 1e-5, "hidden states at real tokens");
    // the head, in float64
    const [pw, pb, cw, cb] = await Promise.all(
      ["pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias"]
        .map((k) => distil.parameters.get(k)!.toArray()),
    );
    const logits = new Float64Array(b * 3);
    let loss = 0;
    for (let r = 0; r < b; r++) {
      const cls = hidden.subarray(r * t * 64, r * t * 64 + 64);
      const z = Array.from({ length: 64 }, (_, o) => {
        let s = pb[o];
        for (let j = 0; j < 64; j++) s += pw[o * 64 + j] * cls[j];
        return Math.max(s, 0);
      });
      for (let k = 0; k < 3; k++) {
        let s = cb[k];
        for (let j = 0; j < 64; j++) s += cw[k * 64 + j] * z[j];
        logits[r * 3 + k] = s;
      }
      const row = logits.subarray(r * 3, r * 3 + 3), max = Math.max(...row);
      loss += max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0)) - row[[0, 2, 1][r]];
    }
    assertClose(await got.logits.toArray(), logits, 1e-5, "logits");
    assertClose([await got.loss!.item()], [loss / b], 1e-5, "loss");
    // the pruned last layer (training reads [CLS] alone) gives the same logits
    const pruned = noGrad(() => tidy(() => distil.forward(batch(), { headOnly: true }).logits));
    assertClose(await pruned.toArray(), logits, 1e-5, "headOnly logits");
  } finally {
    bert.dispose();
    distil.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("distilbert: training mode drops out and trains the whole head; PEFT must be told to save pre_classifier", async () => {
  const gpu = await getGpu();
  const dir = await asDistilBert();
  const model = await loadModel(gpu, dir);
  try {
    const ids = Int32Array.from({ length: 16 }, (_, i) => 5 + i * 7);
    const batch = {
      inputIds: Tensor.from(gpu, ids, [2, 8]),
      inputIdsHost: ids,
      attentionMask: new Int32Array(16).fill(1),
      labels: Tensor.from(gpu, Int32Array.of(1, 2), [2]),
    };
    const evalLoss = await noGrad(() => tidy(() => model.forward(batch).loss!)).item();
    for (const key of ["pre_classifier.weight", "classifier.weight"]) {
      model.parameters.get(key)!.requiresGrad = true;
    }
    model.train(true);
    const loss = tidy(() => model.forward(batch).loss!);
    const trainLoss = await loss.item();
    loss.backward();
    assert(Number.isFinite(trainLoss) && trainLoss !== evalLoss, `dropout changes the loss: ${trainLoss}`);
    for (const key of ["pre_classifier.weight", "classifier.weight"]) {
      const g = await model.parameters.get(key)!.grad!.toArray();
      assert(g.some((v) => v !== 0) && g.every(Number.isFinite), `${key}: a useful gradient`);
    }
    const config = await loadHfConfig(dir);
    assertEquals(unsavedHeadModules(modelShapes(config)), ["pre_classifier"]);
    const roberta = await loadHfConfig(fixtureModel("roberta"));
    assertEquals(unsavedHeadModules(modelShapes(roberta)), [], "RoBERTa's head is all `classifier`");
  } finally {
    model.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});
