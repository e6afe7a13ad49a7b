import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { checkTokenizerFits, loadTokenizer, TokenizerError } from "../lib/io/tokenizer.ts";
import { loadHfConfig, parseHfConfig } from "../lib/io/hf_config.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;
const TOKENIZERS = `${FIXTURES}tokenizers/`;
const MODELS = `${FIXTURES}models/`;

interface Case {
  text: string;
  ids: number[];
  tokens: string[];
}
const expected: Record<string, Case[]> =
  JSON.parse(await Deno.readTextFile(`${TOKENIZERS}expected.json`)).cases;

for (const kind of ["bytelevel_bpe", "roberta_bpe", "wordpiece", "unigram"]) {
  Deno.test(`${kind}: ids and tokens match the Python tokenizers for every case`, async () => {
    const tok = await loadTokenizer(`${TOKENIZERS}${kind}.json`);
    assertEquals(tok.vocabSize, 512);
    assert(expected[kind].length >= 11, `${kind} has its cases`);
    for (const c of expected[kind]) {
      assertEquals(tok.encode(c.text), c.ids, `${kind} ids of ${JSON.stringify(c.text)}`);
      assertEquals(tok.tokens(c.text), c.tokens, `${kind} tokens of ${JSON.stringify(c.text)}`);
    }
  });
}

Deno.test("byte-level BPE decodes every case back to its text", async () => {
  for (const kind of ["bytelevel_bpe", "roberta_bpe"]) {
    const tok = await loadTokenizer(`${TOKENIZERS}${kind}.json`);
    for (const c of expected[kind]) {
      assertEquals(tok.decode(c.ids), c.text, `${kind} ${JSON.stringify(c.text)}`);
    }
  }
  const roberta = await loadTokenizer(`${TOKENIZERS}roberta_bpe.json`);
  assertEquals(roberta.decode(roberta.encode("Hi"), { skipSpecialTokens: false }), "<s>Hi</s>");
  assertEquals(roberta.decode([]), "");
  // an id past the vocabulary is skipped, as the tokenizers library skips it (a model's logits
  // may be wider than its tokenizer); a negative one is no id
  assertEquals(roberta.decode([512]), "");
  assertEquals(roberta.decode([...roberta.encode("Hi", { addSpecialTokens: false }), 512]), "Hi");
  assertThrows(() => roberta.decode([-1]), "cannot decode id -1");
});

