/**
 * Mistral, Qwen2 and Qwen3, built as LLaMA: the llama fixture relabelled as either gives
 * transformers' llama outputs; Qwen2's q/k/v biases, Qwen3's query and key head norms and the
 * sliding windows match the float64 reference (and through the key/value cache); PEFT's default
 * targets.
 */
import { join } from "node:path";
import { getGpu } from "../lib/gpu/mod.ts";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { type TensorData, writeSafetensors } from "../lib/io/safetensors_write.ts";
import { loadModel } from "../lib/models/load.ts";
import { modelParity } from "../lib/models/parity.ts";
import { attachAdapter } from "../lib/peft/apply.ts";
import { loraConfig } from "../lib/peft/config.ts";
import { noGrad, tidy, withAttentionPath } from "../lib/tensor/mod.ts";
import { assert, assertClose, assertEquals, relL2 } from "./assert.ts";
import { directionalCheck } from "./encoder_test_helpers.ts";
import {
  evalForward,
  fixtureModel,
  keptRows,
  randomIds,
  referenceForward,
  tempModelDir,
  tokenBatch,
} from "./model_helpers.ts";

const LLAMA = fixtureModel("llama");
const CLASS = { mistral: "Mistral", qwen2: "Qwen2", qwen3: "Qwen3" };

/**
 * The llama fixture as `modelType` (config fields overridden, its reference outputs beside it),
 * with `extra` tensors added to the checkpoint. Remove it with Deno.remove.
 */
async function variantDir(
  modelType: "mistral" | "qwen2" | "qwen3",
  config: Record<string, unknown> = {},
  extra: Record<string, TensorData> = {},
): Promise<string> {
  const dir = await tempModelDir(LLAMA, {
    model_type: modelType,
    architectures: [`${CLASS[modelType]}ForCausalLM`],
    ...config,
  });
  await Deno.copyFile(join(LLAMA, "reference.safetensors"), join(dir, "reference.safetensors"));
  if (Object.keys(extra).length) {
    const file = await openSafetensors(join(dir, "model.safetensors"));
    const tensors: Record<string, TensorData> = { ...extra };
    for (const name of file.names) {
      const { dtype, shape } = file.info(name);
      tensors[name] = { dtype, shape, data: await file.read(name) } as TensorData;
    }
    await writeSafetensors(join(dir, "model.safetensors"), tensors);
  }
  return dir;
}

/** q/k/v biases for the fixture's 2 layers (q 64 wide, k and v 32), zero or seeded-random. */
function qkvBiases(random: boolean): Record<string, TensorData> {
  const out: Record<string, TensorData> = {};
  let seed = 5;
  for (let l = 0; l < 2; l++) {
    for (const [name, n] of [["q_proj", 64], ["k_proj", 32], ["v_proj", 32]] as const) {
      const data = Float32Array.from({ length: n }, () => {
        seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
        return random ? (seed / 2 ** 32 - 0.5) * 2 : 0;
      });
      out[`model.layers.${l}.self_attn.${name}.bias`] = { dtype: "F32", shape: [n], data };
    }
  }
  return out;
}

