/**
 * Fused attention (kernels/attention.ts): the output and one log-sum-exp per query forward,
 * dQ, dK and dV recomputed from them backward, so no [B, H, T, S] tensor is ever stored. Its
 * memory grows with B·H·T instead of B·H·T·S, which is what lets long sequences train. The
 * same results as the materialised path (scores, masked softmax with dropout, values; tested
 * against both and float64).
 * @module
 */
import {
  ATTENTION_UNIFORM,
  fusedAttentionForwardKernel,
  fusedAttentionGradKVKernel,
  fusedAttentionGradQKernel,
  fusedAttentionReduceKernel,
  type FusedAttentionShape,
} from "../../../kernels/attention.ts";
import { grid } from "../../gpu/mod.ts";
import { record } from "../autograd.ts";
import { Tensor } from "../tensor.ts";
import type { AttentionDims, AttentionHeads, AttentionOptions } from "./attention.ts";
import { dropoutWords } from "./dropout.ts";
import { windowWord } from "./softmax.ts";
import { f, u32s } from "./util.ts";

/** Which attention path a call takes: `auto` fuses when the probabilities would be large. */
export type AttentionPath = "auto" | "fused" | "materialized";

/** The settings of {@link ATTENTION_PATH}. */
export interface AttentionPathSettings {
  /** The path of calls that name none. */
  path: AttentionPath;
  /**
   * Bytes of one call's [B, H, T, S] probabilities from which `auto` fuses (256 MiB: a
   * LLaMA-7B layer at batch 1 and ≈ 1450 tokens). Below it the materialised path's batched
   * products are expected to be faster; on lavapipe they are at 128–512 tokens and head size
   * 64, and slower at head size 16 (bench/RESULTS.md). A GPU's crossover is unmeasured
   * (`bench/attention.ts`).
   */
  fuseFromBytes: number;
  /** Query parts of the fused dK and dV passes; 0 chooses (tests and tuning force it). */
  kvSplits: number;
}

/** The attention path of calls that name none, and when `auto` fuses. */
export const ATTENTION_PATH: AttentionPathSettings = {
  path: "auto",
  fuseFromBytes: 256 * 2 ** 20,
  kvSplits: 0,
};

/** Run `fn` with {@link ATTENTION_PATH}'s path set to `path`, restoring it after. */
export async function withAttentionPath<T>(path: AttentionPath, fn: () => Promise<T>): Promise<T> {
  const before = ATTENTION_PATH.path;
  ATTENTION_PATH.path = path;
  try {
    return await fn();
  } finally {
    ATTENTION_PATH.path = before;
  }
}

/** Bytes of one call's [B, H, T, S] probabilities on the materialised path. */
export function probabilityBytes(dims: AttentionDims): number {
  return dims.b * dims.h * dims.t * dims.s * 4;
}

/**
 * Whether a call of these sizes takes the fused path: `auto` fuses from `fuseFromBytes` of
 * probabilities, and whenever they would exceed `bindingLimit` (the device's largest storage
 * binding), which the materialised path cannot bind.
 */
export function useFusedAttention(
  dims: AttentionDims,
  path: AttentionPath = ATTENTION_PATH.path,
  bindingLimit = Infinity,
): boolean {
  if (path !== "auto") return path === "fused";
  const bytes = probabilityBytes(dims);
  return bytes >= ATTENTION_PATH.fuseFromBytes || bytes > bindingLimit;
}

/** Workgroups the dK and dV passes aim for on a GPU: with few keys × key/value heads, the queries split. */
const KV_TARGET_GROUPS = 2048;

/**
 * How the dK and dV passes cut the T queries: `splits` parts of `chunk` (a multiple of the
 * staged tile) when `groups` workgroups (B·Hkv·⌈S/rows⌉) would leave a GPU mostly idle, as a
 * long sequence with batch 1 does; one part on software adapters. `ATTENTION_PATH.kvSplits`
 * forces the count.
 */
