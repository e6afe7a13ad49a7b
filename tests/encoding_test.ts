/**
 * Text to model inputs as transformers makes them: tokenizer_config.json's add_bos_token and
 * add_eos_token, an empty second text of a pair, plain records of a causal LM tokenized one by one,
 * and a tagged sentence with no tokens refused by its file and line.
 */
import { join } from "node:path";
import { loadHfConfig } from "../lib/io/hf_config.ts";
import { loadTokenizer, type Tokenizer } from "../lib/io/tokenizer.ts";
import { loadSplits } from "../lib/cli/setup.ts";
import { CausalLmDataset } from "../lib/train/data.ts";
import { DataError } from "../lib/train/data_error.ts";
import { readTaggedFile, TokenClassificationDataset } from "../lib/train/token_data.ts";
import { assert, assertEquals, assertThrows } from "./assert.ts";
import { fixtureModel } from "./model_helpers.ts";
import { withTempDir } from "./train_helpers.ts";

const TOKENIZERS = new URL("./fixtures/tokenizers/", import.meta.url).pathname;

type Item = { SpecialToken: { id: string; type_id: number } } | { Sequence: { id: string; type_id: number } };
const special = (id: string, type_id = 0): Item => ({ SpecialToken: { id, type_id } });
const sequence = (id: string, type_id: number): Item => ({ Sequence: { id, type_id } });

/** A TemplateProcessing post-processor of `tokens` (token → id). */
function template(single: Item[], pair: Item[], tokens: Record<string, number>) {
  const special_tokens = Object.fromEntries(
    Object.entries(tokens).map(([t, id]) => [t, { id: t, ids: [id], tokens: [t] }]),
  );
  return { type: "TemplateProcessing", single, pair, special_tokens };
}

/** A tokenizer.json (`from`, with `post_processor` when given) and tokenizer_config.json `config` in `dir`. */
async function writeTokenizer(
  dir: string,
  from: string,
  config: Record<string, unknown> | null,
  postProcessor?: unknown,
): Promise<string> {
  const json = JSON.parse(await Deno.readTextFile(from));
  if (postProcessor !== undefined) json.post_processor = postProcessor;
  await Deno.writeTextFile(join(dir, "tokenizer.json"), JSON.stringify(json));
  if (config) await Deno.writeTextFile(join(dir, "tokenizer_config.json"), JSON.stringify(config));
  return join(dir, "tokenizer.json");
}

/** The LLaMA fixture's tokenizer with the post-processor `<s> $A` (pair `<s> $A <s>:1 $B:1`). */
const LLAMA_BOS = template(
  [special("<s>"), sequence("A", 0)],
  [special("<s>"), sequence("A", 0), special("<s>", 1), sequence("B", 1)],
  { "<s>": 1 },
);

async function llamaWith(dir: string, config: Record<string, unknown> | null): Promise<Tokenizer> {
  const from = join(fixtureModel("llama"), "tokenizer.json");
  return await loadTokenizer(await writeTokenizer(dir, from, config, LLAMA_BOS));
}

Deno.test("add_bos_token / add_eos_token in tokenizer_config.json rebuild the post-processor, as transformers 5", async () => {
  await withTempDir("hartley-bos-eos-", async (dir) => {
    const words = ["▁H", "ell", "o", "▁world"];
    // no flag: tokenizer.json's template stays
    assertEquals((await llamaWith(dir, {})).tokens("Hello world"), ["<s>", ...words]);
    const eos = await llamaWith(dir, { add_bos_token: false, add_eos_token: true });
    assertEquals(eos.tokens("Hello world"), [...words, "</s>"]);
    assertEquals(eos.tokens("Hello world", { addSpecialTokens: false }), words);
    // a pair: "$A:0 </s>:0 $B:1 </s>:1"; a flag that is absent is false
    const a = eos.encode("a", { addSpecialTokens: false }), b = eos.encode("b", { addSpecialTokens: false });
    assertEquals(eos.encodePair("a", "b"), {
      ids: [...a, 2, ...b, 2],
      typeIds: [...a.map(() => 0), 0, ...b.map(() => 1), 1],
    });
    assertEquals(eos.specialAround(), [[], [2]]);
    const both = await llamaWith(dir, { add_eos_token: true, add_bos_token: true });
    assertEquals(both.encodePair("a", "b"), {
      ids: [1, ...a, 2, 1, ...b, 2],
      typeIds: [0, ...a.map(() => 0), 0, 1, ...b.map(() => 1), 1],
    });
    const none = await llamaWith(dir, { add_eos_token: false });
    assertEquals(none.tokens("Hello world"), words);
    // a bos_token the config sets to null is not added (transformers drops the flag)
    const nullBos = await llamaWith(dir, { add_bos_token: true, bos_token: null });
    assertEquals(nullBos.tokens("Hello world"), words);
  });
});

