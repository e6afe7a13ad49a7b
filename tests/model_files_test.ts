/**
 * Reading Hugging Face model directories as transformers reads them: tokenizer.json files without a
 * model type, TensorFlow-era LayerNorm names, weights in other formats, Git LFS pointers, malformed
 * safetensors data, and the notes on what loading read otherwise than as stored.
 * @module
 */
import { join } from "node:path";
import { getGpu } from "../lib/gpu/mod.ts";
import { loadHfConfig } from "../lib/io/hf_config.ts";
import {
  openCheckpoint,
  openSafetensors,
  SafetensorsError,
  ShardedCheckpoint,
} from "../lib/io/safetensors.ts";
import { type TensorData, writeSafetensors } from "../lib/io/safetensors_write.ts";
import { loadTokenizer, TokenizerError } from "../lib/io/tokenizer.ts";
import { ArgsError } from "../lib/cli/args.ts";
import { loadForUse } from "../lib/cli/load.ts";
import { loadNoteLines } from "../lib/cli/loading.ts";
import { loadModel, loadModelTokenizer, type LoadNotes } from "../lib/models/load.ts";
import { writeMergedModel } from "../lib/peft/merge.ts";
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { editedModel, expectParity } from "./encoder_test_helpers.ts";
import { writeRawSafetensors } from "./raw_safetensors.ts";
import { withTempDir } from "./temp_dir.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;
const TOKENIZERS = `${FIXTURES}tokenizers/`;
const BERT = `${FIXTURES}models/bert`;
const GPT2 = `${FIXTURES}models/gpt2`;

/** Each TensorFlow-era name: LayerNorm weights as gamma, biases as beta (as bert-base-uncased stores them). */
function asGammaBeta(tensors: Record<string, TensorData>): void {
  for (const name of Object.keys(tensors)) {
    const old = name.replace(/LayerNorm\.weight$/, "LayerNorm.gamma").replace(
      /LayerNorm\.bias$/,
      "LayerNorm.beta",
    );
    if (old === name) continue;
    tensors[old] = tensors[name];
    delete tensors[name];
  }
}

// ---------------------------------------------------------------- tokenizer.json without a model type

const expected: Record<string, { text: string; ids: number[] }[]> =
  JSON.parse(await Deno.readTextFile(`${TOKENIZERS}expected.json`)).cases;

Deno.test('a tokenizer.json model without "type" is read as the Rust library infers it: the typed file\'s ids', async () => {
  // the fields each model kept before tokenizers 0.9 wrote "type" (GPT-2's file lacks the newer BPE ones)
  const legacy: Record<string, string[]> = {
    bytelevel_bpe: ["type", "byte_fallback", "ignore_merges"],
    // no continuing_subword_prefix either: the npm package's own guess would take it for another model
    roberta_bpe: [
      "type",
      "byte_fallback",
      "ignore_merges",
      "continuing_subword_prefix",
      "end_of_word_suffix",
    ],
    wordpiece: ["type"],
    unigram: ["type", "byte_fallback"],
  };
  await withTempDir("hartley_files_", async (dir) => {
    for (const [kind, dropped] of Object.entries(legacy)) {
      const json = JSON.parse(await Deno.readTextFile(`${TOKENIZERS}${kind}.json`));
      for (const key of dropped) delete json.model[key];
      await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(json));
      const tok = await loadTokenizer(dir);
      for (const c of expected[kind]) {
        assertEquals(tok.encode(c.text), c.ids, `untyped ${kind}: ids of ${JSON.stringify(c.text)}`);
      }
    }
    // WordLevel (vocabulary map and unknown token, nothing else) is inferred, and refused by name
    const json = JSON.parse(await Deno.readTextFile(`${TOKENIZERS}wordpiece.json`));
    json.model = { vocab: json.model.vocab, unk_token: "[UNK]" };
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(json));
    await assertRejects(() => loadTokenizer(dir), TokenizerError, `model type "WordLevel" is not supported`);
    json.model = { vocab: 3 };
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(json));
    await assertRejects(
      () => loadTokenizer(dir),
      TokenizerError,
      `${dir}/tokenizer.json: model has no "type" and fits none of BPE, WordPiece, WordLevel, Unigram`,
    );
  });
});

// ---------------------------------------------------------------- LayerNorm gamma / beta

