/**
 * The key/value cache: a causal LM fed a sequence in pieces, the earlier pieces' keys and values
 * cached, gives the logits of one pass over the whole sequence, with adapters attached, on both
 * attention paths and across the cache's growth; generation with it picks the tokens that full
 * passes pick; what a cache cannot hold is refused.
 */
import { getGpu } from "../lib/gpu/mod.ts";
import { loadModel, loadModelTokenizer } from "../lib/models/load.ts";
import type { Batch, ForwardOptions, Model } from "../lib/models/model.ts";
import { loadAdapterInto } from "../lib/peft/apply.ts";
import { noGrad, Tensor, tidy, withAttentionPath } from "../lib/tensor/mod.ts";
import { generate } from "../lib/infer/generate.ts";
import { assert, assertClose, assertEquals, assertThrows, relL2 } from "./assert.ts";
import type { KvCacheDtype } from "../lib/models/kv_cache.ts";
import { randomIds } from "./model_helpers.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;

function batchOf(model: Model, ids: Int32Array, b: number, t: number) {
  return {
    inputIds: Tensor.from(model.gpu, ids, [b, t]),
    inputIdsHost: ids,
    attentionMask: new Int32Array(b * t).fill(1),
  };
}

/** Columns `[from, to)` of each row of ids [b, t]. */
function columns(ids: Int32Array, b: number, t: number, from: number, to: number): Int32Array {
  return Int32Array.from(
    { length: b * (to - from) },
    (_, i) => ids[Math.floor(i / (to - from)) * t + from + (i % (to - from))],
  );
}

/** The logits of one forward pass (read back after the stream's next flush). */
function logitsOf(model: Model, batch: Batch, options: ForwardOptions = {}): Promise<Float32Array> {
  return tidy(() => noGrad(() => ({ v: model.forward(batch, options).logits.readLater() }))).v;
}

/** Logits [b, t, vocab] of one pass, and of passes over `pieces` with a cache, joined per row. */
async function fullAndPieces(
  model: Model,
  ids: Int32Array,
  b: number,
  pieces: number[],
  dtype: KvCacheDtype = "f32",
) {
  const t = pieces.reduce((a, n) => a + n, 0);
  const full = logitsOf(model, batchOf(model, ids, b, t));
  model.gpu.stream.flush();
  const cache = model.newCache!(dtype);
  assertEquals(cache.shape.dtype, dtype);
  const parts: Promise<Float32Array>[] = [];
  try {
    let at = 0;
    for (const n of pieces) {
      const piece = columns(ids, b, t, at, at + n);
      parts.push(
        logitsOf(model, batchOf(model, piece, b, n), { cache }),
      );
      at += n;
      assertEquals(cache.length, at);
    }
    model.gpu.stream.flush();
    const got = await Promise.all(parts), full_ = await full, vocab = full_.length / (b * t);
    // reorder the pieces' rows to the full pass's [b, t, vocab]
    const joined = new Float32Array(full_.length);
    at = 0;
    pieces.forEach((n, p) => {
      for (let r = 0; r < b; r++) {
        joined.set(got[p].subarray(r * n * vocab, (r + 1) * n * vocab), (r * t + at) * vocab);
      }
      at += n;
    });
    return { full: full_, joined };
  } finally {
    cache.dispose();
  }
}

for (const family of ["gpt2", "llama"]) {
  Deno.test(`kv cache (${family}): pieces after cached ones give the whole pass's logits, with LoRA`, async () => {
    const gpu = await getGpu();
    const model = await loadModel(gpu, `${FIXTURES}models/${family}`);
    try {
      await loadAdapterInto(model, `${FIXTURES}adapters/${family}-lora`);
      // llama: 100 of 128 positions, so the cache grows from 64 with 8 positions in it
      const pieces = family === "gpt2" ? [5, 1, 1, 20, 37] : [7, 1, 60, 1, 31];
      const b = 2, t = pieces.reduce((a, n) => a + n, 0);
      const ids = randomIds(b * t, 512, 11);
      for (const path of ["materialized", "fused"] as const) {
        const { full, joined } = await withAttentionPath(path, () => fullAndPieces(model, ids, b, pieces));
        assertClose(joined, full, 2e-5, `${family} ${path}`);
      }
    } finally {
      model.dispose();
    }
  });
}

Deno.test("kv cache, f16: pieces after cached ones give the whole pass's logits within f16's rounding of keys and values", async () => {
  const gpu = await getGpu();
  if (!gpu.f16) return;
  for (const family of ["gpt2", "llama"]) {
    const model = await loadModel(gpu, `${FIXTURES}models/${family}`);
    try {
      // gpt2's fixture has 64 positions, llama's 128: the cache grows past 64 in the second
      const pieces = family === "gpt2" ? [5, 1, 1, 20, 37] : [7, 1, 60, 1, 31], b = 2;
      const ids = randomIds(b * pieces.reduce((a, n) => a + n, 0), 512, 12);
      for (const path of ["materialized", "fused"] as const) {
        const { full, joined } = await withAttentionPath(
          path,
          () => fullAndPieces(model, ids, b, pieces, "f16"),
        );
        // each key and value rounded to f16 once (2⁻¹¹ relative): 4e-5 (gpt2) and 1e-4 (llama) measured
        const err = relL2(joined, full);
        assert(err > 1e-6 && err < 5e-4, `${family} ${path}: rel-L2 ${err}`);
      }
      const tokenizer = await loadModelTokenizer(model.config);
      const g = await generate(model, tokenizer, [3, 141, 59], {
        maxNewTokens: 20,
        stopAtEos: false,
        cacheDtype: "f16",
      });
      assertEquals(g.newTokens, 20);
    } finally {
      model.dispose();
    }
  }
});

