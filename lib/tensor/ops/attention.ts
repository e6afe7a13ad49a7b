/**
 * Scaled dot-product attention with causal and padding masks, grouped-query heads and
 * dropout on the probabilities, and rotary position embeddings. Attention is two batched
 * products around a masked softmax. The products read q, k, v and write the output where the
 * heads lie, in either layout ([B, H, T, D] or the projections' own [B, T, H, D]), so no head
 * is copied; query heads that share a key/value head read it in place (no repeated K/V).
 * @module
 */
import { ropeKernel } from "../../../kernels/rope.ts";
import type { Gpu } from "../../gpu/mod.ts";
import { bindingLimit } from "../../gpu/bands.ts";
import { encodeMatmul } from "../../linalg/matmul.ts";
import type { MatrixLayout } from "../../linalg/matmul_plan.ts";
import { record } from "../autograd.ts";
import { keep, tidy } from "../scope.ts";
import { fmt } from "../shape.ts";
import { Tensor } from "../tensor.ts";
import {
  type AttentionPath,
  fusedScaledDotProduct,
  probabilityBytes,
  useFusedAttention,
} from "./attention_fused.ts";
import { type DropoutSpec, needsFactors } from "./dropout.ts";
import { cast } from "./layout.ts";
import { operandB } from "./matmul.ts";
import { maskedSoftmax } from "./softmax.ts";
import { expectDtype, f, launch, u32s } from "./util.ts";
import type { AttnDims } from "../reference/attention.ts";

/** Where the heads of attention's tensors lie: `bhtd` [B, H, T, D] or `bthd` [B, T, H, D]. */
export type HeadLayout = "bhtd" | "bthd";

/** Options of {@link attention}. */
export interface AttentionOptions {
  /** Each query sees only keys at or before its position (decoders). */
  causal?: boolean;
  /** With `causal`: a query sees at most this many keys, its own and those before (sliding window). */
  window?: number;
  /** i32 [B, S] attention mask: 0 hides a (padding) key. */
  mask?: Tensor | null;
  /** Score scale; default 1/√D. */
  scale?: number;
  /** Layout of q, k, v and the result; default `bhtd`. */
  layout?: HeadLayout;
  /**
   * Dropout on the probabilities [B, H, T, S] before the product with v (train mode), with the
   * masks `dropout(probs, p, key)` would draw; applied in the softmax's own pass.
   */
  probsDropout?: DropoutSpec | null;
  /**
   * `fused` never stores the [B, H, T, S] probabilities (memory ∝ B·H·T); `materialized`
   * runs two batched products around a softmax; `auto` (default, {@link ATTENTION_PATH})
   * fuses when the probabilities would be large.
   */
  path?: AttentionPath;
}

/**
 * `softmax(q·kᵀ·scale + masks)·v` with q [B, H, T, D], k [B, Hkv, S, D], v [B, Hkv, S, Dv]
 * (layout `bhtd`), or q [B, T, H, D], k [B, S, Hkv, D], v [B, S, Hkv, Dv] (`bthd`), and H a
 * multiple of Hkv (query head h uses key/value head ⌊h / (H/Hkv)⌋, as HF's repeat_kv).
 * Returns [B, H, T, Dv] (or [B, T, H, Dv]). Queries whose keys are all masked give zeros.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  expectDtype("attention", "f32", q, k, v);
  const layout = opts.layout ?? "bhtd";
  const dims = attentionDims(q, k, v, layout);
  const { h, hkv, t, s, d, dv } = dims;
  const heads = (x: Tensor, n: number, len: number, dim: number): AttentionHeads => ({
    x,
    at: placement(layout, n, len, dim),
    whole: true,
  });
  return scaledDotProduct(heads(q, h, t, d), heads(k, hkv, s, d), heads(v, hkv, s, dv), dims, layout, opts);
}

/** Options of {@link packedAttention}: the head counts besides {@link AttentionOptions}. */
export interface PackedAttentionOptions extends Omit<AttentionOptions, "layout"> {
  /** Query heads H. */
  heads: number;
  /** Key/value heads (divides H); default H. */
  kvHeads?: number;
  /** Size D of one head. */
  headDim: number;
}

/**
 * Self-attention over q, k and v packed in one [B, T, (H + 2·Hkv)·D] tensor (q's heads, then
 * k's, then v's, as GPT-2's c_attn or a fused QKV projection gives them), read in place.
 * Returns [B, T, H, D].
 */