function querySplit(
  software: boolean,
  groups: number,
  t: number,
  tile: number,
): { splits: number; chunk: number } {
  const wanted = ATTENTION_PATH.kvSplits > 0
    ? ATTENTION_PATH.kvSplits
    : software
    ? 1
    : Math.min(Math.ceil(KV_TARGET_GROUPS / groups), Math.ceil(t / (4 * tile)));
  const chunk = Math.ceil(Math.ceil(t / Math.max(1, wanted)) / tile) * tile;
  return { splits: Math.ceil(t / chunk), chunk };
}

/** The kernels' fixed sizes for one call: rows per workgroup, and the staged tile that fits. */
function kernelShape(
  dims: AttentionDims,
  opts: { causal: boolean; masked: boolean; dropout: boolean },
  sharedBytes: number,
): FusedAttentionShape {
  const { t, s, d, dv } = dims;
  const rows = Math.min(64, Math.max(16, 2 ** Math.ceil(Math.log2(Math.max(t, s)))));
  // a staged row: its q/k and v/dO vec4s, plus the log-sum-exp, Δ and mask words
  const rowBytes = (Math.ceil(d / 4) + Math.ceil(dv / 4)) * 16 + 12;
  const fit = Math.floor(Math.min(sharedBytes, 32768) / rowBytes / 4) * 4;
  if (fit < 4) {
    throw new Error(
      `attention: head sizes ${d} and ${dv} are too large for the fused kernels' workgroup memory`,
    );
  }
  return { d, dv, rows, tile: Math.min(64, fit), ...opts };
}

/** The heads an attention's output is written to: its shape, and where its heads lie. */
type OutputHeads = { shape: number[]; at: AttentionHeads["at"] };

/** One fused call, as its forward and backward passes share it. */
interface FusedCall {
  q: AttentionHeads;
  k: AttentionHeads;
  v: AttentionHeads;
  out: OutputHeads;
  dims: AttentionDims;
  /** The [B, S] padding mask, if any. */
  padding: Tensor | null;
  shape: FusedAttentionShape;
  scale: number;
  /** The dropout's uniform words ({@link dropoutWords}). */
  dropWords: number[];
  window: number | undefined;
  /** Workgroups of `shape.rows` queries, and of as many keys, per head. */
  queryBlocks: number;
  keyBlocks: number;
  /** How the dK and dV passes cut the queries ({@link querySplit}). */
  split: { splits: number; chunk: number };
}

/**
 * Attention over heads placed anywhere, fused. The caller has checked the sizes, the mask's
 * shape, and that causal masking has keys ≥ queries.
 */
export function fusedScaledDotProduct(
  q: AttentionHeads,
  k: AttentionHeads,
  v: AttentionHeads,
  dims: AttentionDims,
  out: OutputHeads,
  opts: Omit<AttentionOptions, "layout">,
): Tensor {
  const call = planCall(q, k, v, dims, out, opts);
  const { y, stats } = encodeForward(call);
  return recordBackward(call, y, stats);
}

/** Check the options and fix the kernels' sizes, the uniform's settings and the passes' grids. */
function planCall(
  q: AttentionHeads,
  k: AttentionHeads,
  v: AttentionHeads,
  dims: AttentionDims,
  out: OutputHeads,
  opts: Omit<AttentionOptions, "layout">,
): FusedCall {
  const { b, hkv, t, s } = dims, gpu = q.x.gpu;
  const padding = opts.mask ?? null;
  const drop = opts.probsDropout && opts.probsDropout.p > 0 ? opts.probsDropout : null;
  if (drop && !(drop.p <= 1)) throw new Error(`attention: dropout probability ${drop.p} is outside [0, 1]`);
  const shape = kernelShape(
    dims,
    { causal: !!opts.causal, masked: !!padding, dropout: !!drop },
    gpu.limits.maxComputeWorkgroupStorageSize,
  );
  const scale = opts.scale ?? 1 / Math.sqrt(dims.d);
  const dropWords = dropoutWords(drop, s);
  const queryBlocks = Math.ceil(t / shape.rows), keyBlocks = Math.ceil(s / shape.rows);
  const split = querySplit(gpu.software, b * hkv * keyBlocks, t, shape.tile);
  return {
    q,
    k,
    v,
    out,
    dims,
    padding,
    shape,
    scale,
    dropWords,
    window: opts.window,
    queryBlocks,
    keyBlocks,
    split,
  };
}

