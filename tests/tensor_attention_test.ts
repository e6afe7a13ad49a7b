import { getGpu } from "../lib/gpu/mod.ts";
import * as T from "../lib/tensor/mod.ts";
import { arr, permute } from "../lib/tensor/reference/array.ts";
import {
  attentionBackward,
  attentionForward,
  type AttnDims,
  ropeForward,
  softmaxRows,
  softmaxRowsBackward,
} from "../lib/tensor/reference/attention.ts";
import { numericGrad } from "../lib/tensor/reference/gradcheck.ts";
import { dropoutMask } from "../lib/tensor/reference/dropout.ts";
import { assert, assertClose, assertEquals, assertThrows } from "./assert.ts";
import { expectClose, leaf, randArr, Rng } from "./tensor_helpers.ts";

const TOL = 1e-5;

/** Per-element factors of dropout(·, p, key) over n elements: 1/(1 − p) where kept, 0 where dropped. */
function dropoutFactors(n: number, p: number, key: T.DropoutKey): Float64Array {
  return Float64Array.from(dropoutMask(n, p, key), (keep) => keep && p < 1 ? 1 / (1 - p) : 0);
}

Deno.test("softmax over the last dimension: forward and backward", async () => {
  const gpu = await getGpu();
  const rng = new Rng(40);
  for (const shape of [[1], [5, 1], [3, 7], [2, 64], [2, 65], [2, 3, 129], [2, 256], [4, 300]]) {
    const x = randArr(rng, shape, 3);
    const s = shape[shape.length - 1];
    const tx = leaf(gpu, x);
    const y = T.softmax(tx);
    const ref = softmaxRows(x.data, s, 1);
    await expectClose(y, arr(ref, shape), TOL, `softmax ${shape}`);
    const g = randArr(rng, shape);
    y.backward(leaf(gpu, g, false));
    await expectClose(
      tx.grad,
      arr(softmaxRowsBackward(ref, g.data, s, 1), shape),
      TOL,
      `softmax grad ${shape}`,
    );
  }
  const big = await T.softmax(T.Tensor.from(gpu, [1000, 0, -1000], [3])).toArray();
  assertClose(big, [1, 0, 0], 1e-7, "softmax is shift-stable");
});

Deno.test("softmax with dropout in the same pass: dropout's masks, and the gradient through both", async () => {
  const gpu = await getGpu();
  const rng = new Rng(47);
  for (const [shape, p] of [[[3, 7], 0.3], [[2, 5, 129], 0.5], [[4, 300], 0.1], [[2, 4], 1]] as const) {
    const x = randArr(rng, shape, 3);
    const s = shape[shape.length - 1];
    const key = { seed: 5, step: 2, site: 9 };
    const tx = leaf(gpu, x);
    const y = T.maskedSoftmax(tx, 0.8, {}, { p, key });
    const factor = dropoutFactors(x.data.length, p, key);
    const probs = softmaxRows(x.data, s, 0.8);
    await expectClose(y, arr(probs.map((v, i) => v * factor[i]), shape), TOL, `softmax+dropout ${shape}`);
    // bitwise what dropout(softmax(x)) gives
    const composed = T.dropout(T.maskedSoftmax(tx, 0.8, {}), p, key);
    assertEquals(Array.from(await y.toArray()), Array.from(await composed.toArray()), "same as composed");
    const g = randArr(rng, shape);
    y.backward(leaf(gpu, g, false));
    const gThroughMask = g.data.map((v, i) => v * factor[i]);
    await expectClose(
      tx.grad,
      arr(softmaxRowsBackward(probs, gThroughMask, s, 0.8), shape),
      TOL,
      `grad ${shape}`,
    );
  }
});

Deno.test("softmax reference gradient agrees with finite differences", () => {
  const rng = new Rng(41);
  const x = rng.normals(12), g = rng.normals(12);
  const keep = (r: number, j: number) => j <= r + 1;
  const y = softmaxRows(x, 4, 0.7, keep);
  assertClose(
    softmaxRowsBackward(y, g, 4, 0.7),
    numericGrad((v) => softmaxRows(v, 4, 0.7, keep), x.slice(), g),
    1e-7,
  );
});

