import { assert, assertClose, assertEquals } from "./assert.ts";
import { Prng, randomLinear, randomPositions } from "./peft_helpers.ts";
import { getGpu, type Gpu } from "../lib/gpu/mod.ts";
import type { Activation } from "../lib/io/hf_config.ts";
import { activate } from "../lib/nn/activation.ts";
import { feedForward } from "../lib/nn/feed_forward.ts";
import type { Linear, WeightLayout } from "../lib/nn/linear.ts";
import { SpectralLayer } from "../lib/peft/spectral_layer.ts";
import { mul, noGrad, sum, Tensor, tidy } from "../lib/tensor/mod.ts";

/** y, ∂L/∂x and the adapters' coefficient gradients for L = Σ r ⊙ y, y from `run`. */
async function gradients(
  gpu: Gpu,
  run: (x: Tensor) => Tensor,
  x: Float32Array,
  r: Float32Array,
  shape: { tokens: number; n: number; out: number },
  coefs: Tensor[],
): Promise<Float32Array[]> {
  const xt = Tensor.from(gpu, x, [shape.tokens, shape.n], { requiresGrad: true });
  const rt = Tensor.from(gpu, r, [shape.tokens, shape.out]);
  const { y, loss } = tidy(() => {
    const y = run(xt);
    return { y, loss: sum(mul(y, rt)) };
  });
  loss.backward();
  const out = [
    await y.toArray(),
    await xt.grad!.toArray(),
    ...await Promise.all(coefs.map((c) => c.grad!.toArray())),
  ]
    .map((a) => Float32Array.from(a));
  for (const c of coefs) {
    c.grad!.dispose();
    c.grad = null;
  }
  for (const t of [xt, rt, y, loss]) t.dispose();
  return out;
}

Deno.test("feedForward: the fused block equals the layers one by one, for every activation and layout", async () => {
  const gpu = await getGpu();
  const [tokens, n, hidden, out] = [37, 12, 20, 7];
  const activations: Activation[] = ["gelu", "gelu_tanh", "relu", "silu"];
  const layouts: WeightLayout[] = ["out_in", "in_out"];
  for (const [i, act] of activations.entries()) {
    for (const layout of layouts) {
      for (const f16 of gpu.f16 && i === 0 ? [false, true] : [false]) {
        for (const adapted of [false, true]) {
          const p = new Prng(100 * i + (layout === "in_out" ? 10 : 0) + (f16 ? 1 : 0) + (adapted ? 5 : 0));
          const up = randomLinear(gpu, p, hidden, n, layout, { f16 }).lin;
          const down = randomLinear(gpu, p, out, hidden, layout, { f16 }).lin;
          const adapters = adapted ? [up, down].map((l) => attachSsh(gpu, p, l)) : [];
          const x = p.normals(tokens * n), r = p.normals(tokens * out);
          const shape = { tokens, n, out };
          const coefs = adapters.map((a) => a.coef);
          const fusedOp = (xt: Tensor) => {
            const y = feedForward(up, down, act, xt);
            assertEquals(y.node?.op, "feed_forward", "the fused op ran");
            return y;
          };
          const fusedRun = await gradients(gpu, fusedOp, x, r, shape, coefs);
          const oneByOne = (xt: Tensor) => down.forward(activate(up.forward(xt), act));
          const separate = await gradients(gpu, oneByOne, x, r, shape, coefs);
          const what = `${act} ${layout}${f16 ? " f16" : ""}${adapted ? " SSH on both" : ""}`;
          const names = ["y", "dx", "dcoef up", "dcoef down"];
          assertEquals(fusedRun.length, separate.length);
          fusedRun.forEach((v, j) => assertClose(v, separate[j], 1e-6, `${names[j]} ${what}`));
          for (const a of adapters) a.dispose();
          for (const t of [up.weight, up.bias, down.weight, down.bias]) t?.dispose();
        }
      }
    }
  }
});

Deno.test("feedForward without gradients (inference) keeps no pre-activation and gives the same values", async () => {
  const gpu = await getGpu();
  const p = new Prng(8);
  const up = randomLinear(gpu, p, 9, 5).lin, down = randomLinear(gpu, p, 3, 9).lin;
  const x = Tensor.from(gpu, p.normals(20), [4, 5], { requiresGrad: true });
  const trained = await feedForward(up, down, "gelu_tanh", x).toArray();
  const y = noGrad(() => feedForward(up, down, "gelu_tanh", x));
  assertEquals(y.node, null, "nothing recorded");
  assertEquals(Array.from(await y.toArray()), Array.from(trained));
});

Deno.test("feedForward: an adapter on the spectral route (few tokens) takes the layers one by one", async () => {
  const gpu = await getGpu();
  const p = new Prng(9);
  const up = randomLinear(gpu, p, 12, 10).lin, down = randomLinear(gpu, p, 30, 12).lin;
  const [upSsh, downSsh] = [up, down].map((l) => attachSsh(gpu, p, l));
  // 12 tokens: up folds (12·10 ≤ ½·12·22), down does not (30·12 > ½·12·42)
  assertEquals(upSsh.route(up, 12), "fold");
  assertEquals(downSsh.route(down, 12), "spectral");
  const x = p.normals(12 * 10), r = p.normals(12 * 30);
  const shape = { tokens: 12, n: 10, out: 30 };
  const coefs = [upSsh.coef, downSsh.coef];
  const viaFeedForward = await gradients(
    gpu,
    (xt) => {
      const y = feedForward(up, down, "silu", xt);
      assert(y.node?.op !== "feed_forward", "not fused");
      return y;
    },
    x,
    r,
    shape,
    coefs,
  );
  const oneByOne = await gradients(
    gpu,
    (xt) => down.forward(activate(up.forward(xt), "silu")),
    x,
    r,
    shape,
    coefs,
  );
  viaFeedForward.forEach((v, i) => assertClose(v, oneByOne[i], 1e-6, `output ${i}`));
});

Deno.test("feedForward: trained weights take the layers one by one", async () => {
  const gpu = await getGpu();
  const p = new Prng(7);
  const up = randomLinear(gpu, p, 6, 4).lin, down = randomLinear(gpu, p, 3, 6).lin;
  down.weight.requiresGrad = true;
  const x = Tensor.from(gpu, p.normals(8), [2, 4], { requiresGrad: true });
  const y = feedForward(up, down, "gelu", x);
  assert(y.node?.op !== "feed_forward", "not fused");
  sum(y).backward();
  assert(down.weight.grad !== null, "the trained weight gets its gradient");
});

/** An SSH adapter on `l` with random nonzero coefficients. */
function attachSsh(gpu: Gpu, p: Prng, l: Linear): SpectralLayer {
  const { outFeatures: m, inFeatures: n } = l;
  const layer = new SpectralLayer(gpu, "ssh", {
    outFeatures: m,
    inFeatures: n,
    positions: randomPositions(p, m, n, 9),
    transform: "dht",
    alpha: 5,
    coef: p.normals(9),
  });
  l.adapter = layer;
  return layer;
}
