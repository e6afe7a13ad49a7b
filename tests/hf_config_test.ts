import { assert, assertClose, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { HfConfigError } from "../lib/io/config_fields.ts";
import { loadGenerationConfig } from "../lib/io/generation_config.ts";
import {
  type BertConfig,
  type Gpt2Config,
  type LlamaConfig,
  loadHfConfig,
  parseHfConfig,
  type VitConfig,
} from "../lib/io/hf_config.ts";
import type { RopeConfig } from "../lib/io/rope_config.ts";
import { openCheckpoint } from "../lib/io/safetensors.ts";

const MODELS = new URL("./fixtures/models/", import.meta.url).pathname;

async function fixtureJson(family: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(`${MODELS}${family}/config.json`));
}

/** Parse a fixture config with some fields changed (undefined deletes a field). */
async function variant(family: string, changes: Record<string, unknown>) {
  const json = await fixtureJson(family);
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined) delete json[k];
    else json[k] = v;
  }
  return parseHfConfig(json, `/x/${family}/config.json`);
}

Deno.test("gpt2 fixture config", async () => {
  const c = await loadHfConfig(`${MODELS}gpt2`) as Gpt2Config;
  assertEquals(c.path, `${MODELS}gpt2/config.json`);
  assertEquals(c.modelType, "gpt2");
  assertEquals(c.architectures, ["GPT2LMHeadModel"]);
  assertEquals([c.vocabSize, c.maxPositions, c.hiddenSize, c.numLayers, c.numHeads, c.headDim], [
    512,
    64,
    64,
    2,
    4,
    16,
  ]);
  assertEquals(c.intermediateSize, 256, "n_inner null → 4·n_embd");
  assertEquals(c.activation, "gelu_tanh");
  assertEquals(c.layerNormEps, 1e-5);
  assertEquals([c.tieWordEmbeddings, c.scaleAttnWeights, c.scaleAttnByInverseLayerIdx], [true, true, false]);
  assertEquals([c.padTokenId, c.bosTokenId, c.eosTokenIds], [null, 0, [0]]);
  assertEquals(c.dtype, "float32");
});

Deno.test("bert and roberta fixture configs", async () => {
  const b = await loadHfConfig(`${MODELS}bert/config.json`) as BertConfig;
  assertEquals(b.modelType, "bert");
  assertEquals([b.vocabSize, b.maxPositions, b.hiddenSize, b.numLayers, b.numHeads, b.intermediateSize], [
    512,
    64,
    64,
    2,
    4,
    128,
  ]);
  assertEquals([b.typeVocabSize, b.layerNormEps, b.positionOffset, b.padTokenId], [2, 1e-12, 0, 0]);
  assertEquals(b.activation, "gelu");
  assertEquals(b.labels, ["LABEL_0", "LABEL_1"], "no id2label: transformers' 2 labels");
  const r = await loadHfConfig(`${MODELS}roberta`) as BertConfig;
  assertEquals(r.modelType, "roberta");
  assertEquals([r.typeVocabSize, r.maxPositions, r.padTokenId, r.positionOffset], [1, 80, 1, 2]);
  assertEquals([r.bosTokenId, r.eosTokenIds], [0, [2]]);
  assertEquals(r.labels, ["LABEL_0", "LABEL_1", "LABEL_2"]);
  assertEquals(r.problemType, null);
});

Deno.test("llama fixture config", async () => {
  const c = await loadHfConfig(`${MODELS}llama`) as LlamaConfig;
  assertEquals([c.vocabSize, c.hiddenSize, c.numLayers, c.numHeads, c.numKvHeads, c.headDim], [
    512,
    64,
    2,
    4,
    2,
    16,
  ]);
  assertEquals([c.intermediateSize, c.maxPositions, c.rmsNormEps], [176, 128, 1e-6]);
  assertEquals(c.activation, "silu");
  assertEquals(c.rope, { type: "default", theta: 10000 });
  assertEquals([c.tieWordEmbeddings, c.qkvBias, c.outputBias, c.mlpBias], [false, false, false, false]);
  assertEquals([c.padTokenId, c.bosTokenId, c.eosTokenIds], [0, 1, [2]]);
  assertEquals(c.slidingWindow, null);
});