const CASES: Partial<AttnDims>[] = [
  { b: 1, h: 1, hkv: 1, t: 1, s: 1, d: 1, dv: 1 },
  { b: 2, h: 3, hkv: 3, t: 5, s: 5, d: 4, dv: 4 },
  { b: 2, h: 3, hkv: 3, t: 5, s: 5, d: 4, dv: 4, causal: true },
  {
    b: 2,
    h: 4,
    hkv: 2,
    t: 6,
    s: 6,
    d: 3,
    dv: 5,
    causal: true,
    mask: Int32Array.from([0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]),
  },
  { b: 2, h: 4, hkv: 1, t: 3, s: 7, d: 8, dv: 2, causal: true },
  // sliding windows: 2 keys (with padding), 4 keys past more keys than queries, the query alone
  {
    b: 2,
    h: 4,
    hkv: 2,
    t: 6,
    s: 6,
    d: 3,
    dv: 5,
    causal: true,
    window: 2,
    mask: Int32Array.from([0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1]),
  },
  { b: 1, h: 2, hkv: 1, t: 3, s: 7, d: 8, dv: 2, causal: true, window: 4 },
  { b: 1, h: 1, hkv: 1, t: 5, s: 5, d: 3, dv: 3, causal: true, window: 1 },
  // more queries than keys (cross-attention), a masked key
  { b: 2, h: 2, hkv: 1, t: 9, s: 4, d: 5, dv: 3, mask: Int32Array.from([1, 1, 0, 1, 1, 1, 1, 1]) },
  {
    b: 3,
    h: 2,
    hkv: 2,
    t: 4,
    s: 4,
    d: 5,
    dv: 5,
    mask: Int32Array.from([1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0]),
  },
];

/** Both paths of every attention call: the fused kernels and the materialised probabilities. */
const PATHS = ["materialized", "fused"] as const;

Deno.test("attention (causal, padding, grouped-query): forward and gradients of q, k, v", async () => {
  const gpu = await getGpu();
  const rng = new Rng(42);
  for (const [c, path] of PATHS.flatMap((path) => CASES.map((c) => [c, path] as const))) {
    const a: AttnDims = { causal: false, mask: null, scale: 1 / Math.sqrt(c.d!), ...c } as AttnDims;
    const q = randArr(rng, [a.b, a.h, a.t, a.d]), k = randArr(rng, [a.b, a.hkv, a.s, a.d]);
    const v = randArr(rng, [a.b, a.hkv, a.s, a.dv]);
    const [tq, tk, tv] = [q, k, v].map((x) => leaf(gpu, x));
    const mask = a.mask ? T.Tensor.from(gpu, a.mask, [a.b, a.s]) : null;
    const y = T.attention(tq, tk, tv, { causal: a.causal, window: a.window, mask, path });
    const label = `${path} ${JSON.stringify(c)}`;
    await expectClose(y, arr(attentionForward(a, q.data, k.data, v.data), [a.b, a.h, a.t, a.dv]), TOL, label);
    const g = randArr(rng, [a.b, a.h, a.t, a.dv]);
    y.backward(leaf(gpu, g, false));
    const ref = attentionBackward(a, q.data, k.data, v.data, g.data);
    await expectClose(tq.grad, arr(ref.dq, q.shape), TOL, `dq ${label}`);
    await expectClose(tk.grad, arr(ref.dk, k.shape), TOL, `dk ${label}`);
    await expectClose(tv.grad, arr(ref.dv, v.shape), TOL, `dv ${label}`);
  }
});

