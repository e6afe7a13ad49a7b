/**
 * The tape: ops attach a {@link GradNode} (inputs, saved activations, gradient rule) to their
 * result; backward() orders the graph topologically with an explicit stack (no recursion, so
 * depth is unbounded), runs each rule once under noGrad, sums gradients that meet, and
 * releases the saved activations as it goes.
 * @module
 */
import { axpyKernel } from "../../kernels/elementwise.ts";
import { f, launchUnits, u32s } from "./ops/util.ts";
import { keep, tidy } from "./scope.ts";
import { fmt, sameShape } from "./shape.ts";
import { Tensor } from "./tensor.ts";

/**
 * A gradient rule: given the upstream gradient `g` (the shape of the op's result), the saved
 * tensors, and which inputs need a gradient, return one gradient per input (null where not
 * needed). Rules are written with the same tensor ops, run under noGrad, and may return `g`.
 * `acc[j]`, when given, is the gradient input j has gathered so far from its other consumers,
 * not shared with any other tensor: a rule may add its part into it in place (a matmul's
 * accumulating epilogue) and return `acc[j]` itself, which saves the separate sum.
 */
export type GradRule = (
  g: Tensor,
  saved: readonly Tensor[],
  need: readonly boolean[],
  acc: readonly (Tensor | null)[],
) => readonly (Tensor | null)[];

/** How a tensor was computed: the op, its inputs, what backward needs, and the rule. */
export class GradNode {
  /** True once the node's saved tensors and rule are released; a backward through it then throws. */
  freed = false;
  /** The node of op `op` over `inputs`, keeping `saved` for `rule` (use {@link record} rather than this). */
  constructor(
    readonly op: string,
    public inputs: Tensor[],
    public saved: Tensor[],
    public rule: GradRule | null,
  ) {}
}

let gradEnabled = true;

/** Run `fn` (synchronously) without recording gradients (evaluation, optimiser updates). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  let result: T;
  try {
    result = fn();
  } finally {
    gradEnabled = prev;
  }
  if (result instanceof Promise) {
    throw new Error("noGrad: the function must be synchronous (it returned a Promise)");
  }
  return result;
}

/** Run `fn` (synchronously) recording gradients, even inside {@link noGrad} (a checkpoint's recompute). */
export function withGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = true;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** False inside {@link noGrad}. */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/**
 * Attach the gradient rule of op `op` to its result `out` when gradients are on and some
 * input requires one. `save` lists the tensors the rule reads (inputs or `out` itself); they
 * are kept alive until the node is released, and passed to the rule in that order.
 */
export function record(
  op: string,
  out: Tensor,
  inputs: Tensor[],
  save: Tensor[],
  rule: GradRule,
  /** Record even when no input requires a gradient (the rule reaches parameters of its own). */
  always = false,
): Tensor {
  if (!gradEnabled || !(always || inputs.some((x) => x.requiresGrad))) return out;
  for (const x of inputs) x.consumers++;
  out.node = new GradNode(op, inputs, save.map((s) => keep(s.view(s.shape))), rule);
  out.requiresGrad = true;
  return out;
}

/** Release the saved activations of `t`'s node and, iteratively, of nodes only it kept alive. */
export function releaseGraph(t: Tensor): void {
  const work = [t];
  while (work.length > 0) {
    const x = work.pop()!;
    const node = x.node;
    if (!node || node.freed || !x.disposed || x.consumers > 0) continue;
    work.push(...freeNode(node));
  }
}

/** Free one node; returns its inputs (now with one consumer less) for cascading. */
function freeNode(node: GradNode): Tensor[] {
  node.freed = true;
  node.rule = null;
  for (const s of node.saved) s.dispose();
  node.saved = [];
  const inputs = node.inputs;
  node.inputs = [];
  for (const x of inputs) x.consumers--;
  return inputs;
}

/** Tensors reachable from `root` through nodes, inputs before consumers (iterative DFS). */
function topologicalOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>([root]);
  const stack: { t: Tensor; next: number }[] = [{ t: root, next: 0 }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    const node = top.t.node!;
    if (node.freed) {
      throw new Error(
        `backward: the graph through '${node.op}' was already released by an earlier backward(); ` +
          "pass { retainGraph: true } to that call to backpropagate twice",
      );
    }
    if (top.next < node.inputs.length) {
      const x = node.inputs[top.next++];
      if (x.node && x.requiresGrad && !seen.has(x)) {
        seen.add(x);
        stack.push({ t: x, next: 0 });
      }
    } else {
      stack.pop();
      order.push(top.t);
    }
  }
  return order;
}

