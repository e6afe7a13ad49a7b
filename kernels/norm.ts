/**
 * LayerNorm and RMSNorm over the last dimension: forward (one workgroup per row, two-pass
 * mean/variance, saving mean and 1/σ per row), the input gradient (one workgroup per row),
 * and the weight/bias gradients as deterministic per-chunk column sums (no atomics).
 * `rms` variants skip the mean (RMSNorm: x·rsqrt(mean(x²)+eps)·w). `residual` variants normalise
 * residual + dropout(x) and return both inputs' gradients (a post-LN residual connection).
 * @module
 */
import type { Kernel } from "../lib/gpu/mod.ts";
import { DROPOUT_MASK } from "./elementwise.ts";
import { BUILTINS, GROUP_ID, linearId, workgroupReduce } from "./indexing.ts";

const cache = new Map<string, Kernel>();
function cached(key: string, make: () => Kernel): Kernel {
  let k = cache.get(key);
  if (!k) cache.set(key, k = make());
  return k;
}

/**
 * Forward: bindings x, [r, s,] w, [b,] y, stats (2 per row: mean, rstd); uniform
 * `{ rows, d, eps, key, threshold, dscale, run, stride }`. One workgroup of `wg` invocations per row (see
 * `rowWorkgroupSize`). With `residual`, the normalised row is s = r + dropout(x) (the mask of
 * `dropoutKernel` for flat index e; threshold 0 and dscale 1 keep x as it is), stored in s for
 * backward: a residual connection and the LayerNorm after it in one pass.
 */
export function normForwardKernel(rms: boolean, bias: boolean, wg = 128, residual = false): Kernel {
  return cached(`fwd:${rms}:${bias}:${wg}:${residual}`, () => {
    const names = ["x", ...(residual ? ["r", "s"] : []), "w", ...(bias ? ["bb"] : []), "y", "stats"];
    const writes = new Set(["s", "y", "stats"]);
    const binds = names.map((n, i) =>
      `@group(0) @binding(${i}) var<storage, ${writes.has(n) ? "read_write" : "read"}> ${n}: array<f32>;`
    );
    binds.push(
      `struct P { rows: u32, d: u32, eps: f32, key: u32, threshold: u32, dscale: f32, run: u32, stride: u32 }`,
      `@group(0) @binding(${names.length}) var<uniform> p: P;`,
    );
    // the row's values: x itself, or s = r + dropout(x) written on the first pass
    const src = residual ? "s" : "x";
    const first = residual
      ? `let e = base + j;
    let v = r[e] + select(0.0, x[e] * p.dscale, kept_(e));
    s[e] = v;`
      : `let v = x[base + j];`;
    const meanCode = rms
      ? `${residual ? `for (var j = lid; j < p.d; j = j + ${wg}u) { ${first} }\n  ` : ""}let mean = 0.0;`
      : `var sum = 0.0;
  for (var j = lid; j < p.d; j = j + ${wg}u) { ${first} sum = sum + v; }
  let mean = wg_sum(sum, lid) / f32(p.d);`;
    return {
      name: `norm.${rms ? "rms" : "layer"}_forward${residual ? "_residual" : ""}`,
      code: `${workgroupReduce(wg)}${residual ? DROPOUT_MASK : ""}
${binds.join("\n")}
@compute @workgroup_size(${wg}) fn main(${BUILTINS}) {
  let row = ${GROUP_ID};
  if (row >= p.rows) { return; }
  let base = row * p.d;
  ${meanCode}
  var v = 0.0;
  // each invocation reads back only the elements it wrote
  for (var j = lid; j < p.d; j = j + ${wg}u) { let t = ${src}[base + j] - mean; v = v + t * t; }
  let rstd = inverseSqrt(wg_sum(v, lid) / f32(p.d) + p.eps);
  for (var j = lid; j < p.d; j = j + ${wg}u) {
    y[base + j] = (${src}[base + j] - mean) * rstd * w[j]${bias ? " + bb[j]" : ""};
  }
  if (lid == 0u) { stats[2u * row] = mean; stats[2u * row + 1u] = rstd; }
}`,
    };
  });
}

