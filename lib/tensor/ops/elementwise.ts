/**
 * Elementwise ops and their gradient rules: broadcasting arithmetic (gradients summed back
 * to each operand's shape), scalar affine maps, and the activations.
 * @module
 */
import {
  BINARY,
  binaryKernel,
  binaryKernelX4,
  type BinaryOp,
  UNARY,
  unaryKernel,
  type UnaryOp,
} from "../../../kernels/elementwise.ts";
import { record } from "../autograd.ts";
import { broadcastShapes, broadcastStrides, collapse } from "../shape.ts";
import { Tensor } from "../tensor.ts";
import { sumTo } from "./reduce.ts";
import { expectDtype, f, launch, launchUnits, u32s } from "./util.ts";

/** `f(a, b)` broadcast to the common shape, without a gradient link. */
export function binaryRaw(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  if (!(op in BINARY)) throw new Error(`elementwise: unknown binary op '${op}'`);
  expectDtype(op, "f32", a, b);
  const shape = broadcastShapes(a.shape, b.shape, op);
  const out = Tensor.empty(a.gpu, shape);
  const plan = collapse(shape, [broadcastStrides(a.shape, shape), broadcastStrides(b.shape, shape)]);
  if (plan.shape.length === 1 && plan.strides.every((st) => st[0] === 1)) {
    // operands of one shape (an FFN's activations may be over one storage binding): in bands
    const unit = out.size % 4 === 0 ? 16 : 4;
    const bufs = [a.buffer, b.buffer, out.buffer].map((x): [GPUBuffer, number] => [x, unit]);
    const kernel = unit === 16 ? binaryKernelX4(op) : binaryKernel(op, 1);
    launchUnits(
      a.gpu,
      kernel,
      bufs,
      out.size / (unit / 4),
      (_, n) => unit === 16 ? u32s(n) : u32s(n, n, 1, 1),
    );
    return out;
  }
  const params = u32s(out.size, ...plan.shape, ...plan.strides[0], ...plan.strides[1]);
  launch(a.gpu, binaryKernel(op, plan.shape.length), [a.buffer, b.buffer, out.buffer], out.size, params);
  return out;
}

/** `f(x)` elementwise with scalar parameters `s`, `t`, without a gradient link. */
function unaryRaw(op: UnaryOp, x: Tensor, s = 0, t = 0): Tensor {
  if (!(op in UNARY)) throw new Error(`elementwise: unknown unary op '${op}'`);
  expectDtype(op, "f32", x);
  const out = Tensor.empty(x.gpu, x.shape);
  const unit = x.size % 4 === 0 ? 16 : 4;
  launchUnits(
    x.gpu,
    unaryKernel(op, unit === 16),
    [[x.buffer, unit], [out.buffer, unit]],
    x.size / (unit / 4),
    (_, n) => u32s(n, f(s), f(t)),
  );
  return out;
}

/** `a + b` with broadcasting. */
export function add(a: Tensor, b: Tensor): Tensor {
  const [sa, sb] = [a.shape, b.shape];
  return record("add", binaryRaw("add", a, b), [a, b], [], (g, _, need) => [
    need[0] ? sumTo(g, sa) : null,
    need[1] ? sumTo(g, sb) : null,
  ]);
}

/** `a - b` with broadcasting. */
export function sub(a: Tensor, b: Tensor): Tensor {
  const [sa, sb] = [a.shape, b.shape];
  return record("sub", binaryRaw("sub", a, b), [a, b], [], (g, _, need) => [
    need[0] ? sumTo(g, sa) : null,
    need[1] ? sumTo(scale(g, -1), sb) : null,
  ]);
}

/** `a * b` with broadcasting. */
export function mul(a: Tensor, b: Tensor): Tensor {
  const [sa, sb] = [a.shape, b.shape];
  return record("mul", binaryRaw("mul", a, b), [a, b], [a, b], (g, [va, vb], need) => [
    need[0] ? sumTo(binaryRaw("mul", g, vb), sa) : null,
    need[1] ? sumTo(binaryRaw("mul", g, va), sb) : null,
  ]);
}

