import { getGpu } from "../lib/gpu/mod.ts";
import * as T from "../lib/tensor/mod.ts";
import {
  argmaxRows,
  broadcast,
  concat,
  permute,
  slice,
  sumAxes,
  sumTo,
  zeros,
} from "../lib/tensor/reference/array.ts";
import { copyAll, stridedCopy } from "../lib/tensor/ops/copy.ts";
import { assert, assertEquals, assertThrows } from "./assert.ts";
import { expectClose, leaf, randArr, Rng } from "./tensor_helpers.ts";

const TOL = 1e-6;

Deno.test("sum and mean over axes, forward and backward", async () => {
  const gpu = await getGpu();
  const rng = new Rng(10);
  const cases: [number[], number[] | undefined][] = [
    [[1], undefined],
    [[3001], undefined], // chunked two-pass reduction
    [[7, 5], [1]],
    [[7, 5], [0]],
    [[2, 3, 5, 7], [1, 3]],
    [[2, 3, 5, 7], [0, 2]],
    [[300, 130], [0]],
    [[4099, 37], [0]], // a bias gradient's column sum: 129 chunks, then 5, then 1 (three passes)
    [[3, 1, 4], [1]],
  ];
  for (const [shape, axes] of cases) {
    const x = randArr(rng, shape);
    const all = axes ?? shape.map((_, i) => i);
    const count = all.reduce((a, i) => a * shape[i], 1);
    for (const op of ["sum", "mean"] as const) {
      const tx = leaf(gpu, x);
      const y = op === "sum" ? T.sum(tx, axes) : T.mean(tx, axes);
      const ref = sumAxes(x, all);
      if (op === "mean") ref.data = ref.data.map((v) => v / count);
      await expectClose(y, ref, TOL, `${op} ${shape} over ${all}`);
      const g = randArr(rng, ref.shape);
      y.backward(leaf(gpu, g, false));
      const gk = { shape: shape.map((d, i) => (all.includes(i) ? 1 : d)), data: g.data };
      const gx = broadcast(gk, zeros(shape), (a) => (op === "mean" ? a / count : a));
      await expectClose(tx.grad, gx, TOL, `${op} grad ${shape}`);
    }
  }
  // over an empty axis: a sum of nothing is 0, a mean NaN (as torch)
  const empty = T.Tensor.from(gpu, [], [3, 0]);
  assertEquals([...await T.sum(empty, 1).toArray()], [0, 0, 0]);
  assert([...await T.mean(empty, 1).toArray()].every(Number.isNaN), "the mean of nothing");
  const k = T.sum(T.Tensor.from(gpu, [1, 2, 3, 4, 5, 6], [2, 3]), -1, true);
  assertEquals(k.shape, [2, 1]);
  assertEquals([...await k.toArray()], [6, 15]);
});

Deno.test("sumTo and broadcastTo are each other's gradient", async () => {
  const gpu = await getGpu();
  const rng = new Rng(11);
  const x = randArr(rng, [4, 1, 6]);
  const tx = leaf(gpu, x);
  const y = T.broadcastTo(tx, [3, 4, 5, 6]);
  await expectClose(y, broadcast(x, zeros([3, 4, 5, 6]), (a) => a), TOL, "broadcastTo");
  const g = randArr(rng, [3, 4, 5, 6]);
  y.backward(leaf(gpu, g, false));
  await expectClose(tx.grad, sumTo(g, [4, 1, 6]), TOL, "broadcastTo grad");
  assertThrows(() => T.broadcastTo(tx, [4, 2, 5]), "broadcast");
});

