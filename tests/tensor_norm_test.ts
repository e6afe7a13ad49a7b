import { getGpu } from "../lib/gpu/mod.ts";
import * as T from "../lib/tensor/mod.ts";
import { arr } from "../lib/tensor/reference/array.ts";
import { numericGrad } from "../lib/tensor/reference/gradcheck.ts";
import { normBackward, normForward } from "../lib/tensor/reference/norm.ts";
import { assertClose, assertThrows } from "./assert.ts";
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
