import { getGpu } from "../lib/gpu/mod.ts";
import { maxTokens } from "../lib/io/hf_config.ts";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { loadModel, loadModelTokenizer } from "../lib/models/load.ts";
import { noGrad, softmax, Tensor, tidy } from "../lib/tensor/mod.ts";
import { classify } from "../lib/infer/predict.ts";
import { tagWords } from "../lib/infer/tag.ts";
import { progressFrom } from "../lib/cli/loading.ts";
import { generate, generateBatch } from "../lib/infer/generate.ts";
import { sampleToken, samplingCandidates, type SamplingCuts } from "../lib/infer/sampling.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { assert, assertClose, assertEquals, assertRejects } from "./assert.ts";
import { FIXTURES } from "./peft_helpers.ts";

const GPT2 = `${FIXTURES}models/gpt2`;

Deno.test("generate: greedy starts with PyTorch's most probable next token, and stops as asked", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, GPT2);
  try {
    const tokenizer = await loadModelTokenizer(model.config);
    const ref = await openSafetensors(`${GPT2}/reference.safetensors`);
    const ids = await ref.read("input.input_ids") as Int32Array;
    const logits = await ref.readF32("logits"); // [2, 16, 512] from transformers
    for (const row of [0, 1]) {
      const prompt = Array.from(ids.subarray(row * 16, (row + 1) * 16));
      const last = logits.subarray((row * 16 + 15) * 512, (row * 16 + 16) * 512);
      const expected = last.indexOf(Math.max(...last));
      const g = await generate(model, tokenizer, prompt, { maxNewTokens: 3, stopAtEos: false });
      assertEquals(g.ids.slice(0, 16), prompt);
      assertEquals(g.ids[16], expected, `row ${row}: first greedy token`);
      assertEquals([g.newTokens, g.stop], [3, "length"]);
      assertEquals(g.text, tokenizer.decode(g.ids.slice(16)));
      // top-1 sampling is greedy at any temperature
      const top1 = await generate(model, tokenizer, prompt, {
        maxNewTokens: 3,
        temperature: 2,
        topK: 1,
        stopAtEos: false,
      });
      assertEquals(top1.ids, g.ids);
    }
    const prompt = Array.from(ids.subarray(0, 16));
    const a = await generate(model, tokenizer, prompt, {
      maxNewTokens: 8,
      temperature: 1,
      seed: 7,
      stopAtEos: false,
    });
    const b = await generate(model, tokenizer, prompt, {
      maxNewTokens: 8,
      temperature: 1,
      seed: 7,
      stopAtEos: false,
    });
    assertEquals(a.ids, b.ids, "the same seed samples the same tokens");
    // streamed pieces add up to the text
    const pieces: string[] = [];
    const streamed = await generate(model, tokenizer, prompt, {
      maxNewTokens: 8,
      temperature: 1,
      seed: 7,
      stopAtEos: false,
      onText: (t) => pieces.push(t),
    });
    assertEquals(pieces.join(""), streamed.text);
    assert(pieces.length > 1, `${pieces.length} pieces`);
    // the fixture has 64 positions: the pass over the 64th picks a 65th token, as transformers' does
    const long = await generate(model, tokenizer, prompt, { maxNewTokens: 60, stopAtEos: false });
    assertEquals([long.ids.length, long.stop], [65, "positions"]);
    // an end-of-sequence token stops it (here: whatever greedy picks first)
    const eos = model.config.eosTokenIds;
    model.config.eosTokenIds = [a.ids[16]];
    const stopped = await generate(model, tokenizer, prompt, { maxNewTokens: 8, temperature: 1, seed: 7 });
    model.config.eosTokenIds = eos;
    assertEquals([stopped.newTokens, stopped.stop], [1, "eos"]);
    await assertRejects(() => generate(model, tokenizer, [], {}), Error, "the prompt has no tokens");
  } finally {
    model.dispose();
  }
});

Deno.test("generate: the continuation keeps its leading space with a SentencePiece tokenizer (LLaMA)", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, `${FIXTURES}models/llama`);
  try {
    const tokenizer = await loadModelTokenizer(model.config);
    const g = await generate(model, tokenizer, "The jury said", { maxNewTokens: 4, stopAtEos: false });
    assertEquals("The jury said" + g.text, tokenizer.decode(g.ids));
    assert(g.text.startsWith(" "), JSON.stringify(g.text));
  } finally {
    model.dispose();
  }
});

