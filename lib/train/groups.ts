/**
 * The trainer's parameter groups for a model with an adapter attached: the adapter's tensors
 * (SSH or FourierFT coefficients, LoRA's A and B) at one learning rate, the modules_to_save
 * (e.g. a classifier head) at another, as the SSH paper trains them.
 * @module
 */
import type { PeftModel } from "../peft/apply.ts";
import type { NamedParam, ParamGroupSpec } from "./trainer.ts";

/** Learning rates and weight decay of {@link adapterGroups}. */
export interface AdapterGroupOptions {
  /** Learning rate of the adapter's tensors. */
  lr: number;
  /** Learning rate of the modules_to_save (the task head). */
  headLr: number;
  /** Decoupled weight decay of both groups (default 0). */
  weightDecay?: number;
}

/**
 * Groups "adapter" and "head" of `peft`'s trainable tensors, named as checkpoints store them
 * (`<layer path>.<kind>.<index>` and the head's model keys); an empty group is left out.
 */
export function adapterGroups(peft: PeftModel, opts: AdapterGroupOptions): ParamGroupSpec[] {
  const weightDecay = opts.weightDecay ?? 0;
  const adapter: NamedParam[] = [];
  for (const [path, layer] of peft.layers) {
    layer.parameters().forEach((t, i) => adapter.push({ name: `${path}.${layer.kind}.${i}`, tensor: t }));
  }
  const head = [...peft.saved].map(([name, tensor]) => ({ name, tensor }));
  return [
    { name: "adapter", params: adapter, lr: opts.lr, weightDecay },
    { name: "head", params: head, lr: opts.headLr, weightDecay },
  ].filter((g) => g.params.length > 0);
}
