/**
 * The sparse spectrum of an adapter on the GPU. Every transform is applied as the separable
 * `C_M S̃ C_N` of an effective sparse matrix S̃ (SPEC §1.2, §1.6) whose entries carry a
 * coefficient index and a signed weight:
 * - `dht`: S̃ = S, coefficient c_k at (u, v) with weight 1;
 * - `dht2d`: S̃ = ½[S(u,v) + S(−u,v) + S(u,−v) − S(−u,−v)]: ½ at (u,v), (−u,v), (u,−v), −½ at (−u,−v);
 * - `dft`: S̃ = ½[S(−u,v) + S(u,−v)]: ½ at (−u,v) and (u,−v);
 * with −u = (M − u) mod M. Entries of one coefficient that land on the same position are merged
 * and zero weights dropped. The index structures (by rows, by columns, the entry list, by
 * coefficients, and the flat positions) are built once on the CPU and uploaded into one u32 buffer.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import type { Binding } from "../gpu/stream.ts";
import { grid, upload } from "../gpu/buffers.ts";
import {
  addKernel,
  casRowsKernel,
  gatherKernel,
  gradPartialKernel,
  gradReduceKernel,
  PRODUCT_TOKENS,
  productKernel,
  scatterKernel,
  SPARSE_THREADS,
} from "../../kernels/sparse.ts";
import type { Transform } from "./transforms.ts";

/** One entry of S̃: `weight · c[coef]` at (row, col). */
export interface SparseEntry {
  /** Row u of S̃, in [0, M). */
  row: number;
  /** Column v of S̃, in [0, N). */
  col: number;
  /** Index k of the coefficient c_k, in [0, n). */
  coef: number;
  /** Signed weight of c_k here: 1 for dht, ±½ for dht2d/dft, summed where entries coincide. */
  weight: number;
}

/**
 * Check `positions` ([n, 2] (row, col) pairs) against an M×N spectrum and return n.
 * @throws RangeError naming the first bad pair: odd length, out of range, or a repeat.
 */
export function checkPositions(positions: Int32Array, m: number, n: number): number {
  if (!Number.isInteger(m) || !Number.isInteger(n) || m < 1 || n < 1 || m * n > 4294967295) {
    throw new RangeError(`spectrum shape must be positive integers M×N with M·N < 2^32, got ${m}×${n}`);
  }
  if (positions.length === 0 || positions.length % 2 !== 0) {
    throw new RangeError(
      `positions must hold [n, 2] (row, col) pairs with n ≥ 1, got length ${positions.length}`,
    );
  }
  const count = positions.length / 2;
  const seen = new Set<number>();
  for (let k = 0; k < count; k++) {
    const u = positions[2 * k], v = positions[2 * k + 1];
    if (u < 0 || u >= m || v < 0 || v >= n) {
      throw new RangeError(`position ${k} = (${u}, ${v}) is outside the ${m}×${n} spectrum`);
    }
    const flat = u * n + v;
    if (seen.has(flat)) throw new RangeError(`position ${k} = (${u}, ${v}) appears twice`);
    seen.add(flat);
  }
  return count;
}

/** The entries of S̃ for `transform` (see the module doc), sorted by (row, col, coef). */
export function effectiveEntries(
  positions: Int32Array,
  m: number,
  n: number,
  transform: Transform,
): SparseEntry[] {
  const count = checkPositions(positions, m, n);
  const merged = new Map<string, SparseEntry>();
  const add = (row: number, col: number, coef: number, weight: number) => {
    const key = `${row},${col},${coef}`;
    const e = merged.get(key);
    if (e) e.weight += weight;
    else merged.set(key, { row, col, coef, weight });
  };
  for (let k = 0; k < count; k++) {
    const u = positions[2 * k], v = positions[2 * k + 1];
    const mu = (m - u) % m, mv = (n - v) % n;
    if (transform === "dht") {
      add(u, v, k, 1);
    } else if (transform === "dht2d") {
      add(u, v, k, 0.5);
      add(mu, v, k, 0.5);
      add(u, mv, k, 0.5);
      add(mu, mv, k, -0.5);
    } else if (transform === "dft") {
      add(mu, v, k, 0.5);
      add(u, mv, k, 0.5);
    } else {
      throw new RangeError(`unknown transform '${transform}' (expected dht, dht2d or dft)`);
    }
  }
  return [...merged.values()].filter((e) => e.weight !== 0)
    .sort((a, b) => a.row - b.row || a.col - b.col || a.coef - b.coef);
}