Deno.test("openCheckpoint reads LayerNorm gamma/beta as weight/bias, as transformers renames them", async () => {
  await withTempDir("hartley_files_", async (dir) => {
    const t = (v: number[]): TensorData => ({ dtype: "F32", shape: [v.length], data: new Float32Array(v) });
    const tensors = {
      "e.LayerNorm.gamma": t([1, 2]),
      "e.LayerNorm.beta": t([3, 4]),
      "e.dense.gamma": t([5]),
    };
    await writeSafetensors(`${dir}/model.safetensors`, tensors);
    const ck = await openCheckpoint(dir);
    assertEquals([...ck.names].sort(), ["e.LayerNorm.bias", "e.LayerNorm.weight", "e.dense.gamma"]);
    assertEquals(Array.from(await ck.readF32("e.LayerNorm.weight")), [1, 2]);
    assertEquals(Array.from(await ck.readF32("e.LayerNorm.bias")), [3, 4]);
    assertEquals(ck.info("e.LayerNorm.bias").shape, [2]);
    assert(!ck.has("e.LayerNorm.gamma"), "the stored name is not read");
    assertEquals(
      ck.renamed,
      new Map([["e.LayerNorm.weight", "e.LayerNorm.gamma"], ["e.LayerNorm.bias", "e.LayerNorm.beta"]]),
    );
    // the file itself keeps its names
    assertEquals(
      (await openSafetensors(`${dir}/model.safetensors`)).names.includes("e.LayerNorm.gamma"),
      true,
    );
    // sharded, the same
    await Deno.rename(`${dir}/model.safetensors`, `${dir}/model-00001-of-00001.safetensors`);
    const weightMap = Object.fromEntries(
      Object.keys(tensors).map((k) => [k, "model-00001-of-00001.safetensors"]),
    );
    await Deno.writeTextFile(
      `${dir}/model.safetensors.index.json`,
      JSON.stringify({ weight_map: weightMap }),
    );
    const sharded = await openCheckpoint(dir);
    assert(sharded instanceof ShardedCheckpoint);
    assertEquals(Array.from(await sharded.readF32("e.LayerNorm.bias")), [3, 4]);
    assert(sharded.fileOf("e.LayerNorm.weight").endsWith("model-00001-of-00001.safetensors"));
    assertEquals(sharded.renamed.get("e.LayerNorm.bias"), "e.LayerNorm.beta");
    // both spellings of one tensor: which one transformers would read is not said
    await Deno.remove(`${dir}/model.safetensors.index.json`);
    await writeSafetensors(`${dir}/model.safetensors`, { ...tensors, "e.LayerNorm.weight": t([7, 8]) });
    await assertRejects(
      () => openCheckpoint(dir),
      SafetensorsError,
      `holds both "e.LayerNorm.gamma" and "e.LayerNorm.weight"`,
    );
  });
});

Deno.test("a BERT checkpoint with LayerNorm gamma/beta loads and matches PyTorch; a full model written from it has current names", async () => {
  const gpu = await getGpu();
  const dir = await editedModel(BERT, asGammaBeta);
  const out = await Deno.makeTempDir({ prefix: "hartley_files_out_" });
  try {
    await expectParity(gpu, dir, 1e-4);
    let notes: LoadNotes | undefined;
    const model = await loadModel(gpu, dir, { onLoaded: (n) => notes = n });
    try {
      assertEquals(notes!.renamed.length, 10);
      assertEquals(notes!.renamed[0], ["bert.embeddings.LayerNorm.beta", "bert.embeddings.LayerNorm.bias"]);
      assertEquals([notes!.unused, notes!.initialised], [[], []]);
      // as `train --method full` saves: every parameter written over the checkpoint's
      await writeMergedModel({ model, layers: new Map(), saved: model.parameters }, join(out, "m"));
    } finally {
      model.dispose();
    }
    const written = await openSafetensors(join(out, "m", "model.safetensors"));
    assertEquals(written.names.filter((n) => /gamma|beta/.test(n)), []);
    assertEquals(written.names.length, (await openSafetensors(join(BERT, "model.safetensors"))).names.length);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(out, { recursive: true });
  }
});

// ---------------------------------------------------------------- other formats, LFS pointers

