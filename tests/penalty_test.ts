// The repetition penalty: the GPU kernels against a float64 reference, and generation with it
// (greedy on the GPU, sampled on the CPU, batched) picking the same tokens.
import { getGpu } from "../lib/gpu/mod.ts";
import { loadModel, loadModelTokenizer } from "../lib/models/load.ts";
import { Tensor } from "../lib/tensor/mod.ts";
import { markSeen, repetitionPenalty } from "../lib/tensor/ops/penalty.ts";
import { generate, generateBatch } from "../lib/infer/generate.ts";
import { applyRepetitionPenalty } from "../lib/infer/sampling.ts";
import { assert, assertClose, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { fixtureModel } from "./model_helpers.ts";
import { Rng } from "./tensor_helpers.ts";

Deno.test("repetition penalty: the kernels against float64 (a row's seen tokens, once each)", async () => {
  const gpu = await getGpu();
  const rng = new Rng(5);
  for (const [rows, vocab] of [[1, 1], [3, 101], [2, 4099]]) {
    const logits = Float32Array.from(rng.normals(rows * vocab, 3));
    logits[0] = 0;
    const seen = Int32Array.from({ length: rows * vocab }, () => (rng.uniform() < 0.3 ? 1 : 0));
    for (const penalty of [1.3, 0.7]) {
      const got = await repetitionPenalty(
        Tensor.from(gpu, logits, [rows, vocab]),
        Tensor.from(gpu, seen, [rows, vocab]),
        penalty,
      ).toArray();
      const want = Array.from(logits, (l, i) => (seen[i] ? (l < 0 ? l * penalty : l / penalty) : l));
      assertClose(got, want, 1e-7, `${rows}×${vocab} penalty ${penalty}`);
      assert(got.every((v, i) => seen[i] || v === logits[i]), "unseen logits unchanged");
    }
    // marking: row r's id, ids outside the vocabulary skipped
    const flags = Tensor.zeros(gpu, [rows, vocab], { dtype: "i32" });
    const ids = Int32Array.from({ length: rows }, (_, r) => (r === 1 ? vocab + 5 : (r * 7) % vocab));
    markSeen(flags, Tensor.from(gpu, ids, [rows]));
    const marked = await flags.toInt32Array();
    const expected = new Int32Array(rows * vocab);
    ids.forEach((id, r) => id < vocab && (expected[r * vocab + id] = 1));
    assertEquals(Array.from(marked), Array.from(expected), `marks ${rows}×${vocab}`);
  }
  assertThrows(
    () => repetitionPenalty(Tensor.zeros(gpu, [2, 3]), Tensor.zeros(gpu, [3, 2], { dtype: "i32" }), 1.1),
    "do not match logits",
  );
  // transformers' rule on one row: each seen token once, positive divided, negative multiplied
  const row = Float32Array.of(2, -2, 0.5, 4);
  applyRepetitionPenalty(row, [0, 1, 0, 3, 9], 2);
  assertEquals(Array.from(row), [1, -4, 0.5, 2]);
});

Deno.test("repetition penalty: greedy, top-1 sampling on the GPU, a near-zero temperature on the CPU and batches pick the same tokens", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, fixtureModel("gpt2-brown"));
  const tokenizer = await loadModelTokenizer(model.config);
  try {
    const prompts = ["The jury said that the", "It was a"];
    const common = { maxNewTokens: 24, stopAtEos: false, repetitionPenalty: 1.5 };
    for (const prompt of prompts) {
      const plain = await generate(model, tokenizer, prompt, { maxNewTokens: 24, stopAtEos: false });
      const gpuPath = await generate(model, tokenizer, prompt, common);
      // no top-k: sampled on the CPU, where only the most probable token has any weight left
      const cpuPath = await generate(model, tokenizer, prompt, { ...common, temperature: 1e-6 });
      const sampledOnGpu = await generate(model, tokenizer, prompt, { ...common, temperature: 1, topK: 1 });
      assertEquals(gpuPath.ids, cpuPath.ids, `${prompt}: CPU`);
      assertEquals(gpuPath.ids, sampledOnGpu.ids, `${prompt}: GPU sampler`);
      assert(gpuPath.text !== plain.text, `the penalty changed nothing: ${plain.text}`);
      // the penalised text repeats fewer of its tokens
      const repeats = (ids: number[]) => ids.length - new Set(ids).size;
      assert(repeats(gpuPath.ids) < repeats(plain.ids), `${gpuPath.text} | ${plain.text}`);
    }
    const batch = await generateBatch(model, tokenizer, prompts, common);
    for (const [i, prompt] of prompts.entries()) {
      assertEquals(batch[i].ids, (await generate(model, tokenizer, prompt, common)).ids, `batch row ${i}`);
    }
    await assertRejects(
      () => generate(model, tokenizer, "x", { repetitionPenalty: 0 }),
      RangeError,
      "repetitionPenalty must be > 0",
    );
  } finally {
    model.dispose();
  }
});