/** Float64 reference: the dense M×N S̃ (row-major) for coefficients `coef`. */
export function effectiveDense(
  positions: Int32Array,
  coef: ArrayLike<number>,
  m: number,
  n: number,
  transform: Transform,
): Float64Array {
  const out = new Float64Array(m * n);
  for (const e of effectiveEntries(positions, m, n, transform)) {
    out[e.row * n + e.col] += e.weight * coef[e.coef];
  }
  return out;
}

/** cas, cos of 2π·(a/A + b/B) with exact integer argument reduction. */
function angle(a: number, big: number, b: number, bigB: number): number {
  return 2 * Math.PI * ((a % big) / big + (b % bigB) / bigB);
}

/** Float64 reference: T(e_{u,v})[i, j] for one unit coefficient at (u, v) (SPEC §1.2). */
export function basisReference(
  transform: Transform,
  m: number,
  n: number,
  u: number,
  v: number,
  i: number,
  j: number,
): number {
  if (transform === "dht") {
    const a = angle(u * i, m, 0, 1), b = angle(0, 1, v * j, n);
    return (Math.cos(a) + Math.sin(a)) * (Math.cos(b) + Math.sin(b));
  }
  const t = angle(u * i, m, v * j, n);
  return transform === "dht2d" ? Math.cos(t) + Math.sin(t) : Math.cos(t);
}

/** The bits of `w` as an f32, as a u32. */
function f32Bits(w: number): number {
  return new Uint32Array(Float32Array.of(w).buffer)[0];
}

/** A CSR section: ptr[rows + 1], then for each item (ordered by key) its `fields`. */
function csr<T>(
  items: readonly T[],
  rows: number,
  key: (x: T) => number,
  fields: ((x: T) => number)[],
): Uint32Array {
  const width = fields.length;
  const out = new Uint32Array(rows + 1 + width * items.length);
  const sorted = items.map((x, i) => ({ x, i })).sort((a, b) => key(a.x) - key(b.x) || a.i - b.i);
  for (const { x } of sorted) out[key(x) + 1]++;
  for (let r = 0; r < rows; r++) out[r + 1] += out[r];
  sorted.forEach(({ x }, i) => fields.forEach((f, j) => out[rows + 1 + width * i + j] = f(x)));
  return out;
}

const casTables = new WeakMap<Gpu, Map<number, GPUBuffer>>();

/** cas(2πt/n) = cos + sin for t < n, in float64 rounded to f32, uploaded once per device and n. */
export function casTable(gpu: Gpu, n: number): GPUBuffer {
  let perGpu = casTables.get(gpu);
  if (!perGpu) casTables.set(gpu, perGpu = new Map());
  let table = perGpu.get(n);
  if (!table) {
    const values = Float32Array.from(
      { length: n },
      (_, t) => Math.cos((2 * Math.PI * t) / n) + Math.sin((2 * Math.PI * t) / n),
    );
    table = upload(gpu, values, `sparse.cas_${n}`);
    perGpu.set(n, table);
  }
  return table;
}

/** Threads the first gradient pass aims at (entries × token chunks). */
const GRAD_TARGET_THREADS = 131072;
/** Shortest token chunk of the first gradient pass. */
const GRAD_MIN_CHUNK = 8;

/**
 * The sparse spectrum of one adapter, uploaded: positions, S̃'s entries in three CSR
 * orders, and the kernels that use them. Positions never change during training.
 */
export class SparseSpectrum {
  /** Number of coefficients n. */
  readonly count: number;
  /** The effective entries of S̃ (CPU copy, sorted by (row, col, coef)). */
  readonly entries: readonly SparseEntry[];
  /** The uploaded index buffer (u32), owned by this object until {@link dispose}. */
  readonly plan: GPUBuffer;
  #offsets: { rows: number; cols: number; list: number; coefs: number; flat: number; flatT: number };
  #disposed = false;

