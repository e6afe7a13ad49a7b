/**
 * Shared pieces of the adapter tests: standalone linear layers with random weights, their
 * float64 reference with a dense ΔW, running a layer forward and backward, and which fixture
 * model families can be loaded.
 * @module
 */
import type { Gpu } from "../lib/gpu/mod.ts";
import { Linear, type WeightLayout } from "../lib/nn/linear.ts";
import { registeredFamilies } from "../lib/models/load.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { mul, sum, Tensor, tidy } from "../lib/tensor/mod.ts";

/** Fixture folders. */
export const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;

/** A random linear layer: logical weight (M×N, float64 copy of the stored values) and bias. */
export function randomLinear(
  gpu: Gpu,
  p: Prng,
  m: number,
  n: number,
  layout: WeightLayout = "out_in",
  opts: { f16?: boolean; path?: string } = {},
): { lin: Linear; w: Float64Array; b: Float64Array } {
  const raw = Float32Array.from(p.normals(m * n), (v) => v * 0.3);
  const stored = opts.f16 ? Float32Array.from(Float16Array.from(raw)) : raw;
  const b = Float32Array.from(p.normals(m), (v) => v * 0.1);
  const shape = layout === "out_in" ? [m, n] : [n, m];
  const weight = Tensor.from(gpu, stored, shape, { dtype: opts.f16 ? "f16" : "f32" });
  const lin = new Linear(opts.path ?? "layer", weight, Tensor.from(gpu, b, [m]), layout);
  const w = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) w[i * n + j] = layout === "out_in" ? stored[i * n + j] : stored[j * m + i];
  }
  return { lin, w, b: Float64Array.from(b) };
}

/**
 * The float64 layer `y = x (W + ΔW)ᵀ + b` with L = Σ r ⊙ y: y, dx = r (W + ΔW), and
 * G = ∂L/∂ΔW = rᵀ x (M×N).
 */
export function denseReference(
  w: ArrayLike<number>,
  dw: ArrayLike<number>,
  b: ArrayLike<number>,
  x: ArrayLike<number>,
  r: ArrayLike<number>,
  tokens: number,
  m: number,
  n: number,
): { y: Float64Array; dx: Float64Array; g: Float64Array } {
  const y = new Float64Array(tokens * m), dx = new Float64Array(tokens * n), g = new Float64Array(m * n);
  for (let t = 0; t < tokens; t++) {
    for (let i = 0; i < m; i++) {
      let s = b[i];
      for (let j = 0; j < n; j++) s += x[t * n + j] * (w[i * n + j] + dw[i * n + j]);
      y[t * m + i] = s;
      for (let j = 0; j < n; j++) {
        dx[t * n + j] += r[t * m + i] * (w[i * n + j] + dw[i * n + j]);
        g[i * n + j] += r[t * m + i] * x[t * n + j];
      }
    }
  }
  return { y, dx, g };
}

/** Run `lin` on x [tokens, N] with L = Σ r ⊙ y and backpropagate: y and ∂L/∂x. */
export async function runLayer(
  gpu: Gpu,
  lin: Linear,
  x: Float32Array,
  r: Float32Array,
  tokens: number,
): Promise<{ y: Float32Array; dx: Float32Array }> {
  const xt = Tensor.from(gpu, x, [tokens, lin.inFeatures], { requiresGrad: true });
  const rt = Tensor.from(gpu, r, [tokens, lin.outFeatures]);
  const { y, loss } = tidy(() => {
    const y = lin.forward(xt);
    return { y, loss: sum(mul(y, rt)) };
  });
  loss.backward();
  const out = { y: Float32Array.from(await y.toArray()), dx: Float32Array.from(await xt.grad!.toArray()) };
  for (const t of [xt, rt, y, loss]) t.dispose();
  return out;
}

/** Fixture model families whose model family is registered (loadable), in a fixed order. */
export function loadableFamilies(): string[] {
  const registered = registeredFamilies();
  return ["gpt2", "llama", "bert", "roberta", "vit"].filter((f) => registered.includes(f));
}

/** `count` distinct random (row, col) positions of an M×N spectrum. */
export function randomPositions(p: Prng, m: number, n: number, count: number): Int32Array {
  const flats = new Set<number>();
  while (flats.size < count) flats.add(p.below(m * n));
  return Int32Array.from([...flats].flatMap((f) => [Math.floor(f / n), f % n]));
}

export { Prng };
