/**
 * One adapted linear layer's forward + backward (x needs its gradient, W is frozen), as in
 * ../shared/device/layer_bench.py: the frozen layer alone, + SSH through the spectral op
 * (SPEC §1.6, no ΔW), + SSH through a dense ΔW (materialise ΔW = α/MN·T(S) every step,
 * y = x(W+ΔW)ᵀ, G = δᵀx, ∂c = α/MN·T(G) at the positions — what the PyTorch version does),
 * and + SSH folded (W + ΔW in the layer's products, ∂c from FHT(x) and FHT(δ): the route
 * lib/peft/spectral_layer.ts takes for layers small against the tokens), the latter also with
 * the coefficient gradient in one fused kernel where it applies (square layers).
 * @module
 */
import { type Gpu, upload } from "../lib/gpu/mod.ts";
import { encodeMatmul } from "../lib/linalg/matmul.ts";
import { SpectralAdapterOp } from "../lib/spectral/adapter_op.ts";
import { COEF_GRAD_HEURISTICS } from "../lib/spectral/coef_grad.ts";
import { Prng } from "../lib/spectral/prng.ts";
import type { Transform } from "../lib/spectral/transforms.ts";
import { timeEncodeEach, uniformValues } from "./stats.ts";

/** A layer shape: W is m×n (out, in), `tokens` rows of x, `coefs` spectral coefficients. */
export interface LayerShape {
  m: number;
  n: number;
  tokens: number;
  coefs: number;
}

/** SPEC §1.6's shapes (the PyTorch anchors were taken at these). */
export const LAYER_SHAPES_GPU: LayerShape[] = [
  { m: 768, n: 768, tokens: 4096, coefs: 750 },
  { m: 4096, n: 4096, tokens: 4096, coefs: 1000 },
  { m: 4096, n: 4096, tokens: 512, coefs: 1000 },
  { m: 14336, n: 4096, tokens: 4096, coefs: 1000 },
];

/** The same shapes scaled down for software adapters. */
export const LAYER_SHAPES_SMALL: LayerShape[] = [
  { m: 96, n: 96, tokens: 512, coefs: 750 },
  { m: 512, n: 512, tokens: 512, coefs: 1000 },
  { m: 512, n: 512, tokens: 64, coefs: 1000 },
  { m: 1792, n: 512, tokens: 512, coefs: 1000 },
];

/** Median milliseconds of each variant at one shape. */
export interface LayerTiming {
  shape: LayerShape;
  frozen: number;
  spectral: number;
  dense: number;
  folded: number;
  /** Folded with the coefficient gradient in one fused kernel (square layers; else as `folded`). */
  foldedFused: number;
}

function randomPositions(rng: Prng, m: number, n: number, count: number): Int32Array {
  const seen = new Set<number>();
  const out = new Int32Array(2 * count);
  for (let k = 0; k < count;) {
    const flat = rng.below(m * n);
    if (seen.has(flat)) continue;
    seen.add(flat);
    out[2 * k] = Math.floor(flat / n);
    out[2 * k + 1] = flat % n;
    k++;
  }
  return out;
}

/** Time the four variants at `shape` with `transform` (dht by default). */
export async function benchLayer(
  gpu: Gpu,
  shape: LayerShape,
  transform: Transform = "dht",
  reps = 10,
): Promise<LayerTiming> {
  const { m, n, tokens: t, coefs } = shape;
  const rng = new Prng(1);
  const w = upload(gpu, uniformValues(m * n, 0.02, 1));
  const x = upload(gpu, uniformValues(t * n, 1, 2));
  const dy = upload(gpu, uniformValues(t * m, 1, 3));
  const coef = upload(gpu, uniformValues(Math.min(coefs, m * n), 1, 4));
  const y = gpu.pool.acquire(t * m * 4), dx = gpu.pool.acquire(t * n * 4);
  const dcoef = gpu.pool.acquire(coefs * 4);
  const wSum = gpu.pool.acquire(m * n * 4), g = gpu.pool.acquire(m * n * 4);
  const op = new SpectralAdapterOp(gpu, {
    m,
    nIn: n,
    positions: randomPositions(rng, m, n, Math.min(coefs, m * n)),
    transform,
    alpha: 300,
  });

  const frozen = () => {
    encodeMatmul(gpu, x, w, y, t, m, n, { transB: true });
    encodeMatmul(gpu, dy, w, dx, t, n, m);
  };
  const spectral = () => {
    frozen();
    const saved = op.forward(x, coef, y, t)!;
    op.backward(saved, dy, coef, dx, dcoef);
  };
  const dense = () => {
    op.materialize(coef, wSum, { base: w });
    encodeMatmul(gpu, x, wSum, y, t, m, n, { transB: true });
    encodeMatmul(gpu, dy, wSum, dx, t, n, m);
    encodeMatmul(gpu, dy, x, g, m, n, t, { transA: true });
    op.denseGradient(g, dcoef, { accumulate: false });
  };
  const folded = () => {
    op.materialize(coef, wSum, { base: w });
    encodeMatmul(gpu, x, wSum, y, t, m, n, { transB: true });
    encodeMatmul(gpu, dy, wSum, dx, t, n, m);
    op.coefGradient(x, dy, t, dcoef, { accumulate: false });
  };
  const withFusedGrad = (fused: boolean) => () => {
    const before = COEF_GRAD_HEURISTICS.fused;
    COEF_GRAD_HEURISTICS.fused = fused;
    try {
      folded();
    } finally {
      COEF_GRAD_HEURISTICS.fused = before;
    }
  };
  const [frozenMs, spectralMs, denseMs, foldedMs, fusedMs] = await timeEncodeEach(
    gpu,
    [frozen, spectral, dense, withFusedGrad(false), withFusedGrad(true)],
    reps,
  );
  const timing = {
    shape,
    frozen: frozenMs,
    spectral: spectralMs,
    dense: denseMs,
    folded: foldedMs,
    foldedFused: fusedMs,
  };
  op.dispose();
  for (const b of [w, x, dy, coef, y, dx, dcoef, wSum, g]) gpu.pool.release(b);
  return timing;
}
