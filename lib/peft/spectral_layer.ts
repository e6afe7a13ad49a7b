/**
 * A spectral adapter on one linear layer — SSH, or FourierFT (transform `dft`): n trainable
 * coefficients at fixed positions and ΔW = (α/(M·N))·T(S) (SPEC §1.3). Two routes:
 * - spectral: ΔW applied to activations through {@link SpectralAdapterOp} without ever
 *   building it (SPEC §1.6), four FHTs of the tokens per step;
 * - folded, for a layer small against the tokens of a step ({@link SpectralLayer.route}):
 *   W + ΔW built once a step (in one kernel where it fits) and used in the layer's one product, forward and
 *   backward; the coefficient gradient still comes from FHT(x) and FHT(δ).
 *
 * `delta(x)` records one node on the tape whose gradient rule calls the op's backward for
 * ∂L/∂x and ∂L/∂c. The op keeps x̂ = FHT(x) between forward and backward in a pooled buffer
 * outside the tensor system: backward hands it back; a graph released without a backward
 * leaves it until this layer's next forward (or dispose), which returns it to the pool.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import { bindingLimit } from "../gpu/bands.ts";
import type { GradNode } from "../tensor/autograd.ts";
import { isGradEnabled, keep, linear, noGrad, record, Tensor } from "../tensor/mod.ts";
import { copyAll } from "../tensor/ops/copy.ts";
import { linearInputGradient } from "../tensor/ops/matmul.ts";
import type { FoldedUpdate, Linear } from "../nn/linear.ts";
import { SpectralAdapterOp, type SpectralSaved } from "../spectral/adapter_op.ts";
import type { Transform } from "../spectral/transforms.ts";
import type { FourierFTModule, SSHModule } from "./files.ts";
import type { DeltaWeightOptions, PeftLayer } from "./layer.ts";

/** Options of a {@link SpectralLayer}. */
export interface SpectralLayerOptions {
  /** out_features M. */
  outFeatures: number;
  /** in_features N. */
  inFeatures: number;
  /** [n, 2] (row, col) positions in the (out, in) orientation, distinct. */
  positions: Int32Array;
  transform: Transform;
  /** ΔW = (α/(M·N))·T(S). */
  alpha: number;
  /** Initial coefficients [n] (default zeros). */
  coef?: Float32Array;
  /** Checkpoint path of the layer, for messages. */
  path?: string;
}

/** Largest M·N folded into a copy of the weight (16 MiB of f32); larger layers stay spectral. */
const FOLD_MAX_ELEMENTS = 1 << 22;
/**
 * Fold when M·N ≤ FOLD_RATIO · tokens · (M + N): building W + ΔW costs a few passes over M·N
 * floats, and saves two FHTs of the tokens, the sparse product and two sums over tokens × M or N.
 */
const FOLD_RATIO = 0.5;

/** One adapted layer's spectral adapter (kind `ssh` or `fourierft`). */
export class SpectralLayer implements PeftLayer {
  readonly outFeatures: number;
  readonly inFeatures: number;
  /** [n, 2] (row, col) positions, (out, in) orientation. */
  readonly positions: Int32Array;
  readonly op: SpectralAdapterOp;
  /** The trainable coefficients [n] (f32, requires a gradient). */
  readonly coef: Tensor;
  readonly path: string;
  #pending: { node: GradNode; saved: SpectralSaved }[] = [];
  #disposed = false;

  constructor(readonly gpu: Gpu, readonly kind: "ssh" | "fourierft", opts: SpectralLayerOptions) {
    const { outFeatures: m, inFeatures: n, positions } = opts;
    this.path = opts.path ?? "layer";
    this.op = new SpectralAdapterOp(gpu, {
      m,
      nIn: n,
      positions,
      transform: opts.transform,
      alpha: opts.alpha,
      name: this.path,
    });
    this.outFeatures = m;
    this.inFeatures = n;
    this.positions = positions;
    const count = this.op.count;
    if (opts.coef && opts.coef.length !== count) {
      this.op.dispose();
      throw new RangeError(`${this.path}: ${opts.coef.length} coefficients given for ${count} positions`);
    }
    this.coef = keep(Tensor.from(gpu, opts.coef ?? new Float32Array(count), [count], { requiresGrad: true }));
  }

