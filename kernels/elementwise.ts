/**
 * Elementwise kernels: unary maps with two scalar parameters, broadcasting binary maps,
 * in-place accumulation, fill, and seeded dropout. Expressions are WGSL over `va` (and `vb`),
 * with the math helpers of {@link MATH} in scope. Most have an `x4` form that moves four
 * elements per invocation as vec4 (for element counts divisible by 4, contiguous operands):
 * a quarter of the invocations and 16-byte accesses.
 * @module
 */
import type { Kernel } from "../lib/gpu/mod.ts";
import { BUILTINS, linearId, stridedFields, stridedOffsets } from "./indexing.ts";

/**
 * Precise f32 helpers. erf: Taylor series below |x| = 0.5 (relative error < 1e-7), Abramowitz
 * & Stegun 7.1.26 above (absolute error ≤ 1.5e-7). tanh: odd Taylor polynomial below 0.125,
 * exp form above (the builtin tanh overflows to NaN for large |x| on some backends). log1p:
 * an atanh series on [-0.5, 1] (the comment there says why).
 */
export const MATH = `
fn erf_(x: f32) -> f32 {
  let a = abs(x);
  if (a < 0.5) {
    let z = x * x;
    return x * 1.1283791670955126 * (1.0 + z * (-0.3333333333333333 + z * (0.1 + z * (-0.023809523809523808
      + z * (0.004629629629629629 + z * -0.0007575757575757576)))));
  }
  let t = 1.0 / (1.0 + 0.3275911 * a);
  let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  let y = 1.0 - poly * exp(-a * a);
  return select(-y, y, x >= 0.0);
}
fn tanh_(x: f32) -> f32 {
  let a = abs(x);
  if (a < 0.125) {
    let z = x * x;
    return x * (1.0 + z * (-0.3333333333333333 + z * (0.13333333333333333 + z * -0.05396825396825397)));
  }
  let e = exp(-2.0 * a);
  let t = (1.0 - e) / (1.0 + e);
  return select(-t, t, x >= 0.0);
}
fn sigmoid_(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
// log(1 + t) to a few f32 ulps. Near 0, log(1 + t) loses t's digits to the rounding of 1 + t, a
// correction by (1 + t) - 1 is folded back to t by shader compilers (Mesa's does), and WGSL's log
// is only 2^-21 accurate (absolute) on [0.5, 2]: there 2·atanh(s), s = t / (2 + t) (|s| ≤ 1/3),
// whose series to s^13 is within 2e-8 of it (relative), with no cancellation
fn log1p_(t: f32) -> f32 {
  if (t < -0.5 || t > 1.0) { return log(1.0 + t); }
  let s = t / (2.0 + t);
  let z = s * s;
  let odd = 1.0 / 3.0 + z * (0.2 + z * (1.0 / 7.0 + z * (1.0 / 9.0 + z * (1.0 / 11.0 + z / 13.0))));
  return 2.0 * s * (1.0 + z * odd);
}
fn gelu_(x: f32) -> f32 { return 0.5 * x * (1.0 + erf_(x * 0.7071067811865476)); }
fn gelu_grad_(x: f32) -> f32 {
  return 0.5 * (1.0 + erf_(x * 0.7071067811865476)) + x * 0.3989422804014327 * exp(-0.5 * x * x);
}
fn gelu_tanh_(x: f32) -> f32 {
  return 0.5 * x * (1.0 + tanh_(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}
fn gelu_tanh_grad_(x: f32) -> f32 {
  let th = tanh_(0.7978845608028654 * (x + 0.044715 * x * x * x));
  return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * 0.7978845608028654 * (1.0 + 0.134145 * x * x);
}
fn silu_grad_(x: f32) -> f32 { let s = sigmoid_(x); return s * (1.0 + x * (1.0 - s)); }
`;

/** Unary maps `y = f(va)`; `p.s`, `p.t` are the op's scalar parameters. */
export const UNARY = {
  affine: "va * p.s + p.t",
  exp: "exp(va)",
  log: "log(va)",
  log1p: "log1p_(va)",
  relu: "max(va, 0.0)",
  sigmoid: "sigmoid_(va)",
  tanh: "tanh_(va)",
  silu: "va * sigmoid_(va)",
  gelu: "gelu_(va)",
  gelu_tanh: "gelu_tanh_(va)",
} as const;
/** A unary map's name. */
export type UnaryOp = keyof typeof UNARY;

/** Binary maps `y = f(va, vb)` (broadcasting), including the activations' gradient rules. */
export const BINARY = {
  add: "va + vb",
  sub: "va - vb",
  mul: "va * vb",
  div: "va / vb",
  // (input or output, upstream gradient) -> input gradient
  relu_grad: "select(0.0, vb, va > 0.0)",
  sigmoid_grad: "vb * va * (1.0 - va)",
  tanh_grad: "vb * (1.0 - va * va)",
  silu_grad: "vb * silu_grad_(va)",
  log1p_grad: "vb / (1.0 + va)",
  gelu_grad: "vb * gelu_grad_(va)",
  gelu_tanh_grad: "vb * gelu_tanh_grad_(va)",
} as const;
/** A binary map's name. */
export type BinaryOp = keyof typeof BINARY;

