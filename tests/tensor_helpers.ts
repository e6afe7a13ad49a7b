/**
 * Shared pieces of the tensor tests: f32-exact random inputs, GPU tensors from float64
 * reference arrays, comparisons against the references, and a lowered storage-binding limit.
 * @module
 */
import { assertClose, assertEquals } from "./assert.ts";
import type { Gpu } from "../lib/gpu/mod.ts";
import { BINDING_LIMIT } from "../lib/gpu/bands.ts";
import { type Arr, arr } from "../lib/tensor/reference/array.ts";
import { Rng } from "../lib/tensor/reference/random.ts";
import { Tensor } from "../lib/tensor/mod.ts";

/** Normal random values rounded to f32 (so the float64 reference sees the GPU's inputs). */
export function randArr(rng: Rng, shape: readonly number[], std = 1): Arr {
  const n = shape.reduce((a, b) => a * b, 1);
  return arr(Float32Array.from(rng.normals(n, std)), shape);
}

/** A leaf tensor holding `a` (requiring a gradient unless `grad` is false). */
export function leaf(gpu: Gpu, a: Arr, grad = true): Tensor {
  return Tensor.from(gpu, Float32Array.from(a.data), a.shape, { requiresGrad: grad });
}

/** Assert `t` has `ref`'s shape and values within rel-L2 `tol`. */
export async function expectClose(t: Tensor | null, ref: Arr, tol: number, what: string): Promise<void> {
  if (!t) throw new Error(`${what}: no tensor (missing gradient?)`);
  assertEquals(t.shape, ref.shape, `${what} shape`);
  assertClose(await t.toArray(), ref.data, tol, what);
}

export { Rng };

/** Run `fn` with the storage-binding limit lowered to `bytes` (lib/gpu/bands.ts), restored after. */
export async function limited<T>(bytes: number, fn: () => Promise<T>): Promise<T> {
  BINDING_LIMIT.bytes = bytes;
  try {
    return await fn();
  } finally {
    BINDING_LIMIT.bytes = 0;
  }
}

/** A test kernel: y = s·x over the first n elements (uniform {n, s}; see {@link params}). */
export const scale = {
  name: "test.scale",
  code: `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
struct P { n: u32, s: f32 }
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x < p.n) { y[g.x] = x[g.x] * p.s; }
}`,
};

/** The uniform of {@link scale}. */
export function params(n: number, s: number): Uint32Array {
  const b = new Uint32Array(2);
  b[0] = n;
  new Float32Array(b.buffer)[1] = s;
  return b;
}