Deno.test("attention on [B, T, H, D] heads in place, with dropout on the probabilities", async () => {
  const gpu = await getGpu();
  const rng = new Rng(44);
  const swap = [0, 2, 1, 3];
  for (const [c, path] of PATHS.flatMap((path) => CASES.map((c) => [c, path] as const))) {
    const a: AttnDims = { causal: false, mask: null, scale: 0.7, ...c } as AttnDims;
    const key = { seed: 1, step: rng.int(100), site: 3 };
    const factor = dropoutFactors(a.b * a.h * a.t * a.s, 0.6, key);
    const q = randArr(rng, [a.b, a.h, a.t, a.d]), k = randArr(rng, [a.b, a.hkv, a.s, a.d]);
    const v = randArr(rng, [a.b, a.hkv, a.s, a.dv]);
    const [tq, tk, tv] = [q, k, v].map((x) => leaf(gpu, permute(x, swap)));
    const mask = a.mask ? T.Tensor.from(gpu, a.mask, [a.b, a.s]) : null;
    const y = T.attention(tq, tk, tv, {
      causal: a.causal,
      window: a.window,
      mask,
      scale: a.scale,
      layout: "bthd",
      probsDropout: { p: 0.6, key },
      path,
    });
    const ref = { ...a, probsFactor: factor };
    const label = `${path} ${JSON.stringify(c)}`;
    const out = arr(attentionForward(ref, q.data, k.data, v.data), [a.b, a.h, a.t, a.dv]);
    await expectClose(y, permute(out, swap), TOL, label);
    const g = randArr(rng, [a.b, a.t, a.h, a.dv]);
    y.backward(leaf(gpu, g, false));
    const grads = attentionBackward(ref, q.data, k.data, v.data, permute(g, swap).data);
    await expectClose(tq.grad, permute(arr(grads.dq, q.shape), swap), TOL, `dq ${label}`);
    await expectClose(tk.grad, permute(arr(grads.dk, k.shape), swap), TOL, `dk ${label}`);
    await expectClose(tv.grad, permute(arr(grads.dv, v.shape), swap), TOL, `dv ${label}`);
  }
});

Deno.test("packed attention reads q, k, v from one [B, T, (H + 2·Hkv)·D] tensor; its gradient adds to others'", async () => {
  const gpu = await getGpu();
  const rng = new Rng(45);
  const swap = [0, 2, 1, 3];
  const gqa = { b: 2, h: 4, hkv: 2, t: 6, s: 6, d: 3, dv: 3, causal: true, mask: CASES[2].mask };
  const cases = [...CASES.filter((c) => c.t === c.s && c.d === c.dv), gqa];
  for (const [c, path] of PATHS.flatMap((path) => cases.map((c) => [c, path] as const))) {
    const a: AttnDims = { causal: false, mask: null, scale: 0.4, ...c } as AttnDims;
    const { b, h, hkv, t, d } = a;
    const q = randArr(rng, [b, h, t, d]), k = randArr(rng, [b, hkv, t, d]), v = randArr(rng, [b, hkv, t, d]);
    // [B, T, H·D | Hkv·D | Hkv·D]
    const pack = (parts: Float64Array[]) => {
      const out = new Float64Array(b * t * (h + 2 * hkv) * d);
      const widths = [h * d, hkv * d, hkv * d];
      for (let row = 0; row < b * t; row++) {
        let at = row * (h + 2 * hkv) * d;
        parts.forEach((p, i) => {
          out.set(p.subarray(row * widths[i], (row + 1) * widths[i]), at);
          at += widths[i];
        });
      }
      return out;
    };
    const bthd = (x: typeof q) => permute(x, swap).data;
    const width = (h + 2 * hkv) * d;
    const packed = arr(pack([bthd(q), bthd(k), bthd(v)]), [b, t, width]);
    // qkv a leaf or made by an op; used elsewhere too or by this attention alone (its gradient
    // then written part by part, never zeroed: no clear)
    for (const [made, elsewhere] of [[false, true], [true, false], [true, true]]) {
      const src = leaf(gpu, packed);
      const qkv = made ? T.scale(src, 1) : src;
      const key = { seed: 2, step: rng.int(100), site: 4 };
      const factor = dropoutFactors(b * h * t * t, 0.25, key);
      const mask = a.mask ? T.Tensor.from(gpu, a.mask, [b, t]) : null;
      const y = T.packedAttention(qkv, {
        heads: h,
        kvHeads: hkv,
        headDim: d,
        causal: a.causal,
        window: a.window,
        mask,
        scale: a.scale,
        probsDropout: { p: 0.25, key },
        path,
      });
      const ref = { ...a, probsFactor: factor };
      const label = `${path} ${JSON.stringify(c)} ${made ? "made" : "leaf"}${
        elsewhere ? " + elsewhere" : ""
      }`;
      await expectClose(
        y,
        permute(arr(attentionForward(ref, q.data, k.data, v.data), [b, h, t, d]), swap),
        TOL,
        label,
      );
      // loss Σ y·G (+ Σ qkv·C): qkv's gradient is attention's (plus C, from another consumer of qkv)
      const g = randArr(rng, [b, t, h, d]), other = randArr(rng, [b, t, width]);
      let loss = T.sum(T.mul(y, leaf(gpu, g, false)));
      if (elsewhere) loss = T.add(loss, T.sum(T.mul(qkv, leaf(gpu, other, false))));
      // pooled buffers full of NaN: a gradient read before it is written shows
      for (const junk of [0, 1, 2, 3].map(() => T.Tensor.full(gpu, [b, t, width], NaN))) junk.dispose();
      const transfers = gpu.stream.transfers;
      loss.backward();
      if (made && !elsewhere) assertEquals(gpu.stream.transfers, transfers, `${label}: a clear or copy`);
      const grads = attentionBackward(ref, q.data, k.data, v.data, permute(g, swap).data);
      const part = (x: Float64Array, shape: number[]) => bthd(arr(x, shape));
      const expected = pack([part(grads.dq, q.shape), part(grads.dk, k.shape), part(grads.dv, v.shape)])
        .map((x, i) => x + (elsewhere ? other.data[i] : 0));
      await expectClose(src.grad, arr(expected, [b, t, width]), TOL, `dqkv ${label}`);
    }
  }
  const qkv = leaf(gpu, randArr(rng, [2, 3, 20]));
  assertThrows(
    () => T.packedAttention(qkv, { heads: 2, headDim: 4 }),
    "expected [B, T, (H + 2·Hkv)·D] = [B, T, 24]",
  );
});