Deno.test("permute, transpose, reshape", async () => {
  const gpu = await getGpu();
  const rng = new Rng(12);
  for (
    const [shape, dims] of [
      [[5, 3], [1, 0]],
      [[2, 3, 5, 7], [0, 2, 1, 3]],
      [[2, 3, 5, 7], [3, 1, 0, 2]],
      [[2, 3, 5, 8], [0, 2, 1, 3]], // attention's head split: rows of 8 copied as 16-byte words
      [[2, 6, 4], [1, 0, 2]],
      [[2, 1, 3, 1, 2, 5], [0, 2, 4, 1, 3, 5]],
    ] as [number[], number[]][]
  ) {
    const x = randArr(rng, shape);
    const tx = leaf(gpu, x);
    const y = T.permute(tx, dims);
    const ref = permute(x, dims);
    await expectClose(y, ref, 0, `permute ${shape} by ${dims}`);
    const g = randArr(rng, ref.shape);
    y.backward(leaf(gpu, g, false));
    const inv = dims.map((_, i) => dims.indexOf(i));
    await expectClose(tx.grad, permute(g, inv), 0, `permute grad ${shape}`);
  }
  const x = randArr(rng, [6, 4]);
  const tx = leaf(gpu, x);
  const r = T.reshape(T.transpose(tx, 0, 1), [2, -1, 3]);
  assertEquals(r.shape, [2, 4, 3]);
  await expectClose(r, { shape: [2, 4, 3], data: permute(x, [1, 0]).data }, 0, "transpose+reshape");
  T.sum(T.mul(r, r)).backward();
  await expectClose(tx.grad, { shape: [6, 4], data: x.data.map((v) => 2 * v) }, TOL, "reshape grad");
  assertThrows(() => T.reshape(tx, [5, -1]), "cannot reshape");
  assertThrows(() => T.permute(tx, [0, 0]), "not a permutation");
});

Deno.test("slice, concat, split", async () => {
  const gpu = await getGpu();
  const rng = new Rng(13);
  const x = randArr(rng, [3, 11, 5]);
  const tx = leaf(gpu, x);
  const s = T.slice(tx, 1, 2, -3);
  await expectClose(s, slice(x, 1, 2, 8), 0, "slice");
  const g = randArr(rng, [3, 6, 5]);
  s.backward(leaf(gpu, g, false));
  const gx = concat([zeros([3, 2, 5]), g, zeros([3, 3, 5])], 1);
  await expectClose(tx.grad, gx, 0, "slice grad");
  // every axis, windows of 1 and of all, in one pass over pooled buffers full of NaN: no clear
  const y3 = randArr(rng, [2, 7, 3]);
  for (const [axis, lo, hi] of [[0, 1, 2], [1, 0, 1], [1, 6, 7], [2, 1, 3], [1, 0, 7], [-1, 2, 3]]) {
    const ty = leaf(gpu, y3);
    const part = T.slice(ty, axis, lo, hi);
    const gp = randArr(rng, part.shape);
    for (const junk of [0, 1, 2].map(() => T.Tensor.full(gpu, [2, 7, 3], NaN))) junk.dispose();
    const transfers = gpu.stream.transfers;
    part.backward(leaf(gpu, gp, false));
    assertEquals(gpu.stream.transfers - transfers, 1, `axis ${axis} [${lo}, ${hi}): the upload of g alone`);
    const ax = axis < 0 ? axis + 3 : axis;
    const want = zeros([2, 7, 3]);
    const [, n, inner] = [2, 7, 3].map((_, i, d) => d.slice(i).reduce((a, b) => a * b, 1));
    gp.data.forEach((v, e) => {
      const ps = part.shape,
        idx = [Math.floor(e / (ps[1] * ps[2])), Math.floor(e / ps[2]) % ps[1], e % ps[2]];
      idx[ax] += lo;
      want.data[idx[0] * n + idx[1] * inner + idx[2]] = v;
    });
    await expectClose(ty.grad, want, 0, `slice grad, axis ${axis} [${lo}, ${hi})`);
  }

  const a = randArr(rng, [2, 3, 4]), b = randArr(rng, [2, 1, 4]), c = randArr(rng, [2, 5, 4]);
  const [ta, tb, tc] = [a, b, c].map((v) => leaf(gpu, v));
  const y = T.concat([ta, tb, tc], 1);
  await expectClose(y, concat([a, b, c], 1), 0, "concat");
  const gy = randArr(rng, [2, 9, 4]);
  y.backward(leaf(gpu, gy, false));
  await expectClose(ta.grad, slice(gy, 1, 0, 3), 0, "concat grad a");
  await expectClose(tb.grad, slice(gy, 1, 3, 4), 0, "concat grad b");
  await expectClose(tc.grad, slice(gy, 1, 4, 9), 0, "concat grad c");

  // rows of 4 floats, but starting 1 float in: not whole 16-byte words
  const u = randArr(rng, [3, 2, 8]);
  await expectClose(T.slice(leaf(gpu, u, false), 2, 1, 5), slice(u, 2, 1, 5), 0, "slice at an odd offset");

  const w = randArr(rng, [4, 9]);
  const tw = leaf(gpu, w);
  const parts = T.split(tw, [2, 3, 4], -1);
  await expectClose(parts[2], slice(w, 1, 5, 9), 0, "split");
  T.sum(T.add(T.sum(parts[0]), T.scale(T.sum(parts[2]), 3))).backward();
  const want = zeros([4, 9]);
  for (let r = 0; r < 4; r++) for (let j = 0; j < 9; j++) want.data[r * 9 + j] = j < 2 ? 1 : j < 5 ? 0 : 3;
  await expectClose(tw.grad, want, 0, "split grad");
  assertThrows(() => T.split(tw, [2, 2], 1), "add up to");
});