/** The uniform of one pass over `blocks` blocks a head; `acc` adds to what its output holds. */
function uniformWords(
  call: FusedCall,
  blocks: number,
  acc: boolean,
  parts = { splits: 1, chunk: call.dims.t },
): Uint32Array {
  const { dims: { b, h, hkv, t, s }, dropWords, q, k, v, out } = call;
  const words: Record<(typeof ATTENTION_UNIFORM)[number], number> = {
    b,
    h,
    t,
    s,
    group: h / hkv,
    off: s - t,
    blocks,
    scale: f(call.scale),
    key: dropWords[0],
    threshold: dropWords[1],
    dscale: dropWords[2],
    run: dropWords[3],
    stride: dropWords[4],
    acc: acc ? 1 : 0,
    splits: parts.splits,
    chunk: parts.chunk,
    window: windowWord(call.window),
    qoff: q.at.offset,
    qbs: q.at.batchStride,
    qhs: q.at.headStride,
    qld: q.at.ld,
    koff: k.at.offset,
    kbs: k.at.batchStride,
    khs: k.at.headStride,
    kld: k.at.ld,
    voff: v.at.offset,
    vbs: v.at.batchStride,
    vhs: v.at.headStride,
    vld: v.at.ld,
    ooff: out.at.offset,
    obs: out.at.batchStride,
    ohs: out.at.headStride,
    old: out.at.ld,
  };
  return u32s(...ATTENTION_UNIFORM.map((n) => words[n]));
}

/** The forward pass: the output, and the log-sum-exp of each query row. */
function encodeForward(call: FusedCall): { y: Tensor; stats: Tensor } {
  const { q, k, v, dims: { b, h, t }, queryBlocks } = call, gpu = q.x.gpu;
  const mask = call.padding ? [call.padding.buffer] : [];
  const y = Tensor.empty(gpu, call.out.shape);
  // log-sum-exp per query row, then (written backward) Δ per query row
  const stats = Tensor.empty(gpu, [2, b * h * t]);
  gpu.stream.dispatch(
    fusedAttentionForwardKernel(call.shape),
    [q.x.buffer, k.x.buffer, v.x.buffer, ...mask, y.buffer, stats.buffer],
    grid(gpu, b * h * queryBlocks),
    uniformWords(call, queryBlocks, false),
  );
  return { y, stats };
}

/** The buffers the backward passes bind: the saved heads, mask (if any), output and statistics, and dO. */
interface BackwardBuffers {
  q: GPUBuffer;
  k: GPUBuffer;
  v: GPUBuffer;
  mask: GPUBuffer[];
  y: GPUBuffer;
  stats: GPUBuffer;
  g: GPUBuffer;
}

/** Where a pass writes one gradient (null: not needed), and whether it adds to what is there. */
interface GradTarget {
  dst: Tensor | null;
  add: boolean;
}

/** Record `y`'s gradient rule: the dQ pass, then the dK and dV passes. */
function recordBackward(call: FusedCall, y: Tensor, stats: Tensor): Tensor {
  const { q, k, v, padding } = call;
  const inputs = [...new Set([q.x, k.x, v.x])];
  // the mask is saved too: the caller may free its tensor before backward runs
  const save = [...inputs, y, stats, ...(padding ? [padding] : [])];
  return record("attention.fused", y, inputs, save, (g, saved, need, acc) => {
    const [vq, vk, vv] = [q, k, v].map((p) => saved[inputs.indexOf(p.x)]);
    const [vy, vstats, vmask] = saved.slice(inputs.length);
    const { grads, tq, tk, tv } = gradientTargets(call, inputs, need, acc);
    const bufs: BackwardBuffers = {
      q: vq.buffer,
      k: vk.buffer,
      v: vv.buffer,
      mask: vmask ? [vmask.buffer] : [],
      y: vy.buffer,
      stats: vstats.buffer,
      g: g.buffer,
    };
    const dq = encodeGradQ(call, bufs, tq, tk.dst !== null);
    if (tk.dst) encodeGradKV(call, "k", bufs, { dst: tk.dst, add: tk.add });
    if (tv.dst) encodeGradKV(call, "v", bufs, { dst: tv.dst, add: tv.add });
    if (dq && !tq.dst) dq.dispose();
    return grads;
  });
}

