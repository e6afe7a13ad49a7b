import { getGpu, type Gpu } from "../lib/gpu/mod.ts";
import * as T from "../lib/tensor/mod.ts";
import { arr } from "../lib/tensor/reference/array.ts";
import { patchEmbedForward } from "../lib/tensor/reference/conv.ts";
import { dropoutMask } from "../lib/tensor/reference/dropout.ts";
import { embeddingBackward, embeddingForward } from "../lib/tensor/reference/embedding.ts";
import { numericGrad } from "../lib/tensor/reference/gradcheck.ts";
import { crossEntropyBackward, crossEntropyForward } from "../lib/tensor/reference/loss.ts";
import { assert, assertClose, assertEquals, assertThrows } from "./assert.ts";
import { expectClose, leaf, randArr, Rng } from "./tensor_helpers.ts";

const TOL = 1e-5;

Deno.test("embedding: lookup, deterministic scatter-add gradient with repeated ids, padding_idx, f16 table", async () => {
  const gpu = await getGpu();
  const rng = new Rng(50);
  const [vocab, d] = [11, 7];
  const w = randArr(rng, [vocab, d]);
  const ids = Int32Array.from([3, 0, 3, 10, 3, 5, 0, 1, 2, 3, 9, 9]);
  const tw = leaf(gpu, w);
  const tids = T.Tensor.from(gpu, ids, [3, 4]);
  const y = T.embedding(tw, tids, { paddingIdx: 9 });
  await expectClose(y, arr(embeddingForward(w.data, d, ids), [3, 4, d]), 0, "lookup");
  const g = randArr(rng, [3, 4, d]);
  const tg = leaf(gpu, g, false);
  y.backward(tg);
  const want = arr(embeddingBackward(vocab, d, ids, g.data, 9), [vocab, d]);
  await expectClose(tw.grad, want, 1e-7, "scatter-add");
  const first = await tw.grad!.toArray();
  tw.grad!.dispose();
  tw.grad = null;
  T.embedding(tw, tids, { paddingIdx: 9 }).backward(tg);
  assertEquals([...await tw.grad!.toArray()], [...first], "bitwise reproducible");
  assertEquals(T.groupIds(Int32Array.from([2, 0, 2])).csr.join(","), "0,2,0,1,3,1,0,2");
  if (gpu.f16) {
    const h = T.Tensor.from(gpu, w.data, [vocab, d], { dtype: "f16" });
    const yh = await T.embedding(h, tids).toArray();
    assertClose(
      yh,
      embeddingForward(Float64Array.from(Float16Array.from(w.data)), d, ids),
      1e-7,
      "f16 lookup",
    );
  }
  assertThrows(() => T.embedding(tw, T.Tensor.from(gpu, Int32Array.from([11]), [1])), "outside [0, 11)");
  // a reshaped or detached view of the ids keeps their host copy: checked, and its gradient taken
  const flat = T.reshape(tids, [12]);
  tw.grad!.dispose();
  tw.grad = null;
  T.embedding(tw, flat, { paddingIdx: 9 }).backward(T.reshape(tg, [12, d]));
  await expectClose(tw.grad, want, 1e-7, "scatter-add through a reshaped view");
  const out = T.Tensor.from(gpu, Int32Array.from([11, 0]), [2]);
  assertThrows(() => T.embedding(tw, out.detach()), "outside [0, 11)");
});

Deno.test("embedding gradient: an id seen more than MAX_RUN times is summed in runs, then per id", async () => {
  const gpu = await getGpu();
  const rng = new Rng(51);
  const [vocab, d] = [5, 3];
  // id 4 in 150 rows (three runs of ≤ 64), id 1 in 66 (two), id 2 once, padding id 0 skipped
  const ids = Int32Array.from({ length: 220 }, (_, i) => i < 150 ? 4 : i < 216 ? 1 : i === 216 ? 2 : 0);
  const w = randArr(rng, [vocab, d]);
  const tw = leaf(gpu, w);
  const y = T.embedding(tw, T.Tensor.from(gpu, ids, [220]), { paddingIdx: 0 });
  const g = randArr(rng, [220, d]);
  y.backward(leaf(gpu, g, false));
  await expectClose(tw.grad, arr(embeddingBackward(vocab, d, ids, g.data, 0), [vocab, d]), 1e-6, "runs");
  const split = T.splitRuns(T.groupIds(Int32Array.from([7, 7, 7, 3])), 2)!;
  // runs: 0 → positions [3], 1 → [0, 1], 2 → [2]; ids 3 and 7 own runs [0, 1) and [1, 3)
  assertEquals([split.runCount, ...split.runs], [3, 0, 1, 2, 0, 1, 3, 4, 3, 0, 1, 2]);
  assertEquals([...split.perId], [3, 7, 0, 1, 3, 0, 1, 2]);
  assertEquals(T.splitRuns(T.groupIds(Int32Array.from([1, 2, 1]))), null, "short runs: one pass");
});