Deno.test("a model folder with PyTorch or TensorFlow weights only says how to convert them", async () => {
  await withTempDir("hartley_files_", async (dir) => {
    await Deno.copyFile(join(BERT, "config.json"), join(dir, "config.json"));
    await Deno.writeFile(join(dir, "pytorch_model.bin"), new Uint8Array(16));
    let e = await assertRejects(
      () => openCheckpoint(dir),
      SafetensorsError,
      "pytorch_model.bin (PyTorch weights)",
    );
    assert(
      e.message.includes(
        "BertForSequenceClassification.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)",
      ),
      e.message,
    );
    await Deno.remove(join(dir, "pytorch_model.bin"));
    await Deno.writeFile(join(dir, "tf_model.h5"), new Uint8Array(16));
    e = await assertRejects(() => openCheckpoint(dir), SafetensorsError, "tf_model.h5 (TensorFlow weights)");
    assert(e.message.includes("from_pretrained(dir, from_tf=True)"), e.message);
  });
});

Deno.test("a model folder with a slow tokenizer's files only says how to write tokenizer.json", async () => {
  await withTempDir("hartley_files_", async (dir) => {
    await Deno.copyFile(join(BERT, "config.json"), join(dir, "config.json"));
    const config = await loadHfConfig(dir);
    let e = await assertRejects(() => loadModelTokenizer(config), Error, "has no tokenizer.json");
    assert(!e.message.includes("AutoTokenizer"), e.message);
    await Deno.writeTextFile(join(dir, "vocab.txt"), "[PAD]\n[UNK]\n");
    e = await assertRejects(() => loadModelTokenizer(config), Error, "it has vocab.txt");
    assert(
      e.message.includes("AutoTokenizer.from_pretrained(dir).save_pretrained(dir) writes tokenizer.json"),
      e.message,
    );
  });
});

Deno.test("a Git LFS pointer is named as one; a huge header length is printed exactly", async () => {
  await withTempDir("hartley_files_", async (dir) => {
    const p = `${dir}/model.safetensors`;
    await Deno.writeTextFile(
      p,
      "version https://git-lfs.github.com/spec/v1\noid sha256:248dfc3911869ec493c76e65bf2fcf7f615828b0254c12b473182f0f81d3a707\nsize 548105171\n",
    );
    const e = await assertRejects(() => openCheckpoint(dir), SafetensorsError, `${p}: is a Git LFS pointer`);
    assert(e.message.includes("git lfs pull"), e.message);
    await writeRawSafetensors(p, {}, 0, 2n ** 63n + 5n);
    await assertRejects(
      () => openSafetensors(p),
      SafetensorsError,
      "header length 9223372036854775813 is larger",
    );
  });
});

// ---------------------------------------------------------------- gaps and trailing bytes

Deno.test("safetensors data with a gap or trailing bytes is refused, as the reference library does", async () => {
  await withTempDir("hartley_files_", async (dir) => {
    const p = `${dir}/x.safetensors`;
    const f32 = (begin: number, n: number) => ({
      dtype: "F32",
      shape: [n],
      data_offsets: [begin, begin + 4 * n],
    });
    await writeRawSafetensors(p, { a: f32(0, 1), b: f32(8, 1) }, 12);
    await assertRejects(
      () => openSafetensors(p),
      SafetensorsError,
      `${p}: tensor "b": data_offsets [8, 12] leave bytes 4 to 8`,
    );
    await writeRawSafetensors(p, { a: f32(0, 1), b: f32(4, 1) }, 16);
    await assertRejects(
      () => openSafetensors(p),
      SafetensorsError,
      `${p}: the tensors' data ends at byte 8 of 16`,
    );
    await writeRawSafetensors(p, { a: f32(4, 1) }, 8);
    await assertRejects(
      () => openSafetensors(p),
      SafetensorsError,
      `tensor "a": data_offsets [4, 8] leave bytes 0 to 4`,
    );
    // contiguous, empty tensors included, opens
    await writeRawSafetensors(p, { e: f32(0, 0), a: f32(0, 1), z: f32(4, 0), b: f32(4, 1) }, 8);
    assertEquals((await openSafetensors(p)).names, ["e", "a", "z", "b"]);
  });
});

// ---------------------------------------------------------------- what loading read otherwise

