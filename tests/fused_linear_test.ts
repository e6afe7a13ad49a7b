import { assert, assertClose, assertEquals } from "./assert.ts";
import { denseReference, Prng, randomLinear, randomPositions } from "./peft_helpers.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import { fusedProjection } from "../lib/nn/fused_linear.ts";
import { Linear } from "../lib/nn/linear.ts";
import { SpectralLayer } from "../lib/peft/spectral_layer.ts";
import { LoraLayer } from "../lib/peft/lora.ts";
import { coefGradReference, deltaWReference } from "../lib/spectral/adapter_op.ts";
import { COEF_GRAD_HEURISTICS } from "../lib/spectral/coef_grad.ts";
import { concat, mul, sum, Tensor, tidy } from "../lib/tensor/mod.ts";

const TOL = 1e-5;

Deno.test("fusedProjection: q, k, v as one product, with SSH folded into two of them, f32 and f16 weights", async () => {
  const gpu = await getGpu();
  const [tokens, n] = [37, 12];
  // the square layer's coefficient gradient fused with its FHTs, and with separate ones
  const cases = (gpu.f16 ? [false, true] : [false]).flatMap((f16) =>
    [false, true].map((fused) => ({ f16, fused }))
  );
  const before = COEF_GRAD_HEURISTICS.fused;
  try {
    for (const { f16, fused } of cases) {
      COEF_GRAD_HEURISTICS.fused = fused;
      const p = new Prng(f16 ? 2 : 1);
      const sizes = [12, 5, 9];
      const made = sizes.map((m) => randomLinear(gpu, p, m, n, "out_in", { f16 }));
      const value = made[2].lin;
      made[2].lin = new Linear("no_bias", value.weight, null); // a layer without a bias
      made[2].b.fill(0);
      const adapters = [0, 2].map((i) => {
        const m = sizes[i];
        const positions = randomPositions(p, m, n, 7);
        const coef = p.normals(7);
        const layer = new SpectralLayer(gpu, "ssh", {
          outFeatures: m,
          inFeatures: n,
          positions,
          transform: "dht",
          alpha: 9,
          coef,
        });
        made[i].lin.adapter = layer;
        assertEquals(layer.route(made[i].lin, tokens), "fold");
        return { i, layer, positions, coef };
      });
      const x = p.normals(tokens * n), r = p.normals(tokens * sizes.reduce((a, b) => a + b));
      const xt = Tensor.from(gpu, x, [tokens, n], { requiresGrad: true });
      const rt = Tensor.from(gpu, r, [tokens, r.length / tokens]);
      const { y, loss } = tidy(() => {
        const y = fusedProjection(made.map((l) => l.lin), xt);
        assert(y !== null, "the layers fuse");
        return { y, loss: sum(mul(y, rt)) };
      });
      loss.backward();
      const got = await y.toArray(), dx = await xt.grad!.toArray();
      // each layer's float64 reference on its block of columns of y and r
      const width = r.length / tokens;
      let at = 0;
      const dxWant = new Float64Array(tokens * n);
      for (const [i, { w, b }] of made.entries()) {
        const m = sizes[i];
        const a = adapters.find((a) => a.i === i);
        const dw = a ? deltaWReference(a.positions, a.coef, m, n, "dht", 9) : new Float64Array(m * n);
        const block = (v: ArrayLike<number>) =>
          Float64Array.from({ length: tokens * m }, (_, e) => v[Math.floor(e / m) * width + at + (e % m)]);
        const want = denseReference(w, dw, b, x, block(r), tokens, m, n);
        const what = `layer ${i}${f16 ? " f16" : ""}${fused ? " fused ∂c" : ""}`;
        assertClose(block(got), want.y, TOL, `y ${what}`);
        want.dx.forEach((v, e) => dxWant[e] += v);
        if (a) {
          const dc = coefGradReference(a.positions, want.g, m, n, "dht", 9);
          assertClose(await a.layer.coef.grad!.toArray(), dc, TOL, `dcoef ${what}`);
        }
        at += m;
      }
      assertClose(dx, dxWant, TOL, `dx${f16 ? " f16" : ""}`);
      for (const { lin } of made) assert(lin.weight.grad === null, "frozen weights get no gradient");
      if (fused) assert(adapters[0].layer.op.fusesGradient, "the square layer's gradient is fused");
      for (const a of adapters) a.layer.dispose();
      for (const t of [xt, rt, y, loss, ...made.flatMap((l) => [l.lin.weight, l.lin.bias])]) t?.dispose();
    }
  } finally {
    COEF_GRAD_HEURISTICS.fused = before;
  }
});