Deno.test("mistral, qwen2 and qwen3 configs: their biases, defaults and attention windows as transformers derives them", async () => {
  const llama = JSON.parse(await Deno.readTextFile(`${MODELS}llama/config.json`));
  const parse = (fields: Record<string, unknown>) => {
    const json: Record<string, unknown> = { ...llama, ...fields };
    for (const [k, v] of Object.entries(fields)) if (v === undefined) delete json[k];
    return parseHfConfig(json, "config.json") as LlamaConfig;
  };
  const bias = (c: LlamaConfig) => [c.qkvBias, c.outputBias, c.mlpBias];
  // llama's attention_bias covers o_proj too; the variants ignore it and mlp_bias
  assertEquals(bias(parse({ attention_bias: true, mlp_bias: true })), [true, true, true]);
  assertEquals(bias(parse({ model_type: "qwen2", attention_bias: true, mlp_bias: true })), [
    true,
    false,
    false,
  ]);
  assertEquals(bias(parse({ model_type: "mistral", attention_bias: true })), [false, false, false]);
  // Qwen3's attention_bias covers q/k/v and o_proj, as Llama's; its heads are normed, the others' not
  assertEquals(bias(parse({ model_type: "qwen3", attention_bias: true, mlp_bias: true })), [
    true,
    true,
    false,
  ]);
  assertEquals(bias(parse({ model_type: "qwen3" })), [false, false, false]);
  assertEquals([parse({ model_type: "qwen3" }).qkNorm, parse({ model_type: "qwen2" }).qkNorm], [true, false]);
  // Mistral slides unless sliding_window is null, 4096 keys when the field is absent
  const m = parse({ model_type: "mistral", sliding_window: 32 });
  assertEquals([m.slidingWindow, m.slidingLayers], [32, [0, 1]]);
  assertEquals(parse({ model_type: "mistral", sliding_window: null }).slidingWindow, null);
  assertEquals(parse({ model_type: "mistral", sliding_window: undefined }).slidingWindow, 4096);
  // Qwen2 only with use_sliding_window, and only if some layer slides
  const qwen = (f: Record<string, unknown>) =>
    (({ slidingWindow, slidingLayers }) => [slidingWindow, slidingLayers])(
      parse({ model_type: "qwen2", sliding_window: 32, ...f }),
    );
  assertEquals(qwen({}), [null, []]);
  assertEquals(qwen({ use_sliding_window: true }), [null, []], "max_window_layers 28 ≥ 2 layers");
  assertEquals(qwen({ use_sliding_window: true, max_window_layers: 1 }), [32, [1]]);
  assertEquals(qwen({ use_sliding_window: true, layer_types: ["full_attention", "full_attention"] }), [
    null,
    [],
  ]);
  assertEquals(qwen({ use_sliding_window: true, layer_types: ["sliding_attention", "full_attention"] }), [
    32,
    [0],
  ]);
  assertThrows(() => qwen({ use_sliding_window: true, layer_types: ["full_attention"] }), "the 2 layers");
  // defaults of the variants' config classes
  const bare = parse({
    model_type: "qwen2",
    max_position_embeddings: undefined,
    bos_token_id: undefined,
    eos_token_id: undefined,
  });
  assertEquals([bare.maxPositions, bare.bosTokenId, bare.eosTokenIds], [32768, null, []]);
  assertEquals(parse({ model_type: "mistral", max_position_embeddings: undefined }).maxPositions, 131072);
  assertEquals(parse({ max_position_embeddings: undefined }).maxPositions, 2048);
  // key/value heads and head size left out: each config class's own (32 heads of 128 below)
  const heads = (model_type: string) =>
    (({ numKvHeads, headDim }) => [numKvHeads, headDim])(
      parse({ model_type, num_attention_heads: 32, num_key_value_heads: undefined, head_dim: undefined }),
    );
  assertEquals(heads("llama"), [32, 2]);
  assertEquals(heads("mistral"), [8, 2]);
  assertEquals(heads("qwen2"), [32, 2]);
  assertEquals(heads("qwen3"), [32, 128]);
  assertThrows(
    () => parse({ model_type: "mistral", sliding_window: 0 }),
    '"sliding_window" must be an integer ≥ 1',
  );
});

