/**
 * Device errors as advice: WebGPU reports an allocation failure, a lost device or a tensor over
 * one storage binding in terms of buffers, bindings and adapters; the CLI says which flags to
 * change and that checkpoints are kept.
 * @module
 */

/** A device error turned into advice (not wrapped again on its way out). */
export class DeviceAdvice extends Error {
  override name = "DeviceAdvice";
}

/** What lowers memory, by the flag that does it, in the order it is suggested. */
const MEMORY_ADVICE: [flag: string, advice: string][] = [
  ["gradient-checkpointing", "add --gradient-checkpointing (keep one layer's activations)"],
  ["attention", "add --attention fused (no [T, T] probabilities)"],
  ["batch-size", "lower --batch-size"],
  ["seq-len", "lower --seq-len"],
  ["dtype", "use --dtype f16, q8 or q4 for the frozen weights"],
];

/** What makes each tensor of a batch smaller, for a kernel's binding over the device's limit. */
const BINDING_ADVICE: [flag: string, advice: string][] = [
  ["batch-size", "lower --batch-size"],
  ["grad-accum", "keep the examples a step with --grad-accum"],
  ["seq-len", "lower --seq-len"],
];

/**
 * A device error (out of memory, lost device, a buffer or binding over the device's limit) as
 * {@link DeviceAdvice}; other errors unchanged. WebGPU reports allocation failures as
 * OperationError/GPUOutOfMemoryError or in a validation message. `flags` are the command's own
 * (advice names only those; default: all).
 */
export function explainDeviceError(e: unknown, flags?: readonly string[]): unknown {
  if (e instanceof DeviceAdvice) return e;
  const has = (flag: string) => !flags || flags.includes(flag);
  // only a command that resumes has checkpoints to keep
  const kept = has("resume") ? "; checkpoints already written are kept" : "";
  const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  const detail = e instanceof Error ? e.message : String(e);
  if (
    /out of memory|OutOfMemory|allocation failed|Not enough memory|exceeds the max(imum)? (buffer|binding)/i
      .test(msg)
  ) {
    const advice = MEMORY_ADVICE.filter(([flag]) => has(flag)).map(([, a]) => a);
    const list = [...advice, "or pick a smaller model"].join(", ");
    return new DeviceAdvice(
      `the GPU ran out of memory (${detail}). ${list[0].toUpperCase()}${list.slice(1)}${kept}`,
    );
  }
  const over = /spans \d+ bytes, over this device's largest storage binding/.test(msg)
    ? "the largest buffer one kernel may bind on this GPU"
    : /of \d+ bytes is over this device's largest buffer/.test(msg)
    ? "the largest buffer this GPU can create"
    : null;
  if (over) {
    const advice = BINDING_ADVICE.filter(([flag]) => has(flag)).map(([, a]) => a);
    return new DeviceAdvice(
      `a tensor of this batch is over ${over} (${detail}). ` +
        `${[...advice, "or pick a smaller model"].join(", ").replace(/^./, (c) => c.toUpperCase())}${kept}`,
    );
  }
  if (/device (was )?lost|GPUDeviceLostInfo/i.test(msg)) {
    const lower = ["batch-size", "seq-len"].filter(has).map((f) => `--${f}`).join(" or ");
    const recurs = `if it recurs, ${lower ? `lower ${lower}` : "try a smaller model"}`;
    return new DeviceAdvice(
      `the GPU device was lost (${detail})${kept}. ` +
        (has("resume") ? `Resume with --resume; ${recurs}` : recurs.replace(/^./, (c) => c.toUpperCase())),
    );
  }
  return e;
}