  /**
   * Build S̃'s index structures for `transform` and upload them to `gpu` (one u32 buffer).
   * @param positions [n, 2] (row, col) pairs, distinct, inside the M×N spectrum.
   * @param m rows M (out_features).
   * @param n columns N (in_features).
   */
  constructor(
    private readonly gpu: Gpu,
    readonly positions: Int32Array,
    readonly m: number,
    readonly n: number,
    readonly transform: Transform,
  ) {
    this.entries = effectiveEntries(positions, m, n, transform);
    this.count = positions.length / 2;
    const ents = this.entries;
    const indexed = ents.map((e, index) => ({ ...e, index }));
    const sections = [
      csr(ents, m, (e) => e.row, [(e) => e.col, (e) => e.coef, (e) => f32Bits(e.weight)]),
      csr(ents, n, (e) => e.col, [(e) => e.row, (e) => e.coef, (e) => f32Bits(e.weight)]),
      Uint32Array.from(ents.flatMap((e) => [e.row, e.col])),
      csr(indexed, this.count, (e) => e.coef, [(e) => e.index, (e) => f32Bits(e.weight)]),
      Uint32Array.from({ length: this.count }, (_, k) => positions[2 * k] * n + positions[2 * k + 1]),
      Uint32Array.from({ length: this.count }, (_, k) => positions[2 * k + 1] * m + positions[2 * k]),
    ];
    const starts = [0];
    for (const s of sections) starts.push(starts[starts.length - 1] + s.length);
    const data = new Uint32Array(starts[sections.length]);
    sections.forEach((s, i) => data.set(s, starts[i]));
    const [rows, cols, list, coefs, flat, flatT] = starts;
    this.#offsets = { rows, cols, list, coefs, flat, flatT };
    this.plan = upload(gpu, data, "sparse.plan");
  }

  /** Release the index buffer; the object is unusable afterwards. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.gpu.pool.release(this.plan);
  }

  /** True once {@link dispose} ran. */
  get disposed(): boolean {
    return this.#disposed;
  }

  #live(): void {
    if (this.#disposed) throw new Error("SparseSpectrum used after dispose()");
  }

  /**
   * `out[t, r] = Σ_{entries in row r} w·c[k]·inp[t, col]` (`"rows"`: ẑ = S̃ x̂, inp T×N,
   * out T×M) or `out[t, c] = Σ_{entries in column c} w·c[k]·inp[t, row]` (`"cols"`: S̃ᵀ δ̂,
   * inp T×M, out T×N), for T = `tokens` rows of input.
   */
  encodeProduct(
    order: "rows" | "cols",
    coef: GPUBuffer,
    inp: GPUBuffer,
    out: GPUBuffer,
    tokens: number,
  ): void {
    this.#live();
    const byRows = order === "rows";
    const rows = byRows ? this.m : this.n, inWidth = byRows ? this.n : this.m;
    const ptr = byRows ? this.#offsets.rows : this.#offsets.cols;
    const params = new Uint32Array([tokens, rows, inWidth, ptr, ptr + rows + 1]);
    const blocks = Math.ceil(tokens / PRODUCT_TOKENS);
    const groups = grid(this.gpu, Math.ceil((blocks * rows) / SPARSE_THREADS));
    this.gpu.stream.dispatch(productKernel, [this.plan, coef, inp, out], groups, params);
  }

  /**
   * `out` (N×M) = (S̃·C_N)ᵀ: out[j, r] = Σ_{e ∈ row r} w_e·c[k_e]·cas(2π·j·col_e/N), the first
   * half of ΔW = C_M S̃ C_N from S̃'s rows (one dispatch, no dense S̃). Needs N < 65536.
   */
  encodeCasRows(coef: GPUBuffer, out: GPUBuffer): void {
    this.#live();
    const { m, n } = this;
    if (n >= 65536) throw new RangeError(`encodeCasRows: N = ${n} must be below 65536`);
    const ptr = this.#offsets.rows;
    const params = new Uint32Array([m, n, ptr, ptr + m + 1]);
    const groups = grid(this.gpu, Math.ceil((m * n) / SPARSE_THREADS));
    this.gpu.stream.dispatch(casRowsKernel, [this.plan, coef, casTable(this.gpu, n), out], groups, params);
  }

