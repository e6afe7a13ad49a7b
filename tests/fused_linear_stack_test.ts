// The stacked weight fusedProjection keeps across forwards: frozen rows copied once, and copied
// again whenever what they were copied from changes (an in-place rewrite, another tensor, an
// adapter folding or not, a discarded stream), never overwritten under a tape that reads them.
import { assert, assertClose, assertEquals } from "./assert.ts";
import { denseReference, Prng, randomLinear, randomPositions } from "./peft_helpers.ts";
import { getGpu, type Gpu } from "../lib/gpu/mod.ts";
import { fusedProjection, releaseStacks } from "../lib/nn/fused_linear.ts";
import { Linear } from "../lib/nn/linear.ts";
import { SpectralLayer } from "../lib/peft/spectral_layer.ts";
import { deltaWReference } from "../lib/spectral/adapter_op.ts";
import { checkpoint, mul, noGrad, sum, Tensor, tidy } from "../lib/tensor/mod.ts";
import { AdamW } from "../lib/train/optim.ts";

const TOL = 1e-5;
const [TOKENS, N] = [23, 7];
const SIZES = [7, 5, 3];

interface Made {
  lin: Linear;
  w: Float64Array;
  b: Float64Array;
}

/** Three layers of one input, the last without a bias. */
function layersOf(gpu: Gpu, p: Prng): Made[] {
  const made = SIZES.map((m) => randomLinear(gpu, p, m, N));
  made[2].lin = new Linear("no_bias", made[2].lin.weight, null);
  made[2].b.fill(0);
  return made;
}

/** The float64 output [TOKENS, ΣM] and, for the weights `r` [TOKENS, ΣM], dx (`dws`: each layer's ΔW). */
function reference(
  made: Made[],
  x: ArrayLike<number>,
  r: ArrayLike<number>,
  dws: (Float64Array | null)[] = [],
) {
  const total = SIZES.reduce((a, b) => a + b, 0);
  const y = new Float64Array(TOKENS * total), dx = new Float64Array(TOKENS * N);
  let at = 0;
  made.forEach(({ w, b }, i) => {
    const m = SIZES[i];
    const block = Float64Array.from(
      { length: TOKENS * m },
      (_, e) => r[Math.floor(e / m) * total + at + (e % m)],
    );
    const want = denseReference(w, dws[i] ?? new Float64Array(m * N), b, x, block, TOKENS, m, N);
    want.y.forEach((v, e) => y[Math.floor(e / m) * total + at + (e % m)] = v);
    want.dx.forEach((v, e) => dx[e] += v);
    at += m;
  });
  return { y, dx };
}

function sshOn(gpu: Gpu, p: Prng, lin: Linear) {
  const [m, n] = [lin.outFeatures, lin.inFeatures];
  const positions = randomPositions(p, m, n, 6), coef = p.normals(6);
  const layer = new SpectralLayer(gpu, "ssh", {
    outFeatures: m,
    inFeatures: n,
    positions,
    transform: "dht",
    alpha: 5,
    coef,
  });
  assertEquals(layer.route(lin, TOKENS), "fold");
  return { layer, dw: deltaWReference(positions, coef, m, n, "dht", 5) };
}

/**
 * The projection's output, and the buffer copies and clears it encoded: a forward with gradients
 * on, as training's (its graph dropped with y), or with `inference`, without.
 */
async function project(
  gpu: Gpu,
  made: Made[],
  x: Tensor,
  inference = false,
): Promise<{ y: Float32Array; transfers: number }> {
  const t0 = gpu.stream.transfers;
  const forward = () => fusedProjection(made.map((l) => l.lin), x);
  const y = inference ? noGrad(forward) : forward();
  assert(y !== null, "the layers fuse");
  const transfers = gpu.stream.transfers - t0;
  const values = await y.toArray();
  y.dispose();
  return { y: values, transfers };
}

