import { getGpu } from "../lib/gpu/mod.ts";
import { matmulReference } from "../lib/linalg/reference.ts";
import * as T from "../lib/tensor/mod.ts";
import { type Arr, arr } from "../lib/tensor/reference/array.ts";
import { numericGrad } from "../lib/tensor/reference/gradcheck.ts";
import { assertEquals, assertThrows } from "./assert.ts";
import { expectClose, leaf, randArr, Rng } from "./tensor_helpers.ts";

const TOL = 2e-6;

interface Case {
  a: number[];
  b: number[];
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  bias?: boolean;
}

/** Float64 forward of one case: batch dims of A, B shared when 2-D. */
function forward(c: Case, a: Float64Array, b: Float64Array, bias: Float64Array | null): Float64Array {
  const ra = c.a.length;
  const [m, k] = c.transA ? [c.a[ra - 1], c.a[ra - 2]] : [c.a[ra - 2], c.a[ra - 1]];
  const n = c.transB ? c.b[c.b.length - 2] : c.b[c.b.length - 1];
  const batch = c.a.slice(0, -2).reduce((x, y) => x * y, 1);
  return matmulReference(a, b, m, n, k, {
    transA: c.transA,
    transB: c.transB,
    batch,
    broadcastB: c.b.length === 2,
    alpha: c.alpha,
    bias: bias ?? undefined,
  });
}

Deno.test("matmul variants: forward, and gradients against finite differences of the float64 product", async () => {
  const gpu = await getGpu();
  const rng = new Rng(20);
  const cases: Case[] = [
    { a: [5, 7], b: [7, 3] },
    { a: [1, 1], b: [1, 1] },
    { a: [2, 3, 5, 7], b: [7, 4] }, // shared B folded into the rows
    { a: [5, 7], b: [4, 7], transB: true, bias: true },
    { a: [3, 7, 5], b: [3, 7, 4], transA: true },
    { a: [3, 7, 5], b: [3, 4, 7], transA: true, transB: true, alpha: -0.5 },
    { a: [3, 7, 5], b: [7, 4], transA: true }, // shared B with transposed A
    { a: [2, 7, 5], b: [4, 7], transA: true, transB: true, bias: true },
    { a: [2, 5, 6], b: [2, 4, 6], transB: true, alpha: 0.25 },
    { a: [13, 17], b: [17, 11], bias: true },
  ];
  for (const c of cases) {
    const a = randArr(rng, c.a), b = randArr(rng, c.b);
    const n = c.transB ? c.b[c.b.length - 2] : c.b[c.b.length - 1];
    const bias = c.bias ? randArr(rng, [n]) : null;
    const ta = leaf(gpu, a), tb = leaf(gpu, b), tbias = bias ? leaf(gpu, bias) : null;
    let y: T.Tensor;
    if (c.bias) {
      y = c.transA
        ? T.add(T.matmul(ta, tb, { transA: true, transB: c.transB }), tbias!)
        : T.linear(ta, tb, tbias, { weightLayout: c.transB ? "out_in" : "in_out" });
    } else y = T.matmul(ta, tb, c);
    const want = forward(c, a.data, b.data, bias?.data ?? null);
    const outShape = [...c.a.slice(0, -2), c.transA ? c.a[c.a.length - 1] : c.a[c.a.length - 2], n];
    const label = JSON.stringify(c);
    await expectClose(y, arr(want, outShape), TOL, `forward ${label}`);
    const g = randArr(rng, outShape);
    y.backward(leaf(gpu, g, false));
    const ga = numericGrad((x) => forward(c, x, b.data, bias?.data ?? null), a.data.slice(), g.data, 0.5);
    const gb = numericGrad((x) => forward(c, a.data, x, bias?.data ?? null), b.data.slice(), g.data, 0.5);
    await expectClose(ta.grad, arr(ga, c.a), TOL, `grad A ${label}`);
    await expectClose(tb.grad, arr(gb, c.b), TOL, `grad B ${label}`);
    if (bias) {
      const gbias = numericGrad((x) => forward(c, a.data, b.data, x), bias.data.slice(), g.data, 0.5);
      await expectClose(tbias!.grad, arr(gbias, [n]), TOL, `grad bias ${label}`);
    }
  }
});

