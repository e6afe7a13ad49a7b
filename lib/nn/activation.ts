/**
 * The feed-forward activation a config names (hf_config's `Activation`).
 * @module
 */
import type { Activation } from "../io/hf_config.ts";
import { gelu, relu, silu, type Tensor } from "../tensor/mod.ts";

/** `act(x)`: exact GELU, tanh GELU (gelu_new), ReLU or SiLU. */
export function activate(x: Tensor, act: Activation): Tensor {
  switch (act) {
    case "gelu":
      return gelu(x, "none");
    case "gelu_tanh":
      return gelu(x, "tanh");
    case "relu":
      return relu(x);
    case "silu":
      return silu(x);
  }
}
