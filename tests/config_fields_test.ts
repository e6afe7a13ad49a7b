/**
 * Config fields that change a model's outputs are honoured or refused by name, never ignored:
 * YaRN and dynamic-NTK RoPE (their inverse frequencies and cos/sin scale as transformers 5
 * computes them, the expected values worked out by hand from its formulas), quantized and
 * head-pruned checkpoints, ViT's pooler_output_size, the activation names of transformers' ACT2FN
 * that are ones hartley runs.
 */
import { getGpu } from "../lib/gpu/mod.ts";
import { ACTIVATIONS, HfConfigError } from "../lib/io/config_fields.ts";
import {
  type LlamaConfig,
  maxTokens,
  parseHfConfig,
  pastPretraining,
  type VitConfig,
} from "../lib/io/hf_config.ts";
import type { RopeConfig } from "../lib/io/rope_config.ts";
import { loadModel } from "../lib/models/load.ts";
import { ropeInverseFrequencies, ropeInverseFrequencies64, ropeScale } from "../lib/nn/rope.ts";
import { assert, assertClose, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { fixtureModel, tempModelDir } from "./model_helpers.ts";

/** The fixture config of `family` with `changes` (undefined deletes a field), parsed. */
async function variant(family: string, changes: Record<string, unknown>) {
  const json = JSON.parse(await Deno.readTextFile(`${fixtureModel(family)}/config.json`));
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined) delete json[k];
    else json[k] = v;
  }
  return parseHfConfig(json, `/x/${family}/config.json`);
}

/** The llama fixture (head_dim 16, max_position_embeddings 128) with `rope_scaling` and no rope_parameters. */
async function llamaRope(scaling: Record<string, unknown>, more: Record<string, unknown> = {}) {
  const c = await variant("llama", {
    rope_parameters: undefined,
    rope_theta: 10000,
    rope_scaling: scaling,
    ...more,
  });
  return (c as LlamaConfig).rope;
}

/** 10000^(−2i/16): the unscaled inverse frequencies of a 16-wide rotary head. */
const BASE = Array.from({ length: 8 }, (_, i) => 10000 ** (-i / 8));

Deno.test("YaRN as transformers 5 reads it: factor, the pretraining context, beta_fast/beta_slow, truncate, the cos/sin scale", async () => {
  const qwen = { rope_type: "yarn", factor: 4, original_max_position_embeddings: 32 };
  const rope = await llamaRope(qwen);
  assertEquals(rope, {
    type: "yarn",
    theta: 10000,
    factor: 4,
    originalMaxPositions: 32,
    betaFast: 32,
    betaSlow: 1,
    truncate: true,
    attentionFactor: 0.1 * Math.log(4) + 1,
  });
  // "type" (the old key), and the pretraining context from max_position_embeddings when absent
  assertEquals(
    await llamaRope({ type: "yarn", factor: 2 }),
    { ...rope, factor: 2, originalMaxPositions: 128, attentionFactor: 0.1 * Math.log(2) + 1 } as RopeConfig,
  );
  // attention_factor given, or from mscale over mscale_all_dim (DeepSeek's), or 1 for a factor ≤ 1
  const scale = async (more: Record<string, unknown>) => ropeScale(await llamaRope({ ...qwen, ...more }));
  assertEquals(await scale({ attention_factor: 0.5 }), 0.5);
  assertClose([await scale({ mscale: 2, mscale_all_dim: 1 })], [
    (0.2 * Math.log(4) + 1) / (0.1 * Math.log(4) + 1),
  ], 1e-15);
  assertEquals(await scale({ mscale: 2, mscale_all_dim: 0 }), 0.1 * Math.log(4) + 1);
  assertEquals(await scale({ factor: 1 }), 1);
  // a null factor: max_position_embeddings over the pretraining context (128 / 32)
  assertEquals((await llamaRope({ ...qwen, factor: null }) as RopeConfig & { type: "yarn" }).factor, 4);
  await assertRejects(
    () => llamaRope({ rope_type: "yarn", original_max_position_embeddings: 32 }),
    HfConfigError,
    `rope_scaling of type "yarn" needs "factor"`,
  );
});

