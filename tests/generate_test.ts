// Generation as transformers' generate does it, where it once differed: fresh draws for each batch of
// a --data file, sampled ids the tokenizer lacks, the last position of learned positions, the
// sampling defaults of generation_config.json, and the chat template's special tokens and named
// templates.
import { join } from "node:path";
import { samplingOf } from "../lib/cli/generation.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import { ChatTemplateError, loadChatTemplate } from "../lib/io/chat_template.ts";
import { loadHfConfig } from "../lib/io/hf_config.ts";
import { loadTokenizer, type Tokenizer } from "../lib/io/tokenizer.ts";
import { loadModel, loadModelTokenizer } from "../lib/models/load.ts";
import type { Model } from "../lib/models/model.ts";
import { noGrad, Tensor, tidy } from "../lib/tensor/mod.ts";
import { endTokenIds, generate, generateBatch } from "../lib/infer/generate.ts";
import { assert, assertEquals, assertThrows } from "./assert.ts";
import { fixtureModel } from "./model_helpers.ts";
import { cliProcess, runCli } from "./train_helpers.ts";
import { withTempDir } from "./temp_dir.ts";

/** The completions `predict --data` writes for `args`. */
async function completions(args: string[]): Promise<string[]> {
  const r = await runCli(["predict", "--task", "causal-lm", "--json", ...args]);
  assertEquals(r.code, 0, r.err);
  return r.out.trim().split("\n").map((line) => JSON.parse(line).completion);
}

Deno.test("predict --data: each batch draws numbers of its own, the same ones for the same --seed", async () => {
  await withTempDir("hartley-generate-", async (dir) => {
    const data = join(dir, "same.txt");
    await Deno.writeTextFile(data, "The jury said\n".repeat(4));
    const common = ["--model", fixtureModel("gpt2-brown"), "--data", data, "--temperature", "1"];
    const common12 = [...common, "--max-new-tokens", "12"];
    // top-k 50 (transformers' default) draws on the GPU, top-k 0 on the CPU
    for (const [batch, topK] of [["2", "50"], ["1", "0"], ["4", "0"]]) {
      const args = [...common12, "--batch-size", batch, "--top-k", topK];
      const texts = await completions(args);
      assertEquals(new Set(texts).size, 4, `batch size ${batch}, top-k ${topK}: ${JSON.stringify(texts)}`);
      assertEquals(await completions(args), texts, "the same seed, the same texts");
      const other = await completions([...args, "--seed", "1"]);
      assert(other.join() !== texts.join(), "another seed, other texts");
    }
  });
});

Deno.test("predict --data: generating more than one batch shows its progress on stderr, one batch none", async () => {
  await withTempDir("hartley-generate-", async (dir) => {
    const data = join(dir, "three.txt");
    await Deno.writeTextFile(data, "The jury said\n".repeat(3));
    const args = ["predict", "--model", fixtureModel("gpt2-brown"), "--data", data, "--max-new-tokens", "2"];
    const [batches, one] = [
      await cliProcess([...args, "--batch-size", "1"]),
      await cliProcess([...args, "--batch-size", "3"]),
    ];
    assertEquals([batches.code, one.code], [0, 0], batches.err);
    assert(/^generating +3\/3 +100% +done in/m.test(batches.err), batches.err);
    assert(!one.err.includes("generating"), one.err);
  });
});

/** gpt2-brown's tokenizer cut to its first `n` ids (the merges that make the others left out). */
async function cutTokenizer(dir: string, n: number): Promise<Tokenizer> {
  const json = JSON.parse(await Deno.readTextFile(join(fixtureModel("gpt2-brown"), "tokenizer.json")));
  const vocab = json.model.vocab as Record<string, number>;
  json.model.vocab = Object.fromEntries(Object.entries(vocab).filter(([, id]) => id < n));
  json.model.merges = (json.model.merges as [string, string][]).filter(([a, b]) => vocab[a + b] < n);
  await Deno.writeTextFile(join(dir, "tokenizer.json"), JSON.stringify(json));
  const tokenizer = await loadTokenizer(dir);
  assertEquals(tokenizer.vocabSize, n);
  return tokenizer;
}

