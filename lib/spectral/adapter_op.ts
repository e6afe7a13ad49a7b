/**
 * The spectral adapter op (SPEC §1.6): apply ΔW = (α/(M·N))·T(S) to a batch of tokens without
 * ever building ΔW, through `ΔW x = (α/MN)·C_M S̃ C_N x` (S̃: lib/spectral/sparse.ts):
 * - forward: x̂ = FHT_N(x); ẑ = S̃ x̂ (by rows); y += (α/MN)·FHT_M(ẑ);
 * - backward: δ̂ = FHT_M(δ); ∂L/∂c_k += (α/MN)·Σ_{entries of k} w·Σ_t δ̂[t,u]·x̂[t,v];
 *   dx += (α/MN)·FHT_N(S̃ᵀ δ̂) (by columns);
 * - materialize: ΔW = (α/MN)·C_M S̃ C_N into a weight (folding and merging): in one kernel
 *   (lib/spectral/delta_weight.ts), else from S̃'s rows against a cas table, one FHT and a
 *   transpose;
 * - coefGradient: ∂L/∂c from x and δ alone, for a layer that folded ΔW into its weight (for a
 *   square layer in one kernel that transforms both, lib/spectral/coef_grad.ts).
 * Everything is encoded into `gpu.stream` (no readback, no submit); scratch comes from the pool
 * and repeated calls with the same buffers reuse their bind groups.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { encodeFusedGrad, fusesGradient } from "./coef_grad.ts";
import { encodeDeltaWeight } from "./delta_weight.ts";
import { encodeFht } from "./fht.ts";
import { basisReference, encodeAdd, SparseSpectrum } from "./sparse.ts";
import { encodeTransform2d, encodeTranspose, type Transform } from "./transforms.ts";

/** Shape and hyper-parameters of one adapted linear layer. */
export interface SpectralAdapterConfig {
  /** out_features M (rows of W). */
  m: number;
  /** in_features N (columns of W). */
  nIn: number;
  /** [n, 2] (row, col) positions in the (out, in) orientation, distinct. */
  positions: Int32Array;
  /** The spectral transform; `dht` by default. */
  transform?: Transform;
  /** The scaling α; ΔW = (α/(M·N))·T(S). */
  alpha: number;
}

/** What forward keeps for backward: x̂ = FHT_N(x) of its T tokens (a pooled T×N buffer). */
export class SpectralSaved {
  #released = false;
  /** Made by {@link SpectralAdapterOp.forward}: `xHat` is the T×N x̂ buffer and `tokens` is T. */
  constructor(private readonly gpu: Gpu, readonly xHat: GPUBuffer, readonly tokens: number) {}

  /** True once the buffer went back to the pool (backward does this). */
  get released(): boolean {
    return this.#released;
  }

  /** Give x̂ back to the pool (when no backward will follow). */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.gpu.pool.release(this.xHat);
  }
}

/**
 * One adapted layer's spectral op. Activations are row-major f32 GPU buffers: x is T×N,
 * y and δ = ∂L/∂y are T×M; the coefficients are an n-vector of f32 on the GPU.
 */
export class SpectralAdapterOp {
  /** out_features M (rows of W). */
  readonly m: number;
  /** in_features N (columns of W). */
  readonly nIn: number;
  /** Number of coefficients n. */
  readonly count: number;
  /** The spectral transform T. */
  readonly transform: Transform;
  /** The scaling α. */
  readonly alpha: number;
  /** α/(M·N). */
  readonly scale: number;
  /** The uploaded positions and S̃ index structures. */
  readonly spectrum: SparseSpectrum;
  #issued = new WeakSet<SpectralSaved>();

  /** Check `config` and upload its positions' index structures to `gpu` (RangeError when invalid). */
  constructor(private readonly gpu: Gpu, config: SpectralAdapterConfig) {
    const { m, nIn, positions, transform = "dht", alpha } = config;
    if (!Number.isFinite(alpha)) throw new RangeError(`alpha must be a finite number, got ${alpha}`);
    this.spectrum = new SparseSpectrum(gpu, positions, m, nIn, transform);
    this.m = m;
    this.nIn = nIn;
    this.count = this.spectrum.count;
    this.transform = transform;
    this.alpha = alpha;
    this.scale = alpha / (m * nIn);
  }

  /** Release the index buffer. */
  dispose(): void {
    this.spectrum.dispose();
  }

