/**
 * Scaled dot-product attention with causal and padding masks and grouped-query heads, and
 * rotary position embeddings. Attention is composed of two batched matmuls around a masked
 * softmax, so its gradient comes from their rules; query heads that share a key/value head
 * are stacked as extra rows of one product (no repeated K/V is materialised).
 * @module
 */
import { ropeKernel } from "../../../kernels/rope.ts";
import type { Gpu } from "../../gpu/mod.ts";
import { record } from "../autograd.ts";
import { keep, tidy } from "../scope.ts";
import { fmt } from "../shape.ts";
import { Tensor } from "../tensor.ts";
import { reshape } from "./layout.ts";
import { matmul } from "./matmul.ts";
import { maskedSoftmax } from "./softmax.ts";
import { expectDtype, f, launch, u32s } from "./util.ts";

/** Options of {@link attention}. */
export interface AttentionOptions {
  /** Each query sees only keys at or before its position (decoders). */
  causal?: boolean;
  /** i32 [B, S] attention mask: 0 hides a (padding) key. */
  mask?: Tensor | null;
  /** Score scale; default 1/√D. */
  scale?: number;
}

/**
 * `softmax(q·kᵀ·scale + masks)·v` with q [B, H, T, D], k [B, Hkv, S, D], v [B, Hkv, S, Dv]
 * and H a multiple of Hkv (query head h uses key/value head ⌊h / (H/Hkv)⌋, as HF's
 * repeat_kv). Returns [B, H, T, Dv]. Queries whose keys are all masked give zeros.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  expectDtype("attention", "f32", q, k, v);
  const [b, h, t, d] = q.shape;
  const [bk, hkv, s, dk] = k.shape;
  const dv = v.shape[3];
  const ok = q.shape.length === 4 && k.shape.length === 4 && v.shape.length === 4 && b === bk && d === dk &&
    v.shape[0] === b && v.shape[1] === hkv && v.shape[2] === s && hkv > 0 && h % hkv === 0;
  if (!ok) {
    throw new Error(
      `attention: expected q [B, H, T, D], k [B, Hkv, S, D], v [B, Hkv, S, Dv] with H a multiple of Hkv; ` +
        `got q ${fmt(q.shape)}, k ${fmt(k.shape)}, v ${fmt(v.shape)}`,
    );
  }
  const mask = opts.mask ?? null;
  if (mask && (mask.shape.length !== 2 || mask.shape[0] !== b || mask.shape[1] !== s)) {
    throw new Error(`attention: mask ${mask.describe()} should be [${b}, ${s}] (batch, keys)`);
  }
  const group = h / hkv;
  return tidy(() => {
    const q3 = reshape(q, [b * hkv, group * t, d]);
    const k3 = reshape(k, [b * hkv, s, d]);
    const v3 = reshape(v, [b * hkv, s, dv]);
    const scores = matmul(q3, k3, { transB: true, alpha: opts.scale ?? 1 / Math.sqrt(d) });
    const p = maskedSoftmax(scores, 1, { causal: opts.causal, padding: mask, queries: t });
    return reshape(matmul(p, v3), [b, h, t, dv]);
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
