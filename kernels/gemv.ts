/**
 * WGSL for products with a few rows, `C (m × n) = alpha·A·Bᵀ (+ bias) (+ C)` with B stored (n, k),
 * or `alpha·A·B` with B stored (k, n): what decoding runs, one token (or a few prompts) through each
 * weight. Such a product reads all of B once and does m FMAs per weight, so it is bound by the
 * memory's bandwidth. The tiled kernel stages B in workgroup memory for reuse it cannot get; here
 * each of {@link GEMV_COLUMNS} output columns per workgroup has {@link GEMV_LANES} invocations that
 * stream its row of B with 16-byte loads (4 f32 or f16 values, 16 q8 or 32 q4 codes of one group),
 * keep one sum per row of A in named registers, and add their partial sums through workgroup memory.
 * With B stored (k, n) instead (GPT-2's Conv1D weights), each of {@link GEMV_NN_QUADS} invocations
 * of a workgroup reads four neighbouring columns of a row of B (16 bytes, or a word of codes) for
 * one of {@link GEMV_NN_SLICES} slices of k, so a workgroup streams whole row segments of B.
 * @module
 */
import type { Kernel } from "../lib/gpu/pipelines.ts";
import type { QuantKind } from "../lib/tensor/quant_format.ts";
import { MATH } from "./elementwise.ts";
import { ACTIVATION_CODE, type EpilogueActivation } from "./matmul.ts";
import { unpackFour } from "./quant.ts";

/** Output columns per workgroup. */
export const GEMV_COLUMNS = 8;
/** Invocations per output column. */
export const GEMV_LANES = 32;
/** The most rows of A a GEMV kernel takes (one register each). */
export const GEMV_MAX_ROWS = 8;

/** Column quads (4 columns each) of a workgroup of the (k, n)-stored kernel. */
export const GEMV_NN_QUADS = 16;
/** Slices of k of a workgroup of the (k, n)-stored kernel. */
export const GEMV_NN_SLICES = 16;

/** Workgroup memory of the kernel for `rows` rows: its partial sums of every invocation. */
export function gemvSharedBytes(rows: number, transB: boolean): number {
  return transB ? rows * GEMV_COLUMNS * GEMV_LANES * 4 : rows * GEMV_NN_SLICES * GEMV_NN_QUADS * 16;
}

/** How B is stored. */
export type GemvB = "f32" | "f16" | QuantKind;

/** Everything that changes the generated WGSL. */
export interface GemvVariant {
  /** Rows of A and C (1 to {@link GEMV_MAX_ROWS}). */
  readonly rows: number;
  readonly b: GemvB;
  /** B stored (n, k), the nn.Linear weight; else (k, n), n a multiple of 4. */
  readonly transB: boolean;
  /** Add a bias row (bound after C). */
  readonly bias: boolean;
  /** C += result. */
  readonly accumulate: boolean;
  /** An activation applied as C is stored; with `keepPre`, the result before it goes to a buffer bound next. */
  readonly activation?: { readonly kind: EpilogueActivation; readonly keepPre: boolean };
}

/** Elements of k one invocation reads per step: a vec4 of values, or four words of codes. */
export function gemvStep(b: GemvB): number {
  return b === "q4" ? 32 : b === "q8" ? 16 : 4;
}

const kernels = new Map<string, Kernel>();

/**
 * The kernel of a variant. Bindings: 0 A (f32), 1 B, 2 C, [bias], [pre-activation], [B's
 * scales], then the uniform `{ n, k, alpha }`. Dispatch {@link gemvGroups} workgroups (linear
 * grid) of 256 invocations. B transposed: k must be a multiple of {@link gemvStep}; else n a
 * multiple of 4.
 */
export function gemvKernel(v: GemvVariant): Kernel {
  if (!(Number.isInteger(v.rows) && v.rows >= 1 && v.rows <= GEMV_MAX_ROWS)) {
    throw new Error(`gemv: rows must be 1 to ${GEMV_MAX_ROWS}, got ${v.rows}`);
  }
  if (v.activation && v.accumulate) throw new Error("gemv: an activation cannot accumulate into C");
  const name = `gemv.r${v.rows}_${v.transB ? "nt" : "nn"}_${v.b}${v.bias ? "_bias" : ""}${
    v.accumulate ? "_acc" : ""
  }${v.activation ? `_${v.activation.kind}${v.activation.keepPre ? "_pre" : ""}` : ""}`;
  let kernel = kernels.get(name);
  if (!kernel) {
    kernel = { name, code: v.transB ? generate(v) : generateNn(v) };
    kernels.set(name, kernel);
  }
  return kernel;
}