Deno.test("decode skips ids the tokenizer lacks, as tokenizers does, and generation keeps them", async () => {
  await withTempDir("hartley-generate-", async (dir) => {
    const tokenizer = await cutTokenizer(dir, 300);
    const known = tokenizer.encode(" the jury said");
    assertEquals(tokenizer.decode([...known, 300, 511]), tokenizer.decode(known));
    assertEquals(
      tokenizer.decode([400, ...known.slice(0, 1), 300, ...known.slice(1)]),
      tokenizer.decode(known),
    );
    assertEquals(tokenizer.decode([300]), "");
    // the model's 512 logits pass the tokenizer's 300 ids (as Qwen2.5's 151936 pass its 151665)
    const model = await loadModel(await getGpu(), fixtureModel("gpt2-brown"));
    try {
      for (const topK of [0, 64]) {
        const opts = { maxNewTokens: 24, temperature: 4, topK, seed: 3, stopAtEos: false, stopTexts: ["@@"] };
        const pieces: string[] = [];
        const g = await generate(model, tokenizer, known, { ...opts, onText: (t) => pieces.push(t) });
        assertEquals(g.newTokens, 24);
        assert(g.ids.some((id) => id >= 300), `top-k ${topK}: no id past the tokenizer's: ${g.ids}`);
        assertEquals(g.text, tokenizer.decode(g.ids).slice(tokenizer.decode(known).length));
        assertEquals(pieces.join(""), g.text);
        const [row] = await generateBatch(model, tokenizer, [known], opts);
        assertEquals(row.ids, g.ids, `top-k ${topK}: a batch of one draws as generate`);
      }
    } finally {
      model.dispose();
    }
  });
});

/** The logits [vocab] after the last of `ids`, from one forward pass over them all. */
async function lastLogits(model: Model, ids: readonly number[]): Promise<Float32Array> {
  const host = Int32Array.from(ids);
  const { logits } = tidy(() =>
    noGrad(() => ({
      logits: model.forward({
        inputIds: Tensor.from(model.gpu, host, [1, host.length]),
        inputIdsHost: host,
        attentionMask: new Int32Array(host.length).fill(1),
      }, { lastLogits: true }).logits.readLater(),
    }))
  );
  model.gpu.stream.flush();
  return Float32Array.from(await logits);
}

/** Whether `id` is (within float noise) the most probable token of `logits`. */
function isGreedy(logits: Float32Array, id: number): boolean {
  return logits[id] >= Math.max(...logits) - 1e-4;
}

Deno.test("generate: learned positions give a token after the last one (GPT-2's 64), none past it", async () => {
  const model = await loadModel(await getGpu(), fixtureModel("gpt2"));
  try {
    const tokenizer = await loadModelTokenizer(model.config);
    const prompt = tokenizer.encode("The jury said that the city").slice(0, 8);
    // 16 tokens then 49 more: the 65th is picked after a pass over positions 0..63
    const cache = model.newCache!();
    const long = await generate(model, tokenizer, prompt.concat(prompt), {
      maxNewTokens: 60,
      stopAtEos: false,
      cache,
    });
    assertEquals([long.ids.length, long.stop, cache.length], [65, "positions", 64]);
    cache.dispose();
    assert(isGreedy(await lastLogits(model, long.ids.slice(0, 64)), long.ids[64]), "the 65th token");
    // a prompt of 64 tokens still gives one, as transformers' generate does
    const full = long.ids.slice(0, 64);
    const one = await generate(model, tokenizer, full, { maxNewTokens: 1, stopAtEos: false });
    assertEquals([one.newTokens, one.stop, one.ids[64]], [1, "length", long.ids[64]]);
    const more = await generate(model, tokenizer, full, { maxNewTokens: 5, stopAtEos: false });
    assertEquals([more.newTokens, more.stop], [1, "positions"]);
    // sampled on the CPU, and in a batch whose other row is shorter
    const sampled = await generate(model, tokenizer, full.slice(0, 62), {
      maxNewTokens: 8,
      temperature: 1,
      stopAtEos: false,
    });
    assertEquals([sampled.newTokens, sampled.stop], [3, "positions"]);
    const rows = await generateBatch(model, tokenizer, [full.slice(0, 63), prompt], {
      maxNewTokens: 8,
      stopAtEos: false,
    });
    assertEquals(rows.map((r) => [r.newTokens, r.stop]), [[2, "positions"], [2, "positions"]]);
    assertEquals(rows[0].ids, long.ids.slice(0, 65));
  } finally {
    model.dispose();
  }
});

Deno.test("samplingOf: generation_config.json's \"top_k\": null is transformers 5's unset: its top-k 50", async () => {
  await withTempDir("hartley-generate-", async (dir) => {
    // transformers 5 fills every None field with its default (GenerationConfig._get_default_generation_params)
    await Deno.writeTextFile(
      join(dir, "generation_config.json"),
      JSON.stringify({ do_sample: true, top_k: null }),
    );
    assertEquals((await samplingOf(dir, {})).topK, 50);
    await Deno.writeTextFile(
      join(dir, "generation_config.json"),
      JSON.stringify({ do_sample: true, top_k: 0 }),
    );
    assertEquals((await samplingOf(dir, {})).topK, 0);
  });
});