Deno.test("fusedProjection keeps its stack: frozen rows copied once, again after in-place rewrites, other tensors and adapters", async () => {
  const gpu = await getGpu();
  const p = new Prng(21);
  const made = layersOf(gpu, p);
  const x = p.normals(TOKENS * N), r = p.normals(TOKENS * 15);
  const xt = Tensor.from(gpu, x, [TOKENS, N]);
  const want = () => reference(made, x, r).y;

  const first = await project(gpu, made, xt);
  assertClose(first.y, want(), TOL, "first forward");
  assertEquals(first.transfers, 6, "three weights and three bias blocks copied (one cleared)");
  const again = await project(gpu, made, xt);
  assertClose(again.y, want(), TOL, "second forward");
  assertEquals(again.transfers, 0, "nothing copied again");

  // a weight rewritten in place (as merging ΔW does) is copied again once it says so
  const w1 = Float32Array.from(p.normals(SIZES[1] * N));
  gpu.stream.write(made[1].lin.weight.buffer, w1);
  made[1].lin.weight.touch();
  made[1].w = Float64Array.from(w1);
  const rewritten = await project(gpu, made, xt);
  assertClose(rewritten.y, want(), TOL, "after an in-place rewrite");
  assertEquals(rewritten.transfers, 1, "that weight alone copied again");

  // another bias tensor
  const b0 = p.normals(SIZES[0]);
  made[0].lin.bias = Tensor.from(gpu, b0, [SIZES[0]]);
  made[0].b = Float64Array.from(b0);
  const rebiased = await project(gpu, made, xt);
  assertClose(rebiased.y, want(), TOL, "after another bias");
  assertEquals(rebiased.transfers, 1, "that bias block alone copied");

  // an adapter that folds writes W + ΔW into its rows; once it is gone, W is copied back
  const { layer, dw } = sshOn(gpu, p, made[0].lin);
  made[0].lin.adapter = layer;
  // the fold's own copies (W first, on some routes), once its tables are uploaded
  const scratch = Tensor.empty(gpu, [SIZES[0], N]);
  layer.fold(made[0].lin, TOKENS, scratch, 0);
  const t0 = gpu.stream.transfers;
  layer.fold(made[0].lin, TOKENS, scratch, 0);
  const foldTransfers = gpu.stream.transfers - t0;
  scratch.dispose();
  const folded = await project(gpu, made, xt);
  assertClose(folded.y, reference(made, x, r, [dw]).y, TOL, "with SSH folded into the first layer");
  assertEquals(folded.transfers, foldTransfers, "the fold writes its rows; the rest are held");
  made[0].lin.adapter = null;
  const plain = await project(gpu, made, xt);
  assertClose(plain.y, want(), TOL, "with the adapter removed");
  assertEquals(plain.transfers, 1, "the first layer's weight copied back");

  layer.dispose();
  releaseStacks(made.map((l) => l.lin));
  for (const t of [xt, ...made.flatMap((l) => [l.lin.weight, l.lin.bias])]) t?.dispose();
});

Deno.test("fusedProjection: a folding adapter's W + ΔW is written again only when its coefficients change", async () => {
  const gpu = await getGpu();
  for (const f16 of gpu.f16 ? [false, true] : [false]) {
    const p = new Prng(f16 ? 26 : 25);
    const made = SIZES.map((m) => randomLinear(gpu, p, m, N, "out_in", { f16 }));
    const { layer, dw } = sshOn(gpu, p, made[0].lin);
    made[0].lin.adapter = layer;
    const x = p.normals(TOKENS * N), r = p.normals(TOKENS * 15);
    const xt = Tensor.from(gpu, x, [TOKENS, N]);
    const run = async () => {
      const d0 = gpu.stream.dispatches;
      const out = await project(gpu, made, xt);
      return { ...out, dispatches: gpu.stream.dispatches - d0 };
    };
    const what = f16 ? " (f16 weights)" : "";
    const first = await run();
    assertClose(first.y, reference(made, x, r, [dw]).y, TOL, `first forward${what}`);
    const again = await run();
    assertClose(again.y, first.y, 0, `the same coefficients${what}`);
    assert(again.dispatches < first.dispatches, `W + ΔW not written again${what}`);
    assertEquals(again.transfers, 0, `nothing copied${what}`);
    // new coefficients (as loading or an optimiser step writes them) are folded again
    const coef = p.normals(6);
    layer.setCoefficients(Float32Array.from(coef));
    const dw2 = deltaWReference(layer.positions, coef, SIZES[0], N, "dht", 5);
    assertClose((await run()).y, reference(made, x, r, [dw2]).y, TOL, `new coefficients${what}`);
    // and another adapter on the layer
    const other = sshOn(gpu, p, made[0].lin);
    made[0].lin.adapter = other.layer;
    assertClose((await run()).y, reference(made, x, r, [other.dw]).y, TOL, `another adapter${what}`);
    // a training step: the optimiser's update is folded into the next forward
    const opt = new AdamW(gpu, [{ params: [other.layer.coef] }], { lr: 0.1 });
    const rt = Tensor.from(gpu, r, [TOKENS, 15]);
    tidy(() => sum(mul(fusedProjection(made.map((l) => l.lin), xt)!, rt))).backward();
    opt.step();
    opt.zeroGrad();
    const trained = deltaWReference(
      other.layer.positions,
      await other.layer.coefficients(),
      SIZES[0],
      N,
      "dht",
      5,
    );
    assertClose((await run()).y, reference(made, x, r, [trained]).y, TOL, `after an AdamW step${what}`);
    opt.dispose();
    rt.dispose();
    for (const l of [layer, other.layer]) l.dispose();
    releaseStacks(made.map((l) => l.lin));
    for (const t of [xt, ...made.flatMap((l) => [l.lin.weight, l.lin.bias])]) t?.dispose();
  }
});