export function packedAttention(qkv: Tensor, opts: PackedAttentionOptions): Tensor {
  expectDtype("packedAttention", "f32", qkv);
  const { heads: h, headDim: d } = opts;
  const hkv = opts.kvHeads ?? h;
  const width = (h + 2 * hkv) * d;
  const [b, t, w] = qkv.shape;
  const ok = qkv.shape.length === 3 && w === width && hkv > 0 && h % hkv === 0 && b > 0 && t > 0 && d > 0;
  if (!ok) {
    throw new Error(
      `packedAttention: expected [B, T, (H + 2·Hkv)·D] = [B, T, ${width}] with H (${h}) a multiple of Hkv ` +
        `(${hkv}), got ${qkv.describe()}`,
    );
  }
  const packed: PackedGradient = { fresh: null };
  const part = (first: number): AttentionHeads => ({
    x: qkv,
    at: { ld: w, offset: first * d, batchStride: t * w, headStride: d, headGroup: 1 },
    whole: false,
    packed,
  });
  const dims = { b, h, hkv, t, s: t, d, dv: d };
  return scaledDotProduct(part(0), part(h), part(h + hkv), dims, "bthd", opts);
}

/** Options of {@link kvPackedAttention}. */
export interface KvPackedAttentionOptions extends PackedAttentionOptions {
  /** Heads before k's in each row of kv (H for a packed q/k/v like GPT-2's c_attn); default 0. */
  keysAt?: number;
}

/**
 * Attention of queries q [B, T, H·D] over keys and values packed in one [B, S, (A + 2·Hkv)·D]
 * tensor (A = `keysAt` heads of something else, then k's heads, then v's, as a fused projection
 * gives them), read in place: a layer computed at a few positions alone takes its queries there
 * and keys and values everywhere. Returns [B, T, H, D].
 */
export function kvPackedAttention(q: Tensor, kv: Tensor, opts: KvPackedAttentionOptions): Tensor {
  expectDtype("kvPackedAttention", "f32", q, kv);
  const { heads: h, headDim: d } = opts;
  const hkv = opts.kvHeads ?? h, skip = opts.keysAt ?? 0;
  const [b, t, wq] = q.shape, [bk, s, w] = kv.shape;
  const width = (skip + 2 * hkv) * d;
  const ok = q.shape.length === 3 && kv.shape.length === 3 && wq === h * d && w === width && b === bk &&
    hkv > 0 && h % hkv === 0 && [b, t, s, d].every((n) => n > 0);
  if (!ok) {
    throw new Error(
      `kvPackedAttention: expected q [B, T, H·D] = [B, T, ${h * d}] and kv [B, S, (${skip} + 2·Hkv)·D] = ` +
        `[B, S, ${width}] with H (${h}) a multiple of Hkv (${hkv}); got q ${q.describe()}, kv ${kv.describe()}`,
    );
  }
  const query: AttentionHeads = { x: q, at: placement("bthd", h, t, d), whole: true };
  // with no heads before k's, k's and v's parts cover kv: its gradient is written part by part
  const packed: PackedGradient | undefined = skip === 0 ? { fresh: null } : undefined;
  const part = (first: number): AttentionHeads => ({
    x: kv,
    at: { ld: w, offset: first * d, batchStride: s * w, headStride: d, headGroup: 1 },
    whole: false,
    packed,
  });
  return scaledDotProduct(query, part(skip), part(skip + hkv), { b, h, hkv, t, s, d, dv: d }, "bthd", opts);
}

/** Options of {@link tensor.prefixAttention}. */
export interface PrefixAttentionOptions {
  /** Each query sees only keys at or before its position, the last query at the last key. */
  causal?: boolean;
  /** With `causal`: a query sees at most this many keys, its own and those before (sliding window). */
  window?: number;
  /** Score scale; default 1/√D. */
  scale?: number;
  /** i32 [B, length]: 0 hides a (padding) key. */
  mask?: Tensor | null;
}

/**
 * Attention of queries q [B, T, H, D] over the first `length` positions of keys and values
 * k, v [B, C, Hkv, D] (C ≥ `length`: a key/value cache that has room to grow), read in place.
 * A causal mask aligns the last query with the last key. Returns [B, T, H, D]. For inference:
 * no dropout. k and v may be stored as f16 (a half-size cache): the materialised path reads them
 * as they are, the fused one from f32 copies.
 */