Deno.test("loadChatTemplate: a special token tokenizer_config.json sets to null is undefined, as transformers leaves it", async () => {
  await withTempDir("hartley-generate-", async (dir) => {
    const m = [{ role: "user", content: "hi" }];
    const template = "{% if bos_token is defined %}[{{ bos_token }}]{% endif %}{{ messages[0].content }}" +
      "{% if pad_token is defined %}({{ pad_token }}){% endif %}";
    const write = (config: unknown) =>
      Deno.writeTextFile(join(dir, "tokenizer_config.json"), JSON.stringify(config));
    const llama = await loadModelTokenizer(await loadHfConfig(fixtureModel("llama")));
    // Qwen2.5: "bos_token": null, though config.json names a bos id
    await write({ chat_template: template, bos_token: null });
    assertEquals((await loadChatTemplate(dir, {}, llama))!.render(m), "hi(<unk>)");
    // left out: the tokenizer's (config.json's id), as before
    await write({ chat_template: template });
    assertEquals((await loadChatTemplate(dir, {}, llama))!.render(m), "[<s>]hi(<unk>)");
    // a token neither the files nor the tokenizer have is undefined too (gpt2-brown has no pad)
    const brown = await loadModelTokenizer(await loadHfConfig(fixtureModel("gpt2-brown")));
    assertEquals(brown.special.pad, null);
    assertEquals((await loadChatTemplate(dir, {}, brown))!.render(m), "[<|endoftext|>]hi");
  });
});

Deno.test("loadChatTemplate: named templates without a default refuse to render, naming the file and the names", async () => {
  await withTempDir("hartley-generate-", async (dir) => {
    const path = join(dir, "tokenizer_config.json");
    const named = [{ name: "tool_use", template: "T" }, { name: "rag", template: "R" }];
    await Deno.writeTextFile(path, JSON.stringify({ chat_template: named }));
    const template = (await loadChatTemplate(dir))!;
    assertEquals(template.source, path);
    const e = assertThrows(() => template.render([{ role: "user", content: "hi" }]));
    assert(e instanceof ChatTemplateError, `${e}`);
    assert(e.message.startsWith(`${path}: `), e.message);
    assert(e.message.includes(`no "default" template (its names: tool_use, rag)`), e.message);
  });
});

Deno.test("generate: stops at generation_config.json's and the tokenizer's end ids by default, as the CLI does", async () => {
  await withTempDir("hartley-generate-", async (dir) => {
    for (const f of Deno.readDirSync(fixtureModel("gpt2"))) {
      if (f.isFile) await Deno.copyFile(join(fixtureModel("gpt2"), f.name), join(dir, f.name));
    }
    const gpu = await getGpu();
    const model = await loadModel(gpu, dir);
    try {
      const tokenizer = await loadModelTokenizer(model.config);
      const prompt = tokenizer.encode("The jury said that the city");
      const free = await generate(model, tokenizer, prompt, { maxNewTokens: 6, stopAtEos: false });
      const end = free.ids[prompt.length + 2]; // the third new token ends a turn (first occurrence)
      const upTo = free.ids.indexOf(end, prompt.length) + 1;
      assert(!model.config.eosTokenIds.includes(end), "config.json does not name it");
      // read once, when the model loads: generate itself reads no files
      await Deno.writeTextFile(join(dir, "generation_config.json"), JSON.stringify({ eos_token_id: [end] }));
      const unread = await generate(model, tokenizer, prompt, { maxNewTokens: 6 });
      assertEquals([unread.stop, unread.ids], ["length", free.ids]);
      const chat = await loadModel(gpu, dir);
      try {
        assertEquals(chat.config.generationEosTokenIds, [end]);
        const g = await generate(chat, tokenizer, prompt, { maxNewTokens: 6 });
        assertEquals([g.stop, g.ids], ["eos", free.ids.slice(0, upTo)]);
        const [row] = await generateBatch(chat, tokenizer, [prompt], { maxNewTokens: 6 });
        assertEquals([row.stop, row.ids], ["eos", free.ids.slice(0, upTo)]);
        // given ids replace the defaults
        const given = await generate(chat, tokenizer, prompt, { maxNewTokens: 6, eosTokenIds: [] });
        assertEquals([given.stop, given.ids], ["length", free.ids]);
      } finally {
        chat.dispose();
      }
      // the tokenizer's end-of-sequence token ends the text too, where neither config names it
      await Deno.remove(join(dir, "generation_config.json"));
      await Deno.writeTextFile(
        join(dir, "tokenizer_config.json"),
        JSON.stringify({ eos_token: tokenizer.idToToken(end) }),
      );
      const ending = await loadModelTokenizer(model.config);
      assertEquals(ending.special.eos, end);
      assertEquals(endTokenIds(model, ending), [...model.config.eosTokenIds, end]);
      const byTokenizer = await generate(model, ending, prompt, { maxNewTokens: 6 });
      assertEquals([byTokenizer.stop, byTokenizer.ids], ["eos", free.ids.slice(0, upTo)]);
    } finally {
      model.dispose();
    }
  });
});
