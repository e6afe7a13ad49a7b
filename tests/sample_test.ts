// Drawing tokens on the GPU: the kept tokens and their frequencies are those of sampleToken's
// temperature, top-k (ties with the k-th kept), top-p and min-p (computed here in float64), and the
// draws are seeded.
import { getGpu } from "../lib/gpu/mod.ts";
import { loadModel, loadModelTokenizer } from "../lib/models/load.ts";
import { generate, generateBatch } from "../lib/infer/generate.ts";
import { samplingCandidates, type SamplingCuts } from "../lib/infer/sampling.ts";
import { fixtureModel } from "./model_helpers.ts";
import { Tensor } from "../lib/tensor/mod.ts";
import { sampleTokens } from "../lib/tensor/ops/sample.ts";
import { assert, assertEquals, assertThrows } from "./assert.ts";
import { Rng } from "./tensor_helpers.ts";

/** sampleToken's distribution in float64: its candidates, and their weights normalised. */
function expected(logits: Float32Array, cuts: SamplingCuts): Map<number, number> {
  const { ids, weights } = samplingCandidates(logits, cuts);
  const held = weights.reduce((a, b) => a + b, 0);
  return new Map(ids.map((id, j) => [id, weights[j] / held]));
}

Deno.test("sampleTokens: the tokens and frequencies of sampleToken's cuts, a seeded draw per row and step", async () => {
  const gpu = await getGpu();
  const rng = new Rng(23);
  const vocab = 41, rows = 1500;
  const logits = Float32Array.from(rng.normals(vocab, 2));
  logits[7] = logits[3]; // a tie: the smaller id comes first
  // the 5th and 20th most probable tied with tokens after them: top-k keeps those too
  const byRank = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
  for (const [rank, ties] of [[4, 2], [19, 1]]) {
    for (let j = 1; j <= ties; j++) logits[byRank[rank + j]] = logits[byRank[rank]];
  }
  const batch = new Float32Array(rows * vocab);
  for (let r = 0; r < rows; r++) batch.set(logits, r * vocab);
  const x = Tensor.from(gpu, batch, [rows, vocab]);
  const settings = [[1, 5, 1, 0], [0.7, 20, 0.8, 0], [1.3, 64, 0.5, 0], [1, 1, 1, 0], [2, 41, 0.95, 0], [
    1.5,
    20,
    1,
    0.3,
  ], [1, 10, 0.9, 0.05]];
  for (const [temperature, topK, topP, minP] of settings) {
    const cuts = { temperature, topK, topP, minP };
    const out = Tensor.empty(gpu, [rows], "i32");
    sampleTokens(x, { ...cuts, seed: 9, step: 3 }, out);
    const picks = await out.toInt32Array();
    const want = expected(logits, cuts);
    if (topK === 5) assertEquals(want.size, 7, "top-k 5 and its two ties");
    if (topK === 20) {
      assertEquals(expected(logits, { ...cuts, topP: 1, minP: 0 }).size, 21, "top-k 20 and its tie");
    }
    const counts = new Map<number, number>();
    for (const id of picks) counts.set(id, (counts.get(id) ?? 0) + 1);
    const label = `T ${temperature}, top-k ${topK}, top-p ${topP}, min-p ${minP}`;
    for (const id of counts.keys()) assert(want.has(id), `${label}: drew ${id}, which the cuts leave out`);
    for (const [id, p] of want) {
      const freq = (counts.get(id) ?? 0) / rows;
      assert(
        Math.abs(freq - p) <= 4 * Math.sqrt((p * (1 - p)) / rows) + 2 / rows,
        `${label}: token ${id} drawn ${freq}, p ${p}`,
      );
    }
    // the same seed and step draw the same tokens; another step others
    const again = Tensor.empty(gpu, [rows], "i32"), later = Tensor.empty(gpu, [rows], "i32");
    sampleTokens(x, { ...cuts, seed: 9, step: 3 }, again);
    sampleTokens(x, { ...cuts, seed: 9, step: 4 }, later);
    assertEquals(Array.from(await again.toInt32Array()), Array.from(picks), `${label}: seeded`);
    if (want.size > 1) {
      assert(Array.from(await later.toInt32Array()).some((id, r) => id !== picks[r]), `${label}: step`);
    }
  }
  // settings it does not take are named (a temperature of 0 is greedy; a top-k above 64 samples on the CPU)
  const out = Tensor.empty(gpu, [rows], "i32");
  assertThrows(
    () => sampleTokens(x, { temperature: 0, topK: 5, topP: 1, minP: 0, seed: 0, step: 0 }, out),
    "temperature 0 > 0",
  );
  assertThrows(
    () => sampleTokens(x, { temperature: 1, topK: 65, topP: 1, minP: 0, seed: 0, step: 0 }, out),
    "top-k 65 in 1..64",
  );
});

Deno.test("generate: sampling with a top-k draws on the GPU, 16 tokens a readback, seeded; batches too", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, fixtureModel("gpt2-brown"));
  const tokenizer = await loadModelTokenizer(model.config);
  try {
    const opts = { maxNewTokens: 40, stopAtEos: false, temperature: 0.9, topK: 20, topP: 0.95, seed: 5 };
    const reads = gpu.submits;
    const a = await generate(model, tokenizer, "The jury said", opts);
    assert(gpu.submits - reads <= 6, `${gpu.submits - reads} submits for 40 tokens`);
    assertEquals((await generate(model, tokenizer, "The jury said", opts)).ids, a.ids, "the same seed");
    const b = await generate(model, tokenizer, "The jury said", { ...opts, seed: 6 });
    assert(b.ids.join() !== a.ids.join(), "another seed");
    const batch = await generateBatch(model, tokenizer, ["The jury said", "It was"], opts);
    assertEquals(batch.map((g) => g.newTokens), [40, 40]);
  } finally {
    model.dispose();
  }
});