export function prefixAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  length: number,
  opts: PrefixAttentionOptions = {},
): Tensor {
  expectDtype("prefixAttention", "f32", q);
  expectDtype("prefixAttention", k.dtype === "f16" ? "f16" : "f32", k, v);
  const [b, t, h, d] = q.shape, [bk, cap, hkv, dk] = k.shape;
  const ok = q.shape.length === 4 && k.shape.length === 4 && fmt(k.shape) === fmt(v.shape) && b === bk &&
    d === dk && hkv > 0 && h % hkv === 0 && Number.isInteger(length) && length >= 1 && length <= cap &&
    [b, t, d].every((n) => n > 0);
  if (!ok) {
    throw new Error(
      `prefixAttention: expected q [B, T, H, D], k and v [B, C, Hkv, D] with H a multiple of Hkv and ` +
        `1 ≤ length ≤ C; got q ${fmt(q.shape)}, k ${fmt(k.shape)}, v ${fmt(v.shape)}, length ${length}`,
    );
  }
  const query: AttentionHeads = { x: q, at: placement("bthd", h, t, d), whole: true };
  const dims = { b, h, hkv, t, s: length, d, dv: d };
  // the fused kernels read f32 keys and values
  const fused = useFusedAttention(dims, undefined, bindingLimit(q.gpu));
  const widen = (x: Tensor) => (x.dtype === "f16" && fused ? cast(x, "f32") : x);
  const stored = (x: Tensor): AttentionHeads => ({
    x: widen(x),
    at: placement("bthd", hkv, cap, d),
    whole: false,
  });
  return scaledDotProduct(query, stored(k), stored(v), dims, "bthd", opts);
}

/** Sizes of one attention call. */
export type AttentionDims = Pick<AttnDims, "b" | "h" | "hkv" | "t" | "s" | "d" | "dv">;

/** Heads of q, k or v: the tensor, where they lie in it, and whether they are all of it. */
export interface AttentionHeads {
  x: Tensor;
  at: Required<MatrixLayout>;
  whole: boolean;
  /**
   * Shared by the heads that are disjoint parts of one tensor and together cover it (q, k and v
   * of {@link packedAttention}; k and v of {@link kvPackedAttention}): its gradient is then
   * written part by part, never zeroed first.
   */
  packed?: PackedGradient;
}

/**
 * The gradient of a packed q/k/v (or k/v) tensor on the materialised path: the values' rule runs
 * first and writes v's part into a new tensor, the scores' rule then writes the other parts.
 * That is safe only when nothing else adds into the tensor between them: when the two attention
 * nodes are its only consumers.
 */
interface PackedGradient {
  /** The tensor whose q and k parts are not written yet. */
  fresh: Tensor | null;
}

/**
 * Attention over heads placed anywhere: fused, or the scores, the masked softmax (with
 * dropout) and the values.
 */
function scaledDotProduct(
  q: AttentionHeads,
  k: AttentionHeads,
  v: AttentionHeads,
  dims: AttentionDims,
  layout: HeadLayout,
  opts: Omit<AttentionOptions, "layout">,
): Tensor {
  const padding = opts.mask ?? null;
  if (padding && (padding.shape.length !== 2 || padding.shape[0] !== dims.b || padding.shape[1] !== dims.s)) {
    throw new Error(`attention: mask ${padding.describe()} should be [${dims.b}, ${dims.s}] (batch, keys)`);
  }
  if (padding) expectDtype("attention mask", "i32", padding);
  if (opts.window !== undefined && !opts.causal) throw new Error("attention: a window needs the causal mask");
  if (opts.causal && dims.s < dims.t) {
    throw new Error(
      `attention: a causal mask needs keys ≥ queries, got ${dims.s} keys for ${dims.t} queries`,
    );
  }
  const limit = bindingLimit(q.x.gpu);
  // dropout at given positions goes through factors on the probabilities: materialised
  const factors = needsFactors(opts.probsDropout ?? null);
  if (useFusedAttention(dims, opts.path, limit) && !factors) {
    const { b, h, t, dv } = dims;
    const at = placement(layout, h, t, dv);
    return fusedScaledDotProduct(q, k, v, dims, {
      shape: layout === "bhtd" ? [b, h, t, dv] : [b, t, h, dv],
      at,
    }, opts);
  }
  if (probabilityBytes(dims) > limit) {
    const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
    throw new Error(
      `attention: the materialised path's [${dims.b}, ${dims.h}, ${dims.t}, ${dims.s}] probabilities ` +
        `(${mib(probabilityBytes(dims))}) exceed this device's largest storage binding (${mib(limit)}); ` +
        (factors ? "dropout at chosen rows needs them: use fewer rows per call" : 'use the "fused" path'),
    );
  }
  return tidy(() => {
    const scores = headScores(q, k, dims, opts.scale ?? 1 / Math.sqrt(dims.d));
    // [B, H, T, S]: the rows of one batch entry are consecutive, as the padding mask expects
    const masks = { causal: opts.causal, padding, queries: dims.t, window: opts.window };
    return headValues(maskedSoftmax(scores, 1, masks, opts.probsDropout ?? null), v, dims, layout);
  });
}

