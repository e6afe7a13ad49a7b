/**
 * Pooling a sequence to one vector per row: the last non-padding token, as transformers'
 * decoder classifiers (GPT2ForSequenceClassification, LlamaForSequenceClassification) do.
 * @module
 */
import { embedding, reshape, Tensor } from "../tensor/mod.ts";

/**
 * For each row of `ids` ([b, t] row-major): the position transformers pools. Without a pad
 * token id it is the last position, and a batch of more than one row is an error (as in
 * transformers: padding cannot be told apart). With one, it is the rightmost position whose id
 * is not the pad id (left or right padding alike), 0 for a row of padding only.
 */
export function lastTokenPositions(
  ids: Int32Array,
  b: number,
  t: number,
  padTokenId: number | null,
): Int32Array {
  if (ids.length !== b * t) throw new Error(`input ids have ${ids.length} values, expected ${b}×${t}`);
  const out = new Int32Array(b);
  if (padTokenId === null) {
    if (b > 1) {
      throw new Error(
        `cannot pool a batch of ${b} rows without a pad token: set pad_token_id in config.json ` +
          `(e.g. to the eos id) so the last real token of each row can be found`,
      );
    }
    out.fill(t - 1);
    return out;
  }
  for (let i = 0; i < b; i++) {
    for (let j = t - 1; j >= 0; j--) {
      if (ids[i * t + j] !== padTokenId) {
        out[i] = j;
        break;
      }
    }
  }
  return out;
}

/** hidden [B, T, H] → [B, H]: row i's vector at position `positions[i]` (gradients flow back). */
export function gatherPositions(hidden: Tensor, positions: Int32Array): Tensor {
  const [b, t, h] = hidden.shape;
  if (hidden.shape.length !== 3 || positions.length !== b) {
    throw new Error(
      `gatherPositions: expected hidden [B, T, H] and B positions, got ${hidden.describe()}, ${positions.length}`,
    );
  }
  const rows = Int32Array.from(positions, (p, i) => {
    if (!(p >= 0 && p < t)) {
      throw new Error(`gatherPositions: position ${p} of row ${i} is outside [0, ${t})`);
    }
    return i * t + p;
  });
  return embedding(reshape(hidden, [b * t, h]), Tensor.from(hidden.gpu, rows, [b]));
}
