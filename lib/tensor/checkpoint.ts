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
 * the caller may free its own before backward. `fn` must compute the same thing both times
 * (seeded dropout does when its step and sites are the same). Without gradients (`noGrad`),
 * plain `fn(x, ...more)`.
 */
export function checkpoint(
  fn: (x: Tensor, ...more: Tensor[]) => Tensor,
  x: Tensor,
  ...more: Tensor[]
): Tensor {
  if (!isGradEnabled()) return tidy(() => fn(x, ...more));
  const out = noGrad(() => tidy(() => fn(x, ...more)));
  // recorded even when x needs no gradient: the parameters inside fn may
  return record("checkpoint", out, [x], [x, ...more], (g, [saved, ...others], need) => {
    const input = saved.view(saved.shape);
    input.requiresGrad = need[0];
    const outer = replaying;
    replaying = ++replays;
    try {
      const y = withGrad(() => tidy(() => fn(input, ...others)));
      if (y.requiresGrad) y.backward(g);
      y.dispose();
    } finally {
      replaying = outer;
    }
    const gx = input.grad;
    input.grad = null;
    input.dispose();
    return [gx];
  }, true);
}