function attentionDims(q: Tensor, k: Tensor, v: Tensor, layout: HeadLayout): AttentionDims {
  const split = (x: Tensor) => layout === "bhtd" ? x.shape : [x.shape[0], x.shape[2], x.shape[1], x.shape[3]];
  const [b, h, t, d] = split(q), [bk, hkv, s, dk] = split(k), [bv, hv, sv, dv] = split(v);
  const rank4 = q.shape.length === 4 && k.shape.length === 4 && v.shape.length === 4;
  const ok = rank4 && b === bk && b === bv && d === dk && hv === hkv && sv === s && hkv > 0 &&
    h % hkv === 0 && [b, t, s, d, dv].every((n) => n > 0);
  if (!ok) {
    const [sq, skv] = layout === "bhtd" ? ["[B, H, T, D]", "[B, Hkv, S, "] : ["[B, T, H, D]", "[B, S, Hkv, "];
    throw new Error(
      `attention: expected q ${sq}, k ${skv}D], v ${skv}Dv] (layout ${layout}) with H a multiple of Hkv ` +
        `and no empty dimension; got q ${fmt(q.shape)}, k ${fmt(k.shape)}, v ${fmt(v.shape)}`,
    );
  }
  return { b, h, hkv, t, s, d, dv };
}

/** Where the `heads` heads of `len` positions of size `dim` lie in a tensor of `layout`. */
function placement(layout: HeadLayout, heads: number, len: number, dim: number): Required<MatrixLayout> {
  return layout === "bhtd"
    ? { ld: dim, offset: 0, batchStride: heads * len * dim, headStride: len * dim, headGroup: 1 }
    : { ld: heads * dim, offset: 0, batchStride: len * heads * dim, headStride: dim, headGroup: 1 };
}

/**
 * Member `j` of each group of query heads that share a key/value head, as B·Hkv matrices: the
 * heads of `p` (placed for H heads) taken `group` apart from head j.
 */
function groupMember(p: Required<MatrixLayout>, group: number, j: number): MatrixLayout {
  return { ...p, offset: p.offset + j * p.headStride, headStride: group * p.headStride };
}

/**
 * The tensors a gradient rule writes for its inputs (q, k and v may share one) and whether
 * its products add into them: `acc` when given, else a new tensor, zeroed unless the rule's
 * heads are all of it (`whole[j]`).
 */
function gradTargets(
  inputs: readonly Tensor[],
  need: readonly boolean[],
  acc: readonly (Tensor | null)[],
  whole: readonly boolean[],
): { grads: (Tensor | null)[]; adds: boolean[] } {
  return {
    grads: inputs.map((x, j) =>
      need[j] ? acc[j] ?? (whole[j] ? Tensor.empty(x.gpu, x.shape) : Tensor.zeros(x.gpu, x.shape)) : null
    ),
    adds: inputs.map((_, j) => acc[j] !== null || !whole[j]),
  };
}