Deno.test("vit fixture config", async () => {
  const c = await loadHfConfig(`${MODELS}vit`) as VitConfig;
  assertEquals([c.imageSize, c.patchSize, c.numChannels, c.numPatches], [32, 8, 3, 16]);
  assertEquals([c.hiddenSize, c.numLayers, c.numHeads, c.intermediateSize, c.layerNormEps], [
    64,
    2,
    4,
    128,
    1e-12,
  ]);
  assertEquals(c.labels.length, 5);
  assertEquals(c.labels[4], "LABEL_4");
  assert(c.qkvBias, "qkv_bias");
  assertEquals(c.poolerAct, "tanh");
});

Deno.test("vit pooler_act: tanh by default, a feed-forward activation by its transformers name, else refused", async () => {
  assertEquals((await variant("vit", { pooler_act: undefined }) as VitConfig).poolerAct, "tanh");
  assertEquals((await variant("vit", { pooler_act: "relu" }) as VitConfig).poolerAct, "relu");
  assertEquals((await variant("vit", { pooler_act: "gelu_new" }) as VitConfig).poolerAct, "gelu_tanh");
  await assertRejects(
    () => variant("vit", { pooler_act: "sigmoid" }),
    HfConfigError,
    `/x/vit/config.json: "pooler_act" "sigmoid" is not supported (supported: tanh, gelu,`,
  );
});

Deno.test("configs agree with the checkpoints' tensor shapes", async () => {
  const shape = async (family: string, name: string) =>
    (await openCheckpoint(`${MODELS}${family}`)).info(name).shape;
  const g = await loadHfConfig(`${MODELS}gpt2`) as Gpt2Config;
  assertEquals(await shape("gpt2", "transformer.wte.weight"), [g.vocabSize, g.hiddenSize]);
  assertEquals(await shape("gpt2", "transformer.wpe.weight"), [g.maxPositions, g.hiddenSize]);
  assertEquals(await shape("gpt2", "transformer.h.1.mlp.c_fc.weight"), [g.hiddenSize, g.intermediateSize]);
  const b = await loadHfConfig(`${MODELS}bert`) as BertConfig;
  assertEquals(await shape("bert", "classifier.weight"), [b.labels.length, b.hiddenSize]);
  assertEquals(await shape("bert", "bert.embeddings.token_type_embeddings.weight"), [
    b.typeVocabSize,
    b.hiddenSize,
  ]);
  const r = await loadHfConfig(`${MODELS}roberta`) as BertConfig;
  assertEquals(await shape("roberta", "roberta.embeddings.position_embeddings.weight"), [
    r.maxPositions,
    r.hiddenSize,
  ]);
  assertEquals(await shape("roberta", "classifier.out_proj.weight"), [r.labels.length, r.hiddenSize]);
  const l = await loadHfConfig(`${MODELS}llama`) as LlamaConfig;
  assertEquals(await shape("llama", "model.layers.0.self_attn.k_proj.weight"), [
    l.numKvHeads * l.headDim,
    l.hiddenSize,
  ]);
  assertEquals(await shape("llama", "model.layers.0.mlp.gate_proj.weight"), [
    l.intermediateSize,
    l.hiddenSize,
  ]);
  assertEquals(await shape("llama", "lm_head.weight"), [l.vocabSize, l.hiddenSize], "untied head");
  const v = await loadHfConfig(`${MODELS}vit`) as VitConfig;
  assertEquals(await shape("vit", "vit.embeddings.patch_embeddings.projection.weight"), [
    v.hiddenSize,
    v.numChannels,
    v.patchSize,
    v.patchSize,
  ]);
  assertEquals(await shape("vit", "vit.embeddings.position_embeddings"), [1, v.numPatches + 1, v.hiddenSize]);
  assertEquals(await shape("vit", "classifier.weight"), [v.labels.length, v.hiddenSize]);
});