Deno.test("attention across tiles: awkward head sizes, more keys than queries, D = 128, both paths", async () => {
  const gpu = await getGpu();
  const rng = new Rng(46);
  const mask = (b: number, s: number) =>
    Int32Array.from({ length: b * s }, (_, i) => (i * 7) % 11 === 3 ? 0 : 1);
  const cases: Partial<AttnDims>[] = [
    // 70 queries over 83 keys: two query blocks, two key tiles, 9 and 5 vec4s a head row
    { b: 2, h: 6, hkv: 2, t: 70, s: 83, d: 33, dv: 17, causal: true, mask: mask(2, 83) },
    // 28-key tiles (D = 128 fills the workgroup memory), a prime number of queries
    { b: 1, h: 2, hkv: 2, t: 37, s: 61, d: 128, dv: 128, mask: mask(1, 61) },
    { b: 1, h: 3, hkv: 1, t: 130, s: 130, d: 64, dv: 64, causal: true },
    // windows across key tiles and query blocks
    { b: 1, h: 3, hkv: 1, t: 130, s: 130, d: 64, dv: 64, causal: true, window: 37 },
    { b: 2, h: 2, hkv: 2, t: 70, s: 83, d: 9, dv: 9, causal: true, window: 20, mask: mask(2, 83) },
  ];
  for (const [c, path] of PATHS.flatMap((path) => cases.map((c) => [c, path] as const))) {
    const a: AttnDims = { causal: false, mask: null, scale: 0.3, ...c } as AttnDims;
    const key = { seed: 3, step: 1, site: 2 };
    const ref = { ...a, probsFactor: dropoutFactors(a.b * a.h * a.t * a.s, 0.2, key) };
    const q = randArr(rng, [a.b, a.h, a.t, a.d]), k = randArr(rng, [a.b, a.hkv, a.s, a.d]);
    const v = randArr(rng, [a.b, a.hkv, a.s, a.dv]);
    const [tq, tk, tv] = [q, k, v].map((x) => leaf(gpu, x));
    const y = T.attention(tq, tk, tv, {
      causal: a.causal,
      window: a.window,
      mask: a.mask ? T.Tensor.from(gpu, a.mask, [a.b, a.s]) : null,
      scale: a.scale,
      probsDropout: { p: 0.2, key },
      path,
    });
    const label = `${path} ${a.t}×${a.s} d=${a.d}`;
    await expectClose(
      y,
      arr(attentionForward(ref, q.data, k.data, v.data), [a.b, a.h, a.t, a.dv]),
      TOL,
      label,
    );
    const g = randArr(rng, [a.b, a.h, a.t, a.dv]);
    y.backward(leaf(gpu, g, false));
    const grads = attentionBackward(ref, q.data, k.data, v.data, g.data);
    await expectClose(tq.grad, arr(grads.dq, q.shape), TOL, `dq ${label}`);
    await expectClose(tk.grad, arr(grads.dk, k.shape), TOL, `dk ${label}`);
    await expectClose(tv.grad, arr(grads.dv, v.shape), TOL, `dv ${label}`);
  }
});