  /**
   * y[t, :] (+)= ΔW x[t, :] for t < tokens. Adds to y unless `accumulate` is false (then
   * overwrites it). Returns x̂ for {@link backward} (null when `save` is false).
   * Fastest in a layer: overwrite y here, then let the frozen matmul add x Wᵀ (+ b) to it
   * (its own accumulate), which saves the add pass; likewise for dx in backward.
   */
  forward(
    x: GPUBuffer,
    coef: GPUBuffer,
    y: GPUBuffer,
    tokens: number,
    opts: { accumulate?: boolean; save?: boolean } = {},
  ): SpectralSaved | null {
    const { gpu, m, nIn } = this;
    this.#live();
    this.#checkTokens(tokens);
    need(x, tokens * nIn, `x (tokens×in_features = ${tokens}×${nIn})`);
    need(y, tokens * m, `y (tokens×out_features = ${tokens}×${m})`);
    need(coef, this.count, `coef (n = ${this.count})`);
    const xHat = gpu.pool.acquire(tokens * nIn * 4, undefined, "adapter.x_hat");
    encodeFht(gpu, x, xHat, tokens, nIn);
    const z = gpu.pool.acquire(tokens * m * 4, undefined, "adapter.z");
    this.spectrum.encodeProduct("rows", coef, xHat, z, tokens);
    this.#fhtInto(z, y, tokens, m, opts.accumulate ?? true);
    gpu.pool.release(z);
    if (opts.save === false) {
      gpu.pool.release(xHat);
      return null;
    }
    const saved = new SpectralSaved(gpu, xHat, tokens);
    this.#issued.add(saved);
    return saved;
  }

