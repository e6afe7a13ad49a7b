/**
 * Matrix products and their gradient rules. `C = α·op(A)·op(B)` over leading batch
 * dimensions; a 2-D B is shared by every batch entry (folded into the rows when A is not
 * transposed). Backward uses the transposed-operand options of `encodeMatmul`, so no
 * explicit transposes are materialised except for a transposed A against a shared B.
 * @module
 */
import { encodeMatmul } from "../../linalg/matmul.ts";
import type { MatmulOptions } from "../../linalg/matmul_plan.ts";
import { record } from "../autograd.ts";
import { fmt, numel, sameShape } from "../shape.ts";
import { isQuantized, Tensor } from "../tensor.ts";
import { stridedCopy } from "./copy.ts";
import { transpose } from "./layout.ts";
import { sumTo } from "./reduce.ts";
import { expectDtype } from "./util.ts";

/** Options of {@link matmul}. */
export interface MatmulOpOptions {
  /** A's last two dimensions are (k, m). */
  transA?: boolean;
  /** B's last two dimensions are (n, k) (the nn.Linear weight layout). */
  transB?: boolean;
  /** Scale of the product (attention's 1/√d). */
  alpha?: number;
}

/** How a matmul reads `b` as its B operand: f32, f16, or quantized codes with their scales. */
export function operandB(b: Tensor): Pick<MatmulOptions, "f16B" | "quantB"> {
  if (b.dtype === "f16") return { f16B: true };
  return isQuantized(b.dtype) ? { quantB: { kind: b.dtype, scales: b.scales } } : {};
}

/**
 * A fresh `shape` tensor holding `α·op(x)·op(y)` (zeros when k or the batch is 0), or, given `into` (an
 * f32 tensor of that shape), `into += α·op(x)·op(y)` in place, returning `into`.
 */
function product(
  x: Tensor,
  y: Tensor,
  shape: readonly number[],
  m: number,
  n: number,
  k: number,
  o: MatmulOptions,
  into: Tensor | null = null,
) {
  const fits = into !== null && into.dtype === "f32" && sameShape(into.shape, shape);
  const out = fits ? into : Tensor.empty(x.gpu, shape);
  // nothing to sum (k = 0, or an empty batch summed into a shared B's gradient): zeros
  const none = k === 0 || o.batch === 0;
  if (numel(shape) === 0 || (fits && none)) return out;
  if (none) x.gpu.stream.clear(out.buffer, 0, numel(shape) * 4);
  else {
    encodeMatmul(x.gpu, x.buffer, y.buffer, out.buffer, m, n, k, {
      ...o,
      ...operandB(y),
      accumulate: fits,
    });
  }
  return out;
}

/**
 * `α · op(a) · op(b)`: a is [...batch, m, k] (or [..., k, m] with transA), b is [k, n] (or
 * [n, k] with transB) shared by every batch entry, or [...batch, k, n] with the same batch
 * dimensions. b may be f16 or quantized (frozen). Result [...batch, m, n].
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOpOptions = {}): Tensor {
  return product3("matmul", a, b, null, opts);
}

/**
 * `x · Wᵀ + bias` with W [out, in] (nn.Linear), or `x · W + bias` with W [in, out] when
 * `weightLayout` is `"in_out"` (GPT-2's Conv1D). x is [..., in]; the bias is fused.
 */
export function linear(
  x: Tensor,
  weight: Tensor,
  bias?: Tensor | null,
  opts: { weightLayout?: "out_in" | "in_out" } = {},
): Tensor {
  if (weight.shape.length !== 2) throw new Error(`linear: weight must be 2-D, got ${weight.describe()}`);
  return product3("linear", x, weight, bias ?? null, {
    transB: (opts.weightLayout ?? "out_in") === "out_in",
  });
}

/**
 * ∂L/∂x of `linear(x, weight)` for the upstream gradient g [..., out]: g·W, or g·Wᵀ for an
 * `in_out` weight. Given `into` (a rule's `acc`, see `GradRule`), adds into it in place and
 * returns it. No gradient link: for gradient rules.
 */