Deno.test("cross-entropy with ignore index: mean over counted targets, sum, gradients", async () => {
  const gpu = await getGpu();
  const rng = new Rng(51);
  for (const [rows, v] of [[1, 1], [5, 7], [9, 300], [3, 1000]]) {
    for (const mean of [true, false]) {
      const x = randArr(rng, [rows, v], 3);
      const targets = Int32Array.from({ length: rows }, (_, i) => (i % 3 === 1 ? -100 : rng.int(v)));
      const tx = leaf(gpu, x);
      const loss = T.crossEntropy(tx, T.Tensor.from(gpu, targets, [rows]), {
        reduction: mean ? "mean" : "sum",
      });
      assertEquals(loss.shape, []);
      const want = crossEntropyForward(x.data, v, targets, -100, mean);
      assertClose([await loss.item()], [want], TOL, `loss ${rows}×${v}`);
      loss.backward(T.Tensor.from(gpu, [0.7], []));
      const gx = crossEntropyBackward(x.data, v, targets, 0.7, -100, mean);
      await expectClose(tx.grad, arr(gx, [rows, v]), TOL, `grad ${rows}×${v} ${mean}`);
    }
  }
  const x = leaf(gpu, randArr(rng, [2, 3, 4]));
  const none = T.crossEntropy(
    x,
    T.Tensor.from(gpu, Int32Array.from([-100, -100, -100, -100, -100, -100]), [2, 3]),
  );
  assertEquals(await none.item(), 0, "all ignored gives 0");
  none.backward();
  assert((await x.grad!.toArray()).every((g) => g === 0), "and no gradient");
  assertThrows(
    () => T.crossEntropy(x, T.Tensor.from(gpu, Int32Array.from([0, 1, 4, 0, 0, 0]), [2, 3])),
    "outside",
  );
  // large logits: the max and log Σ kept apart, as torch's log_softmax, so nothing rounds at 1e6's
  // scale; rows at f32's lowest (torch's finfo.min masks) keep their order
  const big = Float64Array.from([1e6, 1e6, 0, 1e4, 9999, 9998, -3.39e38, -3.39e38, -3.39e38]);
  const tb = leaf(gpu, arr(big, [3, 3]));
  const ce = T.crossEntropy(tb, T.Tensor.from(gpu, Int32Array.from([0, 0, 1]), [3]), { reduction: "sum" });
  const bigWant = crossEntropyForward(big, 3, Int32Array.from([0, 0, 1]), -100, false);
  assertClose([await ce.item()], [bigWant], 1e-6, "large logits");
  ce.backward();
  await expectClose(
    tb.grad,
    arr(crossEntropyBackward(big, 3, Int32Array.from([0, 0, 1]), 1, -100, false), [3, 3]),
    1e-6,
    "their gradient",
  );
  const lowest = await T.softmax(T.Tensor.from(gpu, [-3.4e38, -3.4e38, -3.2e38, -3.1e38], [2, 2])).toArray();
  assertClose(
    lowest,
    [0.5, 0.5, 1 / (1 + Math.exp(1e37)), 1 / (1 + Math.exp(-1e37))],
    1e-6,
    "softmax at f32's lowest",
  );
  const none2 = await T.softmax(T.Tensor.from(gpu, [-Infinity, -Infinity], [1, 2])).toArray();
  assertEquals(Array.from(none2), [0, 0], "a row of −∞ gives zeros");
});

Deno.test("cross-entropy reference gradient agrees with finite differences", () => {
  const rng = new Rng(52);
  const x = rng.normals(4 * 5), targets = Int32Array.from([1, -100, 4, 0]);
  const fd = numericGrad((v) => [crossEntropyForward(v, 5, targets)], x.slice(), [1]);
  assertClose(crossEntropyBackward(x, 5, targets, 1), fd, 1e-7);
});

Deno.test("dropout: mask matches the CPU twin, reproducible per (seed, step), rate ≈ p, same mask backward", async () => {
  const gpu = await getGpu();
  for (const n of [5003, 5004]) await checkDropout(gpu, n); // scalar and vec4 forms
});

