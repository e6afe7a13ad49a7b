/**
 * WGSL for choosing spectral positions (SPEC §1.4): the energy map, a 4-pass radix select
 * on f32 bit patterns (non-negative floats order as u32), and a stable block compaction of
 * the selected entries.
 * @module
 */
import type { Kernel } from "../lib/gpu/pipelines.ts";

/** Threads per workgroup of every select kernel. */
export const SELECT_THREADS = 256;
/** Entries per thread in the histogram and compaction kernels. */
export const SELECT_ITEMS = 16;
/** Entries per block (workgroup) of the histogram and compaction kernels. */
export const SELECT_BLOCK = SELECT_THREADS * SELECT_ITEMS;

const linearId = `let id = gid.x + gid.y * nwg.x * ${SELECT_THREADS}u;`;

/**
 * `e[i·n + j] = t[src]²` for the logical m×n matrix: `src = i·n + j`, or `j·m + i` when the
 * transform was taken of the stored transpose (`transposed = 1`). With `symmetric = 1`
 * (the `dft`, whose exact spectrum satisfies T(−i,−j) = T(i,j)) both members of a mirror pair
 * read the one with the smaller flat index, so their f32 energies tie exactly.
 * Bindings: t (f32), e (f32), params {m, n, transposed, symmetric}.
 */
export const energyKernel: Kernel = {
  name: "select.energy",
  code: `
@group(0) @binding(0) var<storage, read> t: array<f32>;
@group(0) @binding(1) var<storage, read_write> e: array<f32>;
struct P { m: u32, n: u32, transposed: u32, symmetric: u32 }
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(${SELECT_THREADS})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  ${linearId}
  if (id >= p.m * p.n) { return; }
  var i = id / p.n;
  var j = id % p.n;
  if (p.symmetric == 1u) {
    let i2 = (p.m - i) % p.m;
    let j2 = (p.n - j) % p.n;
    if (i2 * p.n + j2 < id) { i = i2; j = j2; }
  }
  var src = i * p.n + j;
  if (p.transposed == 1u) { src = j * p.m + i; }
  let v = t[src];
  e[id] = v * v;
}`,
};

/**
 * One radix-select pass: `hist[d] += #{i < size : (bits[i] & mask) == prefix and
 * (bits[i] >> shift) & 255 == d}`. Each workgroup counts one block in workgroup memory first.
 * Bindings: bits (u32), hist (256 × u32, zeroed by the caller), params {size, shift, mask, prefix}.
 */
export const histogramKernel: Kernel = {
  name: "select.histogram",
  code: `
@group(0) @binding(0) var<storage, read> bits: array<u32>;
@group(0) @binding(1) var<storage, read_write> hist: array<atomic<u32>>;
struct P { size: u32, shift: u32, mask: u32, prefix: u32 }
@group(0) @binding(2) var<uniform> p: P;
var<workgroup> local: array<atomic<u32>, 256>;
@compute @workgroup_size(${SELECT_THREADS})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u,
        @builtin(num_workgroups) nwg: vec3u) {
  atomicStore(&local[lid], 0u);
  workgroupBarrier();
  let base = (wid.x + wid.y * nwg.x) * ${SELECT_BLOCK}u;
  for (var r = 0u; r < ${SELECT_ITEMS}u; r++) {
    let i = base + r * ${SELECT_THREADS}u + lid;
    if (i < p.size) {
      let b = bits[i];
      if ((b & p.mask) == p.prefix) { atomicAdd(&local[(b >> p.shift) & 255u], 1u); }
    }
  }
  workgroupBarrier();
  let c = atomicLoad(&local[lid]);
  if (c > 0u) { atomicAdd(&hist[lid], c); }
}`,
};

/** WGSL: an inclusive workgroup scan of vec2<u32> over \`scan\` (one value per thread). */
const scanFn = `
var<workgroup> scan: array<vec2u, ${SELECT_THREADS}>;
fn inclusive_scan(lid: u32, v: vec2u) -> vec2u {
  scan[lid] = v;
  workgroupBarrier();
  for (var d = 1u; d < ${SELECT_THREADS}u; d <<= 1u) {
    var add = vec2u(0u);
    if (lid >= d) { add = scan[lid - d]; }
    workgroupBarrier();
    scan[lid] += add;
    workgroupBarrier();
  }
  return scan[lid];
}`;

/**
 * Per-block counts of entries above and equal to the threshold: `counts[2b] = #{bits > t}`,
 * `counts[2b+1] = #{bits == t}` over block b. Bindings: bits, counts, params {size, threshold}.
 */