export function linearInputGradient(
  g: Tensor,
  weight: Tensor,
  layout: "out_in" | "in_out",
  into: Tensor | null = null,
): Tensor {
  const [outF, inF] = layout === "out_in" ? weight.shape : [weight.shape[1], weight.shape[0]];
  if (g.shape[g.shape.length - 1] !== outF) {
    throw new Error(`linearInputGradient: gradient ${g.describe()} does not fit weight ${weight.describe()}`);
  }
  const rows = g.size / outF;
  return product(
    g,
    weight,
    [...g.shape.slice(0, -1), inF],
    rows,
    inF,
    outF,
    { transB: layout === "in_out" },
    into,
  );
}

function product3(op: string, a: Tensor, b: Tensor, bias: Tensor | null, opts: MatmulOpOptions): Tensor {
  expectDtype(op, "f32", a, ...(bias ? [bias] : []));
  if (b.dtype === "i32") throw new Error(`${op}: B must be f32, f16 or quantized, got ${b.describe()}`);
  const tA = opts.transA ?? false, tB = opts.transB ?? false, alpha = opts.alpha ?? 1;
  if (a.shape.length < 2 || b.shape.length < 2) {
    throw new Error(
      `${op}: operands must have at least 2 dimensions, got ${a.describe()} and ${b.describe()}`,
    );
  }
  const ra = a.shape.length, rb = b.shape.length;
  const [m, k] = tA ? [a.shape[ra - 1], a.shape[ra - 2]] : [a.shape[ra - 2], a.shape[ra - 1]];
  const [kb, n] = tB ? [b.shape[rb - 1], b.shape[rb - 2]] : [b.shape[rb - 2], b.shape[rb - 1]];
  const batchDims = a.shape.slice(0, -2);
  const shared = rb === 2;
  if (k !== kb || (!shared && !sameShape(batchDims, b.shape.slice(0, -2)))) {
    throw new Error(
      `${op}: shapes ${fmt(a.shape)}${tA ? "ᵀ" : ""} and ${fmt(b.shape)}${tB ? "ᵀ" : ""} do not multiply ` +
        `(inner sizes ${k} and ${kb}${shared ? "" : ", batch dimensions must match"})`,
    );
  }
  if (bias && !sameShape(bias.shape, [n])) throw new Error(`${op}: bias ${bias.describe()} should be [${n}]`);
  const batch = numel(batchDims);
  const outShape = [...batchDims, m, n];
  // a shared B against an untransposed A: fold the batch into the rows
  const fold = shared && !tA;
  const [M, B] = fold ? [m * batch, 1] : [m, batch];
  const base: MatmulOptions = { batch: B, broadcastB: shared && B > 1 };
  const out = product(a, b, outShape, M, n, k, {
    ...base,
    transA: tA,
    transB: tB,
    alpha,
    bias: bias?.buffer,
  });
  // no product (k = 0): the bias alone in every row, as nn.Linear(0, n) gives
  if (k === 0 && bias && out.size > 0) stridedCopy(bias, out, [out.size / n, n], [0, 1], [n, 1]);
  const aShape = a.shape, bShape = b.shape;
  return record(op, out, bias ? [a, b, bias] : [a, b], [a, b], (g, [va, vb], need, acc) => {
    let ga: Tensor | null = null, gb: Tensor | null = null;
    if (need[0]) {
      // the usual case (an input gradient dX = dY·W) adds into what x has gathered already
      if (!tA) ga = product(g, vb, aShape, M, k, n, { ...base, transB: !tB, alpha }, acc[0]);
      else if (!shared && vb.dtype === "f32") {
        // dA (k×m) = α op(B)·dCᵀ
        ga = product(vb, g, aShape, k, m, n, { batch: B, transA: tB, transB: true, alpha });
      } else {
        // B shared, f16 or quantized can only be the right operand: dAᵀ (m×k) = α dC·op(B)ᵀ, then transpose
        const t = product(g, vb, [...batchDims, m, k], m, k, n, { ...base, transB: !tB, alpha });
        ga = transpose(t, -1, -2);
      }
    }
    if (need[1]) {
      const perBatch = shared && B > 1;
      const shape = perBatch ? [...batchDims, ...bShape] : bShape;
      const o = { batch: B, alpha };
      gb = tB
        ? product(g, va, shape, n, k, M, { ...o, transA: true, transB: tA }) // dB (n×k) = α dCᵀ·op(A)
        : product(va, g, shape, k, n, M, { ...o, transA: !tA }); // dB (k×n) = α op(A)ᵀ·dC
      if (perBatch) gb = sumTo(gb, bShape);
    }
    const gbias = need[2] ? sumTo(g, [n]) : null;
    return [ga, gb, gbias];
  });
}
