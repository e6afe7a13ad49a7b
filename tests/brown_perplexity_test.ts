/**
 * The pretrained gpt2-brown on its held-out Brown text. The full evaluation (557 windows,
 * PyTorch: loss 2.904372, perplexity 18.254) takes about 5 minutes on lavapipe, so it lives in
 * bench/brown_perplexity.ts (which reproduced 18.254, 0.000% off); here 8 windows spread over
 * the held-out set are checked against their float64 CPU reference (lib/models/reference.ts,
 * itself equal to PyTorch's outputs on the fixture models to 3e-8), computed once by
 * `deno run -A bench/brown_perplexity.ts --windows 8 --reference`.
 */
import { getGpu } from "../lib/gpu/mod.ts";
import { brownHeldOut, spreadRows } from "../lib/models/brown.ts";
import { evaluateCausalLm } from "../lib/models/evaluate.ts";
import { loadModel } from "../lib/models/load.ts";
import { assert, assertEquals } from "./assert.ts";
import { fixtureModel } from "./model_helpers.ts";

/** Mean window loss of rows 0, 69, …, 483 by the float64 reference. */
const REFERENCE_LOSS_8 = 2.85169833;

Deno.test("gpt2-brown: held-out windows as in pretraining; 8 of them match the float64 reference", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, fixtureModel("gpt2-brown"));
  try {
    const { dataset, tokens } = await brownHeldOut(model.config);
    assertEquals([tokens, dataset.size, dataset.row(0).ids.length], [1_428_458, 557, 127]);
    const rows = spreadRows(dataset.size, 8);
    assertEquals(rows, [0, 69, 138, 207, 276, 345, 414, 483]);
    const ev = await evaluateCausalLm(model, dataset, { rows, batchSize: 8 });
    const rel = Math.abs(ev.loss - REFERENCE_LOSS_8) / REFERENCE_LOSS_8;
    assert(rel <= 1e-5, `loss ${ev.loss} vs float64 reference ${REFERENCE_LOSS_8} (rel ${rel})`);
  } finally {
    model.dispose();
  }
});
