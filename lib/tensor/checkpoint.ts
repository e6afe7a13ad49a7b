/**
 * Gradient checkpointing: a piece of the forward pass (a transformer layer) that keeps none of
 * its activations, only its inputs, and runs again in backward to backpropagate. Memory for a
 * deep model falls from every layer's activations to one layer's plus each layer's input, for
 * one more forward pass of compute.
 * @module
 */
import { isGradEnabled, noGrad, record, withGrad } from "./autograd.ts";
import { tidy } from "./scope.ts";
import type { Tensor } from "./tensor.ts";

let replays = 0;
let replaying: number | null = null;

/**
 * While a checkpoint's backward runs its function again: a number that identifies this rerun
 * (so stateful code, e.g. a per-call dropout counter, can draw what the first run drew);
 * otherwise null.
 */
export function currentReplay(): number | null {
  return replaying;
}

/**
 * `fn(x, ...more)`, recomputed in backward instead of kept: the forward runs without a tape,
 * and the gradient rule runs `fn` again with one and backpropagates the incoming gradient
 * through it, so the parameters `fn` uses gather their gradients then, and x its own. `more`
 * are other tensors `fn` reads (a mask): saved for the rerun, which gets views of them, since
 * the caller may free its own before backward. They get no gradient, so one that requires a
 * gradient is refused. `fn` must compute the same thing both times (seeded dropout does when
 * its step and sites are the same), and return a tensor it computes, x, or one of `more`.
 * Without gradients (`noGrad`), plain `fn(x, ...more)`.
 */
export function checkpoint(
  fn: (x: Tensor, ...more: Tensor[]) => Tensor,
  x: Tensor,
  ...more: Tensor[]
): Tensor {
  if (!isGradEnabled()) return tidy(() => fn(x, ...more));
  const trainable = more.findIndex((m) => m.requiresGrad);
  if (trainable >= 0) {
    throw new Error(
      `checkpoint: extra input ${trainable} (${more[trainable].describe()}) requires a gradient, which ` +
        "checkpoint gives its first input alone; pass that tensor as x, or detach() it",
    );
  }
  const made = noGrad(() => tidy(() => fn(x, ...more)));
  if (made !== x && (made.requiresGrad || made.node)) {
    throw new Error(
      `checkpoint: fn returned a tensor (${made.describe()}) that it did not compute and that requires a ` +
        "gradient; return x, one of the extra inputs, or a tensor fn computes",
    );
  }
  // x itself (an identity layer, e.g. dropout with p = 0) or an extra input: the node goes onto a
  // handle of its own, not over that tensor's own node
  const out = made === x || more.includes(made) ? made.view(made.shape) : made;
  // recorded even when x needs no gradient: the parameters inside fn may
  return record("checkpoint", out, [x], [x, ...more], (g, [saved, ...others], need) => {
    const input = saved.view(saved.shape);
    input.requiresGrad = need[0];
    const outer = replaying;
    replaying = ++replays;
    try {
      const y = withGrad(() => tidy(() => fn(input, ...others)));
      if (y.requiresGrad) y.backward(g);
      if (y !== input && !others.includes(y)) y.dispose();
    } finally {
      replaying = outer;
    }
    const gx = input.grad;
    input.grad = null;
    input.dispose();
    return [gx];
  }, true);
}