Deno.test("transformers' defaults fill absent fields", async () => {
  const g = await variant("gpt2", {
    n_inner: undefined,
    layer_norm_epsilon: undefined,
    activation_function: undefined,
    tie_word_embeddings: undefined,
    bos_token_id: undefined,
    eos_token_id: undefined,
  }) as Gpt2Config;
  assertEquals([g.intermediateSize, g.layerNormEps, g.activation, g.tieWordEmbeddings], [
    256,
    1e-5,
    "gelu_tanh",
    true,
  ]);
  assertEquals([g.bosTokenId, g.eosTokenIds], [50256, [50256]]);
  const l = await variant("llama", {
    num_key_value_heads: undefined,
    head_dim: undefined,
    rope_parameters: undefined,
    rms_norm_eps: undefined,
    hidden_act: undefined,
    tie_word_embeddings: undefined,
  }) as LlamaConfig;
  assertEquals([l.numKvHeads, l.headDim, l.rmsNormEps, l.activation, l.tieWordEmbeddings], [
    4,
    16,
    1e-6,
    "silu",
    false,
  ]);
  assertEquals(l.rope, { type: "default", theta: 10000 });
  const legacy = await variant("llama", {
    rope_parameters: undefined,
    rope_theta: 500000,
    rope_scaling: null,
  });
  assertEquals((legacy as LlamaConfig).rope.theta, 500000, "transformers 4 rope_theta");
  const explicitHead = await variant("llama", { head_dim: 32 }) as LlamaConfig;
  assertEquals(explicitHead.headDim, 32, "head_dim may differ from hidden/heads");
  const r = await variant("roberta", {
    pad_token_id: undefined,
    type_vocab_size: undefined,
    layer_norm_eps: undefined,
  }) as BertConfig;
  assertEquals([r.padTokenId, r.positionOffset, r.typeVocabSize, r.layerNormEps], [1, 2, 2, 1e-12]);
  const v = await variant("vit", {
    num_channels: undefined,
    qkv_bias: undefined,
    id2label: undefined,
    num_labels: 7,
  });
  assertEquals([(v as VitConfig).numChannels, (v as VitConfig).qkvBias, v.labels.length], [3, true, 7]);
  const eosList = await variant("llama", { eos_token_id: [2, 5] });
  assertEquals(eosList.eosTokenIds, [2, 5]);
  const act = await variant("bert", {
    hidden_act: "gelu_pytorch_tanh",
    problem_type: "multi_label_classification",
  });
  assertEquals([act.activation, act.problemType], ["gelu_tanh", "multi_label_classification"]);
  const swish = await variant("llama", { hidden_act: "swish" });
  assertEquals(swish.activation, "silu");
});

Deno.test("unknown or missing model_type: error names the file and the supported types", () => {
  let e = assertThrows(
    () => parseHfConfig({ model_type: "t5" }, "/m/config.json"),
    '/m/config.json: model_type "t5"',
  );
  assert(e instanceof HfConfigError);
  for (const t of ["gpt2", "bert", "roberta", "llama", "vit"]) assert(e.message.includes(t), e.message);
  e = assertThrows(
    () => parseHfConfig({ hidden_size: 3 }, "/m/config.json"),
    `/m/config.json: no "model_type"`,
  );
  assert(e.message.includes("llama"), e.message);
  assertThrows(() => parseHfConfig([1], "/m/config.json"), "/m/config.json: expected a JSON object");
});

Deno.test("missing or malformed fields: errors name the field and the file", async () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ["gpt2", { n_embd: undefined }, `/x/gpt2/config.json: missing required field "n_embd"`],
    ["gpt2", { vocab_size: undefined }, `/x/gpt2/config.json: missing required field "vocab_size"`],
    ["bert", { intermediate_size: null }, `/x/bert/config.json: missing required field "intermediate_size"`],
    [
      "llama",
      { num_hidden_layers: "2" },
      `/x/llama/config.json: "num_hidden_layers" must be an integer ≥ 1, got "2"`,
    ],
    ["vit", { patch_size: undefined }, `/x/vit/config.json: missing required field "patch_size"`],
    ["vit", { patch_size: 64 }, `/x/vit/config.json: patch_size (64) is larger than image_size (32)`],
    ["bert", { num_attention_heads: 5 }, "hidden_size (64) is not a multiple of num_attention_heads (5)"],
    [
      "llama",
      { num_key_value_heads: 3 },
      "num_attention_heads (4) must be a multiple of num_key_value_heads (3)",
    ],
    ["bert", { layer_norm_eps: -1 }, `"layer_norm_eps" must be a positive number`],
    [
      "gpt2",
      { activation_function: "mish" },
      `/x/gpt2/config.json: "activation_function" "mish" is not supported`,
    ],
    ["llama", { tie_word_embeddings: "yes" }, `"tie_word_embeddings" must be true or false`],
    ["roberta", { pad_token_id: -1 }, `"pad_token_id" must be a token id`],
    ["roberta", { pad_token_id: null }, `/x/roberta/config.json: RoBERTa needs "pad_token_id"`],
    ["llama", { eos_token_id: [2, "x"] }, `"eos_token_id[1]" must be a token id`],
    [
      "roberta",
      { id2label: { "0": "a", "2": "b" } },
      `/x/roberta/config.json: "id2label" must map each id 0..1`,
    ],
    ["bert", { problem_type: "ranking" }, `/x/bert/config.json: problem_type "ranking" is not one of`],
    [
      "bert",
      { position_embedding_type: "relative_key" },
      `position_embedding_type "relative_key" is not supported`,
    ],
    ["gpt2", { architectures: "GPT2LMHeadModel" }, `"architectures" must be a list of strings`],
  ];
  for (const [family, changes, message] of cases) {
    await assertRejects(() => variant(family, changes), HfConfigError, message);
  }
});

