/**
 * Embedding lookup and its deterministic gradient. The gradient is a scatter-add, which
 * WGSL cannot do with f32 atomics; instead the ids are grouped on the CPU (they come from the
 * data loader) into a CSR list — each distinct id with the ascending positions holding it —
 * and one workgroup per distinct id sums its rows in position order.
 * @module
 */
import type { Kernel } from "../lib/gpu/mod.ts";
import { QUANT_GROUP, type QuantKind } from "../lib/tensor/quant_format.ts";
import { BUILTINS, GROUP_ID, linearId } from "./indexing.ts";

/** Invocations per distinct-id workgroup of the gradient. */
export const EMBEDDING_WG = 64;

const gathers = new Map<boolean, Kernel>();

/**
 * The uniform of the gathers: `n` = tokens·d outputs, the table's `vocab` rows of `d`, and the
 * band of rows [lo, hi) this dispatch reads, which starts `base` elements into the binding (a
 * table over one storage binding is read in bands: lib/gpu/bands.ts). Ids in no band are
 * zeroed by the band with `first` set; a quantized table's scales binding starts at group
 * `scaleShift`. An output over one binding is written in bands of tokens too: its binding holds
 * them from element `yBase`, the ids' from `idBase`.
 */
const GATHER_PARAMS = "struct P { n: u32, d: u32, vocab: u32, lo: u32, hi: u32, base: u32, first: u32, " +
  "scaleShift: u32, yBase: u32, idBase: u32 }";

/** The part of a gather that picks the band's ids; `value` reads element `e` of the binding. */
function gatherBody(value: (e: string) => string): string {
  return `
  if (i >= p.n) { return; }
  let id = ids[p.idBase + i / p.d];
  if (id >= i32(p.lo) && id < i32(p.hi)) {
    let e = p.base + (u32(id) - p.lo) * p.d + i % p.d;
    y[p.yBase + i] = ${value("e")};
  } else if (p.first == 1u && (id < 0 || u32(id) >= p.vocab)) {
    y[p.yBase + i] = 0.0;
  }`;
}

/**
 * `y[t·d + j] = w[ids[t]·d + j]` for the ids of the band (0 for an id outside [0, vocab)).
 * Bindings ids (i32), w (f32 or f16), y; uniform {@link GATHER_PARAMS}.
 */
export function embeddingKernel(f16: boolean): Kernel {
  let k = gathers.get(f16);
  if (!k) {
    k = {
      name: `embedding.gather${f16 ? "_f16" : ""}`,
      code: `${f16 ? "enable f16;" : ""}
@group(0) @binding(0) var<storage, read> ids: array<i32>;
@group(0) @binding(1) var<storage, read> w: array<${f16 ? "f16" : "f32"}>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
${GATHER_PARAMS}
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(256) fn main(${BUILTINS}) {
  ${linearId()}${gatherBody((e) => `f32(w[${e}])`)}
}`,
    };
    gathers.set(f16, k);
  }
  return k;
}

const quantGathers = new Map<QuantKind, Kernel>();

/**
 * {@link embeddingKernel} over a table stored as `kind` (lib/tensor/quant_format.ts): value
 * e = id·d + j is code e of the packed words times the scale of group e / 32 (both counted from
 * their binding's start). Bindings ids (i32), codes (u32), scales (f32), y; uniform
 * {@link GATHER_PARAMS}.
 */
export function quantEmbeddingKernel(kind: QuantKind): Kernel {
  let k = quantGathers.get(kind);
  if (!k) {
    // q8: a two's-complement byte; q4: a nibble holding the code + 8
    const code = kind === "q8"
      ? `f32(bitcast<i32>(q[e / 4u] << (24u - 8u * (e % 4u))) >> 24u)`
      : `f32((q[e / 8u] >> (4u * (e % 8u))) & 15u) - 8.0`;
    k = {
      name: `embedding.gather_${kind}`,
      code: `
@group(0) @binding(0) var<storage, read> ids: array<i32>;
@group(0) @binding(1) var<storage, read> q: array<u32>;
@group(0) @binding(2) var<storage, read> s: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
${GATHER_PARAMS}
@group(0) @binding(4) var<uniform> p: P;
fn code(e: u32) -> f32 { return ${code}; }
@compute @workgroup_size(256) fn main(${BUILTINS}) {
  ${linearId()}${
        gatherBody((e) => `code(${e}) * s[(u32(id) * p.d + i % p.d) / ${QUANT_GROUP}u - p.scaleShift]`)
      }
}`,
    };
    quantGathers.set(kind, k);
  }
  return k;
}

/**
 * `dw[rows[u]·d + j] = Σ_{q ∈ [offsets[u], offsets[u+1])} g[positions[q]·d + j]`, one
 * workgroup per distinct id u of [u0, u0 + count). `csr` (u32) holds rows (U, ascending),
 * offsets (U+1), positions (N) back to back. A table over one storage binding is written in
 * bands: the band's rows start at row `lo`, `base` elements into dw's binding. A g over one
 * binding is read in bands too: this dispatch sums its positions in [g0, g1), held from element
 * `gBase`, and with `add` set adds to dw; the bands go in ascending order, so each sum takes its
 * terms in the order it does in one band. Bindings csr, g, dw; uniform
 * `{ count, d, offsetsAt, positionsAt, u0, lo, base, g0, g1, gBase, add }`.
 */
export const embeddingBackwardKernel: Kernel = {
  name: "embedding.backward",
  code: `
@group(0) @binding(0) var<storage, read> csr: array<u32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> dw: array<f32>;
struct P {
  count: u32, d: u32, offsetsAt: u32, positionsAt: u32, u0: u32, lo: u32, base: u32,
  g0: u32, g1: u32, gBase: u32, add: u32,
}
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(${EMBEDDING_WG}) fn main(${BUILTINS}) {
  if (${GROUP_ID} >= p.count) { return; }
  let u = p.u0 + ${GROUP_ID};
  let at = p.base + (csr[u] - p.lo) * p.d;
  let lo = csr[p.offsetsAt + u];
  let hi = csr[p.offsetsAt + u + 1u];
  for (var j = lid; j < p.d; j = j + ${EMBEDDING_WG}u) {
    var acc = 0.0;
    if (p.add == 1u) { acc = dw[at + j]; }
    for (var q = lo; q < hi; q = q + 1u) {
      let t = csr[p.positionsAt + q];
      if (t >= p.g0 && t < p.g1) { acc = acc + g[p.gBase + (t - p.g0) * p.d + j]; }
    }
    dw[at + j] = acc;
  }
}`,
};
