/**
 * WGSL for the sparse spectral adapter (SPEC §1.6): products of a token batch with the
 * effective sparse spectrum S̃ (by rows or by columns), the coefficient gradient (a reduction
 * over tokens in two passes),
 * (S̃·C_N)ᵀ from S̃'s rows (the first half of building ΔW), scatter / gather of coefficients at
 * flat positions, and y += x.
 *
 * The index structures live in one u32 "plan" buffer built on the CPU (lib/spectral/sparse.ts):
 * CSR sections `ptr[rows + 1]` (entry ranges) then the entries, weights as `bitcast<u32>(w)`:
 * `(col, coefficient, w)` by rows and `(row, coefficient, w)` by columns; the entry list
 * `(u, v)` in row-major order; `(entry, w)` by coefficients; the flat positions. Sections are
 * located by offsets passed as parameters.
 * @module
 */
import type { Kernel } from "../lib/gpu/pipelines.ts";
import { BUILTINS, GROUP_ID, workgroupReduce } from "./indexing.ts";

/** Threads per workgroup of the element-wise sparse kernels. */
export const SPARSE_THREADS = 256;

const linearId = `let id = gid.x + gid.y * nwg.x * ${SPARSE_THREADS}u;`;
const ids = `@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u`;

/** Tokens one invocation of {@link productKernel} computes: its entries are read once for all. */
export const PRODUCT_TOKENS = 4;

const tokenIds = Array.from({ length: PRODUCT_TOKENS }, (_, k) => k);

/**
 * `out[t·rows + r] = Σ_{e ∈ row r} w_e · c[k_e] · inp[t·in_width + index_e]` for t < tokens,
 * r < rows: ẑ = S̃ x̂ by rows (forward) or S̃ᵀ δ̂ by columns (backward). One invocation per
 * output row r and block of {@link PRODUCT_TOKENS} tokens, so each entry's (index, coefficient,
 * weight) is read once per block, not once per token. Accumulators are
 * named, not an array (SPEC §3). Bindings: plan (u32), c (f32 coefficients), inp, out, params
 * {tokens, rows, in_width, ptr, ent}.
 */
export const productKernel: Kernel = {
  name: "sparse.product",
  code: `
@group(0) @binding(0) var<storage, read> plan: array<u32>;
@group(0) @binding(1) var<storage, read> c: array<f32>;
@group(0) @binding(2) var<storage, read> inp: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
struct P { tokens: u32, rows: u32, in_width: u32, ptr: u32, ent: u32 }
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(${SPARSE_THREADS})
fn main(${ids}) {
  ${linearId}
  let blocks = (p.tokens + ${PRODUCT_TOKENS - 1}u) / ${PRODUCT_TOKENS}u;
  if (id >= blocks * p.rows) { return; }
  let t0 = (id / p.rows) * ${PRODUCT_TOKENS}u;
  let r = id % p.rows;
  // tokens past the end read the last token's row and are not stored
${tokenIds.map((k) => `  let row${k} = min(t0 + ${k}u, p.tokens - 1u) * p.in_width;`).join("\n")}
${tokenIds.map((k) => `  var acc${k} = 0.0;`).join("\n")}
  let end = plan[p.ptr + r + 1u];
  for (var e = plan[p.ptr + r]; e < end; e++) {
    let b = p.ent + 3u * e;
    let idx = plan[b];
    let wc = bitcast<f32>(plan[b + 2u]) * c[plan[b + 1u]];
${tokenIds.map((k) => `    acc${k} += wc * inp[row${k} + idx];`).join("\n")}
  }
${
    tokenIds.map((k) => `  if (t0 + ${k}u < p.tokens) { out[(t0 + ${k}u) * p.rows + r] = acc${k}; }`).join(
      "\n",
    )
  }
}`,
};

/**
 * `out[j·rows + r] = Σ_{e ∈ row r} w_e · c[k_e] · cas[(j·col_e) mod n]` for j < n, r < rows,
 * with cas[t] = cos(2πt/n) + sin(2πt/n): (S̃·C_n)ᵀ straight from S̃'s rows, the first half of
 * ΔW's separable transform without a dense S̃. One invocation per output element (j·col_e < 2³²
 * needs n < 65536). Bindings: plan, c, cas (f32, n), out, params {rows, n, ptr, ent}.
 */
export const casRowsKernel: Kernel = {
  name: "sparse.cas_rows",
  code: `
@group(0) @binding(0) var<storage, read> plan: array<u32>;
@group(0) @binding(1) var<storage, read> c: array<f32>;
@group(0) @binding(2) var<storage, read> cas: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
struct P { rows: u32, n: u32, ptr: u32, ent: u32 }
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(${SPARSE_THREADS})
fn main(${ids}) {
  ${linearId}
  if (id >= p.rows * p.n) { return; }
  let j = id / p.rows;
  let r = id % p.rows;
  var acc = 0.0;
  let end = plan[p.ptr + r + 1u];
  for (var e = plan[p.ptr + r]; e < end; e++) {
    let b = p.ent + 3u * e;
    acc += bitcast<f32>(plan[b + 2u]) * c[plan[b + 1u]] * cas[(j * plan[b]) % p.n];
  }
  out[id] = acc;
}`,
};

