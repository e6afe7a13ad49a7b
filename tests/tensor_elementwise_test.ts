import { getGpu } from "../lib/gpu/mod.ts";
import * as T from "../lib/tensor/mod.ts";
import { ACTIVATIONS } from "../lib/tensor/reference/activations.ts";
import { broadcast, map, sumTo } from "../lib/tensor/reference/array.ts";
import { numericGrad } from "../lib/tensor/reference/gradcheck.ts";
import { assert, assertClose } from "./assert.ts";
import { expectClose, leaf, randArr, Rng } from "./tensor_helpers.ts";

const TOL = 1e-5;

Deno.test("broadcasting add/sub/mul/div: forward and gradients summed to each shape", async () => {
  const gpu = await getGpu();
  const rng = new Rng(1);
  const cases: [number[], number[]][] = [
    [[7], [7]],
    [[3, 5], [5]],
    [[2, 1, 5], [3, 1]],
    [[1], [4, 3]],
    [[2, 3, 1, 7], [3, 5, 1]],
    [[4, 6], [4, 6]], // same shapes, a multiple of 4: the vec4 form
  ];
  const ops = {
    add: { f: (a: number, b: number) => a + b, da: () => 1, db: () => 1, gpu: T.add },
    sub: { f: (a: number, b: number) => a - b, da: () => 1, db: () => -1, gpu: T.sub },
    mul: {
      f: (a: number, b: number) => a * b,
      da: (_: number, b: number) => b,
      db: (a: number) => a,
      gpu: T.mul,
    },
    div: {
      f: (a: number, b: number) => a / b,
      da: (_: number, b: number) => 1 / b,
      db: (a: number, b: number) => -a / (b * b),
      gpu: T.div,
    },
  };
  for (const [sa, sb] of cases) {
    for (const [name, op] of Object.entries(ops)) {
      const a = randArr(rng, sa);
      const b = name === "div"
        ? map(randArr(rng, sb), (v) => (v >= 0 ? v + 0.5 : v - 0.5))
        : randArr(rng, sb);
      const ta = leaf(gpu, a), tb = leaf(gpu, b);
      const y = op.gpu(ta, tb);
      const ref = broadcast(a, b, op.f);
      await expectClose(y, ref, TOL, `${name} ${sa}·${sb}`);
      const g = randArr(rng, ref.shape);
      y.backward(leaf(gpu, g, false));
      const ga = sumTo(broadcast(g, broadcast(a, b, op.da), (x, d) => x * d), sa);
      const gb = sumTo(broadcast(g, broadcast(a, b, (x, z) => op.db(x, z)), (x, d) => x * d), sb);
      await expectClose(ta.grad, ga, TOL, `${name} grad a ${sa}·${sb}`);
      await expectClose(tb.grad, gb, TOL, `${name} grad b ${sa}·${sb}`);
    }
  }
});

Deno.test("log1p: small x within a few f32 ulps, where log(1 + x) loses digits to the rounding of 1 + x", async () => {
  const gpu = await getGpu();
  const mags = [1e-7, 3e-7, 1e-6, 1e-5, 1e-4, 3e-4, 1e-3, 0.01, 0.1, 0.3];
  const x = Float32Array.from([...mags, ...mags.map((v) => -v), -0.5, 0.99, 1, 1.5, -0.7, 1e-30, 0]);
  const got = await T.log1p(T.Tensor.from(gpu, x, [x.length])).toArray();
  x.forEach((v, i) => {
    const want = Math.log1p(v), err = want === 0 ? Math.abs(got[i]) : Math.abs(got[i] / want - 1);
    assert(err <= 5e-7, `log1p(${v}) = ${got[i]}, want ${want} (relative error ${err.toExponential(2)})`);
  });
});

Deno.test("activations match float64 forward and derivative; references pass finite differences", async () => {
  const gpu = await getGpu();
  const rng = new Rng(2);
  const ops: Record<string, (x: T.Tensor) => T.Tensor> = {
    exp: T.exp,
    log: T.log,
    log1p: T.log1p,
    relu: T.relu,
    sigmoid: T.sigmoid,
    tanh: T.tanh,
    silu: T.silu,
    gelu: (x) => T.gelu(x),
    gelu_tanh: (x) => T.gelu(x, "tanh"),
  };
  // an awkward size, and a multiple of 4 (the vec4 form)
  for (
    const [name, op, shape] of Object.entries(ops).flatMap(([n, o]) =>
      [[3, 37], [4, 9]].map((s) => [n, o, s] as const)
    )
  ) {
    const ref = ACTIVATIONS[name];
    // wide range including the branch points of the approximations
    let x = map(randArr(rng, shape), (v) => v * 3);
    x.data.set([0.49, -0.51, 0.124, -9, 12, 1e-3]);
    if (name === "log") x = map(x, (v) => Math.abs(v) + 0.1);
    if (name === "log1p") x = map(x, (v) => Math.abs(v) - 0.9); // both sides of the series' bounds
    if (name === "exp") x = map(x, (v) => Math.min(v, 5));
    const tx = leaf(gpu, x);
    const y = op(tx);
    await expectClose(y, map(x, ref.f), name === "exp" ? 2e-6 : TOL, `${name} forward`);
    const g = randArr(rng, x.shape);
    y.backward(leaf(gpu, g, false));
    await expectClose(tx.grad, map(x, (v, i) => ref.df(v) * g.data[i]), TOL, `${name} backward`);
    if (name !== "relu") {
      const pts = Float64Array.from(
        [-2.3, -0.7, 0.05, 0.4, 1.9].map((
          v,
        ) => (name === "log" ? Math.abs(v) : name === "log1p" ? Math.abs(v) - 0.5 : v)),
      );
      const w = Float64Array.from(pts, () => 1);
      const fd = numericGrad((v) => v.map((z) => ref.f(z)), pts, w);
      assertClose(pts.map((z) => ref.df(z)), fd, 1e-7, `${name} reference derivative`);
    }
  }
});

Deno.test("gelu erf approximation: error within 3e-7·max(1, |x|) over [-6, 6]", async () => {
  const gpu = await getGpu();
  const xs = Float32Array.from({ length: 4801 }, (_, i) => -6 + i * 0.0025);
  const y = await T.gelu(T.Tensor.from(gpu, xs, [xs.length])).toArray();
  let worst = 0;
  xs.forEach((x, i) =>
    worst = Math.max(worst, Math.abs(y[i] - ACTIVATIONS.gelu.f(x)) / Math.max(1, Math.abs(x)))
  );
  assert(worst < 3e-7, `max scaled error ${worst}`);
  const t = await T.tanh(T.Tensor.from(gpu, Float32Array.from([-100, 100, 30, -0.01]), [4])).toArray();
  assert(t.every((v) => Number.isFinite(v)), "tanh is finite for large |x|");
});

Deno.test("scale, addScalar, neg, affine", async () => {
  const gpu = await getGpu();
  const rng = new Rng(3);
  const x = randArr(rng, [5, 3]);
  const tx = leaf(gpu, x);
  const y = T.add(T.addScalar(T.scale(tx, 2.5), 1), T.neg(T.affine(tx, 0.5, -2)));
  await expectClose(y, map(x, (v) => 2.5 * v + 1 - (0.5 * v - 2)), TOL, "affine chain");
  y.backward(T.Tensor.full(gpu, y.shape, 1));
  await expectClose(tx.grad, map(x, () => 2), TOL, "affine chain grad");
});