/** `a / b` with broadcasting. */
export function div(a: Tensor, b: Tensor): Tensor {
  const [sa, sb] = [a.shape, b.shape];
  return record("div", binaryRaw("div", a, b), [a, b], [a, b], (g, [va, vb], need) => [
    need[0] ? sumTo(binaryRaw("div", g, vb), sa) : null,
    // d(a/b)/db = -a/b²
    need[1]
      ? sumTo(scale(binaryRaw("mul", g, binaryRaw("div", binaryRaw("div", va, vb), vb)), -1), sb)
      : null,
  ]);
}

/** `x · s + t` for scalars `s`, `t`. */
export function affine(x: Tensor, s: number, t: number): Tensor {
  return record(
    "affine",
    unaryRaw("affine", x, s, t),
    [x],
    [],
    (g) => [s === 1 ? g : unaryRaw("affine", g, s, 0)],
  );
}

/** `x · s`. */
export function scale(x: Tensor, s: number): Tensor {
  return affine(x, s, 0);
}

/** `x + c`. */
export function addScalar(x: Tensor, c: number): Tensor {
  return affine(x, 1, c);
}

/** `-x`. */
export function neg(x: Tensor): Tensor {
  return affine(x, -1, 0);
}

/** `exp(x)`. */
export function exp(x: Tensor): Tensor {
  const y = unaryRaw("exp", x);
  return record("exp", y, [x], [y], (g, [vy]) => [binaryRaw("mul", g, vy)]);
}

/** Natural logarithm. */
export function log(x: Tensor): Tensor {
  return record("log", unaryRaw("log", x), [x], [x], (g, [vx]) => [binaryRaw("div", g, vx)]);
}

/** `log(1 + x)`, within a few f32 ulps for small x too (where `log(1 + x)` is not). */
export function log1p(x: Tensor): Tensor {
  return record("log1p", unaryRaw("log1p", x), [x], [x], (g, [vx]) => [binaryRaw("log1p_grad", vx, g)]);
}

/** `max(x, 0)`. */
export function relu(x: Tensor): Tensor {
  return record("relu", unaryRaw("relu", x), [x], [x], (g, [vx]) => [binaryRaw("relu_grad", vx, g)]);
}

/** `1 / (1 + exp(-x))`. */
export function sigmoid(x: Tensor): Tensor {
  const y = unaryRaw("sigmoid", x);
  return record("sigmoid", y, [x], [y], (g, [vy]) => [binaryRaw("sigmoid_grad", vy, g)]);
}

/** Hyperbolic tangent. */
export function tanh(x: Tensor): Tensor {
  const y = unaryRaw("tanh", x);
  return record("tanh", y, [x], [y], (g, [vy]) => [binaryRaw("tanh_grad", vy, g)]);
}

/** `x · sigmoid(x)` (SiLU / swish, LLaMA's MLP). */
export function silu(x: Tensor): Tensor {
  return record("silu", unaryRaw("silu", x), [x], [x], (g, [vx]) => [binaryRaw("silu_grad", vx, g)]);
}

/**
 * GELU: the exact erf form (BERT, RoBERTa, ViT: `approximate: "none"`) or the tanh form
 * (GPT-2's `gelu_new`: `approximate: "tanh"`).
 */
export function gelu(x: Tensor, approximate: "none" | "tanh" = "none"): Tensor {
  const [op, grad]: [UnaryOp, BinaryOp] = approximate === "tanh"
    ? ["gelu_tanh", "gelu_tanh_grad"]
    : ["gelu", "gelu_grad"];
  return record(`gelu`, unaryRaw(op, x), [x], [x], (g, [vx]) => [binaryRaw(grad, vx, g)]);
}