const XYZW = ["x", "y", "z", "w"];

/** WGSL computing `r` (a vec4) component by component from the scalar `expr` over `lets`. */
function perComponent(lets: readonly [string, string][], expr: string): string {
  return XYZW.map((c) =>
    `{ ${lets.map(([name, v]) => `let ${name} = ${v}.${c}; `).join("")}r.${c} = ${expr}; }`
  )
    .join("\n  ");
}

const unaryCache = new Map<string, Kernel>();
/**
 * `y[i] = f(x[i])` over `p.n` elements (with `x4`: `p.n` vec4s); uniform `{ n, s, t }`.
 */
export function unaryKernel(op: UnaryOp, x4 = false): Kernel {
  const key = `${op}:${x4}`;
  let k = unaryCache.get(key);
  if (!k) {
    const t = x4 ? "vec4<f32>" : "f32";
    const body = x4
      ? `let a4 = x[i];\n  var r: vec4<f32>;\n  ${perComponent([["va", "a4"]], UNARY[op])}\n  y[i] = r;`
      : `let va = x[i];\n  y[i] = ${UNARY[op]};`;
    k = {
      name: `elementwise.${op}${x4 ? "_x4" : ""}`,
      code: `${MATH}
@group(0) @binding(0) var<storage, read> x: array<${t}>;
@group(0) @binding(1) var<storage, read_write> y: array<${t}>;
struct P { n: u32, s: f32, t: f32 }
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(256) fn main(${BUILTINS}) {
  ${linearId()}
  if (i >= p.n) { return; }
  ${body}
}`,
    };
    unaryCache.set(key, k);
  }
  return k;
}

const binaryCache = new Map<string, Kernel>();
/**
 * `y[i] = f(a[oa], b[ob])` over a collapsed broadcast iteration of rank `rank`; uniform
 * `{ n, d0.., a0.., b0.. }` where `a*`, `b*` are the operands' strides (0 on broadcast dims).
 */
export function binaryKernel(op: BinaryOp, rank: number): Kernel {
  const key = `${op}:${rank}`;
  let k = binaryCache.get(key);
  if (!k) {
    k = {
      name: `elementwise.${op}`,
      code: `${MATH}
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
struct P { n: u32, ${stridedFields(rank, ["a", "b"])} }
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(256) fn main(${BUILTINS}) {
  ${linearId()}
  if (i >= p.n) { return; }
  ${stridedOffsets("i", rank, ["a", "b"])}
  let va = a[o_a];
  let vb = b[o_b];
  y[i] = ${BINARY[op]};
}`,
    };
    binaryCache.set(key, k);
  }
  return k;
}

/**
 * `y[i] = f(a[i], b[i])` over `p.n` vec4s of two contiguous operands of the same shape (the
 * {@link binaryKernel} of a rank-1 iteration without broadcasting); uniform `{ n }`.
 */
export function binaryKernelX4(op: BinaryOp): Kernel {
  const key = `${op}:x4`;
  let k = binaryCache.get(key);
  if (!k) {
    k = {
      name: `elementwise.${op}_x4`,
      code: `${MATH}
@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;
struct P { n: u32 }
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(256) fn main(${BUILTINS}) {
  ${linearId()}
  if (i >= p.n) { return; }
  let a4 = a[i];
  let b4 = b[i];
  var r: vec4<f32>;
  ${perComponent([["va", "a4"], ["vb", "b4"]], BINARY[op])}
  y[i] = r;
}`,
    };
    binaryCache.set(key, k);
  }
  return k;
}

/** In place `y[i] += p.s * x[i]` over `p.n` elements (`x4`: vec4s); uniform `{ n, s }`. */
export function axpyKernel(x4: boolean): Kernel {
  return x4 ? AXPY_X4 : AXPY;
}

function axpyCode(t: string): string {
  return `
@group(0) @binding(0) var<storage, read> x: array<${t}>;
@group(0) @binding(1) var<storage, read_write> y: array<${t}>;
struct P { n: u32, s: f32 }
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(256) fn main(${BUILTINS}) {
  ${linearId()}
  if (i < p.n) { y[i] = y[i] + p.s * x[i]; }
}`;
}
const AXPY: Kernel = { name: "elementwise.axpy", code: axpyCode("f32") };
const AXPY_X4: Kernel = { name: "elementwise.axpy_x4", code: axpyCode("vec4<f32>") };

/** `y[i] = p.s` over `p.n` elements; uniform `{ n, s }`. */
export const fillKernel: Kernel = {
  name: "elementwise.fill",
  code: `
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
struct P { n: u32, s: f32 }
@group(0) @binding(1) var<uniform> p: P;
@compute @workgroup_size(256) fn main(${BUILTINS}) {
  ${linearId()}
  if (i < p.n) { y[i] = p.s; }
}`,
};