Deno.test("classify: the forward pass's softmax for each text, in input order, whatever the batch size", async () => {
  const gpu = await getGpu();
  const dir = `${FIXTURES}models/roberta`;
  const model = await loadModel(gpu, dir);
  try {
    const tokenizer = await loadModelTokenizer(model.config);
    const texts = [
      "a short one",
      "a much longer text than the others in this small list",
      "mid length here",
      "x",
    ]
      .map((text) => ({ text }));
    const told: [number, number][] = [];
    const one = await classify(model, tokenizer, texts, {
      batchSize: 1,
      onProgress: (done, total) => told.push([done, total]),
    });
    const three = await classify(model, tokenizer, texts, { batchSize: 3 });
    assertEquals(one.length, 4);
    assertEquals(told, [[4, 4]], "told as reads are collected: every 8 batches, and at the end");
    // 8 batches: all read at the eighth, told once
    const eight: [number, number][] = [];
    await classify(model, tokenizer, [...texts, ...texts], {
      batchSize: 1,
      onProgress: (done, total) => eight.push([done, total]),
    });
    assertEquals(eight, [[8, 8]]);
    for (let i = 0; i < 4; i++) {
      assertClose(three[i].probabilities, one[i].probabilities, 1e-5, `text ${i}`);
      assertEquals(three[i].id, one[i].id);
      assertClose([one[i].probabilities.reduce((a, b) => a + b, 0)], [1], 1e-6);
      // the same text alone through the model
      const ids = Int32Array.from(tokenizer.encode(texts[i].text));
      const { p } = tidy(() =>
        noGrad(() => ({
          p: softmax(
            model.forward({
              inputIds: Tensor.from(gpu, ids, [1, ids.length]),
              inputIdsHost: ids,
              attentionMask: new Int32Array(ids.length).fill(1),
            }).logits,
          ).readLater(),
        }))
      );
      gpu.stream.flush();
      assertClose(one[i].probabilities, Array.from(await p), 1e-5, `text ${i} alone`);
    }
    assertEquals(one[0].probabilities.length, model.config.labels.length);
    assert((await classify(model, tokenizer, [])).length === 0);
  } finally {
    model.dispose();
  }
});

Deno.test("tagWords: each sentence's words tagged, in input order, progress told as batches are read", async () => {
  const model = await loadModel(await getGpu(), `${FIXTURES}models/bert`, {
    task: "token-cls",
    numLabels: 3,
  });
  try {
    const tokenizer = await loadModelTokenizer(model.config);
    const sentences = Array.from({ length: 11 }, (_, i) => ["word", ...Array(i % 3).fill("more")]);
    const told: [number, number][] = [];
    const tagged = await tagWords(model, tokenizer, sentences, {
      batchSize: 1,
      onProgress: (done, total) => told.push([done, total]),
    });
    assertEquals(tagged.map((t) => t.words), sentences);
    assert(tagged.every((t) => t.tags.every((tag) => tag >= 0 && tag < 3)));
    assertEquals(told, [[8, 11], [11, 11]], "every 8 batches, and at the end");
  } finally {
    model.dispose();
  }
});

Deno.test("classify: by default a text is cut to the tokens RoBERTa's positions allow (80 − 2)", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, `${FIXTURES}models/roberta`);
  try {
    const tokenizer = await loadModelTokenizer(model.config);
    const text = Array.from({ length: 120 }, (_, i) => ["the", "jury", "said", "it", "was"][i % 5]).join(" ");
    assert(tokenizer.encode(text).length > 80);
    assertEquals(maxTokens(model.config), 78);
    const [auto] = await classify(model, tokenizer, [{ text }]);
    const [cut] = await classify(model, tokenizer, [{ text }], { maxLength: 78 });
    assertClose(auto.probabilities, cut.probabilities, 1e-6);
    await assertRejects(() => classify(model, tokenizer, [{ text }], { maxLength: 79 }), Error, "position");
  } finally {
    model.dispose();
  }
});