async function checkDropout(gpu: Gpu, n: number): Promise<void> {
  const p = 0.3;
  const ones = T.Tensor.full(gpu, [n], 1, { requiresGrad: true });
  const y = T.dropout(ones, p, { seed: 7, step: 12, site: 3 });
  const got = await y.toArray();
  const mask = dropoutMask(n, p, { seed: 7, step: 12, site: 3 });
  got.forEach((v, i) => assert(Math.abs(v - (mask[i] ? 1 / (1 - p) : 0)) < 1e-6, `element ${i}`));
  const kept = mask.reduce((a, m) => a + m, 0) / n;
  assert(Math.abs(kept - (1 - p)) < 0.03, `keep rate ${kept}`);
  const again = await T.dropout(ones, p, { seed: 7, step: 12, site: 3 }).toArray();
  assertEquals([...again], [...got], "same key, same mask");
  const other = await T.dropout(ones, p, { seed: 7, step: 13, site: 3 }).toArray();
  assert(other.some((v, i) => v !== got[i]), "next step, new mask");
  y.backward(T.Tensor.full(gpu, [n], 2));
  const g = await ones.grad!.toArray();
  g.forEach((v, i) => assert(Math.abs(v - (mask[i] ? 2 / (1 - p) : 0)) < 1e-5, `grad ${i}`));
  assert(T.dropout(ones, 0, { seed: 1, step: 1 }) === ones, "p = 0 is the identity");
}

Deno.test("dropoutAdd: residual + dropout(x) in one pass, the same mask, gradients to both", async () => {
  const gpu = await getGpu();
  const rng = new Rng(31);
  const key = { seed: 7, step: 12, site: 5 }, p = 0.25;
  for (const n of [1001, 1004]) { // scalar and vec4 forms
    const x = randArr(rng, [n]), r = randArr(rng, [n]), g = randArr(rng, [n]);
    const [tx, tr] = [x, r].map((a) => leaf(gpu, a));
    const y = T.dropoutAdd(tx, tr, p, key);
    const mask = dropoutMask(n, p, key);
    const scale = 1 / (1 - p);
    await expectClose(
      y,
      arr(r.data.map((v, i) => v + (mask[i] ? x.data[i] * scale : 0)), [n]),
      1e-6,
      `forward ${n}`,
    );
    const unfused = await T.add(T.dropout(tx, p, key), tr).toArray();
    assertEquals([...await y.toArray()], [...unfused], "bitwise the unfused composition");
    y.backward(leaf(gpu, g, false));
    await expectClose(
      tx.grad,
      arr(g.data.map((v, i) => (mask[i] ? v * scale : 0)), [n]),
      1e-6,
      `grad x ${n}`,
    );
    await expectClose(tr.grad, g, 0, `grad residual ${n}`);
  }
  const [a, b] = [randArr(rng, [6]), randArr(rng, [6])].map((v) => leaf(gpu, v, false));
  assertEquals(
    [...await T.dropoutAdd(a, b, 0, key).toArray()],
    [...await T.add(a, b).toArray()],
    "p = 0 adds",
  );
  assertThrows(() => T.dropoutAdd(a, leaf(gpu, randArr(rng, [5]), false), p, key), "one shape");
});

Deno.test("patch embedding (conv2d, stride = kernel): forward and gradients", async () => {
  const gpu = await getGpu();
  const rng = new Rng(53);
  const [b, c, h, w, e, p] = [2, 3, 6, 9, 5, 3];
  const x = randArr(rng, [b, c, h, w]), wt = randArr(rng, [e, c, p, p]), bias = randArr(rng, [e]);
  const [tx, tw, tb] = [x, wt, bias].map((a) => leaf(gpu, a));
  const y = T.patchEmbed(tx, tw, tb, p);
  const f = (xv: Float64Array, wv: Float64Array, bv: Float64Array) =>
    patchEmbedForward(xv, [b, c, h, w], wv, e, p, bv);
  await expectClose(y, arr(f(x.data, wt.data, bias.data), [b, 6, e]), TOL, "forward");
  const g = randArr(rng, [b, 6, e]);
  y.backward(leaf(gpu, g, false));
  const gx = numericGrad((v) => f(v, wt.data, bias.data), x.data.slice(), g.data, 0.5);
  const gw = numericGrad((v) => f(x.data, v, bias.data), wt.data.slice(), g.data, 0.5);
  const gb = numericGrad((v) => f(x.data, wt.data, v), bias.data.slice(), g.data, 0.5);
  await expectClose(tx.grad, arr(gx, x.shape), TOL, "grad x");
  await expectClose(tw.grad, arr(gw, wt.shape), TOL, "grad w");
  await expectClose(tb.grad, arr(gb, [e]), TOL, "grad bias");
  assertThrows(() => T.patchEmbed(tx, tw, tb, 4), "expected x");
});
