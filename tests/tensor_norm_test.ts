import { getGpu } from "../lib/gpu/mod.ts";
import * as T from "../lib/tensor/mod.ts";
import { arr } from "../lib/tensor/reference/array.ts";
import { numericGrad } from "../lib/tensor/reference/gradcheck.ts";
import { normBackward, normForward } from "../lib/tensor/reference/norm.ts";
import { dropoutMask } from "../lib/tensor/reference/dropout.ts";
import { assertClose, assertEquals, assertThrows } from "./assert.ts";
import { expectClose, leaf, randArr, Rng } from "./tensor_helpers.ts";

const TOL = 1e-5;

Deno.test("layerNorm and rmsNorm: forward and gradients of x, weight, bias", async () => {
  const gpu = await getGpu();
  const rng = new Rng(30);
  const shapes = [[1, 3], [3, 7], [2, 5, 33], [67, 130], [2, 300]];
  for (const rms of [false, true]) {
    for (const shape of shapes) {
      for (const withBias of rms ? [false] : [true, false]) {
        const d = shape[shape.length - 1];
        const x = randArr(rng, shape, 2);
        x.data.forEach((v, i) => (x.data[i] = v + 3)); // an offset mean
        const w = randArr(rng, [d]), b = randArr(rng, [d]);
        const tx = leaf(gpu, x), tw = leaf(gpu, w), tb = withBias ? leaf(gpu, b) : null;
        const eps = rms ? 1e-6 : 1e-5;
        const y = rms ? T.rmsNorm(tx, tw, eps) : T.layerNorm(tx, tw, tb, eps);
        const label = `${rms ? "rms" : "layer"}Norm ${shape}${withBias ? " +bias" : ""}`;
        await expectClose(y, normForward(x, w.data, withBias ? b.data : null, eps, rms), TOL, label);
        const g = randArr(rng, shape);
        y.backward(leaf(gpu, g, false));
        const ref = normBackward(x, w.data, g.data, eps, rms);
        await expectClose(tx.grad, arr(ref.dx, shape), TOL, `${label} dx`);
        await expectClose(tw.grad, arr(ref.dw, [d]), TOL, `${label} dw`);
        if (tb) await expectClose(tb.grad, arr(ref.db, [d]), TOL, `${label} db`);
      }
    }
  }
});

Deno.test("residualLayerNorm: LayerNorm of residual + dropout(x) in one pass, gradients to x, residual, weight, bias", async () => {
  const gpu = await getGpu();
  const rng = new Rng(33);
  for (const [shape, p] of [[[3, 7], 0.3], [[2, 5, 33], 0], [[67, 130], 0.5], [[2, 300], 1]] as const) {
    const d = shape[shape.length - 1];
    const x = randArr(rng, shape, 2), r = randArr(rng, shape, 2);
    const w = randArr(rng, [d]), b = randArr(rng, [d]);
    const key = { seed: 4, step: 7, site: 2 };
    const keep = dropoutMask(x.data.length, p, key);
    const factor = (i: number) => p === 0 ? 1 : keep[i] && p < 1 ? 1 / (1 - p) : 0;
    const s = arr(x.data.map((v, i) => r.data[i] + v * factor(i)), shape);
    const [tx, tr, tw, tb] = [x, r, w, b].map((a) => leaf(gpu, a));
    const y = T.residualLayerNorm(tx, tr, tw, tb, 1e-5, p === 0 ? null : { p, key });
    const label = `${shape} p=${p}`;
    await expectClose(y, normForward(s, w.data, b.data, 1e-5, false), TOL, label);
    // bitwise what dropoutAdd then layerNorm give
    const composed = T.layerNorm(p === 0 ? T.add(tx, tr) : T.dropoutAdd(tx, tr, p, key), tw, tb, 1e-5);
    assertEquals(
      Array.from(await y.toArray()),
      Array.from(await composed.toArray()),
      `${label} same as composed`,
    );
    const g = randArr(rng, shape);
    y.backward(leaf(gpu, g, false));
    const ref = normBackward(s, w.data, g.data, 1e-5, false);
    await expectClose(tr.grad, arr(ref.dx, shape), TOL, `${label} dresidual`);
    await expectClose(tx.grad, arr(ref.dx.map((v, i) => v * factor(i)), shape), TOL, `${label} dx`);
    await expectClose(tw.grad, arr(ref.dw, [d]), TOL, `${label} dw`);
    await expectClose(tb.grad, arr(ref.db, [d]), TOL, `${label} db`);
  }
  const a = leaf(gpu, randArr(rng, [2, 4]));
  assertThrows(
    () => T.residualLayerNorm(a, leaf(gpu, randArr(rng, [2, 5])), a, null, 1e-5),
    "differ in shape",
  );
});

Deno.test("norm references agree with finite differences", () => {
  const rng = new Rng(31);
  for (const rms of [false, true]) {
    const x = randArr(rng, [3, 6]), w = randArr(rng, [6]).data, b = randArr(rng, [6]).data;
    const g = randArr(rng, [3, 6]).data;
    const ref = normBackward(x, w, g, 1e-5, rms);
    const fx = (v: Float64Array) => normForward({ shape: x.shape, data: v }, w, b, 1e-5, rms).data;
    assertClose(ref.dx, numericGrad(fx, x.data.slice(), g), 1e-7, `${rms} dx`);
    const fw = (v: Float64Array) => normForward(x, v, b, 1e-5, rms).data;
    assertClose(ref.dw, numericGrad(fw, w.slice(), g), 1e-7, `${rms} dw`);
    const fb = (v: Float64Array) => normForward(x, w, v, 1e-5, rms).data;
    if (!rms) assertClose(ref.db, numericGrad(fb, b.slice(), g), 1e-7, "db");
  }
});

Deno.test("frozen norm weights get no gradient; bad shapes are named", async () => {
  const gpu = await getGpu();
  const rng = new Rng(32);
  const x = leaf(gpu, randArr(rng, [4, 8]));
  const w = leaf(gpu, randArr(rng, [8]), false);
  T.sum(T.layerNorm(x, w)).backward();
  if (w.grad !== null) throw new Error("frozen weight got a gradient");
  assertThrows(() => T.layerNorm(x, leaf(gpu, randArr(rng, [7]))), "must be [8]");
});