Deno.test("linear with a frozen f16 weight (when the device has shader-f16)", async () => {
  const gpu = await getGpu();
  if (!gpu.f16) return;
  const rng = new Rng(21);
  const x = randArr(rng, [2, 3, 6]);
  const w: Arr = arr(Float16Array.from(rng.normals(5 * 6)), [5, 6]);
  const tx = leaf(gpu, x);
  const tw = T.Tensor.from(gpu, w.data, [5, 6], { dtype: "f16" });
  const y = T.linear(tx, tw);
  const c: Case = { a: [2, 3, 6], b: [5, 6], transB: true };
  await expectClose(y, arr(forward(c, x.data, w.data, null), [2, 3, 5]), TOL, "f16 forward");
  const g = randArr(rng, [2, 3, 5]);
  y.backward(leaf(gpu, g, false));
  const ga = numericGrad((v) => forward(c, v, w.data, null), x.data.slice(), g.data, 0.5);
  await expectClose(tx.grad, arr(ga, [2, 3, 6]), TOL, "f16 grad x");
  assertThrows(() => (tw.requiresGrad = true), "only f32");
});

Deno.test("matmul shape errors name the shapes", async () => {
  const gpu = await getGpu();
  const a = T.Tensor.zeros(gpu, [2, 3]), b = T.Tensor.zeros(gpu, [4, 5]);
  assertThrows(() => T.matmul(a, b), "[2, 3] and [4, 5] do not multiply");
  assertThrows(
    () => T.matmul(T.Tensor.zeros(gpu, [2, 2, 3]), T.Tensor.zeros(gpu, [3, 3, 4])),
    "batch dimensions",
  );
  assertThrows(() => T.linear(a, T.Tensor.zeros(gpu, [4, 3]), T.Tensor.zeros(gpu, [3])), "bias");
});

Deno.test("linear and matmul with an empty inner size: zeros, or the bias in every row (nn.Linear(0, n))", async () => {
  const gpu = await getGpu();
  const bias = [1, 2, 3];
  for (const shape of [[2, 0], [2, 4, 0]]) {
    const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
    const x = T.Tensor.from(gpu, [], shape), w = T.Tensor.from(gpu, [], [3, 0]);
    const b = leaf(gpu, arr(Float64Array.from(bias), [3]));
    const y = T.linear(x, w, b);
    await expectClose(
      y,
      arr(Float64Array.from({ length: rows * 3 }, (_, i) => bias[i % 3]), [...shape.slice(0, -1), 3]),
      0,
      `linear ${shape}`,
    );
    T.sum(y).backward();
    await expectClose(b.grad, arr(Float64Array.from([rows, rows, rows]), [3]), 0, `bias gradient ${shape}`);
    await expectClose(
      T.linear(x, w),
      arr(new Float64Array(rows * 3), [...shape.slice(0, -1), 3]),
      0,
      `no bias ${shape}`,
    );
  }
});

Deno.test("matmul with an empty batch: a shared B's gradient is zeros, A transposed or not, B transposed or not", async () => {
  const gpu = await getGpu();
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      const a = T.Tensor.zeros(gpu, transA ? [0, 3, 2] : [0, 2, 3], { requiresGrad: true });
      const b = leaf(gpu, arr(Float64Array.from([1, 2, 3, 4, 5, 6]), transB ? [2, 3] : [3, 2]));
      const y = T.matmul(a, b, { transA, transB });
      assertEquals(y.shape, [0, 2, 2]);
      T.sum(y).backward();
      await expectClose(b.grad, arr(new Float64Array(6), b.shape), 0, `transA ${transA}, transB ${transB}`);
      for (const t of [a, b, y]) t.dispose();
    }
  }
});