/** The (n, k)-stored kernel (see the module doc). */
function generate(v: GemvVariant): string {
  const rows = Array.from({ length: v.rows }, (_, i) => i);
  const quant = v.b === "q8" || v.b === "q4" ? v.b : null;
  const bElem = quant ? "vec4<u32>" : v.b === "f16" ? "vec4<f16>" : "vec4<f32>";
  const { extra, store } = epilogue(v);
  // the B values of step u (vec4 unit index of the row-major B) as vec4<f32>, and the FMAs
  const fma = (bv: string, unit: string) =>
    rows.map((i) => `acc${i} = acc${i} + dot(a[${i}u * k4 + ${unit}], ${bv});`);
  let body: string[];
  if (quant) {
    // four words of codes from one group: q8 a word per unit, q4 half a word
    const perWord = quant === "q8" ? 1 : 2;
    body = [`let w = b[at / ${4 * perWord}u];`, "let s = bs[at / 8u];"];
    ["x", "y", "z", "w"].forEach((c, j) => {
      for (let h = 0; h < perWord; h++) {
        const unit = j * perWord + h;
        body.push(`let b${unit} = ${unpackFour(quant, h ? `(w.${c} >> 16u)` : `w.${c}`, "s")};`);
        body.push(...fma(`b${unit}`, `u + ${unit}u`));
      }
    });
  } else body = [`let bv = ${v.b === "f16" ? "vec4<f32>(b[at])" : "b[at]"};`, ...fma("bv", "u")];
  const act = v.activation;
  const unitsPerStep = gemvStep(v.b) / 4;
  return `${v.b === "f16" ? "enable f16;\n" : ""}${
    act ? `${MATH}\n${ACTIVATION_CODE[act.kind]}\n` : ""
  }struct P { n: u32, k: u32, alpha: f32 }
@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<${bElem}>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
${extra.map((e, i) => `@group(0) @binding(${3 + i}) ${e};\n`).join("")}@group(0) @binding(${
    3 + extra.length
  }) var<uniform> p: P;
var<workgroup> red: array<f32, ${v.rows * GEMV_COLUMNS * GEMV_LANES}>;

@compute @workgroup_size(${GEMV_COLUMNS * GEMV_LANES})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let first = (wid.x + wid.y * nwg.x) * ${GEMV_COLUMNS}u;
  let col = lid / ${GEMV_LANES}u;
  let lane = lid % ${GEMV_LANES}u;
  let n = first + col;
  let k4 = p.k / 4u;
${rows.map((i) => `  var acc${i} = 0.0;`).join("\n")}
  if (n < p.n) {
    // unit u of this column's row of B: 4 values from element 4·(n·k4 + u)
    for (var u = lane * ${unitsPerStep}u; u < k4; u = u + ${GEMV_LANES * unitsPerStep}u) {
      let at = n * k4 + u;
${body.map((l) => `      ${l}`).join("\n")}
    }
  }
${rows.map((i) => `  red[(${i}u * ${GEMV_COLUMNS}u + col) * ${GEMV_LANES}u + lane] = acc${i};`).join("\n")}
  workgroupBarrier();
  if (lid < ${v.rows * GEMV_COLUMNS}u) {
    let row = lid / ${GEMV_COLUMNS}u;
    let nn = first + lid % ${GEMV_COLUMNS}u;
    if (nn < p.n) {
      let base = (row * ${GEMV_COLUMNS}u + lid % ${GEMV_COLUMNS}u) * ${GEMV_LANES}u;
      var sum = 0.0;
      for (var l = 0u; l < ${GEMV_LANES}u; l = l + 1u) { sum = sum + red[base + l]; }
      let ci = row * p.n + nn;
      let r = sum * p.alpha${v.bias ? " + bias[nn]" : ""};
      ${store("ci", "r")}
    }
  }
}
`;
}

