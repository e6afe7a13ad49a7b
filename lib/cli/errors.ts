/**
 * Device errors as advice: WebGPU reports an allocation failure or a lost device in terms of
 * buffers and adapters; the CLI says which flags to lower and that checkpoints are kept.
 * @module
 */

/**
 * A device error (out of memory, lost device) as advice; other errors unchanged. WebGPU
 * reports allocation failures as OperationError/GPUOutOfMemoryError or in a validation message.
 */
export function explainDeviceError(e: unknown): unknown {
  const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  if (
    /out of memory|OutOfMemory|allocation failed|Not enough memory|exceeds the max(imum)? (buffer|binding)/i
      .test(msg)
  ) {
    return new Error(
      `the GPU ran out of memory (${e instanceof Error ? e.message : e}). Add --gradient-checkpointing ` +
        `(keep one layer's activations) and --attention fused (no [T, T] probabilities), lower --batch-size ` +
        `or --seq-len, use --dtype f16 for the frozen weights, or pick a smaller model; checkpoints already ` +
        `written are kept`,
    );
  }
  if (/device (was )?lost|GPUDeviceLostInfo/i.test(msg)) {
    return new Error(
      `the GPU device was lost (${
        e instanceof Error ? e.message : e
      }); checkpoints already written are kept. ` +
        `Resume with --resume; if it recurs, lower --batch-size or --seq-len`,
    );
  }
  return e;
}
