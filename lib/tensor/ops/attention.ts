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
import { encodeMatmul, type MatrixLayout } from "../../linalg/matmul.ts";
import { record } from "../autograd.ts";
import { keep, tidy } from "../scope.ts";
import { fmt } from "../shape.ts";
import { Tensor } from "../tensor.ts";
import { maskedSoftmax } from "./softmax.ts";
import { expectDtype, f, launch, u32s } from "./util.ts";

/** Where the heads of attention's tensors lie: `bhtd` [B, H, T, D] or `bthd` [B, T, H, D]. */
export type HeadLayout = "bhtd" | "bthd";

/** Options of {@link attention}. */
export interface AttentionOptions {
  /** Each query sees only keys at or before its position (decoders). */
  causal?: boolean;
  /** i32 [B, S] attention mask: 0 hides a (padding) key. */
  mask?: Tensor | null;
  /** Score scale; default 1/√D. */
  scale?: number;
  /** Layout of q, k, v and the result; default `bhtd`. */
  layout?: HeadLayout;
  /** Applied to the probabilities [B, H, T, S] before the product with v (train-mode dropout). */
  probsDropout?: ((probs: Tensor) => Tensor) | null;
}

/** Sizes of one attention call. */
interface Dims {
  b: number;
  h: number;
  hkv: number;
  t: number;
  s: number;
  d: number;
  dv: number;
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
  const mask = opts.mask ?? null;
  if (mask && (mask.shape.length !== 2 || mask.shape[0] !== dims.b || mask.shape[1] !== dims.s)) {
    throw new Error(`attention: mask ${mask.describe()} should be [${dims.b}, ${dims.s}] (batch, keys)`);
  }
  return tidy(() => {
    const scores = headScores(q, k, dims, layout, opts.scale ?? 1 / Math.sqrt(dims.d));
    // [B, H, T, S]: the rows of one batch entry are consecutive, as the padding mask expects
    const probs = maskedSoftmax(scores, 1, { causal: opts.causal, padding: mask, queries: dims.t });
    return headValues(opts.probsDropout ? opts.probsDropout(probs) : probs, v, dims, layout);
  });
}

