/**
 * Switches for the fused paths the layers take, all on by default. Benchmarks turn them off one
 * at a time to measure what each is worth (`bench/step.ts --no-fuse=qkv,ffn,norm,head`); the
 * results are the same either way (tested).
 * @module
 */

/** Which fusions are on. */
export const FUSIONS = {
  /** Query, key and value as one product (`fusedProjection`). */
  qkv: true,
  /** The feed-forward activation in the matmul epilogues (`feedForward`). */
  ffn: true,
  /** A post-LN residual connection inside the LayerNorm (`LayerNorm.forwardResidual`). */
  norm: true,
  /**
   * With `ForwardOptions.headOnly`, a sequence classifier's last layer at the one position per
   * row its head reads (`firstPosition` in lib/models/encoder.ts, `pooledPositions` in
   * lib/models/decoder_head.ts), and a causal LM's head at the positions that have a target
   * (`targetRows` in lib/models/decoder_head.ts).
   */
  head: true,
};
