import { getGpu } from "../lib/gpu/mod.ts";
import { loadModel } from "../lib/models/load.ts";
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
  name: "llama",
  gradParam: "model.layers.0.self_attn.q_proj.weight",
  gradLinear: { path: "model.layers.0.self_attn.q_proj", part: "weight" },
  attentionDropout: (p) => ({ attention_dropout: p }),
});

const dir = fixtureModel("llama");

Deno.test("llama: grouped-query shapes, no biases, an untied lm_head", async () => {
  const model = await loadModel(await getGpu(), dir);
  const k = model.linears.get("model.layers.0.self_attn.k_proj")!;
  assertEquals([k.outFeatures, k.inFeatures, k.bias], [32, 64, null]);
  assert(
    model.linears.get("lm_head")!.weight !== model.parameters.get("model.embed_tokens.weight"),
    "untied",
  );
  model.dispose();
});

Deno.test("llama: rope theta and tied embeddings follow the config (float64 reference)", async () => {
  const gpu = await getGpu();
  const [b, t] = [2, 12];
  const ids = randomIds(b * t, 512, 17);
  const configs = [
    { rope_parameters: { rope_theta: 500, rope_type: "default" } },
    { tie_word_embeddings: true },
  ];
  for (const cfg of configs) {
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

Deno.test("llama: attention_bias asks for biases the checkpoint lacks: an error naming the tensor", async () => {
  const tmp = await tempModelDir(dir, { attention_bias: true });
  try {
    let message = "";
    try {
      await loadModel(await getGpu(), tmp);
    } catch (e) {
      message = (e as Error).message;
    }
    assert(message.includes("model.layers.0.self_attn.q_proj.bias") && message.includes(tmp), message);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
