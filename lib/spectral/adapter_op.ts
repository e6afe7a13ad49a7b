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
 *
 * Over one storage binding (lib/gpu/bands.ts): tokens whose T×N or T×M tensors are over it run
 * in bands of tokens (rows are independent; the coefficient gradient's sums add up band by band),
 * and a ΔW over it is built in bands of its storage rows: ΔWᵀ's rows j from S̃'s rows (the
 * one kernel, or cas rows and an FHT along M), ΔW's rows i likewise from S̃ᵀ's (ΔW = (C_N S̃ᵀ C_M)ᵀ).
 * @module
 */
import { bandBinding, bindingLimit, pairedRowBands, type RowBand, rowWindow } from "../gpu/bands.ts";
import type { Gpu } from "../gpu/device.ts";
import { encodeFusedGrad, fusesGradient } from "./coef_grad.ts";
import { encodeCasBand, encodeDeltaWeight } from "./delta_weight.ts";
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
  /** The layer's name in messages (its checkpoint path); "adapter" by default. */
  name?: string;
}

/** Tokens [first, first + rows) of a batch. */
type TokenBand = Pick<RowBand, "first" | "rows">;

/** What forward keeps for backward: x̂ = FHT_N(x) of its T tokens, a pooled buffer a band of tokens. */
export class SpectralSaved {
  #released = false;
  /**
   * Made by {@link SpectralAdapterOp.forward}: `parts` hold x̂ of each band of tokens (one band
   * where the T×N x̂ fits one storage binding), and `tokens` is T.
   */
  constructor(
    private readonly gpu: Gpu,
    readonly parts: readonly { first: number; rows: number; xHat: GPUBuffer }[],
    readonly tokens: number,
  ) {}

  /** True once the buffer went back to the pool (backward does this). */
  get released(): boolean {
    return this.#released;
  }

