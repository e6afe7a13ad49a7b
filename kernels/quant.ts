/**
 * Quantized storage of frozen weights (format and float64 reference in
 * lib/tensor/quant_format.ts): quantizing f32 values into packed codes and group scales,
 * turning them back into f32, and the WGSL expression that the matmul's operand loads use.
 * @module
 */
import type { Kernel } from "../lib/gpu/mod.ts";
import { QUANT_BITS, QUANT_CODES, QUANT_GROUP, type QuantKind } from "../lib/tensor/quant_format.ts";
import { BUILTINS, GROUP_ID, linearId, WG } from "./indexing.ts";

/** Invocations per workgroup of {@link quantizeKernel} (one group of values each). */
export const QUANTIZE_WG = 64;

/**
 * WGSL: four consecutive values as `vec4<f32>` from `bits` holding their codes in its low
 * bits (a word for q8, 16 bits for q4), at scale `scale`.
 */
export function unpackFour(kind: QuantKind, bits: string, scale: string): string {
  if (kind === "q8") {
    const b = [24, 16, 8, 0].map((s) => `bitcast<i32>(${bits} << ${s}u)`).join(", ");
    return `(vec4<f32>(vec4<i32>(${b}) >> vec4<u32>(24u)) * ${scale})`;
  }
  return `((vec4<f32>((vec4<u32>(${bits}) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u)) - vec4<f32>(8.0)) * ${scale})`;
}

/** Words per group of values. */
export function groupWords(kind: QuantKind): number {
  return (QUANT_GROUP * QUANT_BITS[kind]) / 32;
}

const cache = new Map<string, Kernel>();

/**
 * f32 values → codes and scales. Bindings: 0 x (f32), 1 words (u32, whole groups), 2 scales
 * (f32); uniform `{ n }`. One invocation per group of {@link QUANT_GROUP} values,
 * {@link QUANTIZE_WG} a workgroup. Half-way codes round away from zero, as the reference does.
 */
export function quantizeKernel(kind: QuantKind): Kernel {
  const name = `quant.quantize_${kind}`;
  let k = cache.get(name);
  if (k) return k;
  const bits = QUANT_BITS[kind], per = 32 / bits, { low, high, top } = QUANT_CODES[kind];
  const offset = kind === "q4" ? 8 : 0;
  k = {
    name,
    code: `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> q: array<u32>;
@group(0) @binding(2) var<storage, read_write> s: array<f32>;
struct P { n: u32 }
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(${QUANTIZE_WG}) fn main(${BUILTINS}) {
  ${linearId("g", QUANTIZE_WG)}
  let first = g * ${QUANT_GROUP}u;
  if (first >= p.n) { return; }
  let end = min(first + ${QUANT_GROUP}u, p.n);
  var m = 0.0;
  for (var i = first; i < end; i = i + 1u) { if (abs(x[i]) > abs(m)) { m = x[i]; } }
  let d = m / ${top}.0;
  s[g] = d;
  for (var w = 0u; w < ${per === 4 ? 8 : 4}u; w = w + 1u) {
    var word = 0u;
    for (var j = 0u; j < ${per}u; j = j + 1u) {
      let i = first + w * ${per}u + j;
      var c = 0.0;
      if (i < end && d != 0.0) {
        let q = x[i] / d;
        c = clamp(sign(q) * floor(abs(q) + 0.5), ${low}.0, ${high}.0);
      }
      word = word | ((bitcast<u32>(i32(c) + ${offset}) & ${(1 << bits) - 1}u) << (j * ${bits}u));
    }
    q[g * ${groupWords(kind)}u + w] = word;
  }
}`,
  };
  cache.set(name, k);
  return k;
}

/**
 * Codes and scales → `n` f32 values written from element `off` of y, reading words from `qBase`
 * and scales from `sBase` (a band of groups: lib/gpu/bands.ts). Bindings: 0 words, 1 scales,
 * 2 y (f32); uniform `{ n, off, qBase, sBase }`. One invocation per word, {@link WG} a workgroup.
 */
export function dequantizeKernel(kind: QuantKind): Kernel {
  const name = `quant.dequantize_${kind}`;
  let k = cache.get(name);
  if (k) return k;
  const per = 32 / QUANT_BITS[kind];
  const halves = per / 4;
  const body = Array.from({ length: halves }, (_, h) => {
    const bits = h === 0 ? "word" : "(word >> 16u)";
    return `{
    let v = ${unpackFour(kind, bits, "d")};
    let base = w * ${per}u + ${h * 4}u;
    ${
      ["x", "y", "z", "w"].map((c, j) => `if (base + ${j}u < p.n) { y[p.off + base + ${j}u] = v.${c}; }`)
        .join(" ")
    }
  }`;
  }).join("\n  ");
  k = {
    name,
    code: `@group(0) @binding(0) var<storage, read> q: array<u32>;
@group(0) @binding(1) var<storage, read> s: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
struct P { n: u32, off: u32, qBase: u32, sBase: u32 }
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(${WG}) fn main(${BUILTINS}) {
  let w = ${GROUP_ID} * ${WG}u + lid;
  if (w * ${per}u >= p.n) { return; }
  let word = q[p.qBase + w];
  let d = s[p.sBase + w / ${QUANT_GROUP / per}u];
  ${body}
}`,
  };
  cache.set(name, k);
  return k;
}