/** The gradients of `inputs` (q, k and v's distinct tensors), and the target of each pass in them. */
function gradientTargets(
  call: FusedCall,
  inputs: Tensor[],
  need: readonly boolean[],
  acc: readonly (Tensor | null)[],
): { grads: (Tensor | null)[]; tq: GradTarget; tk: GradTarget; tv: GradTarget } {
  const { q, k, v } = call, gpu = q.x.gpu;
  // a tensor the heads cover, whole or as disjoint parts (packed), is written, not zeroed first
  const fresh = inputs.map((x) => {
    const of = [q, k, v].filter((p) => p.x === x);
    return of.every((p) => p.whole) || of.every((p) => p.packed !== undefined);
  });
  const grads = inputs.map((x, j) =>
    need[j] ? acc[j] ?? (fresh[j] ? Tensor.empty(gpu, x.shape) : Tensor.zeros(gpu, x.shape)) : null
  );
  // a target adds what is there when it came gathered, was zeroed, or a pass wrote it already
  // (each pass writes its own part of a packed tensor)
  const written = inputs.map((_, j) => acc[j] !== null || !fresh[j]);
  const target = (p: AttentionHeads): GradTarget => {
    const j = inputs.indexOf(p.x), dst = grads[j];
    const add = written[j];
    if (dst && !p.packed) written[j] = true;
    return { dst, add };
  };
  const tq = target(q), tk = target(k), tv = target(v);
  return { grads, tq, tk, tv };
}

/**
 * The dQ pass, into `to`; it also writes Δ, which the dK pass reads, so it runs into a scratch
 * dQ when only `deltaNeeded`. Returns the dQ written (null: the pass did not run).
 */
function encodeGradQ(
  call: FusedCall,
  bufs: BackwardBuffers,
  to: GradTarget,
  deltaNeeded: boolean,
): Tensor | null {
  const { q, dims: { b, h }, queryBlocks } = call, gpu = q.x.gpu;
  const dq = to.dst ?? (deltaNeeded ? Tensor.empty(gpu, q.x.shape) : null);
  if (dq) {
    gpu.stream.dispatch(
      fusedAttentionGradQKernel(call.shape),
      [bufs.q, bufs.k, bufs.v, ...bufs.mask, bufs.y, bufs.g, bufs.stats, dq.buffer],
      grid(gpu, b * h * queryBlocks),
      uniformWords(call, queryBlocks, to.add),
    );
  }
  return dq;
}

/** dK or dV: straight into their gradient, or as partial sums over query chunks added up after. */
function encodeGradKV(
  call: FusedCall,
  which: "k" | "v",
  bufs: BackwardBuffers,
  to: { dst: Tensor; add: boolean },
): void {
  const { dims: { b, hkv, s }, keyBlocks, split } = call, gpu = call.q.x.gpu;
  const n = which === "k" ? call.dims.d : call.dims.dv;
  // the dV kernel reads no values
  const heads = which === "k" ? [bufs.q, bufs.k, bufs.v] : [bufs.q, bufs.k];
  const partials = split.splits > 1 ? Tensor.empty(gpu, [split.splits, b, hkv, s, n]) : null;
  gpu.stream.dispatch(
    fusedAttentionGradKVKernel(which, call.shape),
    [...heads, ...bufs.mask, bufs.g, bufs.stats, (partials ?? to.dst).buffer],
    grid(gpu, b * hkv * keyBlocks * split.splits),
    uniformWords(call, keyBlocks, to.add, split),
  );
  if (!partials) return;
  gpu.stream.dispatch(
    fusedAttentionReduceKernel(which, n),
    [partials.buffer, to.dst.buffer],
    grid(gpu, Math.ceil((b * hkv * s * n) / 256)),
    uniformWords(call, keyBlocks, to.add, split),
  );
  partials.dispose();
}
