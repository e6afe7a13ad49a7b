/**
 * Phi-3, built as LLaMA with fused projections: the llama fixture with its q/k/v and gate/up
 * weights stacked into qkv_proj and gate_up_proj gives transformers' llama outputs; partial
 * rotary, LongRoPE (short and long factors, and the attention factor) and the sliding window
 * match the float64 reference, through the key/value cache too; a classifier's last layer at
 * the pooled rows alone keeps the loss and gradients with resid_pdrop in train mode.
 */
import { getGpu } from "../lib/gpu/mod.ts";
import { CacheRotationError, type KvCache } from "../lib/models/kv_cache.ts";
import { loadModel, loadModelTokenizer } from "../lib/models/load.ts";
import { generate } from "../lib/infer/generate.ts";
import { modelParity } from "../lib/models/parity.ts";
import { attachAdapter } from "../lib/peft/apply.ts";
import { loraConfig } from "../lib/peft/config.ts";
import { ropeInverseFrequencies, ropeInverseFrequencies64, ropeScale } from "../lib/nn/rope.ts";
import { noGrad, tidy } from "../lib/tensor/mod.ts";
import { assert, assertClose, assertEquals, relL2 } from "./assert.ts";
import { evalForward, phi3Dir, randomIds, referenceForward, tokenBatch } from "./model_helpers.ts";

/** Half of each 16-wide head rotated, LongRoPE from an 8-position pretraining context, a window of 5. */
const LONG_ROPE = {
  partial_rotary_factor: 0.5,
  max_position_embeddings: 128,
  original_max_position_embeddings: 8,
  rope_parameters: undefined,
  rope_theta: 10000,
  rope_scaling: { type: "longrope", short_factor: [1, 1.5, 2, 3], long_factor: [2, 4, 8, 16] },
  sliding_window: 5,
};

