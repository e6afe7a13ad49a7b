/**
 * Normalisation layers of a loaded model: LayerNorm (GPT-2, BERT, RoBERTa, ViT) and RMSNorm
 * (LLaMA), holding their checkpoint tensors.
 * @module
 */
import {
  add,
  dropoutAdd,
  type DropoutSpec,
  layerNorm,
  residualLayerNorm,
  rmsNorm,
  type Tensor,
} from "../tensor/mod.ts";
import { FUSIONS } from "./fusions.ts";

/** `LayerNorm(x)·weight + bias` over the last dimension (torch's nn.LayerNorm). */
export class LayerNorm {
  constructor(
    /** The checkpoint key prefix, e.g. `transformer.h.0.ln_1`. */
    readonly path: string,
    readonly weight: Tensor,
    readonly bias: Tensor | null,
    readonly eps: number,
  ) {}

  /** Take `<path>.weight` and `<path>.bias` (when `withBias`) from `params`. */
  static from(params: ReadonlyMap<string, Tensor>, path: string, eps: number, withBias = true): LayerNorm {
    return new LayerNorm(
      path,
      param(params, `${path}.weight`),
      withBias ? param(params, `${path}.bias`) : null,
      eps,
    );
  }

  /** x [..., d] → [..., d]. */
  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps);
  }

  /** `forward(residual + dropout(x))` in one pass (a post-LN residual connection); no dropout when null. */
  forwardResidual(x: Tensor, residual: Tensor, dropout: DropoutSpec | null): Tensor {
    if (FUSIONS.norm) return residualLayerNorm(x, residual, this.weight, this.bias, this.eps, dropout);
    const sum = dropout ? dropoutAdd(x, residual, dropout.p, dropout.key) : add(x, residual);
    return this.forward(sum);
  }
}

/** `x / sqrt(mean(x²) + eps) · weight` over the last dimension (LlamaRMSNorm). */
export class RmsNorm {
  constructor(readonly path: string, readonly weight: Tensor, readonly eps: number) {}

  /** Take `<path>.weight` from `params`. */
  static from(params: ReadonlyMap<string, Tensor>, path: string, eps: number): RmsNorm {
    return new RmsNorm(path, param(params, `${path}.weight`), eps);
  }

  /** x [..., d] → [..., d]. */
  forward(x: Tensor): Tensor {
    return rmsNorm(x, this.weight, this.eps);
  }
}

/**
 * The parameter `key` of a loaded model; throws naming the key when it is absent (a family
 * asking for a tensor its shapes do not list is a bug in the family).
 */
export function param(params: ReadonlyMap<string, Tensor>, key: string): Tensor {
  const t = params.get(key);
  if (!t) throw new Error(`model parameter "${key}" was not loaded (not in the model's shapes)`);
  return t;
}