/**
 * Gradient, pass 1: `partial[chunk·E + e] = Σ_{t ∈ chunk} a[t·m + u_e] · b[t·n + v_e]` for each
 * entry e of S̃ (list of (u, v) pairs at `list`) and each chunk of `chunk_len` tokens. Threads
 * of a workgroup take neighbouring entries of one chunk, so a token's rows of δ̂ and x̂ are
 * read from cache by the whole workgroup. Bindings: plan, a (δ̂, tokens×m), b (x̂, tokens×n),
 * partial, params {tokens, m, n, list, entries, chunk_len, chunks}.
 */
export const gradPartialKernel: Kernel = {
  name: "sparse.grad_partial",
  code: `
@group(0) @binding(0) var<storage, read> plan: array<u32>;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> partial: array<f32>;
struct P { tokens: u32, m: u32, n: u32, list: u32, entries: u32, chunk_len: u32, chunks: u32 }
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(${SPARSE_THREADS})
fn main(${ids}) {
  ${linearId}
  if (id >= p.entries * p.chunks) { return; }
  let e = id % p.entries;
  let t0 = (id / p.entries) * p.chunk_len;
  let t1 = min(t0 + p.chunk_len, p.tokens);
  let u = plan[p.list + 2u * e];
  let v = plan[p.list + 2u * e + 1u];
  var acc = 0.0;
  for (var t = t0; t < t1; t++) { acc += a[t * p.m + u] * b[t * p.n + v]; }
  partial[id] = acc;
}`,
};

/** Invocations per coefficient in the gradient's second pass. */
const GRAD_REDUCE_THREADS = 32;

/**
 * Gradient, pass 2, one workgroup per coefficient k: `dc[k] = (accumulate ? dc[k] : 0) + scale ·
 * Σ_{(e, w) of k} w · Σ_chunk partial[chunk·E + e]`, from the coefficient CSR at `ptr`
 * (entries (e, bitcast<u32>(w))); the invocations split the chunks, then sum in workgroup
 * memory. (One invocation per coefficient summed ≈ 180 values in a row: 42 µs a layer on an
 * H100, as long as pass 1.) Dispatch `grid(gpu, count)`. Bindings: plan, partial, dc,
 * params {count, ptr, ent, entries, chunks, scale (f32), accumulate}.
 */
export const gradReduceKernel: Kernel = {
  name: "sparse.grad_reduce",
  code: `${workgroupReduce(GRAD_REDUCE_THREADS)}
@group(0) @binding(0) var<storage, read> plan: array<u32>;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> dc: array<f32>;
struct P { count: u32, ptr: u32, ent: u32, entries: u32, chunks: u32, scale: f32, accumulate: u32 }
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(${GRAD_REDUCE_THREADS})
fn main(${BUILTINS}) {
  let k = ${GROUP_ID};
  if (k >= p.count) { return; }
  let end = plan[p.ptr + k + 1u];
  var acc = 0.0;
  for (var i = plan[p.ptr + k]; i < end; i++) {
    let e = plan[p.ent + 2u * i];
    var s = 0.0;
    for (var c = lid; c < p.chunks; c += ${GRAD_REDUCE_THREADS}u) { s += partial[c * p.entries + e]; }
    acc += bitcast<f32>(plan[p.ent + 2u * i + 1u]) * s;
  }
  let total = wg_sum(acc, lid);
  if (lid == 0u) {
    var g = p.scale * total;
    if (p.accumulate == 1u) { g += dc[k]; }
    dc[k] = g;
  }
}`,
};

/**
 * `dst[plan[flat + k]] = c[k]` for k < count (distinct positions; the rest of dst is left as is).
 * Bindings: plan, c, dst, params {count, flat}.
 */
export const scatterKernel: Kernel = {
  name: "sparse.scatter",
  code: `
@group(0) @binding(0) var<storage, read> plan: array<u32>;
@group(0) @binding(1) var<storage, read> c: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
struct P { count: u32, flat: u32 }
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(${SPARSE_THREADS})
fn main(${ids}) {
  ${linearId}
  if (id < p.count) { dst[plan[p.flat + id]] = c[id]; }
}`,
};

/**
 * `dst[k] = (accumulate ? dst[k] : 0) + scale · src[plan[flat + k]]` for k < count.
 * Bindings: plan, src, dst, params {count, flat, scale (f32), accumulate}.
 */
export const gatherKernel: Kernel = {
  name: "sparse.gather",
  code: `
@group(0) @binding(0) var<storage, read> plan: array<u32>;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
struct P { count: u32, flat: u32, scale: f32, accumulate: u32 }
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(${SPARSE_THREADS})
fn main(${ids}) {
  ${linearId}
  if (id >= p.count) { return; }
  var g = p.scale * src[plan[p.flat + id]];
  if (p.accumulate == 1u) { g += dst[id]; }
  dst[id] = g;
}`,
};

/** `y[at + i] += x[i]` for i < len. Bindings: x, y, params {len, at}. */
export const addKernel: Kernel = {
  name: "sparse.add",
  code: `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
struct P { len: u32, at: u32 }
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(${SPARSE_THREADS})
fn main(${ids}) {
  ${linearId}
  if (id < p.len) { y[p.at + id] += x[id]; }
}`,
};