Deno.test("add_bos_token false beside a ByteLevel post-processor (Qwen2's) keeps the ids; add_bos_token true adds the BOS", async () => {
  await withTempDir("hartley-bos-eos-", async (dir) => {
    const from = `${TOKENIZERS}bytelevel_bpe.json`, plain = await loadTokenizer(from);
    const qwen = await loadTokenizer(await writeTokenizer(dir, from, { add_bos_token: false }));
    for (const text of ["Hello world", " two  spaces", "<|endoftext|>x"]) {
      assertEquals(qwen.encode(text), plain.encode(text), text);
    }
    assertEquals(qwen.encodePair("a b", "c"), plain.encodePair("a b", "c"));
    const eot = plain.tokenToId("<|endoftext|>")!;
    const bos = await loadTokenizer(
      await writeTokenizer(dir, from, { add_bos_token: true, bos_token: "<|endoftext|>" }),
    );
    assertEquals(bos.encode("Hello world"), [eot, ...plain.encode("Hello world")]);
  });
});

Deno.test("an empty second text is a pair: the pair template's special tokens and type ids (BERT, RoBERTa)", async () => {
  await withTempDir("hartley-pair-", async (dir) => {
    const bert = await loadTokenizer(
      await writeTokenizer(
        dir,
        `${TOKENIZERS}wordpiece.json`,
        null,
        template(
          [special("[CLS]"), sequence("A", 0), special("[SEP]")],
          [special("[CLS]"), sequence("A", 0), special("[SEP]"), sequence("B", 1), special("[SEP]", 1)],
          { "[CLS]": 2, "[SEP]": 3 },
        ),
      ),
    );
    const a = bert.encode("a", { addSpecialTokens: false });
    assertEquals(bert.encodePair("a", ""), { ids: [2, ...a, 3, 3], typeIds: [0, ...a.map(() => 0), 0, 1] });
    assertEquals(bert.encodePair("a", "", { addSpecialTokens: false }), { ids: a, typeIds: a.map(() => 0) });
    const roberta = await loadTokenizer(`${TOKENIZERS}roberta_bpe.json`);
    const r = roberta.encode("a", { addSpecialTokens: false }), x = roberta.encodePair("a", "b");
    const pair = roberta.encodePair("a", "");
    assertEquals(pair.ids, [0, ...r, 2, 2, 2]);
    // the types of "a" and "b" without b's own
    const b = roberta.encode("b", { addSpecialTokens: false }).length;
    assertEquals(pair.typeIds, [...x.typeIds.slice(0, -b - 1), ...x.typeIds.slice(-1)]);
  });
});

Deno.test("causal LM records: each tokenized with its special tokens (a BOS per document), ids concatenated", async () => {
  await withTempDir("hartley-clm-", async (dir) => {
    const tok = await llamaWith(dir, null);
    const records = ["The jury said", "", "that the city was fine", "Atlanta"];
    const data = join(dir, "docs.jsonl");
    await Deno.writeTextFile(data, records.map((text) => JSON.stringify({ text })).join("\n") + "\n");
    const expected = records.flatMap((text) => tok.encode(text));
    assertEquals(expected.filter((id) => id === 1).length, records.length);
    const ds = await CausalLmDataset.fromTextFile(data, tok, 4);
    assertEquals(Array.from(ds.tokens), expected);
    const config = await loadHfConfig(fixtureModel("llama"));
    const spec = { task: "causal-lm" as const, data, evalFraction: 0, seqLen: 4, batchSize: 2, seed: 0 };
    const splits = await loadSplits({ ...spec, evalData: data }, config, tok, dir);
    assertEquals(
      splits.summary.split(";")[0],
      `${data}: ${expected.length} tokens, ${expected.length} held out`,
    );
    // GPT-2's tokenizer adds no token around a text: the records stay apart by a blank line, as before
    const gpt2 = await loadTokenizer(`${TOKENIZERS}bytelevel_bpe.json`);
    const plain = await CausalLmDataset.fromTextFile(data, gpt2, 4);
    assertEquals(Array.from(plain.tokens), gpt2.encode(records.join("\n\n")));
  });
});

Deno.test("a tagged sentence with no tokens (no words, GPT-2's tokenizer) is refused by its file and line", async () => {
  await withTempDir("hartley-tags-", async (dir) => {
    const file = join(dir, "ner.jsonl");
    const rows = [{ tokens: ["Ada"], ner_tags: ["B-PER"] }, { tokens: [], ner_tags: [] }];
    await Deno.writeTextFile(file, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
    const { examples } = await readTaggedFile(file);
    const gpt2 = await loadTokenizer(`${TOKENIZERS}bytelevel_bpe.json`);
    const refused = assertThrows(
      () => new TokenClassificationDataset(examples, gpt2, { maxLength: 8 }),
      `${file}:2: the sentence has no tokens`,
    );
    assert(refused instanceof DataError, refused.name);
    // RoBERTa's special tokens make it a row, as transformers' run_ner makes it
    const roberta = await loadTokenizer(`${TOKENIZERS}roberta_bpe.json`);
    assertEquals(Array.from(new TokenClassificationDataset(examples, roberta, { maxLength: 8 }).row(1).ids), [
      0,
      2,
    ]);
    // a sentence of words that tokenize to nothing is refused when its row is made
    await Deno.writeTextFile(file, JSON.stringify({ tokens: ["", ""], ner_tags: ["O", "O"] }) + "\n");
    const empty = new TokenClassificationDataset((await readTaggedFile(file)).examples, gpt2, {
      maxLength: 8,
    });
    assertThrows(() => empty.row(0), `${file}:1: the sentence has no tokens`);
  });
});
