/**
 * The held-out split of the gpt2-brown pretraining run (shared fixtures README): the Brown
 * text ({@link loadBrownText}) encoded at once with the model's tokenizer, the last 5% of the
 * ids, cut into consecutive non-overlapping 128-id windows (127 inputs, 127 next-token labels;
 * the last partial window dropped).
 * @module
 */
import type { HfConfig } from "../io/hf_config.ts";
import { CausalLmDataset } from "../train/data.ts";
import { loadBrownText } from "../train/datasets.ts";
import { splitTokens } from "../train/split.ts";
import { loadModelTokenizer } from "./load.ts";

/** PyTorch's held-out loss of tests/fixtures/models/gpt2-brown (pretraining.json `val_loss`). */
export const PYTORCH_BROWN_LOSS = 2.904371830890594;

/** The held-out windows of the Brown text for a model (its tokenizer.json beside config.json). */
export async function brownHeldOut(config: HfConfig): Promise<{ dataset: CausalLmDataset; tokens: number }> {
  const tokenizer = await loadModelTokenizer(config);
  const ids = Int32Array.from(tokenizer.encode(await loadBrownText()));
  const { heldOut } = splitTokens(ids, 0.05);
  return {
    dataset: new CausalLmDataset(heldOut, 127, tokenizer.padId, { stride: 128, source: "Brown held-out" }),
    tokens: ids.length,
  };
}

/** `count` rows of `size` spread evenly: 0, k, 2k, … with k = ⌊size / count⌋ (all rows when count ≥ size). */
export function spreadRows(size: number, count: number): number[] {
  if (!(Number.isInteger(count) && count >= 1)) {
    throw new RangeError(`windows must be an integer ≥ 1, got ${count}`);
  }
  const n = Math.min(count, size), step = Math.floor(size / n);
  return Array.from({ length: n }, (_, i) => i * step);
}