/** Workgroups of a variant's dispatch for n output columns. */
export function gemvGroups(transB: boolean, n: number): number {
  return Math.ceil(n / (transB ? GEMV_COLUMNS : 4 * GEMV_NN_QUADS));
}

/** The epilogue's bindings after C, and its store of `r` at `ci`. */
function epilogue(v: GemvVariant): { extra: string[]; store: (ci: string, r: string) => string } {
  const act = v.activation;
  const extra = [
    ...(v.bias ? ["var<storage, read> bias: array<f32>"] : []),
    ...(act?.keepPre ? ["var<storage, read_write> pre: array<f32>"] : []),
    ...(v.b === "q8" || v.b === "q4" ? ["var<storage, read> bs: array<f32>"] : []),
  ];
  const store = (ci: string, r: string) =>
    act
      ? `${act.keepPre ? `pre[${ci}] = ${r}; ` : ""}c[${ci}] = act_(${r});`
      : `c[${ci}] = ${r}${v.accumulate ? ` + c[${ci}]` : ""};`;
  return { extra, store };
}

/** The (k, n)-stored kernel (see the module doc). */
function generateNn(v: GemvVariant): string {
  const rows = Array.from({ length: v.rows }, (_, i) => i);
  const Q = GEMV_NN_QUADS, S = GEMV_NN_SLICES;
  const { extra, store } = epilogue(v);
  // B[kk, col..col+3] as vec4<f32>, from element e = kk·n + col (a multiple of 4)
  const load = v.b === "q8"
    ? unpackFour("q8", "b[e / 4u]", "bs[e / 32u]")
    : v.b === "q4"
    ? unpackFour("q4", "(b[e / 8u] >> ((e / 4u) % 2u * 16u))", "bs[e / 32u]")
    : v.b === "f16"
    ? "vec4<f32>(b[e / 4u])"
    : "b[e / 4u]";
  const bElem = v.b === "q8" || v.b === "q4" ? "u32" : v.b === "f16" ? "vec4<f16>" : "vec4<f32>";
  // n is a multiple of 4: a quad's four columns are all in C or all past it
  const stores = ["x", "y", "z", "w"].map((c, j) =>
    `{ let ci = row * p.n + cc + ${j}u; let r = sum.${c} * p.alpha${v.bias ? ` + bias[cc + ${j}u]` : ""}; ${
      store("ci", "r")
    } }`
  );
  return `${v.b === "f16" ? "enable f16;\n" : ""}${
    v.activation ? `${MATH}\n${ACTIVATION_CODE[v.activation.kind]}\n` : ""
  }struct P { n: u32, k: u32, alpha: f32 }
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<${bElem}>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
${extra.map((e, i) => `@group(0) @binding(${3 + i}) ${e};\n`).join("")}@group(0) @binding(${
    3 + extra.length
  }) var<uniform> p: P;
var<workgroup> red: array<vec4<f32>, ${v.rows * S * Q}>;

@compute @workgroup_size(${Q * S})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let first = (wid.x + wid.y * nwg.x) * ${4 * Q}u;
  let quad = lid % ${Q}u;
  let slice = lid / ${Q}u;
  let col = first + quad * 4u;
${rows.map((i) => `  var acc${i} = vec4<f32>();`).join("\n")}
  if (col < p.n) {
    for (var kk = slice; kk < p.k; kk = kk + ${S}u) {
      let e = kk * p.n + col;
      let bv = ${load};
${rows.map((i) => `      acc${i} = fma(vec4<f32>(a[${i}u * p.k + kk]), bv, acc${i});`).join("\n")}
    }
  }
${rows.map((i) => `  red[(${i}u * ${S}u + slice) * ${Q}u + quad] = acc${i};`).join("\n")}
  workgroupBarrier();
  if (lid < ${v.rows * Q}u) {
    let row = lid / ${Q}u;
    let q = lid % ${Q}u;
    let cc = first + q * 4u;
    if (cc < p.n) {
      var sum = vec4<f32>();
      for (var s = 0u; s < ${S}u; s = s + 1u) { sum = sum + red[(row * ${S}u + s) * ${Q}u + q]; }
      ${stores.join("\n      ")}
    }
  }
}
`;
}
