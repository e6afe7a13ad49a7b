import { getGpu } from "../lib/gpu/mod.ts";
import { maxTokens, pastPretraining } from "../lib/io/hf_config.ts";
import { loadModel, loadModelTokenizer } from "../lib/models/load.ts";
import { generate } from "../lib/infer/generate.ts";
import { ropeInverseFrequencies, ropeInverseFrequencies64 } from "../lib/nn/rope.ts";
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

// head dim 16, θ 10000: with 64 pretraining positions, llama3 keeps pair 0, blends pairs 1–2, divides 3–7
const LLAMA3 = { rope_type: "llama3", rope_theta: 10000, factor: 8, low_freq_factor: 1, high_freq_factor: 4 };

Deno.test("llama: rope theta, linear and llama3 scaling, tied embeddings follow the config (float64 reference)", async () => {
  const gpu = await getGpu();
  const [b, t] = [2, 12];
  const ids = randomIds(b * t, 512, 17);
  const configs = [
    { rope_parameters: { rope_theta: 500, rope_type: "default" } },
    { rope_parameters: undefined, rope_theta: 10000, rope_scaling: { type: "linear", factor: 4 } },
    { rope_parameters: { ...LLAMA3, original_max_position_embeddings: 64 } },
    { tie_word_embeddings: true },
  ];
  const base = await loadModel(gpu, dir);
  const unscaled = await evalForward(base, tokenBatch(gpu, ids, b, t));
  base.dispose();
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
      if ("rope_scaling" in cfg || cfg.rope_parameters?.rope_type === "llama3") {
        // rel-L2 from the unscaled logits (1.9e-3 for llama3): far above the 1e-5 the reference allows
        const d2 = ours.logits.reduce((s, v, i) => s + (v - unscaled.logits[i]) ** 2, 0);
        const rel = Math.sqrt(d2 / unscaled.logits.reduce((s, v) => s + v * v, 0));
        assert(rel > 5e-4, `${JSON.stringify(cfg)} changes the logits (rel-L2 ${rel})`);
      }
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  }
});

Deno.test("llama: rotary positions extend past max_position_embeddings, in a pass and in generation, as in transformers", async () => {
  const gpu = await getGpu();
  const [b, t] = [2, 12];
  const ids = randomIds(b * t, 512, 23);
  const tmp = await tempModelDir(dir, { max_position_embeddings: 8 });
  const base = await loadModel(gpu, dir), short = await loadModel(gpu, tmp);
  try {
    assertEquals(maxTokens(short.config), Infinity);
    const want = await evalForward(base, tokenBatch(gpu, ids, b, t));
    assertClose((await evalForward(short, tokenBatch(gpu, ids, b, t))).logits, want.logits, 1e-6);
    // greedy generation from 6 tokens to 20 with the cache: the tokens of the 128-position model
    const tokenizer = await loadModelTokenizer(base.config);
    const prompt = [...ids.subarray(0, 6)];
    const made = await generate(short, tokenizer, prompt, { maxNewTokens: 14 });
    assertEquals(made.stop, "length");
    assertEquals(made.ids, (await generate(base, tokenizer, prompt, { maxNewTokens: 14 })).ids);
    assertEquals(
      pastPretraining(short.config, 12),
      "rows of up to 12 tokens pass the model's 8 positions " +
        "(max_position_embeddings): its rotary positions extend to them, as in transformers, but pretraining never reached them",
    );
    assertEquals(pastPretraining(short.config, 8), null);
    assertEquals(pastPretraining(base.config, 128), null);
  } finally {
    base.dispose();
    short.dispose();
    await Deno.remove(tmp, { recursive: true });
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

Deno.test("llama3 RoPE at Llama 3.1's settings: short wavelengths kept, long ones divided by 8, a blend between", () => {
  const rope = {
    type: "llama3" as const,
    theta: 500000,
    factor: 8,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositions: 8192,
  };
  const ours = ropeInverseFrequencies(rope, 128), exact = ropeInverseFrequencies64(rope, 128);
  const plain = ropeInverseFrequencies({ type: "default", theta: 500000 }, 128);
  assertEquals(ours.length, 64);
  assertClose(ours, exact, 1e-6, "float32 against float64");
  const wavelen = plain.map((v) => 2 * Math.PI / v);
  let kept = 0, divided = 0, blended = 0;
  ours.forEach((v, i) => {
    if (wavelen[i] < 2048) {
      assertEquals(v, plain[i], `pair ${i} kept`);
      kept++;
    } else if (wavelen[i] > 8192) {
      assertEquals(v, Math.fround(plain[i] / 8), `pair ${i} divided`);
      divided++;
    } else {
      assert(plain[i] / 8 < v && v < plain[i], `pair ${i} between`);
      blended++;
    }
  });
  assert(kept > 0 && divided > 0 && blended > 0, `${kept} kept, ${blended} blended, ${divided} divided`);
});