Deno.test("mistral and qwen2 (zero q/k/v biases) made of the llama fixture give transformers' llama outputs", async () => {
  const gpu = await getGpu();
  const cases = [
    ["mistral", { sliding_window: null }, {}],
    ["mistral", { sliding_window: 16 }, {}], // the fixture's rows are 16 tokens: the window covers them
    ["qwen2", {}, qkvBiases(false)],
  ] as const;
  for (const [type, config, extra] of cases) {
    const dir = await variantDir(type, config, extra);
    try {
      const r = await modelParity(gpu, dir);
      assertEquals([r.family, r.rows.length], [type, 3]);
      for (const row of r.rows) assert(row.relL2 <= 1e-4, `${type} ${row.output}: rel-L2 ${row.relL2}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("qwen2: q/k/v biases (none on o_proj) match the float64 reference, with and without the key/value cache", async () => {
  const gpu = await getGpu();
  const dir = await variantDir("qwen2", {}, qkvBiases(true));
  try {
    const model = await loadModel(gpu, dir);
    assertEquals(model.linears.get("model.layers.1.self_attn.o_proj")!.bias, null);
    assertEquals(model.linears.get("model.layers.1.self_attn.k_proj")!.bias?.shape, [32]);
    const [b, t] = [2, 12];
    const ids = randomIds(b * t, 512, 23);
    const ours = await evalForward(model, tokenBatch(gpu, ids, b, t));
    const ref = await referenceForward(dir, ids, b, t, null);
    assertClose(ours.logits, ref.logits, 1e-5, "logits");
    const plain = await referenceForward(LLAMA, ids, b, t, null);
    assert(relL2(ref.logits, plain.logits) > 1e-2, "the biases change the logits");
    // the last 4 tokens after the first 8 cached
    const cache = model.newCache!();
    const piece = (from: number, to: number) =>
      Int32Array.from(
        { length: b * (to - from) },
        (_, i) => ids[Math.floor(i / (to - from)) * t + from + (i % (to - from))],
      );
    const run = (x: Int32Array, n: number) =>
      tidy(() => noGrad(() => ({ v: model.forward(tokenBatch(gpu, x, b, n), { cache }).logits.readLater() })))
        .v;
    run(piece(0, 8), 8);
    const last = run(piece(8, 12), 4);
    gpu.stream.flush();
    const got = await last, vocab = 512;
    const expected = [0, 1].flatMap((r) =>
      Array.from(ours.logits.subarray((r * t + 8) * vocab, (r * t + 12) * vocab))
    );
    assertClose(got, expected, 2e-5, "cached");
    cache.dispose();
    model.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sliding windows: Mistral's in every layer, Qwen2's in some, match the float64 reference on both paths, cached too", async () => {
  const gpu = await getGpu();
  const [b, t] = [2, 12];
  const ids = randomIds(b * t, 512, 31);
  const mask = Int32Array.from({ length: b * t }, (_, i) => (i === 0 || i === 1 ? 0 : 1)); // row 0 left-padded
  const plain = await referenceForward(LLAMA, ids, b, t, mask);
  const cases = [
    ["mistral", { sliding_window: 5 }, {}],
    ["qwen2", { sliding_window: 3, use_sliding_window: true, max_window_layers: 1 }, qkvBiases(true)],
  ] as const;
  for (const [type, config, extra] of cases) {
    const dir = await variantDir(type, config, extra);
    try {
      const model = await loadModel(gpu, dir);
      const ref = await referenceForward(dir, ids, b, t, mask);
      const real = (x: ArrayLike<number>) => keptRows(x, mask, 512);
      for (const path of ["materialized", "fused"] as const) {
        const ours = await withAttentionPath(
          path,
          () => evalForward(model, tokenBatch(gpu, ids, b, t, { mask })),
        );
        assertClose(real(ours.logits), real(ref.logits), 1e-5, `${type} ${path}`);
      }
      if (type === "mistral") assert(relL2(ref.logits, plain.logits) > 1e-2, "the window changes the logits");
      // generation past the window: the last 4 tokens after 8 cached, unpadded rows
      const cache = model.newCache!();
      const row = ids.subarray(t, 2 * t); // row 1 has no padding
      const run = (x: Int32Array) =>
        tidy(() =>
          noGrad(() => ({ v: model.forward(tokenBatch(gpu, x, 1, x.length), { cache }).logits.readLater() }))
        ).v;
      run(row.subarray(0, 8));
      const lastFour = run(row.subarray(8));
      gpu.stream.flush();
      const whole = await evalForward(model, tokenBatch(gpu, row, 1, t));
      assertClose(await lastFour, whole.logits.subarray(8 * 512), 2e-5, `${type} cached`);
      cache.dispose();
      model.dispose();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("mistral, qwen2 and qwen3: PEFT's default targets q_proj and v_proj", async () => {
  const gpu = await getGpu();
  for (const type of ["mistral", "qwen2", "qwen3"] as const) {
    const extra = type === "qwen2" ? qkvBiases(false) : type === "qwen3" ? headNorms() : {};
    const dir = await variantDir(type, { sliding_window: null }, extra);
    try {
      const model = await loadModel(gpu, dir);
      const peft = await attachAdapter(model, loraConfig({ r: 2 }));
      assertEquals([...peft.layers.keys()].sort(), [
        "model.layers.0.self_attn.q_proj",
        "model.layers.0.self_attn.v_proj",
        "model.layers.1.self_attn.q_proj",
        "model.layers.1.self_attn.v_proj",
      ]);
      model.dispose();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("sliding window: a classifier's last layer computed at the pooled token alone sees the same keys", async () => {
  const gpu = await getGpu();
  const dir = await variantDir("mistral", { sliding_window: 4 });
  try {
    const model = await loadModel(gpu, dir, { task: "seq-cls", numLabels: 3 });
    model.config.padTokenId = 0;
    const [b, t] = [2, 10];
    const ids = randomIds(b * t, 500, 8).map((v) => v + 3);
    ids.fill(0, 16); // row 1 right-padded: its last token at position 5
    const mask = ids.map((v) => (v === 0 ? 0 : 1));
    const logits = (headOnly: boolean) =>
      tidy(() =>
        noGrad(() => ({
          v: model.forward(tokenBatch(gpu, ids, b, t, { mask }), { headOnly }).logits.readLater(),
        }))
      ).v;
    const [whole, pooled] = [logits(false), logits(true)];
    gpu.stream.flush();
    assertClose(await pooled, await whole, 1e-5, "headOnly");
    model.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Qwen3's q_norm and k_norm weights for the fixture's 2 layers (heads of 16), seeded around 1. */
function headNorms(): Record<string, TensorData> {
  const out: Record<string, TensorData> = {};
  let seed = 11;
  for (let l = 0; l < 2; l++) {
    for (const name of ["q_norm", "k_norm"]) {
      const data = Float32Array.from({ length: 16 }, () => {
        seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
        return 1 + (seed / 2 ** 32 - 0.5);
      });
      out[`model.layers.${l}.self_attn.${name}.weight`] = { dtype: "F32", shape: [16], data };
    }
  }
  return out;
}

Deno.test("qwen3: query and key heads through their RMSNorm before RoPE match the float64 reference, cached and pooled too", async () => {
  const gpu = await getGpu();
  const dir = await variantDir("qwen3", { head_dim: 16 }, headNorms());
  try {
    const model = await loadModel(gpu, dir);
    assertEquals(model.linears.get("model.layers.1.self_attn.q_proj")!.bias, null);
    const [b, t] = [2, 12];
    const ids = randomIds(b * t, 512, 29);
    const mask = Int32Array.from({ length: b * t }, (_, i) => (i >= t + 9 ? 0 : 1)); // row 1 right-padded
    const ours = await evalForward(model, tokenBatch(gpu, ids, b, t, { mask }));
    const ref = await referenceForward(dir, ids, b, t, mask);
    assertClose(keptRows(ours.logits, mask, 512), keptRows(ref.logits, mask, 512), 1e-5, "logits");
    const plain = await referenceForward(LLAMA, ids, b, t, mask);
    assert(relL2(ref.logits, plain.logits) > 1e-2, "the head norms change the logits");
    // the last 4 tokens of row 0 after its first 8 through the key/value cache
    const cache = model.newCache!();
    const run = (x: Int32Array, n: number) =>
      tidy(() => noGrad(() => ({ v: model.forward(tokenBatch(gpu, x, 1, n), { cache }).logits.readLater() })))
        .v;
    run(ids.subarray(0, 8), 8);
    const last = run(ids.subarray(8, 12), 4);
    gpu.stream.flush();
    assertClose(await last, ours.logits.subarray(8 * 512, 12 * 512), 2e-5, "cached");
    cache.dispose();
    // the gradient through the norms, against a central difference
    const labelled = tokenBatch(gpu, ids, b, t, { mask, labels: ids });
    const { analytic, numeric } = await directionalCheck(
      gpu,
      model,
      labelled,
      "model.layers.0.self_attn.k_norm.weight",
    );
    assert(Math.abs(analytic - numeric) <= 5e-3 * analytic, `∂loss/∂k_norm: ${analytic} vs ${numeric}`);
    model.dispose();
    // a classifier's last layer at the pooled tokens alone: its queries normed there too
    const classifier = await loadModel(gpu, dir, { task: "seq-cls", numLabels: 3 });
    classifier.config.padTokenId = 0;
    const padded = ids.map((v, i) => (mask[i] ? v + 1 : 0));
    const logits = (headOnly: boolean) =>
      tidy(() =>
        noGrad(() => ({
          v: classifier.forward(tokenBatch(gpu, padded, b, t, { mask }), { headOnly }).logits.readLater(),
        }))
      ).v;
    const [whole, pooled] = [logits(false), logits(true)];
    gpu.stream.flush();
    assertClose(await pooled, await whole, 1e-5, "headOnly");
    classifier.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("qwen2 with YaRN (Qwen's long-context rope_scaling) matches the float64 reference, cached too", async () => {
  const gpu = await getGpu();
  const yarn = { rope_type: "yarn", factor: 4, original_max_position_embeddings: 32 };
  const dir = await variantDir(
    "qwen2",
    { rope_parameters: undefined, rope_theta: 10000, rope_scaling: yarn },
    {
      ...qkvBiases(true),
    },
  );
  try {
    const model = await loadModel(gpu, dir);
    const [b, t] = [2, 12];
    const ids = randomIds(b * t, 512, 37);
    const ours = await evalForward(model, tokenBatch(gpu, ids, b, t));
    const ref = await referenceForward(dir, ids, b, t, null);
    assertClose(ours.logits, ref.logits, 1e-5, "logits");
    const unscaled = await variantDir("qwen2", {}, qkvBiases(true));
    try {
      const plain = await referenceForward(unscaled, ids, b, t, null);
      // 12 positions of a tiny random model: a small change (5e-3), yet 200 times the tolerance above
      assert(relL2(ref.logits, plain.logits) > 2e-3, "YaRN changes the logits");
    } finally {
      await Deno.remove(unscaled, { recursive: true });
    }
    const cache = model.newCache!();
    const run = (x: Int32Array) =>
      tidy(() =>
        noGrad(() => ({ v: model.forward(tokenBatch(gpu, x, 1, x.length), { cache }).logits.readLater() }))
      ).v;
    run(ids.subarray(0, 8));
    const last = run(ids.subarray(8, 12));
    gpu.stream.flush();
    assertClose(await last, ours.logits.subarray(8 * 512, 12 * 512), 2e-5, "cached");
    cache.dispose();
    model.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("mistral with dynamic NTK RoPE: transformers' llama outputs within max_position_embeddings, longer rows refused", async () => {
  const gpu = await getGpu();
  const dynamic = { rope_type: "dynamic", rope_theta: 10000, factor: 2 };
  const dir = await variantDir("mistral", { sliding_window: null, rope_parameters: dynamic });
  try {
    const r = await modelParity(gpu, dir);
    for (const row of r.rows) assert(row.relL2 <= 1e-4, `${row.output}: rel-L2 ${row.relL2}`);
    const model = await loadModel(gpu, dir);
    const ids = randomIds(130, 512, 41); // past the fixture's 128 positions
    let message = "";
    try {
      await evalForward(model, tokenBatch(gpu, ids, 1, 130));
    } catch (e) {
      message = (e as Error).message;
    }
    assert(message.includes(`RoPE "dynamic"`) && message.includes("130 positions"), message);
    const cache = model.newCache!();
    assertEquals(cache.shape.maxPositions, 128);
    cache.dispose();
    model.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