Deno.test("attention: the padding mask may be freed (and its buffer reused) before backward", async () => {
  const gpu = await getGpu();
  const rng = new Rng(50);
  const a: AttnDims = { b: 2, h: 2, hkv: 1, t: 9, s: 9, d: 4, dv: 4, causal: false, mask: null, scale: 0.5 };
  a.mask = Int32Array.from({ length: 18 }, (_, i) => i % 4 === 1 ? 0 : 1);
  const q = randArr(rng, [2, 2, 9, 4]), k = randArr(rng, [2, 1, 9, 4]), v = randArr(rng, [2, 1, 9, 4]);
  const g = randArr(rng, [2, 2, 9, 4]);
  const grads = attentionBackward(a, q.data, k.data, v.data, g.data);
  for (const path of PATHS) {
    const [tq, tk, tv] = [q, k, v].map((x) => leaf(gpu, x));
    const mask = T.Tensor.from(gpu, a.mask, [2, 9]);
    const y = T.attention(tq, tk, tv, { mask, scale: 0.5, path });
    mask.dispose();
    // the pool hands the mask's buffer out again: all zeros would hide every key
    const reuse = T.Tensor.from(gpu, new Int32Array(18), [2, 9]);
    y.backward(leaf(gpu, g, false));
    reuse.dispose();
    await expectClose(tk.grad, arr(grads.dk, k.shape), TOL, `${path} dk`);
    await expectClose(tq.grad, arr(grads.dq, q.shape), TOL, `${path} dq`);
  }
});

Deno.test("fused attention: dK and dV split over query chunks (long sequences, few heads) give the same gradients", async () => {
  const gpu = await getGpu();
  const rng = new Rng(51);
  const cases: Partial<AttnDims>[] = [
    { b: 1, h: 4, hkv: 2, t: 70, s: 83, d: 12, dv: 8, causal: true },
    {
      b: 2,
      h: 2,
      hkv: 1,
      t: 37,
      s: 61,
      d: 128,
      dv: 128,
      mask: Int32Array.from({ length: 122 }, (_, i) => i % 9 ? 1 : 0),
    },
  ];
  const saved = T.ATTENTION_PATH.kvSplits;
  try {
    for (const c of cases) {
      const a: AttnDims = { causal: false, mask: null, scale: 0.4, ...c } as AttnDims;
      const key = { seed: 4, step: 2, site: 1 };
      const ref = { ...a, probsFactor: dropoutFactors(a.b * a.h * a.t * a.s, 0.3, key) };
      const q = randArr(rng, [a.b, a.h, a.t, a.d]), k = randArr(rng, [a.b, a.hkv, a.s, a.d]);
      const v = randArr(rng, [a.b, a.hkv, a.s, a.dv]), g = randArr(rng, [a.b, a.h, a.t, a.dv]);
      const grads = attentionBackward(ref, q.data, k.data, v.data, g.data);
      for (const splits of [2, 3]) {
        T.ATTENTION_PATH.kvSplits = splits;
        const [tq, tk, tv] = [q, k, v].map((x) => leaf(gpu, x));
        // k's gradient arrives gathered from another consumer: the split sums add to it
        const other = randArr(rng, k.shape);
        const y = T.attention(tq, tk, tv, {
          causal: a.causal,
          window: a.window,
          mask: a.mask ? T.Tensor.from(gpu, a.mask, [a.b, a.s]) : null,
          scale: a.scale,
          probsDropout: { p: 0.3, key },
          path: "fused",
        });
        const loss = T.add(T.sum(T.mul(y, leaf(gpu, g, false))), T.sum(T.mul(tk, leaf(gpu, other, false))));
        loss.backward();
        const label = `${splits} parts, ${a.t}×${a.s} d=${a.d}`;
        await expectClose(tv.grad, arr(grads.dv, v.shape), TOL, `dv ${label}`);
        await expectClose(
          tk.grad,
          arr(grads.dk.map((x, i) => x + other.data[i]), k.shape),
          TOL,
          `dk ${label}`,
        );
        await expectClose(tq.grad, arr(grads.dq, q.shape), TOL, `dq ${label}`);
      }
    }
  } finally {
    T.ATTENTION_PATH.kvSplits = saved;
  }
});