Deno.test("cast to f16 and back (when the device has shader-f16)", async () => {
  const gpu = await getGpu();
  const x = T.Tensor.from(gpu, [1, 2.5, -3.25, 65504, 1e-3], [5]);
  if (!gpu.f16) return;
  const h = T.cast(x, "f16");
  assertEquals(h.dtype, "f16");
  const back = await T.cast(h, "f32").toArray();
  assertEquals([...back.slice(0, 4)], [1, 2.5, -3.25, 65504]);
  assertEquals([...await h.toArray()].length, 5);
  const direct = T.Tensor.from(gpu, [0.5, 1.5, 7], [3], { dtype: "f16" });
  assertEquals([...await direct.toArray()], [0.5, 1.5, 7]);
});

Deno.test("strided add into a wider tensor, and copyAll at an offset (f32, and f16 into f32)", async () => {
  const gpu = await getGpu();
  const rng = new Rng(16);
  // add a [5, 3] block into columns [2, 5) of a [5, 7] tensor
  const src = randArr(rng, [5, 3]), dst = randArr(rng, [5, 7]);
  const d = T.Tensor.from(gpu, Float32Array.from(dst.data), [5, 7]);
  stridedCopy(T.Tensor.from(gpu, Float32Array.from(src.data), [5, 3]), d, [5, 3], [3, 1], [7, 1], 0, 2, true);
  const want = Float64Array.from(dst.data);
  src.data.forEach((v, i) => want[Math.floor(i / 3) * 7 + 2 + (i % 3)] += v);
  await expectClose(d, { shape: [5, 7], data: want }, TOL, "strided add");
  // 7 values from element 3 (odd: not whole 4-byte words in f16), f32 and f16 sources
  for (const dtype of gpu.f16 ? ["f32", "f16"] as const : ["f32"] as const) {
    const values = Float32Array.from(randArr(rng, [7]).data);
    const stored = dtype === "f16" ? Float32Array.from(Float16Array.from(values)) : values;
    const out = T.Tensor.zeros(gpu, [12]);
    copyAll(T.Tensor.from(gpu, values, [7], { dtype }), out, 3);
    const expected = new Float64Array(12);
    expected.set(stored, 3);
    await expectClose(out, { shape: [12], data: expected }, 0, `copyAll ${dtype}`);
  }
});

Deno.test("argmax: each row's first largest value, at awkward sizes and with ties", async () => {
  const gpu = await getGpu();
  const rng = new Rng(41);
  for (const shape of [[1], [7], [3, 1], [2, 257], [5, 1000], [2, 3, 513], [1, 151937]]) {
    const a = randArr(rng, shape);
    const got = Array.from(
      await T.tidy(() => T.argmax(T.Tensor.from(gpu, Float32Array.from(a.data), shape))).toArray(),
    );
    assertEquals(got, argmaxRows(a), `[${shape}]`);
  }
  // ties: the first index wins, wherever the invocations that saw them lie in the workgroup's tree
  const n = 1031, row = new Float32Array(n).fill(-1);
  for (const j of [900, 3, 517, 256]) row[j] = 2;
  const tied = Float32Array.from([...row, ...row.map((v, j) => (j === 1030 ? 5 : v))]);
  const got = await T.tidy(() => T.argmax(T.Tensor.from(gpu, tied, [2, n]))).toArray();
  assertEquals(Array.from(got), [3, 1030]);
  assertThrows(() => T.argmax(T.Tensor.from(gpu, new Float32Array(0), [2, 0])), "n ≥ 1");
});