Deno.test("phi3 made of the llama fixture (q/k/v and gate/up stacked) gives transformers' llama outputs", async () => {
  const gpu = await getGpu();
  const dir = await phi3Dir();
  try {
    const r = await modelParity(gpu, dir);
    assertEquals([r.family, r.rows.length], ["phi3", 3]);
    for (const row of r.rows) assert(row.relL2 <= 1e-4, `phi3 ${row.output}: rel-L2 ${row.relL2}`);
    const model = await loadModel(gpu, dir);
    assert(model.linears.has("model.layers.1.self_attn.qkv_proj"), "qkv_proj");
    assert(!model.linears.has("model.layers.1.self_attn.q_proj"), "no q_proj");
    model.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LongRoPE: short factors within the original context, long ones past it, cos and sin scaled", () => {
  const rope = {
    type: "longrope" as const,
    theta: 10000,
    shortFactor: [1, 1.5, 2, 3],
    longFactor: [2, 4, 8, 16],
    originalMaxPositions: 8,
    attentionFactor: 1.5,
  };
  const base = [0, 1, 2, 3].map((i) => 10000 ** (-(2 * i) / 8));
  for (const [length, factors] of [[8, rope.shortFactor], [9, rope.longFactor]] as const) {
    const want = base.map((v, i) => v / factors[i]);
    assertClose(ropeInverseFrequencies64(rope, 8, length), want, 1e-15, `float64, ${length} positions`);
    assertClose(ropeInverseFrequencies(rope, 8, length), want, 1e-6, `float32, ${length} positions`);
  }
  assertEquals([ropeScale(rope), ropeScale({ type: "default", theta: 10000 })], [1.5, 1]);
});

Deno.test("phi3: partial rotary, LongRoPE's short and long factors and the sliding window match the float64 reference, cached too", async () => {
  const gpu = await getGpu();
  const dir = await phi3Dir(LONG_ROPE);
  try {
    const model = await loadModel(gpu, dir);
    const b = 2;
    for (const t of [6, 12]) { // within the 8-position context (short factors), then past it (long)
      const ids = randomIds(b * t, 512, t);
      const mask = Int32Array.from({ length: b * t }, (_, i) => (i >= t && i % t === 0 ? 0 : 1)); // row 1 left-padded
      const ours = await evalForward(model, tokenBatch(gpu, ids, b, t, { mask }));
      const ref = await referenceForward(dir, ids, b, t, mask);
      assertClose(ours.logits, ref.logits, 1e-5, `logits, ${t} tokens`);
    }
    // the factors and the partial rotation change the outputs (the test can fail)
    const ids = randomIds(b * 12, 512, 12);
    const plainDir = await phi3Dir({ sliding_window: 5 });
    try {
      const plain = await referenceForward(plainDir, ids, b, 12, null);
      assert(relL2((await referenceForward(dir, ids, b, 12, null)).logits, plain.logits) > 1e-2, "no change");
    } finally {
      await Deno.remove(plainDir, { recursive: true });
    }
    // the last 2 tokens after 10 cached ones (long factors throughout), against the whole pass
    const whole = await evalForward(model, tokenBatch(gpu, ids, b, 12));
    const piece = (from: number, to: number) =>
      Int32Array.from(
        { length: b * (to - from) },
        (_, i) => ids[Math.floor(i / (to - from)) * 12 + from + (i % (to - from))],
      );
    const cache = model.newCache!();
    const run = (x: Int32Array, n: number) =>
      tidy(() => noGrad(() => ({ v: model.forward(tokenBatch(gpu, x, b, n), { cache }).logits.readLater() })))
        .v;
    run(piece(0, 10), 10);
    const last = run(piece(10, 12), 2);
    gpu.stream.flush();
    const got = await last, vocab = 512;
    const expected = [0, 1].flatMap((r) =>
      Array.from(whole.logits.subarray((r * 12 + 10) * vocab, (r * 12 + 12) * vocab))
    );
    assertClose(got, expected, 1e-5, "cached logits");
    // keys rotated with one factor set are not extended by a pass of the other, either way: filled
    // within the original context and going past it, or filled past it and cut back within it
    const refused = (cache: KvCache, from: number, to: number) => {
      try {
        tidy(() =>
          noGrad(() => void model.forward(tokenBatch(gpu, piece(from, to), b, to - from), { cache }))
        );
      } catch (e) {
        assert(e instanceof CacheRotationError, String(e));
        return e.message;
      }
      return "";
    };
    const early = model.newCache!();
    assertEquals(refused(early, 0, 6), "");
    assert(refused(early, 6, 10).includes("rotates with LongRoPE's long factors"), "short → long");
    const late = model.newCache!();
    assertEquals(refused(late, 0, 12), "");
    late.truncate(6);
    assert(refused(late, 6, 8).includes("rotates with LongRoPE's short factors"), "long → short");
    assertEquals(refused(late, 6, 10), "", "long keys extended by long factors");
    // generation fills the cache again where the factors change, as transformers' Phi-3 does: the
    // greedy tokens of full passes, from 5 prompt tokens to 15
    const tokenizer = await loadModelTokenizer(model.config);
    const prompt = Array.from(ids.subarray(0, 5));
    const made = await generate(model, tokenizer, prompt, { maxNewTokens: 10, stopAtEos: false });
    const greedy = [...prompt];
    while (greedy.length < 15) {
      const t = greedy.length, out = await evalForward(model, tokenBatch(gpu, Int32Array.from(greedy), 1, t));
      const last = out.logits.subarray((t - 1) * 512, t * 512);
      greedy.push(last.indexOf(Math.max(...last)));
    }
    assertEquals(made.ids, greedy);
    model.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("phi3: a classifier's last layer at the pooled rows alone keeps the train-mode loss and gradients (resid_pdrop, LoRA on qkv_proj)", async () => {
  const gpu = await getGpu();
  const dir = await phi3Dir(
    { ...LONG_ROPE, resid_pdrop: 0.2, attention_dropout: 0.1 },
    "Phi3ForSequenceClassification",
  );
  try {
    const [b, t] = [3, 10];
    const ids = randomIds(b * t, 500, 9);
    const run = async (headOnly: boolean) => {
      const model = await loadModel(gpu, dir);
      const peft = await attachAdapter(
        model,
        loraConfig({ r: 2, loraDropout: 0.2, initLoraWeights: false, taskType: "SEQ_CLS" }),
        { seed: 2 },
      );
      assertEquals([...peft.layers.keys()], [
        "model.layers.0.self_attn.qkv_proj",
        "model.layers.1.self_attn.qkv_proj",
      ]);
      peft.train(true);
      const loss = model.forward(tokenBatch(gpu, ids, b, t, { labels: Int32Array.from([0, 1, 1]) }), {
        headOnly,
      }).loss!;
      loss.backward();
      const out = {
        loss: await loss.item(),
        grads: await Promise.all(peft.parameters().map((p) => p.grad!.toArray())),
      };
      peft.detach();
      model.dispose();
      return out;
    };
    const [whole, pooled] = [await run(false), await run(true)];
    assertClose([pooled.loss], [whole.loss], 1e-5, "loss");
    pooled.grads.forEach((g, i) => assertClose(g, whole.grads[i], 1e-4, `gradient ${i}`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