Deno.test("fusedProjection: plain layers, f16 weights of odd sizes, one without a bias", async () => {
  const gpu = await getGpu();
  const [tokens, n] = [6, 5];
  for (const f16 of gpu.f16 ? [false, true] : [false]) {
    const p = new Prng(f16 ? 5 : 4);
    const made = [3, 7].map((m) => randomLinear(gpu, p, m, n, "out_in", { f16 }));
    made[0].lin = new Linear("no_bias", made[0].lin.weight, null);
    made[0].b.fill(0);
    const x = p.normals(tokens * n), r = p.normals(tokens * 10);
    const xt = Tensor.from(gpu, x, [tokens, n], { requiresGrad: true });
    const rt = Tensor.from(gpu, r, [tokens, 10]);
    const y = fusedProjection(made.map((l) => l.lin), xt)!;
    sum(mul(y, rt)).backward();
    const got = await y.toArray(), dx = await xt.grad!.toArray();
    const dxWant = new Float64Array(tokens * n);
    let at = 0;
    for (const { w, b, lin } of made) {
      const m = lin.outFeatures;
      const block = (v: ArrayLike<number>) =>
        Float64Array.from({ length: tokens * m }, (_, e) => v[Math.floor(e / m) * 10 + at + (e % m)]);
      const want = denseReference(w, new Float64Array(m * n), b, x, block(r), tokens, m, n);
      assertClose(block(got), want.y, TOL, `y ${m}${f16 ? " f16" : ""}`);
      want.dx.forEach((v, e) => dxWant[e] += v);
      at += m;
    }
    assertClose(dx, dxWant, TOL, `dx${f16 ? " f16" : ""}`);
  }
});

Deno.test("fusedProjection declines layers it cannot fuse", async () => {
  const gpu = await getGpu();
  const p = new Prng(3);
  const x = Tensor.from(gpu, p.normals(2 * 6), [2, 6]);
  const pair = () => [randomLinear(gpu, p, 5, 6).lin, randomLinear(gpu, p, 3, 6).lin];
  const [a, b] = pair();
  assert(fusedProjection([a], x) === null, "one layer");
  const conv = randomLinear(gpu, p, 5, 6, "in_out").lin;
  assert(fusedProjection([a, conv], x) === null, "Conv1D storage");
  a.weight.requiresGrad = true;
  assert(fusedProjection([a, b], x) === null, "a trained weight");
  a.weight.requiresGrad = false;
  b.adapter = new SpectralLayer(gpu, "ssh", {
    outFeatures: 3,
    inFeatures: 6,
    positions: randomPositions(p, 3, 6, 2),
    transform: "dht",
    alpha: 1,
  });
  assert(fusedProjection([a, randomLinear(gpu, p, 3, 5).lin], x) === null, "another input width");
  // 2 tokens: 3·6 > 0.5·2·(3 + 6), the SSH adapter stays spectral and adds its delta
  const y = fusedProjection([a, b], x);
  assertEquals(y?.shape, [2, 8], "with an adapter on the spectral route they fuse");
});

Deno.test("fusedProjection: adapters that do not fold (LoRA with dropout, spectral-route SSH) add into their columns", async () => {
  const gpu = await getGpu();
  const [tokens, n] = [3, 10];
  const p = new Prng(9);
  const layers = [6, 4, 6].map((m) => randomLinear(gpu, p, m, n).lin);
  const module = {
    outFeatures: 6,
    inFeatures: n,
    r: 2,
    a: Float32Array.from(p.normals(2 * n)),
    b: Float32Array.from(p.normals(12)),
  };
  // train-mode LoRA dropout; a fresh layer per run draws the same masks (same step, first call)
  const newLora = () => {
    const lora = new LoraLayer(gpu, {
      module,
      scaling: 1.5,
      dropout: 0.25,
      dropoutState: { training: true, seed: 5, step: () => 1 },
    });
    layers[0].adapter = lora;
    return lora;
  };
  const ssh = new SpectralLayer(gpu, "ssh", {
    outFeatures: 6,
    inFeatures: n,
    positions: randomPositions(p, 6, n, 5),
    transform: "dht",
    alpha: 3,
    coef: p.normals(5),
  });
  layers[2].adapter = ssh;
  assertEquals(ssh.route(layers[2], tokens), "spectral");
  const x = p.normals(tokens * n), r = p.normals(tokens * 16);
  const run = async (fused: boolean) => {
    const lora = newLora();
    const xt = Tensor.from(gpu, x, [tokens, n], { requiresGrad: true });
    const rt = Tensor.from(gpu, r, [tokens, 16]);
    const y = tidy(() => {
      if (fused) return fusedProjection(layers, xt)!;
      return concat(layers.map((l) => l.forward(xt)), 1);
    });
    sum(mul(y, rt)).backward();
    const params = [lora.a, lora.b, ssh.coef];
    const out = [
      await y.toArray(),
      await xt.grad!.toArray(),
      ...await Promise.all(params.map((t) => t.grad!.toArray())),
    ];
    for (const t of params) {
      t.grad!.dispose();
      t.grad = null;
    }
    return out;
  };
  const fused = await run(true), separate = await run(false);
  ["y", "dx", "dA", "dB", "dcoef"].forEach((what, i) => assertClose(fused[i], separate[i], 1e-6, what));
});