/**
 * Input gradient: bindings x, w, stats, g, dx, [dxd]; uniform `{ rows, d, key, threshold,
 * dscale, run, stride }`. With x̂ = (x−μ)·r and ĝ = g·w: dx = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) (LayerNorm),
 * r·(ĝ − x̂·mean(ĝ·x̂)) (RMSNorm). With `residual`, dxd gets dx through the forward's dropout
 * mask (the gradient of the branch that was dropped out; dx is the residual's).
 */
export function normBackwardKernel(rms: boolean, wg = 128, residual = false): Kernel {
  return cached(`bwd:${rms}:${wg}:${residual}`, () => ({
    name: `norm.${rms ? "rms" : "layer"}_backward${residual ? "_residual" : ""}`,
    code: `${workgroupReduce(wg)}${residual ? DROPOUT_MASK : ""}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
${
      residual
        ? "@group(0) @binding(5) var<storage, read_write> dxd: array<f32>;\n"
        : ""
    }struct P { rows: u32, d: u32, key: u32, threshold: u32, dscale: f32, run: u32, stride: u32 }
@group(0) @binding(${residual ? 6 : 5}) var<uniform> p: P;
@compute @workgroup_size(${wg}) fn main(${BUILTINS}) {
  let row = ${GROUP_ID};
  if (row >= p.rows) { return; }
  let base = row * p.d;
  let mean = stats[2u * row];
  let rstd = stats[2u * row + 1u];
  var sg = 0.0;
  var sgx = 0.0;
  for (var j = lid; j < p.d; j = j + ${wg}u) {
    let gw = g[base + j] * w[j];
    sg = sg + gw;
    sgx = sgx + gw * (x[base + j] - mean) * rstd;
  }
  let inv = 1.0 / f32(p.d);
  let a = ${rms ? "0.0" : "wg_sum(sg, lid) * inv"};
  let c = wg_sum(sgx, lid) * inv;
  for (var j = lid; j < p.d; j = j + ${wg}u) {
    let xh = (x[base + j] - mean) * rstd;
    let d = rstd * (g[base + j] * w[j] - a - xh * c);
    dx[base + j] = d;${residual ? "\n    dxd[base + j] = select(0.0, d * p.dscale, kept_(base + j));" : ""}
  }
}`,
  }));
}

/**
 * Weight (and bias) gradient partial sums: invocation (chunk c, column j) sums rows
 * r ≡ c (mod chunks): `dw[c·d + j] = Σ g·x̂`, `db[c·d + j] = Σ g`. Bindings x, stats, g, dw
 * [, db]; uniform `{ rows, d, chunks }`.
 */
export function normParamGradKernel(bias: boolean): Kernel {
  return cached(`param:${bias}`, () => ({
    name: "norm.param_grad",
    code: `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> stats: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;
${bias ? "@group(0) @binding(4) var<storage, read_write> db: array<f32>;" : ""}
struct P { rows: u32, d: u32, chunks: u32 }
@group(0) @binding(${bias ? 5 : 4}) var<uniform> p: P;
@compute @workgroup_size(256) fn main(${BUILTINS}) {
  ${linearId("t")}
  if (t >= p.d * p.chunks) { return; }
  let j = t % p.d;
  let c = t / p.d;
  var sw = 0.0;
  var sb = 0.0;
  for (var r = c; r < p.rows; r = r + p.chunks) {
    let gv = g[r * p.d + j];
    sw = sw + gv * (x[r * p.d + j] - stats[2u * r]) * stats[2u * r + 1u];
    sb = sb + gv;
  }
  dw[c * p.d + j] = sw;
  ${bias ? "db[c * p.d + j] = sb;" : ""}
}`,
  }));
}