Deno.test("Phi-3's pretraining context (its config class's 4096 when absent) wins over the scaling's, as transformers 5 moves it there", async () => {
  const phi3 = { model_type: "phi3", architectures: ["Phi3ForCausalLM"], rope_parameters: undefined };
  const yarn = { rope_type: "yarn", factor: 4, original_max_position_embeddings: 32 };
  const ropeOf = async (more: Record<string, unknown>) =>
    ((await variant("llama", { ...phi3, rope_scaling: yarn, ...more })) as LlamaConfig).rope as RopeConfig & {
      type: "yarn";
    };
  assertEquals((await ropeOf({})).originalMaxPositions, 4096);
  assertEquals((await ropeOf({ original_max_position_embeddings: 64 })).originalMaxPositions, 64);
  // a llama config has no such field: the scaling's own
  assertEquals((await llamaRope(yarn) as RopeConfig & { type: "yarn" }).originalMaxPositions, 32);
});

Deno.test("YaRN's inverse frequencies: extrapolated below the correction range, interpolated above it, a ramp between", async () => {
  // dim 16, θ 10⁴, pretraining context 32: the correction range of β 32 and 1 is
  // 16·ln(32 / (β·2π)) / (2·ln 10⁴) = −1.596 and 1.414, truncated to [0, 2]; the ramp over the 8
  // pairs is i/2 clamped to [0, 1], and each frequency base·(1 − ramp) + base/4·ramp
  const rope = await llamaRope({ rope_type: "yarn", factor: 4, original_max_position_embeddings: 32 });
  const want = BASE.map((v, i) => i === 0 ? v : i === 1 ? 0.625 * v : v / 4);
  assertClose(ropeInverseFrequencies64(rope, 16), want, 1e-15, "float64");
  assertClose(ropeInverseFrequencies(rope, 16), want, 1e-6, "float32");
  // truncate false: the range stays [0, 1.414], pair 1 further along the ramp
  const high = (16 * Math.log(32 / (2 * Math.PI))) / (2 * Math.log(10000));
  const loose = await llamaRope({
    rope_type: "yarn",
    factor: 4,
    original_max_position_embeddings: 32,
    truncate: false,
  });
  const ramp1 = 1 / high;
  const want1 = BASE[1] * (1 - ramp1) + (BASE[1] / 4) * ramp1;
  assertClose(
    ropeInverseFrequencies64(loose, 16).slice(0, 3),
    [BASE[0], want1, BASE[2] / 4],
    1e-15,
    "untruncated",
  );
  // β's given: beta_slow 4 moves the range's top to ceil(16·ln(32 / (4·2π)) / (2·ln 10⁴)) = 1
  const slow = await llamaRope({
    rope_type: "yarn",
    factor: 4,
    original_max_position_embeddings: 32,
    beta_slow: 4,
  });
  assertClose(
    ropeInverseFrequencies64(slow, 16).slice(0, 3),
    [BASE[0], BASE[1] / 4, BASE[2] / 4],
    1e-15,
    "beta_slow",
  );
});

Deno.test("dynamic NTK RoPE: unscaled up to max_position_embeddings, as transformers; longer rows refused, not mis-rotated", async () => {
  const config = await variant("llama", {
    rope_parameters: { rope_type: "dynamic", rope_theta: 10000, factor: 2 },
  }) as LlamaConfig;
  assertEquals(config.rope, { type: "dynamic", theta: 10000, factor: 2, maxPositions: 128 });
  assertClose(ropeInverseFrequencies64(config.rope, 16, 128), BASE, 1e-15);
  assertClose(ropeInverseFrequencies(config.rope, 16, 128), BASE, 1e-6);
  assertEquals(ropeScale(config.rope), 1);
  // transformers recomputes the frequencies past max_position_embeddings from the longest row it
  // has seen so far (state kept between calls): such rows are refused, and --seq-len past 128 with them
  assertThrows(() => ropeInverseFrequencies(config.rope, 16, 129), "max_position_embeddings (128)");
  assertThrows(() => ropeInverseFrequencies64(config.rope, 16, 129), "129 positions");
  assertEquals([maxTokens(config), pastPretraining(config, 128)], [128, null]);
  await assertRejects(
    () => llamaRope({ type: "dynamic" }),
    HfConfigError,
    `rope_scaling of type "dynamic" needs "factor"`,
  );
});

