/**
 * The ViT patch embedding: a conv2d whose stride equals its kernel, done as a
 * reshape/permute of the image into patch rows and one linear layer (gradients follow).
 * @module
 */
import { tidy } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import { permute, reshape } from "./layout.ts";
import { linear } from "./matmul.ts";

/**
 * `conv2d(x, weight, bias, stride = patch)` flattened to patches: x [B, C, H, W], weight
 * [E, C, P, P] (f32 or frozen f16), bias [E] → [B, (H/P)·(W/P), E], patches row-major (HF
 * ViT's `flatten(2).transpose(1, 2)`).
 */
export function patchEmbed(x: Tensor, weight: Tensor, bias: Tensor | null, patch: number): Tensor {
  const [b, c, h, w] = x.shape;
  const [e, wc, p1, p2] = weight.shape;
  if (x.shape.length !== 4 || weight.shape.length !== 4 || wc !== c || p1 !== patch || p2 !== patch) {
    throw new Error(
      `patchEmbed: expected x [B, C, H, W] and weight [E, C, ${patch}, ${patch}], got ${x.describe()} and ` +
        weight.describe(),
    );
  }
  if (h % patch !== 0 || w % patch !== 0) {
    throw new Error(`patchEmbed: image ${h}×${w} is not a multiple of the patch size ${patch}`);
  }
  const [ph, pw] = [h / patch, w / patch];
  return tidy(() => {
    const patches = permute(reshape(x, [b, c, ph, patch, pw, patch]), [0, 2, 4, 1, 3, 5]);
    const rows = reshape(patches, [b, ph * pw, c * patch * patch]);
    return linear(rows, reshape(weight, [e, c * patch * patch]), bias);
  });
}