  /** Number of coefficients n. */
  get count(): number {
    return this.op.count;
  }

  /** The transform of ΔW. */
  get transform(): Transform {
    return this.op.transform;
  }

  /** The scaling α of ΔW = (α/(M·N))·T(S). */
  get alpha(): number {
    return this.op.alpha;
  }

  /** ΔW x for x [..., in] → [..., out], recorded on the tape (gradients to x and the coefficients). */
  delta(x: Tensor): Tensor {
    this.#live();
    this.#sweep();
    const { gpu, op } = this;
    const n = this.inFeatures;
    if (x.dtype !== "f32" || x.shape.length < 1 || x.shape[x.shape.length - 1] !== n) {
      throw new Error(`${this.path}: adapter input must be f32 [..., ${n}], got ${x.describe()}`);
    }
    const outShape = [...x.shape.slice(0, -1), this.outFeatures];
    const tokens = x.size / n;
    if (tokens === 0) return Tensor.zeros(gpu, outShape);
    const coef = this.coef;
    const out = Tensor.empty(gpu, outShape);
    const track = isGradEnabled() && (x.requiresGrad || coef.requiresGrad);
    const saved = op.forward(x.buffer, coef.buffer, out.buffer, tokens, { accumulate: false, save: track });
    if (!saved) return out;
    let first: SpectralSaved | null = saved;
    record(`${this.kind}.delta`, out, [x, coef], [x, coef], (g, [xs, cs], need) => {
      // A second backward over a retained graph recomputes x̂ (the first one released it).
      let st = first;
      first = null;
      if (!st || st.released) {
        const scratch = Tensor.empty(gpu, outShape);
        st = op.forward(xs.buffer, cs.buffer, scratch.buffer, tokens, { accumulate: false })!;
      }
      const dcoef = Tensor.empty(gpu, [this.count]);
      const dx = need[0] ? Tensor.empty(gpu, xs.shape) : null;
      op.backward(st, g.buffer, cs.buffer, dx?.buffer ?? null, dcoef.buffer, {
        accumulateDx: false,
        accumulateGrad: false,
      });
      return [dx, need[1] ? dcoef : null];
    });
    if (out.node) this.#pending.push({ node: out.node, saved });
    return out;
  }

  /**
   * The route this adapter takes on `layer` for `tokens` tokens: `fold` when the layer is small
   * against the tokens (see the module doc) and its weight and bias are frozen, else `spectral`.
   */
  route(layer: Linear, tokens: number): "fold" | "spectral" {
    const m = this.outFeatures, n = this.inFeatures;
    const frozen = !layer.weight.requiresGrad && !layer.bias?.requiresGrad;
    // W + ΔW is written whole: it must fit one storage binding
    const fits = m * n <= FOLD_MAX_ELEMENTS && 4 * m * n <= bindingLimit(this.gpu);
    return frozen && fits && m * n <= FOLD_RATIO * tokens * (m + n) ? "fold" : "spectral";
  }

  /** The layer's output through W + ΔW, when {@link route} says `fold`; else null. */
  apply(layer: Linear, x: Tensor): Tensor | null {
    const tokens = this.#tokens(x);
    if (tokens === null || this.route(layer, tokens) !== "fold") return null;
    const w = Tensor.empty(this.gpu, layer.weight.shape);
    const folded = this.fold(layer, tokens, w, 0)!;
    const layout = layer.layout;
    const y = noGrad(() => linear(x, w, layer.bias, { weightLayout: layout }));
    record(`${this.kind}.folded_linear`, y, [x, folded.param], [x, w], (g, [xs, ws], need, acc) => {
      const dx = need[0] ? linearInputGradient(g, ws, layout, acc[0]) : null;
      return [dx, need[1] ? folded.gradient(xs, g, new Map()) : null];
    });
    w.dispose(); // the tape keeps its own reference for backward
    return y;
  }