Deno.test("loadModel tells the tensors it initialised, resized, left unused; buffers and a tied copy are not told", async () => {
  const gpu = await getGpu();
  const dir = await editedModel(BERT, (t) => {
    t["cls.predictions.bias"] = { dtype: "F32", shape: [512], data: new Float32Array(512) };
    t["bert.embeddings.position_ids"] = { dtype: "I64", shape: [1, 64], data: new BigInt64Array(64) };
  });
  try {
    let notes: LoadNotes | undefined;
    const model = await loadModel(gpu, dir, { numLabels: 3, onLoaded: (n) => notes = n });
    model.dispose();
    assertEquals(notes, {
      initialised: ["classifier.weight", "classifier.bias"],
      mismatched: [
        { key: "classifier.weight", stored: [2, 64], expected: [3, 64] },
        { key: "classifier.bias", stored: [2], expected: [3] },
      ],
      unused: ["cls.predictions.bias"],
      renamed: [],
    });
    assertEquals(loadNoteLines(notes!), [
      "size mismatch with the checkpoint, initialised new: 2 (classifier.weight [2,64] → [3,64], classifier.bias [2] → [3])",
      "checkpoint tensors not used: 1 (cls.predictions.bias)",
    ]);
    // an adapter's trained head replaces the new one: not told
    assertEquals(loadNoteLines(notes!, new Set(["classifier.weight", "classifier.bias"])), [
      "checkpoint tensors not used: 1 (cls.predictions.bias)",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  // GPT-2: lm_head.weight stored though tied to wte, and the attention mask buffers
  const gpt2 = await editedModel(GPT2, (t) => {
    t["lm_head.weight"] = t["transformer.wte.weight"];
    t["transformer.h.0.attn.bias"] = { dtype: "F32", shape: [1], data: new Float32Array(1) };
    t["transformer.h.0.attn.masked_bias"] = { dtype: "F32", shape: [], data: new Float32Array(1) };
  });
  try {
    let notes: LoadNotes | undefined;
    (await loadModel(gpu, gpt2, { onLoaded: (n) => notes = n })).dispose();
    assertEquals([notes!.unused, notes!.initialised, loadNoteLines(notes!)], [[], [], []]);
  } finally {
    await Deno.remove(gpt2, { recursive: true });
  }
});

Deno.test("a causal LM whose generation_config.json is not JSON loads, as in transformers, and the notes say it was ignored", async () => {
  const gpu = await getGpu();
  const dir = await editedModel(GPT2, () => {});
  try {
    await Deno.writeTextFile(join(dir, "generation_config.json"), '{"eos_token_id": [50256,');
    let notes: LoadNotes | undefined;
    const model = await loadModel(gpu, dir, { onLoaded: (n) => notes = n });
    model.dispose();
    assertEquals(model.config.generationEosTokenIds, []);
    const lines = loadNoteLines(notes!);
    assertEquals(lines.length, 1);
    assert(
      lines[0].startsWith(
        `ignored, as transformers ignores it: ${join(dir, "generation_config.json")}: cannot read`,
      ),
      lines[0],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadNoteLines counts each kind and names the first three", () => {
  const keys = (n: number) => Array.from({ length: n }, (_, i) => `head.${i}.weight`);
  assertEquals(
    loadNoteLines({
      initialised: keys(4),
      mismatched: [],
      unused: ["lm_head.bias", "lm_head.dense.weight", "lm_head.dense.bias", "lm_head.layer_norm.weight"],
      renamed: [["a.LayerNorm.gamma", "a.LayerNorm.weight"], ["a.LayerNorm.beta", "a.LayerNorm.bias"]],
    }),
    [
      "checkpoint tensors renamed as transformers renames them: 2 (a.LayerNorm.gamma as a.LayerNorm.weight, …)",
      "not in the checkpoint, initialised new: 4 (head.0.weight, head.1.weight, head.2.weight, …)",
      "checkpoint tensors not used: 4 (lm_head.bias, lm_head.dense.weight, lm_head.dense.bias, …)",
    ],
  );
});

Deno.test("eval's refusal of a head of another label count says size mismatch with both shapes; a loaded model's notes are printed", async () => {
  const gpu = await getGpu();
  const dir = await editedModel(BERT, () => {}, (json) => json.id2label = { 0: "a", 1: "b", 2: "c" });
  const printed: string[] = [];
  const error = console.error;
  console.error = (...args: unknown[]) => printed.push(args.join(" "));
  try {
    await assertRejects(
      () => loadForUse(gpu, { model: dir, needHead: true, quiet: true }),
      ArgsError,
      `${dir}: size mismatch for classifier.weight: [2,64] in the checkpoint, [3,64] for a seq-cls head of 3 labels`,
    );
    const loaded = await loadForUse(gpu, { model: dir, quiet: true });
    loaded.model.dispose();
    assertEquals(printed, [
      "size mismatch with the checkpoint, initialised new: 2 (classifier.weight [2,64] → [3,64], classifier.bias [2] → [3])",
    ]);
  } finally {
    console.error = error;
    await Deno.remove(dir, { recursive: true });
  }
});