function attentionDims(q: Tensor, k: Tensor, v: Tensor, layout: HeadLayout): Dims {
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

/** `scale·q·kᵀ` per head → [B, H, T, S], and its gradient rule. */
function headScores(q: Tensor, k: Tensor, dims: Dims, layout: HeadLayout, scale: number): Tensor {
  const { b, h, hkv, t, s, d } = dims, group = h / hkv, gpu = q.gpu;
  const lq = placement(layout, h, t, d), lk = placement(layout, hkv, s, d);
  const lkShared = { ...lk, headGroup: group };
  const ls = placement("bhtd", h, t, s);
  const out = Tensor.empty(gpu, [b, h, t, s]);
  const perHead = { batch: b * h, heads: h, alpha: scale };
  encodeMatmul(gpu, q.buffer, k.buffer, out.buffer, t, s, d, {
    ...perHead,
    transB: true,
    layoutA: lq,
    layoutB: lkShared,
  });
  return record("attention.scores", out, [q, k], [q, k], (g, [vq, vk], need, acc) => {
    let gq: Tensor | null = null, gk: Tensor | null = null;
    if (need[0]) {
      // dQ = scale·dS·K, into the heads of q's layout
      gq = acc[0] ?? Tensor.empty(gpu, vq.shape);
      encodeMatmul(gpu, g.buffer, vk.buffer, gq.buffer, t, d, s, {
        ...perHead,
        layoutB: lkShared,
        layoutC: lq,
        accumulate: acc[0] !== null,
      });
    }
    if (need[1]) {
      // dK = scale·Σ_j dS_jᵀ·Q_j over the query heads j of each key head
      gk = acc[1] ?? Tensor.empty(gpu, vk.shape);
      for (let j = 0; j < group; j++) {
        encodeMatmul(gpu, g.buffer, vq.buffer, gk.buffer, s, d, t, {
          batch: b * hkv,
          heads: hkv,
          alpha: scale,
          transA: true,
          layoutA: groupMember(ls, group, j),
          layoutB: groupMember(lq, group, j),
          layoutC: lk,
          accumulate: j > 0 || acc[1] !== null,
        });
      }
    }
    return [gq, gk];
  });
}

/** `p·v` per head (p [B, H, T, S]) → the heads of `layout`, and its gradient rule. */
function headValues(p: Tensor, v: Tensor, dims: Dims, layout: HeadLayout): Tensor {
  const { b, h, hkv, t, s, dv } = dims, group = h / hkv, gpu = p.gpu;
  const lv = placement(layout, hkv, s, dv), lo = placement(layout, h, t, dv);
  const lvShared = { ...lv, headGroup: group };
  const lp = placement("bhtd", h, t, s);
  const out = Tensor.empty(gpu, layout === "bhtd" ? [b, h, t, dv] : [b, t, h, dv]);
  const perHead = { batch: b * h, heads: h };
  encodeMatmul(gpu, p.buffer, v.buffer, out.buffer, t, dv, s, {
    ...perHead,
    layoutB: lvShared,
    layoutC: lo,
  });
  return record("attention.values", out, [p, v], [p, v], (g, [vp, vv], need, acc) => {
    let gp: Tensor | null = null, gv: Tensor | null = null;
    if (need[0]) {
      // dP = dO·Vᵀ
      gp = acc[0] ?? Tensor.empty(gpu, vp.shape);
      encodeMatmul(gpu, g.buffer, vv.buffer, gp.buffer, t, s, dv, {
        ...perHead,
        transB: true,
        layoutA: lo,
        layoutB: lvShared,
        accumulate: acc[0] !== null,
      });
    }
    if (need[1]) {
      // dV = Σ_j P_jᵀ·dO_j over the query heads j of each value head
      gv = acc[1] ?? Tensor.empty(gpu, vv.shape);
      for (let j = 0; j < group; j++) {
        encodeMatmul(gpu, vp.buffer, g.buffer, gv.buffer, s, dv, t, {
          batch: b * hkv,
          heads: hkv,
          transA: true,
          layoutA: groupMember(lp, group, j),
          layoutB: groupMember(lo, group, j),
          layoutC: lv,
          accumulate: j > 0 || acc[1] !== null,
        });
      }
    }
    return [gp, gv];
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
 * scaling). Angles are formed in f32 like HF's (`position · inv_freq` in float32) and their
 * cos/sin taken in float64, so the tables match HF's to an ulp.
 */
export function ropeTables(
  gpu: Gpu,
  opts: { rotaryDim: number; theta: number; length: number; invFreq?: readonly number[] },
): RopeTables {
  const { rotaryDim: rd, theta, length } = opts;
  if (rd <= 0 || rd % 2 !== 0) {
    throw new Error(`ropeTables: rotaryDim must be a positive even number, got ${rd}`);
  }
  const half = rd / 2;
  if (opts.invFreq && opts.invFreq.length !== half) {
    throw new Error(`ropeTables: invFreq has ${opts.invFreq.length} values, expected ${half}`);
  }
  const key = `${rd}:${theta}:${length}:${opts.invFreq?.join(",") ?? ""}`;
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
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
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
  const apply = (src: Tensor, sign: number) => {
    const out = Tensor.empty(src.gpu, src.shape);
    const params = u32s(src.size, d, tables.rotaryDim, t, posDiv, f(sign));
    launch(
      src.gpu,
      ropeKernel,
      [src.buffer, tables.cos.buffer, tables.sin.buffer, out.buffer],
      src.size,
      params,
    );
    return out;
  };
  return record("rope", apply(x, 1), [x], [], (g) => [apply(g, -1)]);
}