Deno.test("attention(x, x, x): one tensor as query, key and value gathers all three gradients", async () => {
  const gpu = await getGpu();
  const rng = new Rng(48);
  const a: AttnDims = { b: 2, h: 2, hkv: 2, t: 5, s: 5, d: 4, dv: 4, causal: true, mask: null, scale: 0.5 };
  const x = randArr(rng, [2, 2, 5, 4]), g = randArr(rng, [2, 2, 5, 4]);
  const grads = attentionBackward(a, x.data, x.data, x.data, g.data);
  const expected = grads.dq.map((v, i) => v + grads.dk[i] + grads.dv[i]);
  for (const path of PATHS) {
    const tx = leaf(gpu, x);
    const y = T.attention(tx, tx, tx, { causal: true, scale: 0.5, path });
    await expectClose(y, arr(attentionForward(a, x.data, x.data, x.data), x.shape), TOL, path);
    y.backward(leaf(gpu, g, false));
    await expectClose(tx.grad, arr(expected, x.shape), TOL, `${path}: dq + dk + dv`);
  }
});

Deno.test("fused attention never stores the probabilities; auto fuses from ATTENTION_PATH's size", async () => {
  const gpu = await getGpu();
  const rng = new Rng(49);
  const [b, h, t, d] = [1, 2, 512, 8];
  const peak = async (path: T.AttentionPath) => {
    gpu.stream.flush();
    gpu.pool.trim();
    gpu.pool.resetPeak();
    const base = gpu.pool.stats().allocated;
    const [q, k, v] = [0, 1, 2].map(() => leaf(gpu, randArr(rng, [b, h, t, d])));
    const y = T.attention(q, k, v, { causal: true, path });
    y.backward(leaf(gpu, randArr(rng, y.shape), false));
    await q.grad!.toArray();
    return gpu.pool.stats().peak - base;
  };
  const probs = b * h * t * t * 4;
  const fused = await peak("fused"), materialized = await peak("materialized");
  assert(
    materialized >= 2 * probs,
    `materialized peak ${materialized} should hold the ${probs}-byte probabilities`,
  );
  assert(fused < probs / 4, `fused peak ${fused} should be far below the ${probs}-byte probabilities`);
  const dims = { b, h, hkv: h, t, s: t, d, dv: d };
  assert(!T.useFusedAttention(dims), "2 MiB of probabilities stay materialised");
  assert(T.useFusedAttention(dims, "auto", probs - 4), "auto fuses what the device cannot bind");
  assert(!T.useFusedAttention(dims, "auto", probs), "probabilities the device binds stay materialised");
  const saved = T.ATTENTION_PATH.fuseFromBytes;
  try {
    T.ATTENTION_PATH.fuseFromBytes = probs;
    assert(T.useFusedAttention(dims), "auto fuses from fuseFromBytes");
  } finally {
    T.ATTENTION_PATH.fuseFromBytes = saved;
  }
});