Deno.test("RoPE types transformers has and hartley does not are refused, naming the supported ones", async () => {
  await assertRejects(
    () => llamaRope({ rope_type: "proportional", factor: 2 }),
    HfConfigError,
    `/x/llama/config.json: rope_scaling asks for RoPE scaling type "proportional", which is not supported ` +
      `(supported: "default", "linear", "dynamic", "yarn", "llama3", "longrope")`,
  );
});

Deno.test("a quantized or head-pruned checkpoint's config is refused by the field's name", async () => {
  for (const family of ["gpt2", "bert", "llama", "vit"]) {
    await assertRejects(
      () => variant(family, { quantization_config: { quant_method: "gptq", bits: 4 } }),
      HfConfigError,
      `/x/${family}/config.json: "quantization_config" (quant_method "gptq")`,
    );
    await assertRejects(
      () => variant(family, { pruned_heads: { "1": [0, 2] } }),
      HfConfigError,
      `/x/${family}/config.json: "pruned_heads" {"1":[0,2]}`,
    );
    await variant(family, { pruned_heads: {}, quantization_config: null }); // none pruned, none quantized
  }
});

Deno.test("activations: transformers' gelu_python is the exact GELU", async () => {
  assertEquals(ACTIVATIONS.gelu_python, "gelu");
  assertEquals((await variant("bert", { hidden_act: "gelu_python" })).activation, "gelu");
  await assertRejects(
    () => variant("bert", { hidden_act: "quick_gelu" }),
    HfConfigError,
    `"hidden_act" "quick_gelu"`,
  );
});

Deno.test("vit: a pooler_output_size other than hidden_size is refused where the model has a pooler", async () => {
  const gpu = await getGpu();
  const dir = await tempModelDir(fixtureModel("vit"), { pooler_output_size: 32 });
  try {
    assertEquals((await variant("vit", { pooler_output_size: 32 }) as VitConfig).poolerOutputSize, 32);
    // the image classifier has no pooler: the field changes nothing there
    (await loadModel(gpu, dir)).dispose();
    await assertRejects(
      () => loadModel(gpu, dir, { task: "base" }),
      Error,
      `pooler_output_size (32) differs from hidden_size (64)`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assert((await variant("vit", { pooler_output_size: null }) as VitConfig).poolerOutputSize === 64);
});

Deno.test("RoPE scalings read as transformers does: YaRN's truncate null does not truncate; max_position_embeddings defaults for dynamic and YaRN", async () => {
  const yarn = { rope_type: "yarn", factor: 4, original_max_position_embeddings: 32 };
  const truncated = (r: RopeConfig) => (r as RopeConfig & { type: "yarn" }).truncate;
  assertEquals(truncated(await llamaRope({ ...yarn, truncate: null })), false);
  assertEquals(truncated(await llamaRope(yarn)), true);
  // without max_position_embeddings, LlamaConfig's default (2048), as with unscaled RoPE
  const dynamic = await llamaRope({ rope_type: "dynamic", factor: 2 }, {
    max_position_embeddings: undefined,
  });
  assertEquals((dynamic as RopeConfig & { type: "dynamic" }).maxPositions, 2048);
  const stretched = await llamaRope({ ...yarn, factor: null }, { max_position_embeddings: undefined });
  assertEquals((stretched as RopeConfig & { type: "yarn" }).factor, 2048 / 32);
});
