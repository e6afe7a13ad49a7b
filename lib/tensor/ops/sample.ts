/**
 * Drawing next tokens on the GPU (kernels/sample.ts): temperature, top-k, top-p and min-p as
 * `sampleToken` applies them on the CPU, so that sampled decoding needs no readback per token.
 * No autograd.
 * @module
 */
import { SAMPLE_MAX_K, sampleKernel } from "../../../kernels/sample.ts";
import { type Gpu, grid } from "../../gpu/mod.ts";
import type { Tensor } from "../tensor.ts";
import { expectDtype, f, u32s } from "./util.ts";

/** How {@link sampleTokens} draws. */
export interface GpuSampling {
  temperature: number;
  /**
   * The k most probable tokens, 1 ≤ k ≤ {@link SAMPLE_MAX_K} (more than the vocabulary: all of it),
   * and up to k more tied with the k-th.
   */
  topK: number;
  /** Then those whose probabilities before them hold less than topP of the k's mass (1: all). */
  topP: number;
  /** Then those at least minP times as probable as the most probable (0: all). */
  minP: number;
  /** The draws of (seed, step, row) are uniform numbers hashed from them. */
  seed: number;
  step: number;
}

/**
 * Logits × k passes above which a software adapter samples on the CPU. On lavapipe
 * (`bench/generate.ts`) its one workgroup a row took 42 ms for k = 20 over 151,936 logits, against
 * ≈ 15 ms for a readback and the CPU's draw; over gpt2-brown's 512 logits with k = 50, sampled
 * generation took 27 ms a token, greedy 22 ms.
 */
const SOFTWARE_SAMPLE_WORK = 1 << 20;

/** Whether {@link sampleTokens} takes these settings. */
function fits(s: Pick<GpuSampling, "temperature" | "topK">): boolean {
  return s.temperature > 0 && s.topK >= 1 && s.topK <= SAMPLE_MAX_K;
}

/**
 * Whether decoding draws with these settings on `gpu` ({@link sampleTokens}, no readback per
 * token) rather than on the CPU: a top-k it takes, and on a software adapter little work.
 */
export function samplesOnGpu(gpu: Gpu, s: Pick<GpuSampling, "temperature" | "topK">, vocab: number): boolean {
  return fits(s) && (!gpu.software || vocab * Math.min(s.topK, vocab) <= SOFTWARE_SAMPLE_WORK);
}

/** One token drawn for each row of logits [rows, vocab], written to `out` (i32) from element `at`. */
export function sampleTokens(logits: Tensor, s: GpuSampling, out: Tensor, at = 0): void {
  expectDtype("sampleTokens", "f32", logits);
  expectDtype("sampleTokens", "i32", out);
  const [rows, vocab] = logits.shape;
  const cutsOk = s.topP > 0 && s.topP <= 1 && s.minP >= 0 && s.minP <= 1;
  if (logits.shape.length !== 2 || !fits(s) || !cutsOk || at + rows > out.size) {
    throw new Error(
      `sampleTokens: logits ${logits.describe()} into ${out.describe()} from ${at} with temperature ` +
        `${s.temperature} > 0, top-k ${s.topK} in 1..${SAMPLE_MAX_K}, top-p ${s.topP} in (0, 1], ` +
        `min-p ${s.minP} in [0, 1]`,
    );
  }
  const k = Math.min(s.topK, vocab);
  const params = u32s(
    rows,
    vocab,
    k,
    f(s.topP),
    f(1 / s.temperature),
    s.seed >>> 0,
    s.step >>> 0,
    at,
    f(s.minP),
  );
  logits.gpu.stream.dispatch(sampleKernel, [logits.buffer, out.buffer], grid(logits.gpu, rows), params);
}
