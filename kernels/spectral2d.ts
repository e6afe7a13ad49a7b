/**
 * WGSL for the O(M·N) fix-up that turns the separable 2-D DHT T = C_M S C_N into the other
 * 2-D transforms of SPEC §1.2 (with −i = (M − i) mod M, −j = (N − j) mod N):
 * - `dht2d`: ½[T(i,j) + T(−i,j) + T(i,−j) − T(−i,−j)],
 * - `dft` (Re fft2): ½[T(−i,j) + T(i,−j)].
 * Bindings: t (the separable DHT), dst (not t), uniform `{ m, n, hscale }` (hscale = ½·scale);
 * one invocation per element, linear workgroup id `wid.x + wid.y·nwg.x`.
 * @module
 */
import type { Kernel } from "../lib/gpu/pipelines.ts";

/** Invocations per workgroup of {@link fixup2dKernel}. */
export const FIXUP_THREADS = 256;

/** The fix-up kernel for `kind`. */
export function fixup2dKernel(kind: "dht2d" | "dft"): Kernel {
  const value = kind === "dht2d" ? "a + b + c - d" : "b + c";
  return {
    name: `spectral2d.fixup_${kind}`,
    code: `
struct Params { m: u32, n: u32, hscale: f32 }
@group(0) @binding(0) var<storage, read> t: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> P: Params;

@compute @workgroup_size(${FIXUP_THREADS})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u,
        @builtin(num_workgroups) nwg: vec3u) {
  let idx = (wid.x + wid.y * nwg.x) * ${FIXUP_THREADS}u + lid;
  if (idx >= P.m * P.n) { return; }
  let i = idx / P.n;
  let j = idx % P.n;
  let mi = (P.m - i) % P.m;
  let nj = (P.n - j) % P.n;
  let a = t[idx];
  let b = t[mi * P.n + j];
  let c = t[i * P.n + nj];
  let d = t[mi * P.n + nj];
  dst[idx] = P.hscale * (${value});
}
`,
  };
}