Deno.test("sampleToken: the top-k and top-p sets transformers keeps, drawn in proportion", () => {
  // probabilities 0.3, 0.05, 0.5, 0.15 at ids 0..3: by rank ids 2, 0, 3, 1
  const logits = Float32Array.from([0.3, 0.05, 0.5, 0.15].map(Math.log));
  const draws = (temperature: number, topK: number, topP: number) => {
    const rng = new Prng(9), counts = [0, 0, 0, 0];
    for (let i = 0; i < 4000; i++) counts[sampleToken(logits, { temperature, topK, topP, minP: 0 }, rng)]++;
    return counts.map((c) => c / 4000);
  };
  const near = (got: number[], want: number[], what: string) =>
    got.forEach((g, i) => assert(Math.abs(g - want[i]) < 0.03, `${what}: ${got} against ${want}`));
  near(draws(1, 0, 1), [0.3, 0.05, 0.5, 0.15], "all");
  // top-p keeps a token while the tokens before it hold less than p: 0.75 → ids 2, 0; 0.81 → and 3; 0.45 → 2
  near(draws(1, 0, 0.75), [0.3 / 0.8, 0, 0.5 / 0.8, 0], "top-p 0.75");
  near(draws(1, 0, 0.81), [0.3 / 0.95, 0, 0.5 / 0.95, 0.15 / 0.95], "top-p 0.81");
  assertEquals(draws(1, 0, 0.45), [0, 0, 1, 0]);
  near(draws(1, 2, 1), [0.3 / 0.8, 0, 0.5 / 0.8, 0], "top-k 2");
  assertEquals(draws(1, 3, 0.6), draws(1, 0, 0.6), "top-p after top-k");
  // temperature 2: p^(1/2), renormalised
  const sqrt = [0.3, 0.05, 0.5, 0.15].map(Math.sqrt), total = sqrt.reduce((a, b) => a + b);
  near(draws(2, 0, 1), sqrt.map((v) => v / total), "temperature 2");
});

Deno.test("sampleToken: top-k keeps the tokens tied with the k-th, min-p those that reach its share of the first", () => {
  // probabilities 0.4, 0.2, 0.2, 0.1, 0.1 at ids 0..4
  const logits = Float32Array.from([0.4, 0.2, 0.2, 0.1, 0.1].map(Math.log));
  const kept = (cuts: Partial<SamplingCuts>) =>
    samplingCandidates(logits, { temperature: 1, topK: 0, topP: 1, minP: 0, ...cuts }).ids;
  // transformers: scores < topk(scores, k)[-1] are removed, so a tie at the k-th place stays
  assertEquals(kept({ topK: 2 }), [0, 1, 2]);
  assertEquals(kept({ topK: 4 }), [0, 1, 2, 3, 4]);
  assertEquals(kept({ topK: 1 }), [0]);
  // min-p 0.45: tokens at least 0.45 times as probable as the first (0.2 ≥ 0.45 · 0.4)
  assertEquals(kept({ minP: 0.45 }), [0, 1, 2]);
  assertEquals(kept({ minP: 0.55 }), [0]);
  assertEquals(kept({ minP: 1 }), [0]);
  // min-p comes after top-p: top-p 0.7 keeps 0, 1, 2 (0.6 before id 2); min-p 0.3 then drops none of them
  assertEquals(kept({ topP: 0.7, minP: 0.3 }), [0, 1, 2]);
  // top-k 4 (ids 0–4: a tie), top-p 0.85 of their mass: 0.8 before id 3 < 0.85, 0.9 before id 4
  assertEquals(kept({ topK: 4, topP: 0.85, minP: 0.1 }), [0, 1, 2, 3]);
  assertEquals(kept({ topK: 4, topP: 0.85, minP: 0.3 }), [0, 1, 2]);
  // top-p weighs all five tokens (0.6 before id 2 < 0.7), not just those min-p keeps after it
  assertEquals(kept({ topK: 4, topP: 0.7, minP: 0.45 }), [0, 1, 2]);
  // the draws follow the weights left: min-p 0.45 → 0.5, 0.25, 0.25
  const rng = new Prng(3), counts = [0, 0, 0, 0, 0];
  for (let i = 0; i < 4000; i++) {
    counts[sampleToken(logits, { temperature: 1, topK: 0, topP: 1, minP: 0.45 }, rng)]++;
  }
  [0.5, 0.25, 0.25, 0, 0].forEach((p, i) => assert(Math.abs(counts[i] / 4000 - p) < 0.03, `${counts}`));
});

Deno.test("lastLogits: a causal LM's logits at the last position alone equal the full pass's last row", async () => {
  const gpu = await getGpu();
  for (const family of ["gpt2", "llama"]) {
    const model = await loadModel(gpu, `${FIXTURES}models/${family}`);
    try {
      const ids = Int32Array.from({ length: 11 }, (_, i) => (i * 37 + 5) % 500);
      const batch = () => ({
        inputIds: Tensor.from(gpu, ids, [1, 11]),
        inputIdsHost: ids,
        attentionMask: new Int32Array(11).fill(1),
      });
      const { full, last, shape } = tidy(() =>
        noGrad(() => {
          const a = model.forward(batch()).logits, b = model.forward(batch(), { lastLogits: true }).logits;
          return { full: a.readLater(), last: b.readLater(), shape: b.shape };
        })
      );
      gpu.stream.flush();
      const vocab = shape[2];
      assertEquals(shape, [1, 1, vocab], family);
      assertClose(Array.from(await last), Array.from((await full).subarray(10 * vocab)), 1e-6, family);
    } finally {
      model.dispose();
    }
  }
});