/** The PCG hash (O'Neill) in WGSL; {@link pcgHash} is its CPU twin. */
export const PCG = `
fn pcg_(v: u32) -> u32 {
  let s = v * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}`;

/**
 * The dropout mask in WGSL: `kept_(e)` ⇔ pcg(pcg(f) + p.key) ≥ p.threshold, with f the
 * element's index in the whole tensor: e itself, or ⌊e / p.run⌋·p.stride + e mod p.run when
 * the kernel holds only some rows of it (`DropoutKey.rows`; run = stride = 1 otherwise). The
 * kernel's uniform `p` has those fields.
 */
export const DROPOUT_MASK = `${PCG}
fn kept_(e: u32) -> bool {
  var f = e;
  if (p.run != p.stride) { f = (e / p.run) * p.stride + e % p.run; }
  return pcg_(pcg_(f) + p.key) >= p.threshold;
}`;

/** CPU twin of the WGSL `pcg_` hash (u32 in, u32 out). */
export function pcgHash(v: number): number {
  const s = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const w = Math.imul(((s >>> ((s >>> 28) + 4)) ^ s) >>> 0, 277803737) >>> 0;
  return ((w >>> 22) ^ w) >>> 0;
}

/**
 * Seeded dropout `y[e] = keep(e) ? x[e] * p.scale : 0` with `keep(e)` ⇔
 * `pcg(pcg(e) + p.key) >= p.threshold` for element index e (with `x4`, invocation i takes
 * elements 4i..4i+3: the same mask; see {@link DROPOUT_MASK}); the same kernel applies the mask
 * to gradients. Uniform `{ n, key, threshold, scale, run, stride }`, n in elements (`x4`: vec4s).
 */
export function dropoutKernel(x4: boolean): Kernel {
  return x4 ? DROPOUT_X4 : DROPOUT;
}

/**
 * A residual connection around dropout, `y[e] = r[e] + (keep(e) ? x[e] * p.scale : 0)` with the
 * mask of {@link dropoutKernel}: one pass instead of dropout, then add. Bindings x, r, y;
 * the same uniform.
 */
export function dropoutAddKernel(x4: boolean): Kernel {
  return x4 ? DROPOUT_ADD_X4 : DROPOUT_ADD;
}

function dropoutCode(x4: boolean, residual: boolean): string {
  const t = x4 ? "vec4<f32>" : "f32";
  const kept = (v: string, e: string) => `select(0.0, ${v} * p.scale, kept_(${e}))`;
  const dropped = x4
    ? `let x4 = x[i];\n  var d: vec4<f32>;\n  ` +
      XYZW.map((c, j) => `d.${c} = ${kept(`x4.${c}`, `4u * i + ${j}u`)};`).join("\n  ")
    : `let d = ${kept("x[i]", "i")};`;
  const binds = residual
    ? [`var<storage, read> x: array<${t}>`, `var<storage, read> r: array<${t}>`]
    : [`var<storage, read> x: array<${t}>`];
  binds.push(`var<storage, read_write> y: array<${t}>`);
  return `${DROPOUT_MASK}
${binds.map((v, b) => `@group(0) @binding(${b}) ${v};`).join("\n")}
struct P { n: u32, key: u32, threshold: u32, scale: f32, run: u32, stride: u32 }
@group(0) @binding(${binds.length}) var<uniform> p: P;
@compute @workgroup_size(256) fn main(${BUILTINS}) {
  ${linearId()}
  if (i >= p.n) { return; }
  ${dropped}
  y[i] = ${residual ? "r[i] + d" : "d"};
}`;
}
/**
 * A dropout's factors `y[e]` = scale where kept, 0 where dropped, for a tensor holding one
 * position of each sequence (`DropoutRows` with positions): element e of row r = ⌊e / unit⌋
 * takes the mask of element (r·length + at[⌊r / group⌋])·unit + e mod unit of the whole
 * tensor. Bindings at (i32, one position per sequence), y; uniform `{ n, key, threshold,
 * scale, unit, length, group }`.
 */
export const DROPOUT_FACTORS: Kernel = {
  name: "elementwise.dropout_factors",
  code: `${PCG}
@group(0) @binding(0) var<storage, read> at: array<i32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
struct P { n: u32, key: u32, threshold: u32, scale: f32, unit: u32, length: u32, group: u32 }
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(256) fn main(${BUILTINS}) {
  ${linearId()}
  if (i >= p.n) { return; }
  let r = i / p.unit;
  let f = (r * p.length + u32(at[r / p.group])) * p.unit + i % p.unit;
  y[i] = select(0.0, p.scale, pcg_(pcg_(f) + p.key) >= p.threshold);
}`,
};

const DROPOUT: Kernel = { name: "elementwise.dropout", code: dropoutCode(false, false) };
const DROPOUT_X4: Kernel = { name: "elementwise.dropout_x4", code: dropoutCode(true, false) };
const DROPOUT_ADD: Kernel = { name: "elementwise.dropout_add", code: dropoutCode(false, true) };
const DROPOUT_ADD_X4: Kernel = { name: "elementwise.dropout_add_x4", code: dropoutCode(true, true) };