Deno.test("RoPE scaling: linear and llama3 parsed, with what they need; other types refused clearly", async () => {
  const llama3 = {
    rope_type: "llama3",
    rope_theta: 500000,
    factor: 8,
    low_freq_factor: 1,
    high_freq_factor: 4,
  };
  const parsed = await variant("llama", { max_position_embeddings: 131072, rope_parameters: llama3 });
  assertEquals((parsed as LlamaConfig).rope, {
    type: "llama3",
    theta: 500000,
    factor: 8,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositions: 131072, // absent: max_position_embeddings, as transformers
  });
  const given = await variant("llama", {
    rope_parameters: { ...llama3, original_max_position_embeddings: 8192 },
  });
  assertEquals(
    (given as LlamaConfig).rope,
    { ...(parsed as LlamaConfig).rope, originalMaxPositions: 8192 } as RopeConfig,
  );
  const linear = await variant("llama", {
    rope_parameters: undefined,
    rope_theta: 10000,
    rope_scaling: { type: "linear", factor: 2 },
  });
  assertEquals((linear as LlamaConfig).rope, { type: "linear", theta: 10000, factor: 2 });
  await assertRejects(
    () => variant("llama", { rope_parameters: { rope_type: "llama3", rope_theta: 500000, factor: 8 } }),
    HfConfigError,
    `/x/llama/config.json: rope_parameters of type "llama3" needs "low_freq_factor", a positive number; got null`,
  );
  await assertRejects(
    () => variant("llama", { rope_parameters: { ...llama3, high_freq_factor: 1 } }),
    HfConfigError,
    "high_freq_factor (1) must be larger than low_freq_factor (1)",
  );
  await assertRejects(
    () => variant("llama", { rope_parameters: undefined, rope_scaling: { type: "ntk", factor: 2 } }),
    HfConfigError,
    `rope_scaling asks for RoPE scaling type "ntk", which is not supported (supported: "default", "linear", "dynamic", "yarn", "llama3", "longrope")`,
  );
  await assertRejects(
    () => variant("llama", { rope_parameters: { rope_type: "default", rope_theta: -1 } }),
    HfConfigError,
    "rope_theta must be a positive number",
  );
});