/** `scale·q·kᵀ` per head → [B, H, T, S], and its gradient rule. */
function headScores(q: AttentionHeads, k: AttentionHeads, dims: AttentionDims, scale: number): Tensor {
  const { b, h, hkv, t, s, d } = dims, group = h / hkv, gpu = q.x.gpu;
  const lk = { ...k.at, headGroup: group };
  const ls = placement("bhtd", h, t, s);
  const out = Tensor.empty(gpu, [b, h, t, s]);
  const perHead = { batch: b * h, heads: h, alpha: scale };
  encodeMatmul(gpu, q.x.buffer, k.x.buffer, out.buffer, t, s, d, {
    ...perHead,
    ...operandB(k.x),
    transB: true,
    layoutA: q.at,
    layoutB: lk,
  });
  const inputs = q.x === k.x ? [q.x] : [q.x, k.x];
  const kAt = inputs.length - 1;
  return record("attention.scores", out, inputs, inputs, (g, saved, need, acc) => {
    const [vq, vk] = [saved[0], saved[kAt]];
    const to = gradTargets(inputs, need, acc, kAt === 0 ? [q.whole && k.whole] : [q.whole, k.whole]);
    // a packed gradient whose v part alone is written: k's part (and q's, when packed too) is
    // written, not added
    const fresh = k.packed?.fresh ?? null;
    if (fresh) {
      k.packed!.fresh = null;
      if (acc[kAt] !== fresh) throw new Error("attention: the packed gradient was not handed on intact");
      to.adds[kAt] = false;
    }
    const gq = to.grads[0], gk = to.grads[kAt];
    if (gq) {
      // dQ = scale·dS·K, into q's heads
      encodeMatmul(gpu, g.buffer, vk.buffer, gq.buffer, t, d, s, {
        ...perHead,
        ...operandB(vk),
        layoutB: lk,
        layoutC: q.at,
        accumulate: to.adds[0],
      });
    }
    if (gk) {
      // dK = scale·Σ_j dS_jᵀ·Q_j over the query heads j of each key head
      for (let j = 0; j < group; j++) {
        encodeMatmul(gpu, g.buffer, vq.buffer, gk.buffer, s, d, t, {
          batch: b * hkv,
          heads: hkv,
          alpha: scale,
          transA: true,
          layoutA: groupMember(ls, group, j),
          layoutB: groupMember(q.at, group, j),
          layoutC: k.at,
          // q's gradient is k's when q is k (unless they are disjoint parts of a fresh packed one)
          accumulate: j > 0 || to.adds[kAt] || (kAt === 0 && gq !== null && !fresh),
        });
      }
    }
    return to.grads;
  });
}

/** `p·v` per head (p [B, H, T, S]) → [B, H, T, Dv] or [B, T, H, Dv], and its gradient rule. */
function headValues(p: Tensor, v: AttentionHeads, dims: AttentionDims, layout: HeadLayout): Tensor {
  const { b, h, hkv, t, s, dv } = dims, group = h / hkv, gpu = p.gpu;
  const lo = placement(layout, h, t, dv);
  const lv = { ...v.at, headGroup: group };
  const lp = placement("bhtd", h, t, s);
  const out = Tensor.empty(gpu, layout === "bhtd" ? [b, h, t, dv] : [b, t, h, dv]);
  const perHead = { batch: b * h, heads: h };
  encodeMatmul(gpu, p.buffer, v.x.buffer, out.buffer, t, dv, s, {
    ...perHead,
    ...operandB(v.x),
    layoutB: lv,
    layoutC: lo,
  });
  return record("attention.values", out, [p, v.x], [p, v.x], (g, [vp, vv], need, acc) => {
    const gp = need[0] ? gradTargets([vp], [true], [acc[0]], [true]) : null;
    // a packed q/k/v (or k/v) tensor that only this call's two nodes consume: its parts are written in turn
    // (not a leaf's: its gradient is added to the leaf's at once, never handed to the next rule)
    const packedFirst = need[1] && acc[1] === null && v.packed !== undefined && !v.x.isLeaf &&
      v.x.consumers === 2;
    const gv = need[1] ? gradTargets([vv], [true], [acc[1]], [v.whole || packedFirst]) : null;
    if (packedFirst) v.packed!.fresh = gv!.grads[0];
    if (gp) {
      // dP = dO·Vᵀ
      encodeMatmul(gpu, g.buffer, vv.buffer, gp.grads[0]!.buffer, t, s, dv, {
        ...perHead,
        ...operandB(vv),
        transB: true,
        layoutA: lo,
        layoutB: lv,
        accumulate: gp.adds[0],
      });
    }
    if (gv) {
      // dV = Σ_j P_jᵀ·dO_j over the query heads j of each value head
      for (let j = 0; j < group; j++) {
        encodeMatmul(gpu, vp.buffer, g.buffer, gv.grads[0]!.buffer, s, dv, t, {
          batch: b * hkv,
          heads: hkv,
          transA: true,
          layoutA: groupMember(lp, group, j),
          layoutB: groupMember(lo, group, j),
          layoutC: v.at,
          accumulate: j > 0 || gv.adds[0],
        });
      }
    }
    return [gp?.grads[0] ?? null, gv?.grads[0] ?? null];
  });
}