Deno.test("generateBatch: left-padded prompts give each prompt's own greedy tokens, end tokens per row; sampling of one row as generate", async () => {
  const gpu = await getGpu();
  for (const family of ["gpt2", "llama"]) {
    const model = await loadModel(gpu, `${FIXTURES}models/${family}`);
    try {
      const tokenizer = await loadModelTokenizer(model.config);
      const prompts = [[5, 17, 230], [44, 9, 120, 301, 77, 18, 260], [402]];
      const alone = await Promise.all(
        prompts.map((p) => generate(model, tokenizer, p, { maxNewTokens: 20, stopAtEos: false })),
      );
      // row 1 ends at its 4th new token
      const end = alone[1].ids[prompts[1].length + 3];
      const batch = await generateBatch(model, tokenizer, prompts, { maxNewTokens: 20, eosTokenIds: [end] });
      batch.forEach((g, r) => {
        const own = alone[r].ids, stopAt = own.indexOf(end, prompts[r].length);
        const want = stopAt >= 0 ? own.slice(0, stopAt + 1) : own;
        assertEquals(g.ids, want, `${family} row ${r}`);
        assertEquals(g.stop, stopAt >= 0 ? "eos" : "length", `${family} row ${r}`);
        assertEquals(
          g.text,
          tokenizer.decode(want).slice(tokenizer.decode(prompts[r]).length),
          `${family} row ${r} text`,
        );
      });
      const sampled = { maxNewTokens: 12, temperature: 0.9, topK: 50, seed: 4, stopAtEos: false };
      const [one] = await generateBatch(model, tokenizer, [prompts[1]], sampled);
      assertEquals(one.ids, (await generate(model, tokenizer, prompts[1], sampled)).ids, `${family} sampled`);
      assertEquals(await generateBatch(model, tokenizer, []), []);
    } finally {
      model.dispose();
    }
  }
});

Deno.test("stop texts: the text cut before the first one reached, streamed without it, per row in a batch", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, `${FIXTURES}models/gpt2-brown`);
  try {
    const tokenizer = await loadModelTokenizer(model.config);
    const prompts = ["The jury said that", "It was a"];
    const free = await generateBatch(model, tokenizer, prompts, { maxNewTokens: 24, stopAtEos: false });
    // a stop text from the middle of each row's free continuation
    const stops = free.map((g) => g.text.slice(9, 12));
    for (const [r, g] of free.entries()) {
      const cut = g.text.slice(0, g.text.indexOf(stops[r]));
      const pieces: string[] = [];
      const one = await generate(model, tokenizer, prompts[r], {
        maxNewTokens: 24,
        stopAtEos: false,
        stopTexts: [stops[r], "never printed"],
        onText: (t) => void pieces.push(t),
      });
      assertEquals([one.text, one.stop], [cut, "stop"], `row ${r}`);
      assertEquals(pieces.join(""), cut, `row ${r} streamed`);
      assertEquals(one.ids, g.ids.slice(0, one.ids.length), `row ${r} ids`);
      assert(
        tokenizer.decode(one.ids).includes(stops[r]) &&
          !tokenizer.decode(one.ids.slice(0, -1)).includes(stops[r]),
      );
    }
    const both = await generateBatch(model, tokenizer, prompts, {
      maxNewTokens: 24,
      stopAtEos: false,
      stopTexts: stops,
    });
    both.forEach((g, r) => {
      const firstStop = Math.min(...stops.map((s) => free[r].text.indexOf(s)).filter((i) => i >= 0));
      assertEquals([g.text, g.stop], [free[r].text.slice(0, firstStop), "stop"], `batch row ${r}`);
    });
  } finally {
    model.dispose();
  }
});

Deno.test("progressFrom: the end of the work is shown once, however often it is told", () => {
  const written: string[] = [];
  const sink = {
    writeSync: (b: Uint8Array) => (written.push(new TextDecoder().decode(b)), b.length),
    isTerminal: () => true,
  };
  const show = progressFrom(2, "classifying", false, { sink })!;
  show(4, 8);
  show(8, 8);
  const once = written.length;
  show(8, 8);
  assertEquals(written.length, once, JSON.stringify(written));
});