export const countKernel: Kernel = {
  name: "select.count",
  code: `
@group(0) @binding(0) var<storage, read> bits: array<u32>;
@group(0) @binding(1) var<storage, read_write> counts: array<u32>;
struct P { size: u32, threshold: u32 }
@group(0) @binding(2) var<uniform> p: P;
${scanFn}
@compute @workgroup_size(${SELECT_THREADS})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u,
        @builtin(num_workgroups) nwg: vec3u) {
  let block = wid.x + wid.y * nwg.x;
  let base = block * ${SELECT_BLOCK}u;
  var c = vec2u(0u);
  for (var r = 0u; r < ${SELECT_ITEMS}u; r++) {
    let i = base + r * ${SELECT_THREADS}u + lid;
    if (i < p.size) {
      let b = bits[i];
      c += vec2u(select(0u, 1u, b > p.threshold), select(0u, 1u, b == p.threshold));
    }
  }
  let total = inclusive_scan(lid, c);
  if (lid == ${SELECT_THREADS - 1}u) {
    counts[2u * block] = total.x;
    counts[2u * block + 1u] = total.y;
  }
}`,
};

/**
 * Exclusive prefix sums of the (gt, eq) block counts, in place, by one workgroup walking the
 * blocks in chunks. Bindings: counts (2 × blocks u32), params {blocks}.
 */
export const scanKernel: Kernel = {
  name: "select.scan",
  code: `
@group(0) @binding(0) var<storage, read_write> counts: array<u32>;
struct P { blocks: u32 }
@group(0) @binding(1) var<uniform> p: P;
${scanFn}
var<workgroup> carry: vec2u;
@compute @workgroup_size(${SELECT_THREADS})
fn main(@builtin(local_invocation_index) lid: u32) {
  if (lid == 0u) { carry = vec2u(0u); }
  for (var start = 0u; start < p.blocks; start += ${SELECT_THREADS}u) {
    let b = start + lid;
    var v = vec2u(0u);
    if (b < p.blocks) { v = vec2u(counts[2u * b], counts[2u * b + 1u]); }
    let inc = inclusive_scan(lid, v);
    let c = carry;
    if (b < p.blocks) {
      let ex = c + inc - v;
      counts[2u * b] = ex.x;
      counts[2u * b + 1u] = ex.y;
    }
    workgroupBarrier();
    if (lid == ${SELECT_THREADS - 1}u) { carry = c + inc; }
    workgroupBarrier();
  }
}`,
};

/**
 * Stable compaction of the selection: every entry with bits > threshold goes to
 * `out[2·pos] = index, out[2·pos+1] = bits` at pos = its rank in index order among them;
 * the first `k_eq` entries equal to the threshold (in index order) follow at `count_gt + rank`.
 * Each thread owns 16 consecutive entries so that ranks follow the index.
 * Bindings: bits, offsets (the scanned counts), out, params {size, threshold, count_gt, k_eq}.
 */
export const compactKernel: Kernel = {
  name: "select.compact",
  code: `
@group(0) @binding(0) var<storage, read> bits: array<u32>;
@group(0) @binding(1) var<storage, read> offsets: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
struct P { size: u32, threshold: u32, count_gt: u32, k_eq: u32 }
@group(0) @binding(3) var<uniform> p: P;
${scanFn}
@compute @workgroup_size(${SELECT_THREADS})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u,
        @builtin(num_workgroups) nwg: vec3u) {
  let block = wid.x + wid.y * nwg.x;
  let first = block * ${SELECT_BLOCK}u + lid * ${SELECT_ITEMS}u;
  let last = min(first + ${SELECT_ITEMS}u, p.size);
  var c = vec2u(0u);
  for (var i = first; i < last; i++) {
    let b = bits[i];
    c += vec2u(select(0u, 1u, b > p.threshold), select(0u, 1u, b == p.threshold));
  }
  let inc = inclusive_scan(lid, c);
  var gt = offsets[2u * block] + inc.x - c.x;
  var eq = offsets[2u * block + 1u] + inc.y - c.y;
  for (var i = first; i < last; i++) {
    let b = bits[i];
    if (b > p.threshold) {
      out[2u * gt] = i;
      out[2u * gt + 1u] = b;
      gt++;
    } else if (b == p.threshold) {
      if (eq < p.k_eq) {
        let pos = p.count_gt + eq;
        out[2u * pos] = i;
        out[2u * pos + 1u] = b;
      }
      eq++;
    }
  }
}`,
};