  /**
   * `dc[k] (+)= scale · Σ_{entries of k} w · Σ_t a[t, u]·b[t, v]` — the coefficient gradient
   * from δ̂ = `a` (T×M) and x̂ = `b` (T×N); adds to `dc` when `accumulate`. Two dispatches:
   * per-entry partial sums over token chunks (pooled scratch), then one sum per coefficient.
   */
  encodeGrad(
    a: GPUBuffer,
    b: GPUBuffer,
    dc: GPUBuffer,
    tokens: number,
    scale: number,
    accumulate: boolean,
  ): void {
    this.#live();
    const { gpu } = this;
    const entries = this.entries.length;
    const { m, n } = this;
    // one invocation per entry and chunk of tokens, reading δ̂ and x̂ through the caches: on an
    // H100 (0.48 ms for RoBERTa-base's 24 adapters) and on lavapipe faster than staging the
    // tokens' rows in workgroup memory first (1.16 ms; bench/RESULTS.md, session 11)
    const chunkLen = Math.max(GRAD_MIN_CHUNK, Math.ceil((tokens * entries) / GRAD_TARGET_THREADS));
    const chunks = Math.ceil(tokens / chunkLen);
    const partial = gpu.pool.acquire(chunks * entries * 4, undefined, "sparse.grad_partial");
    const p1 = new Uint32Array([tokens, m, n, this.#offsets.list, entries, chunkLen, chunks]);
    const groups = grid(gpu, Math.ceil((chunks * entries) / SPARSE_THREADS));
    gpu.stream.dispatch(gradPartialKernel, [this.plan, a, b, partial], groups, p1);
    this.encodeGradReduce(partial, chunks, dc, scale, accumulate);
    gpu.pool.release(partial);
  }

  /** Where S̃'s CSR by rows (ptr[M + 1], then (col, coefficient, w) entries) starts in {@link plan}. */
  get rowsOffset(): number {
    return this.#offsets.rows;
  }

  /** Where the entry list (u, v pairs in entry order) starts in {@link plan}, in u32 words. */
  get listOffset(): number {
    return this.#offsets.list;
  }

  /**
   * The gradient's second pass: `dc[k] (+)= scale · Σ_{entries e of k} w_e · Σ_c
   * partial[c·E + e]` over `chunks` rows of per-entry partial sums (E = entries).
   */
  encodeGradReduce(
    partial: GPUBuffer,
    chunks: number,
    dc: GPUBuffer,
    scale: number,
    accumulate: boolean,
  ): void {
    this.#live();
    const ptr = this.#offsets.coefs, count = this.count;
    const p2 = new Uint32Array([
      count,
      ptr,
      ptr + count + 1,
      this.entries.length,
      chunks,
      0,
      accumulate ? 1 : 0,
    ]);
    new Float32Array(p2.buffer)[5] = scale;
    this.gpu.stream.dispatch(gradReduceKernel, [this.plan, partial, dc], grid(this.gpu, count), p2);
  }

  /**
   * Write the plain spectrum S (coefficient k at its position; not S̃) into `dst`, M×N
   * row-major, or N×M (the transpose) when `transposed`; zero elsewhere.
   */
  encodeScatter(coef: GPUBuffer, dst: GPUBuffer, transposed = false): void {
    this.#live();
    this.gpu.stream.clear(dst, 0, this.m * this.n * 4);
    const flat = transposed ? this.#offsets.flatT : this.#offsets.flat;
    const groups = grid(this.gpu, Math.ceil(this.count / SPARSE_THREADS));
    this.gpu.stream.dispatch(
      scatterKernel,
      [this.plan, coef, dst],
      groups,
      new Uint32Array([this.count, flat]),
    );
  }

  /** `dst[k] (+)= scale · src[u_k, v_k]` for the n positions of an M×N row-major `src`. */
  encodeGather(src: GPUBuffer, dst: GPUBuffer, scale: number, accumulate: boolean): void {
    this.#live();
    const params = new Uint32Array([this.count, this.#offsets.flat, 0, accumulate ? 1 : 0]);
    new Float32Array(params.buffer)[2] = scale;
    const groups = grid(this.gpu, Math.ceil(this.count / SPARSE_THREADS));
    this.gpu.stream.dispatch(gatherKernel, [this.plan, src, dst], groups, params);
  }
}

/** Encode `y[at + i] += x[i]` for i < len (y: a buffer or a window of one). */
export function encodeAdd(gpu: Gpu, x: GPUBuffer, y: Binding, len: number, at = 0): void {
  const groups = grid(gpu, Math.ceil(len / SPARSE_THREADS));
  gpu.stream.dispatch(addKernel, [x, y], groups, new Uint32Array([len, at]));
}