/** cos/sin tables of {@link rope}: [T, rotaryDim/2] each, for positions 0..T-1. */
export interface RopeTables {
  cos: Tensor;
  sin: Tensor;
  /** Dimensions rotated (the head dimension unless partial rotary). */
  rotaryDim: number;
}

const tableCache = new WeakMap<Gpu, Map<string, RopeTables>>();

/**
 * The rotary tables for `length` positions, computed on the CPU and cached per device. The
 * inverse frequencies default to HF's `1 / theta^(2i/dim)`; `invFreq` overrides them (rope
 * scaling) and `scale` multiplies both tables (longrope's attention factor). Angles are formed in
 * f32 like HF's (`position · inv_freq` in float32) and their cos/sin taken in float64, so the
 * tables match HF's to an ulp.
 */
export function ropeTables(
  gpu: Gpu,
  opts: { rotaryDim: number; theta: number; length: number; invFreq?: readonly number[]; scale?: number },
): RopeTables {
  const { rotaryDim: rd, theta, length, scale = 1 } = opts;
  if (rd <= 0 || rd % 2 !== 0) {
    throw new Error(`ropeTables: rotaryDim must be a positive even number, got ${rd}`);
  }
  const half = rd / 2;
  if (opts.invFreq && opts.invFreq.length !== half) {
    throw new Error(`ropeTables: invFreq has ${opts.invFreq.length} values, expected ${half}`);
  }
  const key = `${rd}:${theta}:${length}:${scale}:${opts.invFreq?.join(",") ?? ""}`;
  let perGpu = tableCache.get(gpu);
  if (!perGpu) tableCache.set(gpu, perGpu = new Map());
  const hit = perGpu.get(key);
  if (hit) return hit;
  const inv = Float32Array.from(
    { length: half },
    (_, i) => opts.invFreq?.[i] ?? 1 / Math.fround(theta ** Math.fround((2 * i) / rd)),
  );
  const cos = new Float32Array(length * half), sin = new Float32Array(length * half);
  for (let p = 0; p < length; p++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(p * inv[i]);
      // longrope's attention factor scales both (transformers: emb.cos() * attention_scaling)
      cos[p * half + i] = scale === 1 ? Math.cos(angle) : Math.fround(Math.cos(angle)) * scale;
      sin[p * half + i] = scale === 1 ? Math.sin(angle) : Math.fround(Math.sin(angle)) * scale;
    }
  }
  const tables = {
    cos: keep(Tensor.from(gpu, cos, [length, half])),
    sin: keep(Tensor.from(gpu, sin, [length, half])),
    rotaryDim: rd,
  };
  perGpu.set(key, tables);
  return tables;
}

/**
 * Rotate query/key heads by position (HF rotate_half convention). `x` is [B, H, T, D]
 * (`layout: "bhtd"`, default) or [B, T, H, D] (`"bthd"`); the tables must cover T positions.
 */
export function rope(x: Tensor, tables: RopeTables, layout: "bhtd" | "bthd" = "bhtd"): Tensor {
  expectDtype("rope", "f32", x);
  if (x.shape.length !== 4) throw new Error(`rope: expected a 4-D tensor, got ${x.describe()}`);
  const [, a, c, d] = x.shape;
  const [t, posDiv] = layout === "bhtd" ? [c, 1] : [a, c];
  const half = tables.rotaryDim / 2;
  if (tables.rotaryDim > d || tables.cos.shape[0] < t || tables.cos.shape[1] !== half) {
    throw new Error(
      `rope: tables ${tables.cos.describe()} (rotary dim ${tables.rotaryDim}) do not cover ${t} positions of ` +
        `head dim ${d} in ${x.describe()} (${layout})`,
    );
  }
  const apply = (src: Tensor, sign: number, cos: Tensor, sin: Tensor) => {
    const out = Tensor.empty(src.gpu, src.shape);
    const params = u32s(src.size, d, tables.rotaryDim, t, posDiv, f(sign));
    launch(src.gpu, ropeKernel, [src.buffer, cos.buffer, sin.buffer, out.buffer], src.size, params);
    return out;
  };
  // the tables are saved: they may be a caller's own (gathered rows), freed before backward
  return record(
    "rope",
    apply(x, 1, tables.cos, tables.sin),
    [x],
    [tables.cos, tables.sin],
    (g, [cos, sin]) => [apply(g, -1, cos, sin)],
  );
}