Deno.test("attention reference gradients agree with finite differences", () => {
  const rng = new Rng(43);
  const a: AttnDims = { b: 2, h: 4, hkv: 2, t: 3, s: 4, d: 3, dv: 2, causal: true, mask: null, scale: 0.6 };
  a.mask = Int32Array.from([1, 1, 0, 1, 0, 1, 1, 1]);
  a.probsFactor = Float64Array.from({ length: 2 * 4 * 3 * 4 }, (_, i) => [1, 0, 2.5][i % 3]);
  const q = rng.normals(2 * 4 * 3 * 3), k = rng.normals(2 * 2 * 4 * 3), v = rng.normals(2 * 2 * 4 * 2);
  const g = rng.normals(2 * 4 * 3 * 2);
  const ref = attentionBackward(a, q, k, v, g);
  assertClose(ref.dq, numericGrad((x) => attentionForward(a, x, k, v), q.slice(), g), 1e-7, "dq");
  assertClose(ref.dk, numericGrad((x) => attentionForward(a, q, x, v), k.slice(), g), 1e-7, "dk");
  assertClose(ref.dv, numericGrad((x) => attentionForward(a, q, k, x), v.slice(), g), 1e-7, "dv");
});

Deno.test("rope: HF rotate_half tables and rotation, both layouts, partial rotary dim", async () => {
  const gpu = await getGpu();
  const rng = new Rng(44);
  const tables = T.ropeTables(gpu, { rotaryDim: 8, theta: 10000, length: 9 });
  const cos = await tables.cos.toArray(), sin = await tables.sin.toArray();
  for (let p = 0; p < 9; p++) {
    for (let i = 0; i < 4; i++) {
      const angle = p / 10000 ** ((2 * i) / 8);
      assert(
        Math.abs(cos[p * 4 + i] - Math.cos(angle)) < 1e-6 &&
          Math.abs(sin[p * 4 + i] - Math.sin(angle)) < 1e-6,
      );
    }
  }
  assert(T.ropeTables(gpu, { rotaryDim: 8, theta: 10000, length: 9 }) === tables, "tables are cached");
  for (const [shape, layout, rd] of [[[2, 3, 7, 8], "bhtd", 8], [[2, 7, 3, 10], "bthd", 8]] as const) {
    const tab = T.ropeTables(gpu, { rotaryDim: rd, theta: 500, length: 7 });
    const [c, s] = [await tab.cos.toArray(), await tab.sin.toArray()];
    const x = randArr(rng, [...shape]);
    const tx = leaf(gpu, x);
    const y = T.rope(tx, tab, layout);
    await expectClose(
      y,
      arr(ropeForward(x.data, shape, c, s, rd, layout), [...shape]),
      TOL,
      `rope ${layout}`,
    );
    const g = randArr(rng, [...shape]);
    y.backward(leaf(gpu, g, false));
    const ref = numericGrad((v) => ropeForward(v, shape, c, s, rd, layout), x.data.slice(), g.data);
    assertClose(
      ropeForward(g.data, shape, c, s, rd, layout, -1),
      ref,
      1e-8,
      "inverse rotation is the gradient",
    );
    await expectClose(tx.grad, arr(ref, [...shape]), TOL, `rope grad ${layout}`);
  }
  assertThrows(() => T.rope(leaf(gpu, randArr(rng, [1, 1, 10, 8])), tables), "do not cover");
  const q = leaf(gpu, randArr(rng, [2, 2, 3, 4]));
  assertThrows(
    () => T.attention(q, q, q, { mask: T.Tensor.from(gpu, new Int32Array(3), [1, 3]) }),
    "should be [2, 3]",
  );
  assertThrows(() => T.attention(q, leaf(gpu, randArr(rng, [2, 3, 3, 4])), q), "multiple of Hkv");
});