  /**
   * W + ΔW written into `dst` (f32, from element `at`, in the layer's storage layout) when
   * {@link route} says `fold` for `tokens` tokens, with the coefficient gradient from the
   * layer's input and output gradient; else null, leaving `dst` as it was. `written`: dst holds
   * them already (see `LinearAdapter.fold`).
   */
  fold(layer: Linear, tokens: number, dst: Tensor, at: number, written = false): FoldedUpdate | null {
    this.#live();
    if (this.route(layer, tokens) !== "fold") return null;
    const { gpu, op, coef } = this;
    if (!written) this.#writeFolded(layer, dst, at);
    const n = this.inFeatures;
    const m = this.outFeatures;
    const gradient = (x: Tensor, dy: Tensor, shared: Map<string, Tensor>, at = 0) => {
      const rows = x.size / n;
      // x̂ = FHT(x) is the same for every spectral adapter of width n on this input (a fused
      // gradient, or one over tokens in bands, transforms x itself)
      const key = `fht:${n}`;
      const width = dy.shape[dy.shape.length - 1];
      const dyRows = width === m && at === 0 ? undefined : { ld: width, offset: at };
      const reads = op.readsInputTransform(rows, dyRows);
      let xHat = reads ? shared.get(key) : undefined;
      if (reads && !xHat) {
        xHat = Tensor.empty(gpu, [rows, n]);
        op.transformInput(x.buffer, xHat.buffer, rows);
        shared.set(key, xHat);
      }
      const dcoef = Tensor.empty(gpu, [this.count]);
      op.coefGradient(x.buffer, dy.buffer, rows, dcoef.buffer, {
        accumulate: false,
        xHat: xHat?.buffer,
        dyRows,
      });
      return dcoef;
    };
    return { param: coef, gradient };
  }

  /** W + ΔW into `dst` from element `at`, in the layer's storage layout. */
  #writeFolded(layer: Linear, dst: Tensor, at: number): void {
    const transposed = layer.layout === "in_out";
    if (layer.weight.dtype === "f32") {
      this.op.materialize(this.coef.buffer, dst.buffer, { base: layer.weight.buffer, transposed, at });
    } else {
      copyAll(layer.weight, dst, at); // f16 or quantized: converted first
      this.op.materialize(this.coef.buffer, dst.buffer, { accumulate: true, transposed, at });
    }
  }

  /** Tokens of an f32 input [..., in], or null for any other input. */
  #tokens(x: Tensor): number | null {
    const n = this.inFeatures;
    return x.dtype === "f32" && x.shape.length >= 1 && x.shape[x.shape.length - 1] === n ? x.size / n : null;
  }

  /** The trainable tensors: the coefficients. */
  parameters(): Tensor[] {
    return [this.coef];
  }

  /** ΔW = (α/(M·N))·T(S) (f32) into `dst`, M×N, or its transpose N×M with `transposed`. */
  encodeDeltaWeight(dst: GPUBuffer, opts: DeltaWeightOptions = {}): void {
    this.#live();
    this.op.materialize(this.coef.buffer, dst, opts);
  }

  /** The current coefficients (reads back). */
  async coefficients(): Promise<Float32Array> {
    return Float32Array.from(await this.coef.toArray());
  }

  /** Overwrite the coefficients (stream order). */
  setCoefficients(values: Float32Array): void {
    if (values.length !== this.count) {
      throw new RangeError(`${this.path}: ${values.length} coefficients given, the layer has ${this.count}`);
    }
    this.gpu.stream.write(this.coef.buffer, values);
    this.coef.touch();
  }

  async toModule(): Promise<SSHModule | FourierFTModule> {
    return {
      outFeatures: this.outFeatures,
      inFeatures: this.inFeatures,
      spectrum: await this.coefficients(),
      indices: Int32Array.from(this.positions),
    };
  }

  /** No dropout in spectral adapters: nothing changes. */
  train(_on: boolean): void {}

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const p of this.#pending) p.saved.release();
    this.#pending = [];
    this.op.dispose();
    this.coef.dispose();
  }

  /** Give back x̂ of graphs that were released without a backward. */
  #sweep(): void {
    this.#pending = this.#pending.filter(({ node, saved }) => {
      if (saved.released) return false;
      if (!node.freed) return true;
      saved.release();
      return false;
    });
  }

  #live(): void {
    if (this.#disposed) throw new Error(`${this.path}: the ${this.kind} adapter was disposed`);
  }
}