Deno.test("fusedProjection: a discarded stream loses the stack's copies, so they are made again", async () => {
  const gpu = await getGpu();
  const p = new Prng(22);
  const made = layersOf(gpu, p);
  const x = p.normals(TOKENS * N);
  const xt = Tensor.from(gpu, x, [TOKENS, N]);
  // pooled buffers of the stack's size full of NaN, submitted: an uncopied row shows
  for (const junk of [0, 1, 2].map(() => Tensor.full(gpu, [15, N], NaN))) junk.dispose();
  gpu.stream.flush();
  fusedProjection(made.map((l) => l.lin), xt)!.dispose();
  gpu.stream.discard();
  const after = await project(gpu, made, xt);
  assertClose(after.y, reference(made, x, p.normals(TOKENS * 15)).y, TOL, "after a discard");
  releaseStacks(made.map((l) => l.lin));
  for (const t of [xt, ...made.flatMap((l) => [l.lin.weight, l.lin.bias])]) t?.dispose();
});

Deno.test("fusedProjection: a stack a tape still reads is not rewritten by the next forward", async () => {
  const gpu = await getGpu();
  const p = new Prng(23);
  const made = layersOf(gpu, p);
  const { layer, dw } = sshOn(gpu, p, made[1].lin);
  made[1].lin.adapter = layer;
  const x = p.normals(TOKENS * N), r = p.normals(TOKENS * 15);
  const xt = Tensor.from(gpu, x, [TOKENS, N], { requiresGrad: true });
  const rt = Tensor.from(gpu, r, [TOKENS, 15]);
  const y = fusedProjection(made.map((l) => l.lin), xt)!;
  const loss = sum(mul(y, rt));
  // a second forward before the first one's backward, through W alone in those rows
  made[1].lin.adapter = null;
  const plain = await project(gpu, made, xt);
  assertClose(plain.y, reference(made, x, r).y, TOL, "the second forward, without the adapter");
  loss.backward();
  assertClose(await xt.grad!.toArray(), reference(made, x, r, [null, dw]).dx, TOL, "dx through W + ΔW");
  layer.dispose();
  releaseStacks(made.map((l) => l.lin));
  for (const t of [xt, rt, y, loss, ...made.flatMap((l) => [l.lin.weight, l.lin.bias])]) t?.dispose();
});

Deno.test("releaseStacks gives the stack's memory back", async () => {
  const gpu = await getGpu();
  const p = new Prng(24);
  const made = layersOf(gpu, p);
  const xt = Tensor.from(gpu, p.normals(TOKENS * N), [TOKENS, N]);
  await gpu.sync();
  const before = gpu.pool.stats().inUse;
  await project(gpu, made, xt);
  assert(gpu.pool.stats().inUse > before, "the stack is held");
  releaseStacks(made.map((l) => l.lin));
  assertEquals(gpu.pool.stats().inUse, before, "and released");
  for (const t of [xt, ...made.flatMap((l) => [l.lin.weight, l.lin.bias])]) t?.dispose();
});

Deno.test("fusedProjection: inference and checkpointed layers keep no stack, but use a kept one", async () => {
  const gpu = await getGpu();
  const p = new Prng(27);
  const made = layersOf(gpu, p);
  const x = p.normals(TOKENS * N), r = p.normals(TOKENS * 15);
  const xt = Tensor.from(gpu, x, [TOKENS, N]);
  const want = reference(made, x, r).y;
  await gpu.sync();
  const before = gpu.pool.stats().inUse;
  for (let i = 0; i < 2; i++) {
    const { y, transfers } = await project(gpu, made, xt, true);
    assertClose(y, want, TOL, `inference ${i}`);
    assertEquals(transfers, 6, `inference ${i}: a stack of its own`);
    assertEquals(gpu.pool.stats().inUse, before, `inference ${i}: nothing held after it`);
  }
  // a checkpointed layer: its first run without a tape, its rerun in backward
  const xg = Tensor.from(gpu, x, [TOKENS, N], { requiresGrad: true });
  const rt = Tensor.from(gpu, r, [TOKENS, 15]);
  const held = gpu.pool.stats().inUse;
  const loss = tidy(() => sum(mul(checkpoint((h) => fusedProjection(made.map((l) => l.lin), h)!, xg), rt)));
  loss.backward();
  loss.dispose();
  assertEquals(
    gpu.pool.stats().inUse - held,
    xg.grad!.buffer.size,
    "checkpointing: only dx is held after backward",
  );
  assertClose(await xg.grad!.toArray(), reference(made, x, r).dx, TOL, "dx through the rerun");
  // once training kept one, inference uses it
  await project(gpu, made, xt);
  const reused = await project(gpu, made, xt, true);
  assertClose(reused.y, want, TOL, "inference on the kept stack");
  assertEquals(reused.transfers, 0, "inference on the kept stack copies nothing");
  releaseStacks(made.map((l) => l.lin));
  for (const t of [xt, xg, rt, ...made.flatMap((l) => [l.lin.weight, l.lin.bias])]) t?.dispose();
});
