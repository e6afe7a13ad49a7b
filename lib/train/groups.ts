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
  /** Learning rate of the modules_to_save (the task head); needed only when the adapter trains one. */
  headLr?: number;
  /** Decoupled weight decay (default 0): of the adapter's tensors and the head's weights, not its biases and norms. */
  weightDecay?: number;
}

/**
 * Groups "adapter" and "head" of `peft`'s trainable tensors, named as checkpoints store them
 * (`<layer path>.<kind>.<index>` and the head's model keys); an empty group is left out.
 * @throws Error when the adapter trains modules_to_save (a task head) and `headLr` is not given.
 */
export function adapterGroups(peft: PeftModel, opts: AdapterGroupOptions): ParamGroupSpec[] {
  const weightDecay = opts.weightDecay ?? 0;
  const adapter: NamedParam[] = [];
  for (const [path, layer] of peft.layers) {
    layer.parameters().forEach((t, i) => adapter.push({ name: `${path}.${layer.kind}.${i}`, tensor: t }));
  }
  const groups: ParamGroupSpec[] = [{ name: "adapter", params: adapter, lr: opts.lr, weightDecay }];
  const head = [...peft.saved].map(([name, tensor]) => ({ name, tensor }));
  if (head.length > 0) {
    if (opts.headLr === undefined) {
      const names = head.length > 1 ? `${head[0].name}, …` : head[0].name;
      throw new Error(
        `adapterGroups: the adapter trains modules_to_save (${names}): give headLr, their learning rate`,
      );
    }
    groups.push(...headGroups(head, opts.headLr, weightDecay));
  }
  return groups.filter((g) => g.params.length > 0);
}

/**
 * A task head's group at `lr`; with weight decay, its biases and norms (tensors of one dimension)
 * apart in "head_other" without it, as transformers' Trainer leaves them out of the decay.
 */
export function headGroups(head: NamedParam[], lr: number, weightDecay: number): ParamGroupSpec[] {
  if (weightDecay === 0) return [{ name: "head", params: head, lr, weightDecay }];
  return [
    { name: "head", params: head.filter((p) => p.tensor.shape.length >= 2), lr, weightDecay },
    { name: "head_other", params: head.filter((p) => p.tensor.shape.length < 2), lr, weightDecay: 0 },
  ];
}
