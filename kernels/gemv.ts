/**
 * WGSL for products with a few rows against a transposed B, `C (m × n) = alpha·A·Bᵀ (+ bias)
 * (+ C)` with B stored (n, k): what decoding runs, one token (or a few prompts) through each
 * weight. Such a product reads all of B once and does m FMAs per weight, so it is bound by the
 * memory's bandwidth. The tiled kernel stages B in workgroup memory for reuse it cannot get; here
 * each of {@link GEMV_COLUMNS} output columns per workgroup has {@link GEMV_LANES} invocations that
 * stream its row of B with 16-byte loads (4 f32 or f16 values, 16 q8 or 32 q4 codes of one group),
 * keep one sum per row of A in named registers, and add their partial sums through workgroup memory.
 * @module
 */
import type { Kernel } from "../lib/gpu/pipelines.ts";
import type { QuantKind } from "../lib/tensor/reference/quant.ts";
import { MATH } from "./elementwise.ts";
import { ACTIVATION_CODE, type EpilogueActivation } from "./matmul.ts";
import { unpackFour } from "./quant.ts";

/** Output columns per workgroup. */
export const GEMV_COLUMNS = 8;
/** Invocations per output column. */
export const GEMV_LANES = 32;
/** The most rows of A a GEMV kernel takes (one register each). */
export const GEMV_MAX_ROWS = 8;

/** How B is stored. */
export type GemvB = "f32" | "f16" | QuantKind;

/** Everything that changes the generated WGSL. */
export interface GemvVariant {
  /** Rows of A and C (1 to {@link GEMV_MAX_ROWS}). */
  readonly rows: number;
  readonly b: GemvB;
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
 * The kernel of a variant. Bindings: 0 A (vec4 f32), 1 B, 2 C, [bias], [pre-activation],
 * [B's scales], then the uniform `{ n, k, alpha }`. Dispatch ⌈n / GEMV_COLUMNS⌉ workgroups
 * (linear grid) of {@link GEMV_COLUMNS}·{@link GEMV_LANES} invocations; k must be a multiple of
 * {@link gemvStep}.
 */
export function gemvKernel(v: GemvVariant): Kernel {
  if (!(Number.isInteger(v.rows) && v.rows >= 1 && v.rows <= GEMV_MAX_ROWS)) {
    throw new Error(`gemv: rows must be 1 to ${GEMV_MAX_ROWS}, got ${v.rows}`);
  }
  if (v.activation && v.accumulate) throw new Error("gemv: an activation cannot accumulate into C");
  const name = `gemv.r${v.rows}_${v.b}${v.bias ? "_bias" : ""}${v.accumulate ? "_acc" : ""}${
    v.activation ? `_${v.activation.kind}${v.activation.keepPre ? "_pre" : ""}` : ""
  }`;
  let kernel = kernels.get(name);
  if (!kernel) {
    kernel = { name, code: generate(v) };
    kernels.set(name, kernel);
  }
  return kernel;
}

function generate(v: GemvVariant): string {
  const rows = Array.from({ length: v.rows }, (_, i) => i);
  const quant = v.b === "q8" || v.b === "q4" ? v.b : null;
  const bElem = quant ? "vec4<u32>" : v.b === "f16" ? "vec4<f16>" : "vec4<f32>";
  const extra = [
    ...(v.bias ? ["var<storage, read> bias: array<f32>"] : []),
    ...(v.activation?.keepPre ? ["var<storage, read_write> pre: array<f32>"] : []),
    ...(quant ? ["var<storage, read> bs: array<f32>"] : []),
  ];
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
  const store = act
    ? `${act.keepPre ? "pre[ci] = r; " : ""}c[ci] = act_(r);`
    : `c[ci] = r${v.accumulate ? " + c[ci]" : ""};`;
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
      ${store}
    }
  }
}
`;
}