Deno.test("kvPackedAttention: queries over packed keys and values read in place, as attention over separate ones", async () => {
  const gpu = await getGpu();
  const rng = new Rng(44);
  for (const path of ["materialized", "fused"] as const) {
    for (const [b, h, hkv, t, s, d] of [[2, 4, 2, 1, 7, 5], [1, 3, 3, 3, 5, 8]]) {
      // `skip` heads of something else before k's; kv a leaf or made by an op, used elsewhere too
      // or by this attention alone (its gradient then written part by part: no clear)
      for (
        const [skip, made, elsewhere] of [[0, false, false], [0, true, false], [0, true, true], [
          1,
          true,
          false,
        ]] as const
      ) {
        const q = randArr(rng, [b, t, h * d]),
          k = randArr(rng, [b, s, hkv * d]),
          v = randArr(rng, [b, s, hkv * d]);
        const width = (skip + 2 * hkv) * d;
        const kvData = randArr(rng, [b, s, width]).data;
        for (let row = 0; row < b * s; row++) {
          kvData.set(k.data.subarray(row * hkv * d, (row + 1) * hkv * d), row * width + skip * d);
          kvData.set(v.data.subarray(row * hkv * d, (row + 1) * hkv * d), row * width + (skip + hkv) * d);
        }
        const maskData = Int32Array.from({ length: b * s }, (_, i) => i % s === s - 1 ? 0 : 1);
        const mask = T.Tensor.from(gpu, maskData, [b, s]);
        const drop = { p: 0.3, key: { seed: 1, step: 2, site: 3, rows: { batch: b, length: 4 } } };
        const g = randArr(rng, [b, t, h, d]);
        const opts = { mask, probsDropout: drop, path };
        // reference: attention over separate k and v
        const [tq, tk, tv] = [leaf(gpu, q), leaf(gpu, k), leaf(gpu, v)];
        const heads = (x: T.Tensor, n: number) => T.reshape(x, [b, x.shape[1], n, d]);
        const want = T.attention(heads(tq, h), heads(tk, hkv), heads(tv, hkv), { ...opts, layout: "bthd" });
        T.sum(T.mul(want, leaf(gpu, g, false))).backward();
        // packed
        const [pq, src] = [leaf(gpu, q), leaf(gpu, arr(kvData, [b, s, width]))];
        const kv = made ? T.scale(src, 1) : src;
        const got = T.kvPackedAttention(pq, kv, {
          heads: h,
          kvHeads: hkv,
          headDim: d,
          keysAt: skip,
          ...opts,
        });
        const other = randArr(rng, [b, s, width]);
        let loss = T.sum(T.mul(got, leaf(gpu, g, false)));
        if (elsewhere) loss = T.add(loss, T.sum(T.mul(kv, leaf(gpu, other, false))));
        // pooled buffers full of NaN: a gradient read before it is written shows
        for (const junk of [0, 1, 2, 3].map(() => T.Tensor.full(gpu, [b, s, width], NaN))) junk.dispose();
        const transfers = gpu.stream.transfers;
        loss.backward();
        const label = `${path} ${[b, h, hkv, t, s, d]} keysAt ${skip} ${made ? "made" : "leaf"}${
          elsewhere ? " + elsewhere" : ""
        }`;
        if (made && !elsewhere && skip === 0) {
          assertEquals(gpu.stream.transfers, transfers, `${label}: a clear or copy`);
        }
        assertClose(await got.toArray(), await want.toArray(), 1e-6, `${label}: output`);
        assertClose(await pq.grad!.toArray(), await tq.grad!.toArray(), 1e-5, `${label}: dq`);
        const [dk, dv, dkv] = [await tk.grad!.toArray(), await tv.grad!.toArray(), await src.grad!.toArray()];
        const plus = (i: number) => elsewhere ? other.data[i] : 0;
        const split = (first: number) =>
          Float32Array.from({ length: b * s * hkv * d }, (_, i) => {
            const at = Math.floor(i / (hkv * d)) * width + first * d + (i % (hkv * d));
            return dkv[at] - plus(at);
          });
        assertClose(split(skip), dk, 1e-5, `${label}: dk`);
        assertClose(split(skip + hkv), dv, 1e-5, `${label}: dv`);
        const rest = Float32Array.from(
          { length: b * s * skip * d },
          (_, i) => dkv[Math.floor(i / (skip * d)) * width + (i % (skip * d))],
        );
        assert(rest.every((x) => x === 0), `${label}: the heads before k's get no gradient`);
      }
    }
  }
  assertThrows(
    () =>
      T.kvPackedAttention(leaf(gpu, randArr(rng, [1, 1, 8])), leaf(gpu, randArr(rng, [1, 3, 10])), {
        heads: 2,
        headDim: 4,
      }),
    "kv [B, S, (0 + 2·Hkv)·D] = [B, S, 16]",
  );
});
