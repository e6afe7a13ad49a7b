// A causal LM's evaluation reports the share of targets that are its most probable next token,
// from the LM head at every position (language-model windows) or at the targets alone
// (instruction data): the same count as the argmax of whole passes' logits, taken on the CPU.
import { getGpu } from "../lib/gpu/mod.ts";
import { loadModel, loadModelTokenizer } from "../lib/models/load.ts";
import type { Model } from "../lib/models/model.ts";
import { noGrad, tidy } from "../lib/tensor/mod.ts";
import { CausalLmDataset, type Dataset } from "../lib/train/data.ts";
import { BatchIterator } from "../lib/train/batches.ts";
import { instructionDataset } from "../lib/train/instruct.ts";
import { evaluate, inOrder, toModelBatch } from "../lib/train/tasks.ts";
import { assert, assertEquals } from "./assert.ts";
import { fixtureModel } from "./model_helpers.ts";

/** Targets hit by the argmax of whole passes' logits (no head at the targets alone), counted on the CPU. */
async function rightTokens(model: Model, data: Dataset): Promise<{ right: number; targets: number }> {
  let right = 0, targets = 0;
  for await (const b of inOrder(new BatchIterator(data, { batchSize: 4, seed: 0 }))) {
    const read = tidy(() =>
      noGrad(() => ({ v: model.forward(toModelBatch(model, b, "causal-lm")).logits.readLater() }))
    ).v;
    model.gpu.stream.flush();
    const logits = await read;
    const labels = b.labels as Int32Array, v = logits.length / labels.length;
    labels.forEach((label, i) => {
      if (label === -100) return;
      targets++;
      let best = 0;
      for (let j = 1; j < v; j++) if (logits[i * v + j] > logits[i * v + best]) best = j;
      if (best === label) right++;
    });
  }
  return { right, targets };
}

Deno.test("evaluate: a causal LM's token accuracy, with the LM head at every position or at the targets alone", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, fixtureModel("gpt2-brown"));
  const tokenizer = await loadModelTokenizer(model.config);
  try {
    model.train(false);
    const text = "The jury said it did find that many of the voters had been asked to vote. ".repeat(6);
    const windows = new CausalLmDataset(Int32Array.from(tokenizer.encode(text)), 24, tokenizer.padId);
    const examples = ["one", "two", "three", "four", "five"].map((w, i) => ({
      prompt: `The jury counted ${w} and`,
      completion: ` then ${i + 2} more`,
    }));
    const { dataset: instructions } = instructionDataset(examples, tokenizer, { seqLen: 32 });
    for (const [name, data] of [["windows", windows], ["instructions", instructions]] as const) {
      // one row a batch: every batch's count must add up (reads settle out of order)
      const r = await evaluate(
        model,
        inOrder(new BatchIterator(data, { batchSize: 1, seed: 0 })),
        "causal-lm",
      );
      const expected = await rightTokens(model, data);
      assertEquals(r.targets, expected.targets, `${name}: targets`);
      // the same logits up to rounding: at most one near-tie may go the other way
      assert(
        Math.abs(r.tokenAccuracy! * r.targets - expected.right) <= 1,
        `${name}: ${r.tokenAccuracy! * r.targets} right, ${expected.right} by whole passes`,
      );
      assert(
        expected.right > 0 && expected.right < expected.targets,
        `${name}: ${expected.right}/${expected.targets}`,
      );
    }
  } finally {
    model.dispose();
  }
});