/** The engine behind `Tensor.backward()`. */
export function runBackward(root: Tensor, grad: Tensor | undefined, retainGraph: boolean): void {
  if (!root.requiresGrad) {
    throw new Error(
      `backward: tensor ${root.describe()} does not require a gradient (no input requires one, ` +
        "or it was computed under noGrad)",
    );
  }
  if (grad && !sameShape(grad.shape, root.shape)) {
    throw new Error(`backward: gradient ${grad.describe()} does not match the tensor ${root.describe()}`);
  }
  if (!grad && root.size !== 1) {
    throw new Error(`backward: tensor ${root.describe()} is not a scalar; pass its gradient explicitly`);
  }
  if (root.isLeaf) {
    accumulateLeaf(root, grad ? grad.view(grad.shape) : Tensor.full(root.gpu, root.shape, 1));
    return;
  }
  const order = topologicalOrder(root);
  noGrad(() => {
    const grads = new Map<Tensor, Tensor>();
    grads.set(root, grad ? grad.view(grad.shape) : Tensor.full(root.gpu, root.shape, 1));
    let i = order.length - 1;
    try {
      for (; i >= 0; i--) {
        const t = order[i];
        const g = grads.get(t);
        if (g) {
          grads.delete(t);
          try {
            backwardNode(t.node!, g, grads);
          } finally {
            g.dispose();
          }
        }
        if (!retainGraph) freeNode(t.node!);
      }
    } catch (e) {
      // the per-layer tidies disposed the outputs of the nodes not reached: only this frees them
      for (const g of grads.values()) g.dispose();
      if (!retainGraph) { for (; i >= 0; i--) freeNode(order[i].node!); }
      throw e;
    }
  });
}

/** Run `node`'s rule on its upstream gradient `g`; add the results into `grads` and the leaves. */
function backwardNode(node: GradNode, g: Tensor, grads: Map<Tensor, Tensor>): void {
  const need = node.inputs.map((x) => x.requiresGrad);
  const acc = node.inputs.map((x, j) => {
    const prev = need[j] && !x.isLeaf ? grads.get(x) : undefined;
    return prev && prev.exclusive && node.inputs.indexOf(x) === j ? prev : null;
  });
  const rule = node.rule!;
  const gs = tidy(() => rule(g, node.saved, need, acc));
  // one handle per needed gradient (a rule may return g, or one tensor for two inputs)
  const taken = new Set<Tensor>([g]);
  const handles = node.inputs.map((_, j) => {
    const gx = gs[j];
    if (!gx || !need[j]) return null;
    if (taken.has(gx)) return gx.view(gx.shape);
    taken.add(gx);
    return gx;
  });
  for (const gx of gs) if (gx && !taken.has(gx)) gx.dispose();
  // none, or already added into the input's gradient (which `grads` holds)
  const fresh = handles.map((gx, j) => gx && gx !== acc[j] ? gx : null);
  const bad = fresh.findIndex((gx, j) => gx && !sameShape(gx.shape, node.inputs[j].shape));
  if (bad >= 0) {
    for (const gx of fresh) gx?.dispose();
    throw new Error(
      `backward: rule of '${node.op}' gave a gradient ${fmt(fresh[bad]!.shape)} for input ${bad} of shape ` +
        fmt(node.inputs[bad].shape),
    );
  }
  node.inputs.forEach((x, j) => {
    const gx = fresh[j];
    if (!gx) return;
    if (x.isLeaf) accumulateLeaf(x, gx);
    else {
      const prev = grads.get(x);
      grads.set(x, prev ? sum(prev, gx) : gx);
    }
  });
}

/** Add `g` into the leaf's `.grad` (taking it over when there is none yet). */
function accumulateLeaf(x: Tensor, g: Tensor): void {
  x.grad = keep(x.grad ? sum(x.grad, g) : g);
}

/** `a + b` for gradient accumulation: in place into `a` when nothing else shares it. */
function sum(a: Tensor, b: Tensor): Tensor {
  const gpu = a.gpu;
  let out = a;
  if (!a.exclusive) {
    out = Tensor.empty(gpu, a.shape);
    gpu.stream.copy(a.buffer, 0, out.buffer, 0, a.size * 4);
    a.dispose();
  }
  const vec = out.size % 4 === 0;
  const unit = vec ? 16 : 4;
  // a large vocabulary's table gradient may be over one storage binding: bands
  launchUnits(
    gpu,
    axpyKernel(vec),
    [[b.buffer, unit], [out.buffer, unit]],
    vec ? out.size / 4 : out.size,
    (_, n) => u32s(n, f(1)),
  );
  b.dispose();
  return out;
}