  /**
   * Given δ = ∂L/∂y (T×M) of the forward that returned `saved`: ∂L/∂c (+)= into `dcoef`
   * (adds unless `accumulateGrad` is false, so micro-batches sum up), and, when `dx` is given,
   * dx (+)= ΔWᵀ δ (adds unless `accumulateDx` is false). Releases `saved`.
   */
  backward(
    saved: SpectralSaved,
    dy: GPUBuffer,
    coef: GPUBuffer,
    dx: GPUBuffer | null,
    dcoef: GPUBuffer,
    opts: { accumulateDx?: boolean; accumulateGrad?: boolean } = {},
  ): void {
    const { gpu, m, nIn } = this;
    this.#live();
    if (!this.#issued.has(saved)) throw new Error("backward: the saved state comes from another adapter op");
    if (saved.released) throw new Error("backward: the saved forward state was already released");
    const tokens = saved.tokens;
    need(dy, tokens * m, `dy (tokens×out_features = ${tokens}×${m})`);
    need(coef, this.count, `coef (n = ${this.count})`);
    need(dcoef, this.count, `dcoef (n = ${this.count})`);
    if (dx) need(dx, tokens * nIn, `dx (tokens×in_features = ${tokens}×${nIn})`);
    const dHat = gpu.pool.acquire(tokens * m * 4, undefined, "adapter.dy_hat");
    encodeFht(gpu, dy, dHat, tokens, m);
    this.spectrum.encodeGrad(dHat, saved.xHat, dcoef, tokens, this.scale, opts.accumulateGrad ?? true);
    if (dx) {
      const w = gpu.pool.acquire(tokens * nIn * 4, undefined, "adapter.w");
      this.spectrum.encodeProduct("cols", coef, dHat, w, tokens);
      this.#fhtInto(w, dx, tokens, nIn, opts.accumulateDx ?? true);
      gpu.pool.release(w);
    }
    gpu.pool.release(dHat);
    saved.release();
  }

  /**
   * ∂L/∂c (+)= into `dcoef` from x (T×N) and δ = ∂L/∂y (T×M) (adds unless `accumulate` is
   * false): the coefficient gradient of {@link backward} without a saved forward, for a layer
   * that applied ΔW folded into its weight. `xHat`, when given, is x's transform
   * ({@link transformInput}), shared with other adapters of x; x itself is not read then.
   * `dyRows` places δ's rows `ld` apart from element `offset` (the layer's columns of a stacked
   * output gradient, read in place). Where {@link fusesGradient}, both transforms happen inside
   * the gradient's kernel: x is read and `xHat` is not.
   */
  coefGradient(
    x: GPUBuffer,
    dy: GPUBuffer,
    tokens: number,
    dcoef: GPUBuffer,
    opts: { accumulate?: boolean; xHat?: GPUBuffer; dyRows?: { ld: number; offset: number } } = {},
  ): void {
    const { gpu, m, nIn } = this;
    this.#live();
    this.#checkTokens(tokens);
    need(opts.xHat ?? x, tokens * nIn, `${opts.xHat ? "x̂" : "x"} (tokens×in_features = ${tokens}×${nIn})`);
    const rowsOf = opts.dyRows;
    const dyEnd = rowsOf ? rowsOf.offset + (tokens - 1) * rowsOf.ld + m : tokens * m;
    need(dy, dyEnd, `dy (tokens×out_features = ${tokens}×${m}${rowsOf ? `, rows ${rowsOf.ld} apart` : ""})`);
    need(dcoef, this.count, `dcoef (n = ${this.count})`);
    if (this.fusesGradient) {
      need(x, tokens * nIn, `x (tokens×in_features = ${tokens}×${nIn})`);
      const acc = opts.accumulate ?? true;
      encodeFusedGrad(gpu, this.spectrum, x, dy, dcoef, tokens, this.scale, acc, rowsOf);
      return;
    }
    const xHat = opts.xHat ?? gpu.pool.acquire(tokens * nIn * 4, undefined, "adapter.x_hat");
    const dHat = gpu.pool.acquire(tokens * m * 4, undefined, "adapter.dy_hat");
    if (!opts.xHat) this.transformInput(x, xHat, tokens);
    encodeFht(gpu, dy, dHat, tokens, m, rowsOf ? { input: rowsOf } : {});
    this.spectrum.encodeGrad(dHat, xHat, dcoef, tokens, this.scale, opts.accumulate ?? true);
    if (!opts.xHat) gpu.pool.release(xHat);
    gpu.pool.release(dHat);
  }

  /**
   * Whether {@link coefGradient} transforms x and δ inside its own kernel (square layers whose
   * length fits workgroup memory; lib/spectral/coef_grad.ts): callers then need no x̂.
   */
  get fusesGradient(): boolean {
    this.#live();
    return fusesGradient(this.gpu, this.spectrum);
  }

  /**
   * x̂ = FHT_N(x) of `tokens` rows into `out`: what {@link coefGradient} takes as `xHat`, the
   * same for every adapter of width N on one input.
   */
  transformInput(x: GPUBuffer, out: GPUBuffer, tokens: number): void {
    this.#live();
    this.#checkTokens(tokens);
    need(x, tokens * this.nIn, `x (tokens×in_features = ${tokens}×${this.nIn})`);
    need(out, tokens * this.nIn, `x̂ (tokens×in_features = ${tokens}×${this.nIn})`);
    encodeFht(this.gpu, x, out, tokens, this.nIn);
  }

  /**
   * ΔW = (α/MN)·T(S) into `dst`: M×N row-major, or its transpose N×M with `transposed`
   * (GPT-2's Conv1D storage). Adds to `dst` with `accumulate` (merging into a weight), or writes
   * `base + ΔW` with `base` (a weight in the same layout: folding into a copy of it), from
   * element `at` of `dst` (a weight stacked with others').
   */
  materialize(
    coef: GPUBuffer,
    dst: GPUBuffer,
    opts: { accumulate?: boolean; transposed?: boolean; at?: number; base?: GPUBuffer } = {},
  ): void {
    const { gpu, m, nIn } = this;
    this.#live();
    const at = opts.at ?? 0, base = opts.base;
    if (base && opts.accumulate) throw new Error("materialize: `base` and `accumulate` exclude each other");
    if (base === dst) {
      throw new Error(
        "materialize: `base` must be another buffer than dst (to add in place, use `accumulate`)",
      );
    }
    if (at !== 0 && !opts.accumulate && !base) {
      throw new Error("materialize: an offset `at` needs `accumulate` or `base`");
    }
    need(coef, this.count, `coef (n = ${this.count})`);
    need(dst, at + m * nIn, `dst (M×N = ${m}×${nIn}${at ? ` from element ${at}` : ""})`);
    if (base) need(base, m * nIn, `base (M×N = ${m}×${nIn})`);
    const placed = { transposed: opts.transposed ?? false, accumulate: opts.accumulate ?? false, at, base };
    if (encodeDeltaWeight(gpu, this.spectrum, coef, dst, this.scale, placed)) return;
    if (base) {
      // the passes below add ΔW into dst: W first
      gpu.stream.copy(base, 0, dst, at * 4, m * nIn * 4);
      return this.materialize(coef, dst, { transposed: opts.transposed, at, accumulate: true });
    }
    if (nIn < 65536) {
      // ΔWᵀ = C_N S̃ᵀ C_M (all three transforms are C_M S̃ C_N): S̃'s rows against C_N, then
      // one FHT of its N rows of length M, stored transposed unless ΔWᵀ is what is asked for
      const t = gpu.pool.acquire(m * nIn * 4, undefined, "adapter.delta_w_t");
      this.spectrum.encodeCasRows(coef, t);
      encodeFht(gpu, t, t, nIn, m, { scale: this.scale });
      if (!opts.transposed) encodeTranspose(gpu, t, dst, nIn, m, { at, accumulate: opts.accumulate });
      else if (opts.accumulate) encodeAdd(gpu, t, dst, m * nIn, at);
      else gpu.stream.copy(t, 0, dst, 0, m * nIn * 4);
      gpu.pool.release(t);
      return;
    }
    const s = gpu.pool.acquire(m * nIn * 4, undefined, "adapter.spectrum");
    this.spectrum.encodeScatter(coef, s, opts.transposed);
    const [rows, cols] = opts.transposed ? [nIn, m] : [m, nIn];
    // T_{N×M}(Sᵀ) = T_{M×N}(S)ᵀ for all three transforms.
    if (opts.accumulate) {
      const d = gpu.pool.acquire(m * nIn * 4, undefined, "adapter.delta_w");
      encodeTransform2d(gpu, this.transform, s, d, rows, cols, { scale: this.scale });
      encodeAdd(gpu, d, dst, m * nIn, at);
      gpu.pool.release(d);
    } else {
      encodeTransform2d(gpu, this.transform, s, dst, rows, cols, { scale: this.scale });
    }
    gpu.pool.release(s);
  }

  /**
   * The dense route of the coefficient gradient: from G = ∂L/∂ΔW (M×N), ∂L/∂c_k (+)=
   * (α/MN)·T(G)[u_k, v_k] into `dcoef` (adds unless `accumulate` is false).
   */
  denseGradient(g: GPUBuffer, dcoef: GPUBuffer, opts: { accumulate?: boolean } = {}): void {
    const { gpu, m, nIn } = this;
    this.#live();
    need(g, m * nIn, `g (M×N = ${m}×${nIn})`);
    need(dcoef, this.count, `dcoef (n = ${this.count})`);
    const t = gpu.pool.acquire(m * nIn * 4, undefined, "adapter.t_g");
    encodeTransform2d(gpu, this.transform, g, t, m, nIn);
    this.spectrum.encodeGather(t, dcoef, this.scale, opts.accumulate ?? true);
    gpu.pool.release(t);
  }

  /** dst (+)= scale·FHT(src) over `rows` rows of length `n`; src is scratch and may be overwritten. */
  #fhtInto(src: GPUBuffer, dst: GPUBuffer, rows: number, n: number, accumulate: boolean): void {
    if (accumulate) {
      encodeFht(this.gpu, src, src, rows, n, { scale: this.scale });
      encodeAdd(this.gpu, src, dst, rows * n);
    } else {
      encodeFht(this.gpu, src, dst, rows, n, { scale: this.scale });
    }
  }

