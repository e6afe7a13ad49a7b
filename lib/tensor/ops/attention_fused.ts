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

/**
 * Attention over heads placed anywhere, fused. The caller has checked the sizes, the mask's
 * shape, and that causal masking has keys ≥ queries.
 */
export function fusedScaledDotProduct(
  q: AttentionHeads,
  k: AttentionHeads,
  v: AttentionHeads,
  dims: AttentionDims,
  out: { shape: number[]; at: AttentionHeads["at"] },
  opts: Omit<AttentionOptions, "layout">,
): Tensor {
  const { b, h, hkv, t, s } = dims, gpu = q.x.gpu;
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
  const uniform = (blocks: number, acc: boolean, parts = { splits: 1, chunk: t }) => {
    const words: Record<(typeof ATTENTION_UNIFORM)[number], number> = {
      b,
      h,
      t,
      s,
      group: h / hkv,
      off: s - t,
      blocks,
      scale: f(scale),
      key: dropWords[0],
      threshold: dropWords[1],
      dscale: dropWords[2],
      run: dropWords[3],
      stride: dropWords[4],
      acc: acc ? 1 : 0,
      splits: parts.splits,
      chunk: parts.chunk,
      window: windowWord(opts.window),
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
  };
  const mask = padding ? [padding.buffer] : [];
  const queryBlocks = Math.ceil(t / shape.rows), keyBlocks = Math.ceil(s / shape.rows);
  const split = querySplit(gpu.software, b * hkv * keyBlocks, t, shape.tile);
  const y = Tensor.empty(gpu, out.shape);
  // log-sum-exp per query row, then (written backward) Δ per query row
  const stats = Tensor.empty(gpu, [2, b * h * t]);
  gpu.stream.dispatch(
    fusedAttentionForwardKernel(shape),
    [q.x.buffer, k.x.buffer, v.x.buffer, ...mask, y.buffer, stats.buffer],
    grid(gpu, b * h * queryBlocks),
    uniform(queryBlocks, false),
  );
  const inputs = [...new Set([q.x, k.x, v.x])];
  const at = (x: Tensor) => inputs.indexOf(x);
  // the mask is saved too: the caller may free its tensor before backward runs
  const save = [...inputs, y, stats, ...(padding ? [padding] : [])];
  return record("attention.fused", y, inputs, save, (g, saved, need, acc) => {
    const [vq, vk, vv] = [q, k, v].map((p) => saved[at(p.x)]);
    const [vy, vstats, vmask] = saved.slice(inputs.length);
    const mask = vmask ? [vmask.buffer] : [];
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
    const target = (p: AttentionHeads) => {
      const j = at(p.x), dst = grads[j];
      const add = written[j];
      if (dst && !p.packed) written[j] = true;
      return { dst, add };
    };
    const tq = target(q), tk = target(k), tv = target(v);
    const heads = [vq.buffer, vk.buffer, vv.buffer, ...mask];
    // the dQ pass also writes Δ, which the dK pass reads
    const dq = tq.dst ?? (tk.dst ? Tensor.empty(gpu, q.x.shape) : null);
    if (dq) {
      gpu.stream.dispatch(
        fusedAttentionGradQKernel(shape),
        [...heads, vy.buffer, g.buffer, vstats.buffer, dq.buffer],
        grid(gpu, b * h * queryBlocks),
        uniform(queryBlocks, tq.add),
      );
    }
    // dK and dV: straight into their gradients, or as partial sums over query chunks added up after
    const keyRows = (which: "k" | "v", binds: GPUBuffer[], to: { dst: Tensor; add: boolean }) => {
      const n = which === "k" ? dims.d : dims.dv;
      const partials = split.splits > 1 ? Tensor.empty(gpu, [split.splits, b, hkv, s, n]) : null;
      gpu.stream.dispatch(
        fusedAttentionGradKVKernel(which, shape),
        [...binds, g.buffer, vstats.buffer, (partials ?? to.dst).buffer],
        grid(gpu, b * hkv * keyBlocks * split.splits),
        uniform(keyBlocks, to.add, split),
      );
      if (!partials) return;
      gpu.stream.dispatch(
        fusedAttentionReduceKernel(which, n),
        [partials.buffer, to.dst.buffer],
        grid(gpu, Math.ceil((b * hkv * s * n) / 256)),
        uniform(keyBlocks, to.add, split),
      );
      partials.dispose();
    };
    if (tk.dst) keyRows("k", heads, { dst: tk.dst, add: tk.add });
    if (tv.dst) keyRows("v", [vq.buffer, vk.buffer, ...mask], { dst: tv.dst, add: tv.add });
    if (dq && !tq.dst) dq.dispose();
    return grads;
  });
}