Deno.test("a pair under a ByteLevel post-processor is both texts, types 0 then 1, as the Rust library joins them", async () => {
  const path = `${TOKENIZERS}bytelevel_bpe.json`;
  const gpt2 = await loadTokenizer(path);
  const [a, b] = [
    gpt2.encode("the cat", { addSpecialTokens: false }),
    gpt2.encode("sat", { addSpecialTokens: false }),
  ];
  assertEquals(gpt2.encodePair("the cat", "sat"), {
    ids: [...a, ...b],
    typeIds: [...a.map(() => 0), ...b.map(() => 1)],
  });
  // inside a Sequence, after a template (whose type ids it used to lose) or before one
  const json = JSON.parse(await Deno.readTextFile(path));
  const eos = json.added_tokens[0].id;
  const template = {
    type: "TemplateProcessing",
    single: [{ Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "<|endoftext|>", type_id: 0 } }],
    pair: [
      { Sequence: { id: "A", type_id: 0 } },
      { SpecialToken: { id: "<|endoftext|>", type_id: 0 } },
      { Sequence: { id: "B", type_id: 1 } },
      { SpecialToken: { id: "<|endoftext|>", type_id: 1 } },
    ],
    special_tokens: { "<|endoftext|>": { id: "<|endoftext|>", ids: [eos], tokens: ["<|endoftext|>"] } },
  };
  const byteLevel = json.post_processor;
  const dir = await Deno.makeTempDir();
  try {
    for (const processors of [[template, byteLevel], [byteLevel, template]]) {
      await Deno.writeTextFile(
        `${dir}/tokenizer.json`,
        JSON.stringify({ ...json, post_processor: { type: "Sequence", processors } }),
      );
      const tok = await loadTokenizer(`${dir}/tokenizer.json`);
      assertEquals(tok.encodePair("the cat", "sat"), {
        ids: [...a, eos, ...b, eos],
        typeIds: [...a.map(() => 0), 0, ...b.map(() => 1), 1],
      }, processors[0].type);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("WordPiece and Unigram decode", async () => {
  const wp = await loadTokenizer(`${TOKENIZERS}wordpiece.json`);
  assertEquals(wp.decode(wp.encode("Hello world!")), "hello world!");
  assertEquals(wp.decode(wp.encode("The Fulton County")), "the fulton county");
  const uni = await loadTokenizer(`${TOKENIZERS}unigram.json`);
  assertEquals(uni.decode(uni.encode("Hello world!")), "Hello world!");
  assertEquals(
    uni.decode(uni.encode("The Fulton County Grand Jury said Friday.")),
    "The Fulton County Grand Jury said Friday.",
  );
});

Deno.test("Unigram's Nmt normalizer: control characters dropped, odd spaces become spaces", async () => {
  const uni = await loadTokenizer(`${TOKENIZERS}unigram.json`);
  assertEquals(uni.encode("Hel\u0001lo\u007f wor\u200bld!"), uni.encode("Hello wor ld!"));
  assertEquals(uni.encode("a\u000cb\u2028c\ufeffd"), uni.encode("a b c d"));
});

Deno.test("special tokens from added tokens, post-processor, model and model config", async () => {
  const special = async (family: string) => {
    const cfg = await loadHfConfig(`${MODELS}${family}`);
    const tok = await loadTokenizer(`${MODELS}${family}`, cfg);
    return [tok.special, tok.padId] as const;
  };
  assertEquals(await special("gpt2"), [{
    pad: null,
    bos: 0,
    eos: 0,
    cls: null,
    sep: null,
    unk: null,
    mask: null,
  }, 0]);
  assertEquals(await special("bert"), [{ pad: 0, bos: null, eos: null, cls: 2, sep: 3, unk: 1, mask: 4 }, 0]);
  assertEquals(await special("roberta"), [{ pad: 1, bos: 0, eos: 2, cls: 0, sep: 2, unk: 3, mask: 4 }, 1]);
  const [llama] = await special("llama");
  assertEquals([llama.pad, llama.bos, llama.eos, llama.unk], [0, 1, 2, 0]);
  // Without the model config, GPT-2's end-of-text token is still found by name.
  const bare = await loadTokenizer(`${TOKENIZERS}bytelevel_bpe.json`);
  assertEquals([bare.special.bos, bare.special.eos, bare.special.pad], [0, 0, null]);
});

Deno.test("tokenizer_config.json beside tokenizer.json names special tokens", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hartley_tok_" });
  try {
    await Deno.copyFile(`${TOKENIZERS}unigram.json`, `${dir}/tokenizer.json`);
    await Deno.writeTextFile(
      `${dir}/tokenizer_config.json`,
      JSON.stringify({
        pad_token: "</s>",
        bos_token: { content: "<s>" },
        clean_up_tokenization_spaces: true,
      }),
    );
    const tok = await loadTokenizer(dir);
    assertEquals([tok.special.pad, tok.special.bos, tok.padId], [2, 1, 2]);
    assertEquals(tok.path, `${dir}/tokenizer.json`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("encodeBatch: right padding to the longest row, attention mask", async () => {
  const tok = await loadTokenizer(`${MODELS}roberta`);
  const texts = ["Hello world!", "a", ""];
  const b = tok.encodeBatch(texts);
  const rows = texts.map((t) => tok.encode(t));
  const len = Math.max(...rows.map((r) => r.length));
  assertEquals(b.shape, [3, len]);
  assert(b.ids instanceof Int32Array && b.attentionMask instanceof Int32Array, "Int32Arrays");
  rows.forEach((r, i) => {
    const ids = Array.from(b.ids.subarray(i * len, (i + 1) * len));
    const mask = Array.from(b.attentionMask.subarray(i * len, (i + 1) * len));
    assertEquals(ids, [...r, ...new Array(len - r.length).fill(1)], `row ${i} ids (pad 1)`);
    assertEquals(mask, [...r.map(() => 1), ...new Array(len - r.length).fill(0)], `row ${i} mask`);
  });
  const fixed = tok.encodeBatch(["a"], { padding: "max_length", maxLength: 6 });
  assertEquals(Array.from(fixed.ids), [0, 69, 2, 1, 1, 1]);
  assertEquals(Array.from(fixed.attentionMask), [1, 1, 1, 0, 0, 0]);
  assertEquals(tok.encodeBatch([]).shape, [0, 0]);
});

Deno.test("encodeBatch truncation keeps the post-processor's special tokens", async () => {
  const roberta = await loadTokenizer(`${MODELS}roberta`);
  const text = expected.roberta_bpe[1].text; // 26 ids with <s> … </s>
  const full = roberta.encode(text);
  const b = roberta.encodeBatch([text, "a"], { maxLength: 6, truncation: true });
  assertEquals(b.shape, [2, 6]);
  assertEquals(Array.from(b.ids.subarray(0, 6)), [0, ...full.slice(1, 5), 2]);
  assertEquals(Array.from(b.ids.subarray(6)), [0, 69, 2, 1, 1, 1]);
  const gpt2 = await loadTokenizer(`${MODELS}gpt2`);
  const g = gpt2.encodeBatch([text], { maxLength: 5, truncation: true, padding: "max_length" });
  assertEquals(Array.from(g.ids), gpt2.encode(text).slice(0, 5));
  const noSpecial = roberta.encodeBatch([text], { maxLength: 4, truncation: true, addSpecialTokens: false });
  assertEquals(Array.from(noSpecial.ids), full.slice(1, 5));
  assertThrows(
    () => roberta.encodeBatch([text], { maxLength: 6 }),
    "text 0 has 26 tokens, more than maxLength 6",
  );
  assertThrows(
    () => roberta.encodeBatch([text], { maxLength: 1, truncation: true }),
    "no room for the 2 special tokens",
  );
  assertThrows(
    () => roberta.encodeBatch([text], { padding: "max_length" }),
    `padding "max_length" needs maxLength`,
  );
});

Deno.test("tokenizer/model fit: the fixtures fit; a too-small vocabulary is named with both files", async () => {
  for (const family of ["gpt2", "bert", "roberta", "llama"]) {
    const cfg = await loadHfConfig(`${MODELS}${family}`);
    checkTokenizerFits(await loadTokenizer(`${MODELS}${family}`, cfg), cfg);
  }
  const tok = await loadTokenizer(`${MODELS}gpt2`);
  const small = parseHfConfig({
    ...JSON.parse(await Deno.readTextFile(`${MODELS}gpt2/config.json`)),
    vocab_size: 300,
  }, "/m/config.json");
  const e = assertThrows(() => checkTokenizerFits(tok, small), "vocab_size 300");
  assert(e instanceof TokenizerError);
  assert(
    e.message.includes(`${MODELS}gpt2/tokenizer.json`) && e.message.includes("/m/config.json"),
    e.message,
  );
  assert(e.message.includes("ids up to 511"), e.message);
  const vit = await loadHfConfig(`${MODELS}vit`);
  assertThrows(() => checkTokenizerFits(tok, vit), "a vit model takes no token ids");
});

Deno.test("bad tokenizer files name the file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hartley_tok_" });
  try {
    await Deno.writeTextFile(`${dir}/tokenizer.json`, "{ nope");
    await assertRejects(() => loadTokenizer(dir), TokenizerError, `${dir}/tokenizer.json: invalid JSON`);
    const json = JSON.parse(await Deno.readTextFile(`${TOKENIZERS}wordpiece.json`));
    json.model.type = "Wordsmith";
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(json));
    await assertRejects(
      () => loadTokenizer(dir),
      TokenizerError,
      `${dir}/tokenizer.json: model type "Wordsmith" is not supported (supported: BPE, WordPiece, Unigram)`,
    );
    json.model.type = "WordPiece";
    json.normalizer = { type: "Fancy" };
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(json));
    await assertRejects(
      () => loadTokenizer(dir),
      TokenizerError,
      `${dir}/tokenizer.json: cannot load: Unknown Normalizer type: Fancy`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