Deno.test("phi3: fused projections, partial rotary, LongRoPE and the sliding window as Phi3Config reads them", async () => {
  const phi3 = { model_type: "phi3", architectures: ["Phi3ForCausalLM"], rope_parameters: undefined };
  const plain = await variant("llama", phi3) as LlamaConfig;
  assertEquals(
    [plain.fusedProjections, plain.rotaryDim, plain.slidingWindow, plain.rope.type],
    [true, 16, null, "default"],
  );
  const llama = await variant("llama", {}) as LlamaConfig;
  assertEquals([llama.fusedProjections, llama.rotaryDim], [false, 16]);
  // Phi-3.5-mini's shape of it: 128k positions from a 4k pretraining context, half of each head rotated
  const short = [1, 1.5, 2, 3], long = [2, 4, 8, 16];
  const longrope = {
    ...phi3,
    partial_rotary_factor: 0.5,
    max_position_embeddings: 131072,
    original_max_position_embeddings: 4096,
    rope_scaling: { type: "longrope", short_factor: short, long_factor: long },
    sliding_window: 2047,
  };
  const parsed = await variant("llama", longrope) as LlamaConfig;
  assertEquals(parsed.rotaryDim, 8);
  // transformers 5 keeps the factor in rope_parameters
  const v5 = await variant("llama", {
    ...phi3,
    rope_parameters: { rope_type: "default", rope_theta: 10000, partial_rotary_factor: 0.5 },
  }) as LlamaConfig;
  assertEquals(v5.rotaryDim, 8);
  assertEquals(parsed.rope, {
    type: "longrope",
    theta: 10000,
    shortFactor: short,
    longFactor: long,
    originalMaxPositions: 4096,
    attentionFactor: Math.sqrt(1 + Math.log(32) / Math.log(4096)),
  });
  assertEquals([parsed.slidingWindow, parsed.slidingLayers], [2047, [0, 1]]);
  const given = await variant("llama", {
    ...longrope,
    rope_scaling: { ...longrope.rope_scaling, attention_factor: 1.25 },
  }) as LlamaConfig;
  assertEquals((given.rope as RopeConfig & { type: "longrope" }).attentionFactor, 1.25);
  // the first Phi-3-128k configs call it "su"
  const su = await variant("llama", { ...longrope, rope_scaling: { ...longrope.rope_scaling, type: "su" } });
  assertEquals((su as LlamaConfig).rope, parsed.rope);
  await assertRejects(
    () => variant("llama", { ...longrope, rope_scaling: { ...longrope.rope_scaling, long_factor: [1, 2] } }),
    HfConfigError,
    `rope_scaling of type "longrope" needs "long_factor", 4 positive numbers (one per rotary pair)`,
  );
  await assertRejects(
    () => variant("llama", { ...phi3, partial_rotary_factor: 0.1 }),
    HfConfigError,
    "partial_rotary_factor 0.1 of head_dim 16 rotates 1 dimensions; RoPE needs an even number ≥ 2",
  );
});

Deno.test("RoPE as transformers 5 standardises it: LongRoPE's factor, the config's own pretraining context, per-type parameters", async () => {
  const rope = async (changes: Record<string, unknown>) =>
    ((await variant("llama", changes)) as LlamaConfig).rope;
  const attention = async (changes: Record<string, unknown>) =>
    (await rope(changes) as RopeConfig & { type: "longrope" }).attentionFactor;
  const ones = Array(8).fill(1);
  const longrope = { type: "longrope", short_factor: ones, long_factor: ones };
  // no factor: max_position_embeddings over the pretraining context, wherever that is given
  for (
    const changes of [{ rope_scaling: { ...longrope, original_max_position_embeddings: 4096 } }, {
      original_max_position_embeddings: 4096,
      rope_scaling: longrope,
    }]
  ) {
    assertClose(
      [await attention({ rope_parameters: undefined, max_position_embeddings: 131072, ...changes })],
      [Math.sqrt(1 + Math.log(32) / Math.log(4096))],
      1e-12,
    );
  }
  // a factor given wins over that ratio, Phi-3's config-level context too
  assertClose(
    [
      await attention({
        model_type: "phi3",
        rope_parameters: undefined,
        max_position_embeddings: 131072,
        original_max_position_embeddings: 4096,
        rope_scaling: { ...longrope, factor: 2 },
      }),
    ],
    [Math.sqrt(1 + Math.log(2) / Math.log(4096))],
    1e-12,
  );
  // llama3: the config's own original_max_position_embeddings wins over the scaling's
  const llama3 = { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4 };
  const original = async (changes: Record<string, unknown>) =>
    (await rope({ max_position_embeddings: 131072, ...changes }) as RopeConfig & { type: "llama3" })
      .originalMaxPositions;
  assertEquals(
    await original({ rope_parameters: { ...llama3, original_max_position_embeddings: 8192 } }),
    8192,
  );
  assertEquals(
    await original({
      original_max_position_embeddings: 4096,
      rope_parameters: { ...llama3, original_max_position_embeddings: 8192 },
    }),
    4096,
  );
  // rope_parameters per attention type: read when they agree, refused when they differ
  const types = { model_type: "qwen2", layer_types: ["full_attention", "sliding_attention"] };
  const linear = { rope_type: "linear", factor: 4, rope_theta: 1e6 };
  assertEquals(
    await rope({ ...types, rope_parameters: { full_attention: linear, sliding_attention: linear } }),
    { type: "linear", theta: 1e6, factor: 4 },
  );
  await assertRejects(
    () =>
      rope({
        ...types,
        rope_parameters: {
          full_attention: linear,
          sliding_attention: { rope_type: "default", rope_theta: 1e4 },
        },
      }),
    HfConfigError,
    `"rope_parameters" differ between the attention types (full_attention, sliding_attention)`,
  );
});

