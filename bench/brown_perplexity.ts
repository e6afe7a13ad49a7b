/**
 * Held-out perplexity of the pretrained tests/fixtures/models/gpt2-brown on the Brown text, by
 * the procedure of its pretraining run (shared fixtures README): the whole text encoded once,
 * the last 5% of the ids cut into consecutive non-overlapping 128-id windows (the last partial
 * one dropped), loss = mean over windows of each window's mean next-token cross-entropy.
 * PyTorch measured 2.904 (perplexity 18.25) over all 557 windows.
 *
 *     deno run -A bench/brown_perplexity.ts [--windows N] [--batch B] [--dtype f32|f16] [--reference]
 *
 * `--windows N` evaluates N windows spread evenly over the held-out set (rows 0, k, 2k, … with
 * k = ⌊557 / N⌋; the subset tests/brown_perplexity_test.ts uses); `--reference` also computes
 * the float64 CPU reference loss of those windows (slow: about a second per window).
 * @module
 */
import { benchArgs } from "./args.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import { brownHeldOut, PYTORCH_BROWN_LOSS, spreadRows } from "../lib/models/brown.ts";
import { evaluateCausalLm } from "../lib/models/evaluate.ts";
import { loadModel } from "../lib/models/load.ts";
import { gpt2Reference, referenceWeights, rowLosses } from "../lib/models/reference.ts";
import type { Gpt2Config } from "../lib/io/hf_config.ts";
import { collate } from "../lib/train/batches.ts";
import { openCheckpoint } from "../lib/io/safetensors.ts";
import { modelShapes } from "../lib/models/shapes.ts";

const { values } = benchArgs(import.meta.url, {
  windows: { type: "string" },
  batch: { type: "string", default: "16" },
  dtype: { type: "string", default: "f32" },
  reference: { type: "boolean" },
});
const dir = new URL("../tests/fixtures/models/gpt2-brown", import.meta.url).pathname;
const dtype = values.dtype === "f16" ? "f16" : "f32";
const gpu = await getGpu();
let t0 = performance.now();
const model = await loadModel(gpu, dir, { dtype });
const data = await brownHeldOut(model.config);
console.log(
  `${gpu.description}; gpt2-brown (${dtype} weights); ${data.tokens} ids, ${data.dataset.size} held-out windows; ` +
    `load + tokenize ${((performance.now() - t0) / 1000).toFixed(1)} s`,
);
const rows = spreadRows(data.dataset.size, values.windows ? Number(values.windows) : data.dataset.size);
const ev = await evaluateCausalLm(model, data.dataset, { batchSize: Number(values.batch), rows });
console.log(
  `ours: loss ${ev.loss.toFixed(6)}, perplexity ${ev.perplexity.toFixed(3)} over ${ev.windows} windows in ` +
    `${ev.seconds.toFixed(1)} s (${((ev.windows * 127) / ev.seconds).toFixed(0)} predictions/s)`,
);
const rel = (ev.loss - PYTORCH_BROWN_LOSS) / PYTORCH_BROWN_LOSS;
console.log(
  `PyTorch (all 557 windows): loss ${PYTORCH_BROWN_LOSS.toFixed(6)}, perplexity ${
    Math.exp(PYTORCH_BROWN_LOSS).toFixed(3)
  }; ours is ${(rel * 100).toFixed(3)}% off in loss, ${
    ((Math.exp(ev.loss - PYTORCH_BROWN_LOSS) - 1) * 100).toFixed(3)
  }% in perplexity`,
);
model.dispose();
if (values.reference) {
  t0 = performance.now();
  const weights = await referenceWeights(await openCheckpoint(dir), modelShapes(model.config));
  let total = 0;
  for (const row of rows) {
    const b = collate(data.dataset, [row]);
    const out = gpt2Reference(model.config as Gpt2Config, weights, b.ids, 1, b.shape[1]);
    total += rowLosses(out.logits, b.labels as Int32Array, 1, b.shape[1], 512)[0]; // token ids
  }
  const loss = total / rows.length;
  console.log(
    `float64 reference: loss ${loss.toFixed(8)} over the same ${rows.length} windows in ${
      ((performance.now() - t0) / 1000).toFixed(1)
    } s; ours is ${((ev.loss - loss) / loss).toExponential(2)} off`,
  );
}
