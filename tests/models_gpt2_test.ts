import { getGpu } from "../lib/gpu/mod.ts";
import { evaluateCausalLm } from "../lib/models/evaluate.ts";
import { loadModel } from "../lib/models/load.ts";
import { rowLosses } from "../lib/models/reference.ts";
import { CausalLmDataset } from "../lib/train/data.ts";
import { assert, assertClose, assertEquals } from "./assert.ts";
import { decoderSuite } from "./decoder_suite.ts";
import {
  evalForward,
  fixtureModel,
  randomIds,
  referenceForward,
  tempModelDir,
  tokenBatch,
} from "./model_helpers.ts";

decoderSuite({
  name: "gpt2",
  gradParam: "transformer.h.0.attn.c_attn.bias",
  gradLinear: { path: "transformer.h.0.attn.c_attn", part: "bias" },
  attentionDropout: (p) => ({ attn_pdrop: p, embd_pdrop: 0, resid_pdrop: 0 }),
});

const dir = fixtureModel("gpt2");

Deno.test("gpt2: Conv1D layers keep (in, out) storage; lm_head is the token embedding", async () => {
  const model = await loadModel(await getGpu(), dir);
  const attn = model.linears.get("transformer.h.0.attn.c_attn")!;
  assertEquals([attn.layout, attn.inFeatures, attn.outFeatures, attn.weight.shape], ["in_out", 64, 192, [
    64,
    192,
  ]]);
  assert(
    model.linears.get("lm_head")!.weight === model.parameters.get("transformer.wte.weight"),
    "lm_head tied",
  );
  assert(!model.parameters.has("lm_head.weight"), "a tied weight is not a parameter of its own");
  model.dispose();
});

Deno.test("gpt2: scale_attn_by_inverse_layer_idx and scale_attn_weights follow the config", async () => {
  const gpu = await getGpu();
  const [b, t] = [1, 7];
  const ids = randomIds(b * t, 512, 13);
  for (const cfg of [{ scale_attn_by_inverse_layer_idx: true }, { scale_attn_weights: false }]) {
    const tmp = await tempModelDir(dir, cfg);
    try {
      const model = await loadModel(gpu, tmp);
      const ours = await evalForward(model, tokenBatch(gpu, ids, b, t));
      model.dispose();
      assertClose(
        ours.logits,
        (await referenceForward(tmp, ids, b, t, null)).logits,
        1e-5,
        JSON.stringify(cfg),
      );
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  }
});

Deno.test("gpt2 seq-cls without pad_token_id: one row pools its last token, more rows are an error", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, dir, { task: "seq-cls", numLabels: 2 });
  const ids = randomIds(10, 512, 8);
  const one = await evalForward(model, tokenBatch(gpu, ids.slice(0, 5), 1, 5));
  assertEquals(one.logits.length, 2);
  let message = "";
  try {
    await evalForward(model, tokenBatch(gpu, ids, 2, 5));
  } catch (e) {
    message = (e as Error).message;
  }
  model.dispose();
  assert(message.includes("pad_token_id"), `expected an error about pad_token_id, got "${message}"`);
});

Deno.test("evaluateCausalLm: the mean of window means, a shorter padded last window included", async () => {
  const gpu = await getGpu();
  const tokens = randomIds(50, 512, 77);
  const dataset = new CausalLmDataset(tokens, 16, 0, { partial: "pad" });
  assertEquals(dataset.size, 4); // windows at 0, 16, 32 and a 2-token one at 48
  const model = await loadModel(gpu, dir);
  gpu.stream.flush();
  const submits = gpu.submits;
  const ev = await evaluateCausalLm(model, dataset, { batchSize: 3 });
  assertEquals(gpu.submits - submits, 2, "one submit per batch");
  model.dispose();
  let total = 0;
  for (let i = 0; i < dataset.size; i++) {
    const { ids, label } = dataset.row(i);
    const ref = await referenceForward(dir, Int32Array.from(ids), 1, ids.length, null);
    total += rowLosses(ref.logits, Int32Array.from(label as Int32Array), 1, ids.length, 512)[0];
  }
  assertClose([ev.loss], [total / dataset.size], 1e-5, "loss");
  assertEquals(ev.windows, 4);
});