  /** Give x̂ back to the pool (when no backward will follow). */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    for (const part of this.parts) this.gpu.pool.release(part.xHat);
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
  /** The layer's name in messages. */
  readonly name: string;
  /** S̃ᵀ's (of the transposed positions), made for ΔW's rows in bands. */
  #spectrumT: SparseSpectrum | null = null;
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
    this.name = config.name ?? "adapter";
  }

  /** Release the index buffers. */
  dispose(): void {
    this.spectrum.dispose();
    this.#spectrumT?.dispose();
  }

  /**
   * y[t, :] (+)= ΔW x[t, :] for t < tokens. Adds to y unless `accumulate` is false (then
   * overwrites it). Returns x̂ for {@link backward} (null when `save` is false).
   * Fastest in a layer: overwrite y here, then let the frozen matmul add x Wᵀ (+ b) to it
   * (its own accumulate), which saves the add pass; likewise for dx in backward. Tokens over
   * one storage binding run in bands.
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
    const save = opts.save ?? true;
    const parts = [];
    for (const band of this.#tokenBands(tokens, Math.max(m, nIn))) {
      const xHat = gpu.pool.acquire(band.rows * nIn * 4, undefined, "adapter.x_hat");
      encodeFht(gpu, x, xHat, band.rows, nIn, { input: { ld: nIn, offset: band.first * nIn } });
      const z = gpu.pool.acquire(band.rows * m * 4, undefined, "adapter.z");
      this.spectrum.encodeProduct("rows", coef, xHat, z, band.rows);
      this.#fhtInto(z, y, band, m, opts.accumulate ?? true);
      gpu.pool.release(z);
      if (save) parts.push({ ...band, xHat });
      else gpu.pool.release(xHat);
    }
    if (!save) return null;
    const saved = new SpectralSaved(gpu, parts, tokens);
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
    saved.parts.forEach((part, i) => {
      const dHat = gpu.pool.acquire(part.rows * m * 4, undefined, "adapter.dy_hat");
      encodeFht(gpu, dy, dHat, part.rows, m, { input: { ld: m, offset: part.first * m } });
      const accumulate = i > 0 || (opts.accumulateGrad ?? true);
      this.spectrum.encodeGrad(dHat, part.xHat, dcoef, part.rows, this.scale, accumulate);
      if (dx) {
        const w = gpu.pool.acquire(part.rows * nIn * 4, undefined, "adapter.w");
        this.spectrum.encodeProduct("cols", coef, dHat, w, part.rows);
        this.#fhtInto(w, dx, part, nIn, opts.accumulateDx ?? true);
        gpu.pool.release(w);
      }
      gpu.pool.release(dHat);
    });
    saved.release();
  }

  /**
   * ∂L/∂c (+)= into `dcoef` from x (T×N) and δ = ∂L/∂y (T×M) (adds unless `accumulate` is
   * false): the coefficient gradient of {@link backward} without a saved forward, for a layer
   * that applied ΔW folded into its weight. `xHat`, when given, is x's transform
   * ({@link transformInput}), shared with other adapters of x; it is read in place of x where
   * {@link readsInputTransform} says so, else x is. `dyRows` places δ's rows `ld` apart from
   * element `offset` (the layer's columns of a stacked output gradient, read in place). Where
   * {@link fusesGradient}, both transforms happen inside the gradient's kernel. Tokens over one
   * storage binding are taken in bands, each band's sums added to the last's.
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
    need(x, tokens * nIn, `x (tokens×in_features = ${tokens}×${nIn})`);
    if (opts.xHat) need(opts.xHat, tokens * nIn, `x̂ (tokens×in_features = ${tokens}×${nIn})`);
    const { ld, offset } = opts.dyRows ?? { ld: m, offset: 0 };
    need(
      dy,
      offset + (tokens - 1) * ld + m,
      `dy (tokens×out_features = ${tokens}×${m}${opts.dyRows ? `, rows ${ld} apart` : ""})`,
    );
    need(dcoef, this.count, `dcoef (n = ${this.count})`);
    if (this.fusesGradient) {
      const acc = opts.accumulate ?? true;
      encodeFusedGrad(gpu, this.spectrum, x, dy, dcoef, tokens, this.scale, acc, opts.dyRows);
      return;
    }
    const bands = this.#gradBands(tokens, opts.dyRows);
    const shared = bands.length === 1 ? opts.xHat : undefined;
    bands.forEach((band, i) => {
      const xHat = shared ?? gpu.pool.acquire(band.rows * nIn * 4, undefined, "adapter.x_hat");
      const dHat = gpu.pool.acquire(band.rows * m * 4, undefined, "adapter.dy_hat");
      if (!shared) encodeFht(gpu, x, xHat, band.rows, nIn, { input: { ld: nIn, offset: band.first * nIn } });
      encodeFht(gpu, dy, dHat, band.rows, m, { input: { ld, offset: offset + band.first * ld } });
      const accumulate = i > 0 || (opts.accumulate ?? true);
      this.spectrum.encodeGrad(dHat, xHat, dcoef, band.rows, this.scale, accumulate);
      if (!shared) gpu.pool.release(xHat);
      gpu.pool.release(dHat);
    });
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
   * Whether {@link coefGradient} over `tokens` tokens (δ's rows placed by `dyRows`, as it is
   * given them) reads a given x̂: not where it
   * {@link fusesGradient}, nor where x̂ or δ is over one storage binding (x is then transformed
   * band by band, as the gradient's kernels bind a band's x̂ whole).
   */
  readsInputTransform(tokens: number, dyRows?: { ld: number; offset: number }): boolean {
    return !this.fusesGradient && this.#gradBands(tokens, dyRows).length === 1;
  }

  /** The token bands of {@link coefGradient}: x̂ and δ, read in place (`dyRows`), each within a binding. */
  #gradBands(tokens: number, dyRows?: { ld: number; offset: number }) {
    const { ld, offset } = dyRows ?? { ld: this.m, offset: 0 };
    const dyEnd = offset + (tokens - 1) * ld + this.m;
    return this.#tokenBands(tokens, Math.max(this.nIn, ld), Math.max(tokens * this.nIn, dyEnd));
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
    if (Math.max(dst.size, base?.size ?? 0) > bindingLimit(gpu)) {
      return this.#materializeBands(coef, dst, placed);
    }
    if (nIn < 65536 && encodeDeltaWeight(gpu, this.spectrum, coef, dst, this.scale, placed)) return;
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

  /**
   * ΔW (or ΔWᵀ) placed into a `dst` or `base` over one storage binding (see {@link materialize}):
   * in bands of its storage rows, each a transposed layout's rows (ΔWᵀ's of S̃, ΔW's of S̃ᵀ).
   */
  #materializeBands(
    coef: GPUBuffer,
    dst: GPUBuffer,
    opts: { transposed: boolean; accumulate: boolean; at: number; base?: GPUBuffer },
  ): void {
    const { gpu, m, nIn } = this;
    const [rows, width] = opts.transposed ? [nIn, m] : [m, nIn];
    const spectrum = opts.transposed ? this.spectrum : this.#transposedSpectrum();
    // W first, then ΔW added (a copy binds nothing)
    if (opts.base) gpu.stream.copy(opts.base, 0, dst, opts.at * 4, m * nIn * 4);
    const what = `${this.name}: ΔW of ${m}×${nIn}${opts.transposed ? " stored transposed" : ""}`;
    for (const band of pairedRowBands(gpu, rows, width, what)) {
      const window = rowWindow(gpu, band.first, band.rows, width, { offset: opts.at });
      this.#deltaRows(coef, spectrum, dst, window, opts.accumulate || !!opts.base);
    }
  }

  /**
   * Rows [first, first + rows) of `spectrum`'s ΔWᵀ (each of its M) into the window `band` of dst,
   * written or added: in one kernel, else cas rows, an FHT along M and a copy or an add.
   */
  #deltaRows(coef: GPUBuffer, spectrum: SparseSpectrum, dst: GPUBuffer, band: RowBand, add: boolean): void {
    const { gpu, scale } = this;
    const width = spectrum.m, count = band.rows * width;
    const binding = bandBinding(gpu, dst, band);
    const rows = { first: band.first, count: band.rows };
    const placed = { transposed: true, accumulate: add, at: band.base, rows };
    if (encodeDeltaWeight(gpu, spectrum, coef, binding, scale, placed)) return;
    const t = gpu.pool.acquire(count * 4, undefined, "adapter.delta_band");
    encodeCasBand(gpu, spectrum, coef, t, band.first, band.rows);
    encodeFht(gpu, t, t, band.rows, width, { scale });
    if (add) encodeAdd(gpu, t, binding, count, band.base);
    else gpu.stream.copy(t, 0, dst, band.start + band.base * 4, count * 4);
    gpu.pool.release(t);
  }

  /** S̃ᵀ: the spectrum of the transposed positions on N×M (every transform's S̃ transposes so). */
  #transposedSpectrum(): SparseSpectrum {
    const { positions, n, m, transform } = this.spectrum;
    const swapped = Int32Array.from(positions, (_, i) => positions[i ^ 1]);
    return this.#spectrumT ??= new SparseSpectrum(this.gpu, swapped, n, m, transform);
  }

  /**
   * dst's rows of `band` (+)= scale·FHT(src) along their length `n`; src holds the band's rows
   * (scratch, may be overwritten).
   */
  #fhtInto(src: GPUBuffer, dst: GPUBuffer, band: TokenBand, n: number, accumulate: boolean): void {
    const { gpu, scale } = this;
    if (accumulate) {
      encodeFht(gpu, src, src, band.rows, n, { scale });
      const window = rowWindow(gpu, band.first, band.rows, n);
      encodeAdd(gpu, src, bandBinding(gpu, dst, window), band.rows * n, window.base);
    } else {
      encodeFht(gpu, src, dst, band.rows, n, { scale, output: { offset: band.first * n } });
    }
  }

  /**
   * The bands of `tokens` tokens: one where the largest of the op's tensors (`extent` elements
   * from its buffer's start; tokens × `width` by default) fits one storage binding, else
   * {@link pairedRowBands} of rows of `width`.
   */
  #tokenBands(tokens: number, width: number, extent = tokens * width): TokenBand[] {
    if (4 * extent <= bindingLimit(this.gpu)) return [{ first: 0, rows: tokens }];
    return pairedRowBands(
      this.gpu,
      tokens,
      width,
      `${this.name}: ${tokens} tokens through a ${this.m}×${this.nIn} adapter`,
    );
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