Deno.test("num_key_value_heads null means one per query head, as the config classes read it", async () => {
  for (const model_type of ["llama", "mistral", "qwen2", "qwen3"]) {
    const c = await variant("llama", { model_type, num_key_value_heads: null }) as LlamaConfig;
    assertEquals(c.numKvHeads, c.numHeads, model_type);
  }
});

Deno.test("an invalid config.json file names the file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hartley_cfg_" });
  try {
    await Deno.writeTextFile(`${dir}/config.json`, `{"model_type": "gpt2",`);
    await assertRejects(() => loadHfConfig(dir), HfConfigError, `${dir}/config.json: invalid JSON`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadGenerationConfig: end ids (one or a list) and sampling settings; none without the file; bad fields named", async () => {
  const dir = await Deno.makeTempDir();
  const write = (json: unknown) => Deno.writeTextFile(`${dir}/generation_config.json`, JSON.stringify(json));
  try {
    assertEquals(await loadGenerationConfig(dir), { eosTokenIds: [], doSample: false });
    await write({ eos_token_id: 7 });
    assertEquals(await loadGenerationConfig(dir), { eosTokenIds: [7], doSample: false });
    // Qwen2.5-Instruct's
    await write({
      bos_token_id: 151643,
      do_sample: true,
      eos_token_id: [151645, 151643],
      pad_token_id: 151643,
      repetition_penalty: 1.05,
      temperature: 0.7,
      top_p: 0.8,
      top_k: 20,
    });
    assertEquals(await loadGenerationConfig(dir), {
      eosTokenIds: [151645, 151643],
      doSample: true,
      temperature: 0.7,
      topK: 20,
      topP: 0.8,
      repetitionPenalty: 1.05,
    });
    await write({ eos_token_id: ["x"] });
    await assertRejects(
      () => loadGenerationConfig(dir),
      HfConfigError,
      'generation_config.json: "eos_token_id" must be',
    );
    for (
      const [key, value, what] of [["top_p", 0, "in (0, 1]"], ["top_k", 2.5, "an integer"], [
        "repetition_penalty",
        "1.1",
        "> 0",
      ]]
    ) {
      await write({ [key]: value });
      await assertRejects(() => loadGenerationConfig(dir), HfConfigError, `"${key}" must be`);
      await assertRejects(() => loadGenerationConfig(dir), HfConfigError, what as string);
    }
    // not JSON: ignored, as transformers' from_pretrained ignores it, saying why
    await Deno.writeTextFile(`${dir}/generation_config.json`, "{");
    const unread = await loadGenerationConfig(dir);
    assertEquals({ ...unread, unreadable: undefined }, {
      eosTokenIds: [],
      doSample: false,
      unreadable: undefined,
    });
    assert(unread.unreadable?.includes("generation_config.json: cannot read"), unread.unreadable);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("keys that change the math and are not built are refused by name: is_decoder, rope_scaling beside rope_parameters, a partial patch", async () => {
  for (const family of ["bert", "roberta"]) {
    await assertRejects(() => variant(family, { is_decoder: true }), HfConfigError, `"is_decoder": true`);
    await variant(family, { is_decoder: false });
  }
  const json = await fixtureJson("llama");
  const scaling = { rope_type: "linear", factor: 4 };
  await assertRejects(
    () =>
      variant("llama", {
        rope_parameters: json.rope_parameters ?? { rope_type: "default" },
        rope_scaling: scaling,
      }),
    HfConfigError,
    `both "rope_parameters"`,
  );
  // the same dict twice, as some converters write it, is one setting
  const same = { rope_type: "linear", factor: 4, rope_theta: 10000 };
  assertEquals(
    ((await variant("llama", { rope_parameters: same, rope_scaling: { ...same } })) as LlamaConfig).rope,
    { type: "linear", theta: 10000, factor: 4 },
  );
  await assertRejects(
    () => variant("vit", { image_size: 36 }),
    HfConfigError,
    "image_size (36) is not a multiple of patch_size",
  );
});