Deno.test("kv cache: generate picks the tokens full passes pick (greedy, 20 tokens)", async () => {
  const gpu = await getGpu();
  for (const family of ["gpt2", "llama"]) {
    const dir = `${FIXTURES}models/${family}`;
    const model = await loadModel(gpu, dir), tokenizer = await loadModelTokenizer(model.config);
    try {
      const prompt = [3, 141, 59, 26, 5];
      const g = await generate(model, tokenizer, prompt, { maxNewTokens: 20, stopAtEos: false });
      const ids = [...prompt];
      while (ids.length < prompt.length + 20) {
        const host = Int32Array.from(ids);
        const logits = logitsOf(model, batchOf(model, host, 1, host.length), { lastLogits: true });
        model.gpu.stream.flush();
        const v = await logits;
        ids.push(v.indexOf(Math.max(...v)));
      }
      assertEquals(g.ids, ids, family);
    } finally {
      model.dispose();
    }
  }
});

Deno.test("kv cache: classifiers, encoders, other batch sizes and too many tokens are refused", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, `${FIXTURES}models/gpt2`);
  const cache = model.newCache!();
  try {
    const run = (ids: Int32Array, b: number, t: number, mask?: Int32Array) =>
      tidy(() =>
        noGrad(() => {
          const batch = { ...batchOf(model, ids, b, t), ...(mask ? { attentionMask: mask } : {}) };
          model.forward(batch, { cache, lastLogits: true });
        })
      );
    run(randomIds(60, 512, 2), 1, 60);
    assertThrows(() => run(randomIds(2, 512, 3), 2, 1), "holds 1 rows, the batch has 2");
    assertThrows(
      () => run(randomIds(5, 512, 4), 1, 5),
      "5 new tokens after 60 cached ones pass the model's 64 positions",
    );
    run(randomIds(4, 512, 5), 1, 4);
    assertEquals(cache.length, 64);
  } finally {
    cache.dispose();
    model.dispose();
  }
  const encoder = await loadModel(gpu, `${FIXTURES}models/bert`);
  try {
    assert(encoder.newCache === undefined);
    const borrowed = new (await import("../lib/models/kv_cache.ts")).KvCache(gpu, {
      layers: 1,
      kvHeads: 1,
      headDim: 4,
      maxPositions: 8,
    });
    assertThrows(
      () =>
        tidy(() =>
          noGrad(() => encoder.forward(batchOf(encoder, randomIds(3, 100, 6), 1, 3), { cache: borrowed }))
        ),
      "a key/value cache is for causal language models",
    );
    borrowed.dispose();
  } finally {
    encoder.dispose();
  }
});

for (const family of ["gpt2", "llama"]) {
  Deno.test(`kv cache (${family}): left-padded prompts of a batch, then new tokens, give each row's own logits`, async () => {
    const gpu = await getGpu();
    const model = await loadModel(gpu, `${FIXTURES}models/${family}`);
    try {
      await loadAdapterInto(model, `${FIXTURES}adapters/${family}-lora`);
      // rows of 5 and 8 prompt tokens, the short one left-padded (pad id 0, masked), then 3 tokens each
      const prompts = [randomIds(5, 512, 21), randomIds(8, 512, 22)],
        more = [randomIds(3, 512, 23), randomIds(3, 512, 24)];
      const padded = Int32Array.from([0, 0, 0, ...prompts[0], ...prompts[1]]);
      const mask = Int32Array.from([0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
      const cache = model.newCache!();
      const steps: Promise<Float32Array>[] = [];
      try {
        steps.push(
          logitsOf(model, { ...batchOf(model, padded, 2, 8), attentionMask: mask }, {
            cache,
            lastLogits: true,
          }),
        );
        for (let j = 0; j < 3; j++) {
          const next = Int32Array.of(more[0][j], more[1][j]);
          steps.push(logitsOf(model, batchOf(model, next, 2, 1), { cache, lastLogits: true }));
        }
        model.gpu.stream.flush();
        const got = await Promise.all(steps);
        for (const r of [0, 1]) {
          // the row alone, unpadded: one full pass over its prompt and new tokens
          const alone = Int32Array.from([...prompts[r], ...more[r]]), n = alone.length;
          const full = logitsOf(model, batchOf(model, alone, 1, n));
          model.gpu.stream.flush();
          const want = await full, v = want.length / n;
          got.forEach((step, j) => {
            const at = prompts[r].length - 1 + j; // the position whose next token this step predicts
            assertClose(
              step.subarray(r * v, (r + 1) * v),
              want.subarray(at * v, (at + 1) * v),
              2e-5,
              `${family} row ${r} step ${j}`,
            );
          });
        }
      } finally {
        cache.dispose();
      }
    } finally {
      model.dispose();
    }
  });
}

Deno.test("kv cache: a pass that fails before commit is dropped; the next one starts where the cache ends", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, `${FIXTURES}models/gpt2`);
  const cache = model.newCache!();
  try {
    const ids = randomIds(6, 512, 3);
    const whole = logitsOf(model, batchOf(model, ids, 1, 6), { lastLogits: true });
    const first = logitsOf(model, batchOf(model, ids.subarray(0, 4), 1, 4), { cache });
    cache.begin(1, 9); // a pass that never commits
    const last = logitsOf(model, batchOf(model, ids.subarray(4), 1, 2), { cache, lastLogits: true });
    model.gpu.stream.flush();
    await first;
    assertEquals(cache.length, 6);
    assertClose(await last, await whole, 2e-5);
  } finally {
    cache.dispose();
    model.dispose();
  }
});