  #live(): void {
    if (this.spectrum.disposed) throw new Error("SpectralAdapterOp used after dispose()");
  }

  #checkTokens(tokens: number): void {
    if (!Number.isInteger(tokens) || tokens < 1) {
      throw new RangeError(`tokens must be a positive integer, got ${tokens}`);
    }
  }
}

function need(buffer: GPUBuffer, floats: number, what: string): void {
  if (buffer.size < floats * 4) {
    throw new RangeError(`${what}: buffer holds ${buffer.size / 4} f32, need ${floats}`);
  }
}

/** Float64 reference: ΔW = (α/MN)·T(S) (M×N row-major) straight from the definitions. */
export function deltaWReference(
  positions: Int32Array,
  coef: ArrayLike<number>,
  m: number,
  n: number,
  transform: Transform,
  alpha: number,
): Float64Array {
  const out = new Float64Array(m * n);
  const s = alpha / (m * n);
  for (let k = 0; k < positions.length / 2; k++) {
    const u = positions[2 * k], v = positions[2 * k + 1];
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) out[i * n + j] += s * coef[k] * basisReference(transform, m, n, u, v, i, j);
    }
  }
  return out;
}

/** Float64 reference: ∂L/∂c_k = (α/MN)·⟨G, T(e_k)⟩ for G = ∂L/∂ΔW (M×N row-major). */
export function coefGradReference(
  positions: Int32Array,
  g: ArrayLike<number>,
  m: number,
  n: number,
  transform: Transform,
  alpha: number,
): Float64Array {
  const count = positions.length / 2;
  const out = new Float64Array(count);
  for (let k = 0; k < count; k++) {
    const u = positions[2 * k], v = positions[2 * k + 1];
    let acc = 0;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) acc += g[i * n + j] * basisReference(transform, m, n, u, v, i, j);
    }
    out[k] = (alpha / (m * n)) * acc;
  }
  return out;
}
