// Token classification, as run_ner, seqeval and the transformers pipeline have it: predict on
// words already split (their tags ignored, read before the model loads), CoNLL comment lines, tags
// that are not entity tags scored as seqeval scores them, entities with the pipeline's offsets and
// score, text split without format characters as words, and accuracy by tag id.
import { openSafetensors } from "../lib/io/safetensors.ts";
import { type TensorData, writeSafetensors } from "../lib/io/safetensors_write.ts";
import { namedEntities, splitWords, splitWordSpans } from "../lib/infer/tag.ts";
import { DataError } from "../lib/train/data_error.ts";
import { entityScores, isEntityTagSet } from "../lib/train/entities.ts";
import { scoresEntities } from "../lib/train/tasks.ts";
import { readTaggedFile, readWordLists } from "../lib/train/token_data.ts";
import { assert, assertClose, assertEquals, assertRejects } from "./assert.ts";
import { fixtureModel, tempModelDir } from "./model_helpers.ts";
import { runCli, withTempDir } from "./train_helpers.ts";

/**
 * A BERT token classifier (the fixture's backbone) whose tags are `names` and whose head always
 * picks tag `winner` (a zero weight, a large bias). Remove it with Deno.remove.
 */
async function tagger(names: string[], winner: number): Promise<string> {
  const id2label = Object.fromEntries(names.map((n, i) => [String(i), n]));
  const dir = await tempModelDir(fixtureModel("bert"), {
    architectures: ["BertForTokenClassification"],
    id2label,
    label2id: Object.fromEntries(names.map((n, i) => [n, i])),
  });
  const file = await openSafetensors(`${dir}/model.safetensors`);
  const kept: Record<string, TensorData> = {};
  for (const k of file.names.filter((k) => !k.startsWith("classifier."))) {
    const { dtype, shape } = file.info(k);
    kept[k] = { dtype, shape, data: await file.read(k) };
  }
  const bias = new Float32Array(names.length);
  bias[winner] = 100;
  await writeSafetensors(`${dir}/model.safetensors`, {
    ...kept,
    "classifier.weight": {
      dtype: "F32",
      shape: [names.length, 64],
      data: new Float32Array(names.length * 64),
    },
    "classifier.bias": { dtype: "F32", shape: [names.length], data: bias },
  });
  return dir;
}

Deno.test("readWordLists: words already split, their tags ignored; texts left to be split", async () => {
  await withTempDir("hartley_words_", async (dir) => {
    const jsonl = `${dir}/words.jsonl`;
    await Deno.writeTextFile(
      jsonl,
      `{"tokens": ["Alice", "moved", "to", "Oslo"]}\n{"tokens": ["Bob", "left"], "ner_tags": ["B-PER"]}\n`,
    );
    assertEquals(await readWordLists(jsonl), [
      { words: ["Alice", "moved", "to", "Oslo"], source: `${jsonl}:1` },
      { words: ["Bob", "left"], source: `${jsonl}:2` },
    ]);
    // a list field of another name, named as predict's --text-field names it
    await Deno.writeTextFile(jsonl, `{"toks": ["Ada", "sang"], "ner": ["B-PER", "O", "O"]}\n`);
    assertEquals((await readWordLists(jsonl, "toks"))?.map((s) => s.words), [["Ada", "sang"]]);
    await Deno.writeTextFile(jsonl, `{"tokens": ["Ada", 3]}\n`);
    await assertRejects(
      () => readWordLists(jsonl),
      DataError,
      `words.jsonl:1: field "tokens" must be a list of words (strings)`,
    );
    // texts: split into words by the caller
    await Deno.writeTextFile(jsonl, `{"text": "Ada sang", "tokens": "Ada sang"}\n`);
    assertEquals(await readWordLists(jsonl), null, "a string field");
    assertEquals(await readWordLists(jsonl, "text"), null, "--text-field naming a string field");
    await Deno.writeTextFile(`${dir}/plain.txt`, "Ada sang\n");
    assertEquals(await readWordLists(`${dir}/plain.txt`), null, "a .txt file");
    // a blind CoNLL test file: one column; a tagged one's tags are ignored, whatever they are
    const conll = `${dir}/test.conll`;
    await Deno.writeTextFile(conll, "-DOCSTART-\n\nAlice\nmoved\n\nMaria B-PER\nmet _ _ NOT-A-TAG\n");
    assertEquals(await readWordLists(conll), [
      { words: ["Alice", "moved"], source: `${conll}:3` },
      { words: ["Maria", "met"], source: `${conll}:6` },
    ]);
  });
});

Deno.test("predict --data tags words already split without tags, and checks the data before the model loads", async () => {
  const model = await tagger(["O", "B-PER", "I-PER"], 2);
  try {
    await withTempDir("hartley_predict_words_", async (dir) => {
      const predict = (data: string) => runCli(["predict", "--model", model, "--data", data, "--json"]);
      await Deno.writeTextFile(`${dir}/notags.jsonl`, `{"tokens": ["Alice", "moved", "to", "Oslo"]}\n`);
      const notags = await predict(`${dir}/notags.jsonl`);
      assertEquals(notags.code, 0, notags.err);
      assertEquals(JSON.parse(notags.out).words, ["Alice", "moved", "to", "Oslo"]);
      // tags present are not read: a count that does not match is no error here
      await Deno.writeTextFile(
        `${dir}/badtags.jsonl`,
        `{"tokens": ["Alice", "moved", "to", "Oslo"], "ner_tags": ["B-PER", "O", "O"]}\n`,
      );
      const badtags = await predict(`${dir}/badtags.jsonl`);
      assertEquals(badtags.code, 0, badtags.err);
      assertEquals(JSON.parse(badtags.out).tags, ["I-PER", "I-PER", "I-PER", "I-PER"]);
      await Deno.writeTextFile(`${dir}/words.conll`, "Alice\nmoved\n\nMaria\nmet\nOmar\n");
      const conll = await predict(`${dir}/words.conll`);
      assertEquals(conll.code, 0, conll.err);
      assertEquals(conll.out.split("\n").map((l) => JSON.parse(l).words), [
        ["Alice", "moved"],
        ["Maria", "met", "Omar"],
      ]);
      // a word without a token (a zero-width space, which BERT drops) neither ends an entity nor starts one
      await Deno.writeTextFile(`${dir}/zwsp.jsonl`, `{"tokens": ["Ada", "\\u200b", "Lovelace"]}\n`);
      const zwsp = await predict(`${dir}/zwsp.jsonl`);
      assertEquals(zwsp.code, 0, zwsp.err);
      const record = JSON.parse(zwsp.out);
      assertEquals(record.tags, ["I-PER", null, "I-PER"]);
      assertEquals(record.entities.length, 1, zwsp.out);
      const [e] = record.entities;
      assertEquals([e.type, e.text, e.first_word, e.last_word], ["PER", "Ada \u200b Lovelace", 0, 2]);
      assert(!("start" in e), "no character offsets without a text");
    });
    // the data is read before the model: its error comes first, even with weights that cannot load
    const broken = await tempModelDir(model);
    try {
      await Deno.writeTextFile(`${broken}/model.safetensors`, "not a checkpoint");
      const data = `${broken}/bad.jsonl`;
      await Deno.writeTextFile(data, `{"tokens": ["Ada", 3]}\n`);
      const r = await runCli(["predict", "--model", broken, "--data", data]);
      assert(r.code !== 0 && r.err.includes(`bad.jsonl:1: field "tokens" must be a list of words`), r.err);
    } finally {
      await Deno.remove(broken, { recursive: true });
    }
  } finally {
    await Deno.remove(model, { recursive: true });
  }
});

Deno.test("predict --text: entities with the pipeline's character offsets (code points) and mean score, text from the input", async () => {
  const model = await tagger(["O", "B-PER", "I-PER"], 2);
  try {
    // every word I-PER: one entity over the whole text
    const text = "😀 Zoë O'Neil's dog\u00adgy.";
    const r = await runCli(["predict", "--model", model, "--text", text, "--json"]);
    assertEquals(r.code, 0, r.err);
    const record = JSON.parse(r.out);
    assertEquals(record.words, ["😀", "Zoë", "O'Neil", "'s", "dog\u00adgy", "."]);
    assertEquals(record.entities.length, 1, r.out);
    const [e] = record.entities;
    assertEquals(Object.keys(e), ["type", "text", "score", "start", "end", "first_word", "last_word"]);
    assertEquals([e.type, e.text, e.start, e.end, e.first_word, e.last_word], [
      "PER",
      text,
      0,
      [...text].length,
      0,
      5,
    ]);
    const mean = record.probabilities.reduce((a: number, b: number) => a + b, 0) / 6;
    assertClose([e.score], [mean], 1e-4);
  } finally {
    await Deno.remove(model, { recursive: true });
  }
});

Deno.test("namedEntities: word spans in the text, mean scores, untagged words passed over", () => {
  const text = "😀 Ada Lovelace met Bob\u00adby in São Paulo.";
  const { words, offsets } = splitWordSpans(text);
  assertEquals(words, ["😀", "Ada", "Lovelace", "met", "Bob\u00adby", "in", "São", "Paulo", "."]);
  const tags = ["O", "B-PER", "I-PER", "O", "B-PER", "O", "B-LOC", "I-LOC", "O"];
  const probabilities = [1, 0.9, 0.7, 1, 0.6, 1, 0.5, 0.4, 1];
  const found = namedEntities(words, tags, { probabilities, text, offsets });
  assertEquals(found.map((e) => [e.type, e.text, e.start, e.end, e.charStart, e.charEnd]), [
    ["PER", "Ada Lovelace", 1, 2, 2, 14],
    ["PER", "Bob\u00adby", 4, 4, 19, 25],
    ["LOC", "São Paulo", 6, 7, 29, 38],
  ]);
  assertClose(found.map((e) => e.score!), [0.8, 0.6, 0.45], 1e-12);
  // a word without a tag (no token) inside an entity: passed over, the entity whole
  assertEquals(namedEntities(["Ada", "\u200b", "Lovelace"], ["B-PER", null, "I-PER"]), [
    { type: "PER", start: 0, end: 2, text: "Ada \u200b Lovelace" },
  ]);
  // whether the tags name entities is the model's tag set's, not one sentence's
  assertEquals(namedEntities(["Ada"], ["domain=en"]), []);
  assertEquals(namedEntities(["Ada"], ["domain=en"], { names: ["O", "B-PER", "domain=en"] }), [
    { type: "omain=en", start: 0, end: 0, text: "Ada" },
  ]);
});

Deno.test("splitWords: format characters stay inside a word or are dropped; a final 's is a word", () => {
  assertEquals(splitWords("Rhein\u00adland-Pfalz is big"), ["Rhein\u00adland", "-", "Pfalz", "is", "big"]);
  assertEquals(splitWords("Oslo \u200b\u00ad and \u200bBergen\u200b."), ["Oslo", "and", "Bergen", "."]);
  assertEquals(splitWords("Alice's firm, it's O'Sullivan’s; didn't"), [
    "Alice",
    "'s",
    "firm",
    ",",
    "it",
    "'s",
    "O'Sullivan",
    "’s",
    ";",
    "didn't",
  ]);
  assertEquals(splitWordSpans("a 😀 b").offsets, [[0, 1], [2, 3], [4, 5]], "code points, not UTF-16 units");
});

Deno.test("CoNLL files: MultiCoNER's and CoNLL-U's comment lines skipped; a stray tag scored as seqeval scores it, and named", async () => {
  await withTempDir("hartley_conll_", async (dir) => {
    const path = `${dir}/multiconer.conll`;
    await Deno.writeTextFile(
      path,
      "# id bb81b9a8-ef6a\tdomain=en\nit _ _ O\nparis _ _ B-LOC\n\n# id 2c1\tdomain=en\nbob _ _ B-PER\n" +
        "# sent_id = 3\n# text = # O\n# _ _ O\nX _ _ B-PER\n",
    );
    const said: string[] = [];
    const data = await readTaggedFile(path, { onWarning: (m) => said.push(m) });
    assertEquals(data.examples.map((e) => e.words), [["it", "paris"], ["bob"], ["#", "X"]]);
    assertEquals(data.labelNames, ["O", "B-LOC", "B-PER"]);
    assertEquals(said, [], "entity tags only");

    await Deno.writeTextFile(path, "Ada B-PER\nsang MISC\n\nin O\nRome B-LOC\nnow MISC\n");
    const odd: string[] = [];
    await readTaggedFile(path, { onWarning: (m) => odd.push(m) });
    assertEquals(odd.length, 1, "said once");
    assert(
      odd[0].includes(
        `tag "MISC" (an entity of type "ISC" to seqeval; first in the sentence at ${path}:1)`,
      ) &&
        odd[0].includes("not O, B-, I-, E- or S- and a type"),
      odd[0],
    );
    // seqeval scores the set: "MISC" is a chunk of type "ISC"
    assert(isEntityTagSet(["B-PER", "MISC", "O", "B-LOC"]), "a stray tag among entity tags");
    assert(scoresEntities(["O", "B-PER", "I-PER", "domain=en"]), "entity scores kept");
    assert(!isEntityTagSet(["NN", "VB", "O"]), "part-of-speech tags");
    // seqeval: true PER(0,0), ISC(1,1), LOC(3,3); predicted PER(0,0), LOC(3,3)
    const s = entityScores([["B-PER", "O", "O", "B-LOC"]], [["B-PER", "MISC", "O", "B-LOC"]]);
    assertClose([s.precision, s.recall, s.f1], [1, 2 / 3, 0.8], 1e-12);
    assertEquals(Object.keys(s.byType), ["ISC", "LOC", "PER"]);
  });
});

Deno.test("eval: token accuracy counts a placeholder tag (LABEL_i) predicted for an O word as wrong", async () => {
  const model = await tagger(["O", "B-PER", "I-PER", "LABEL_3"], 3);
  try {
    await withTempDir("hartley_placeholder_acc_", async (dir) => {
      const data = `${dir}/ner.jsonl`;
      await Deno.writeTextFile(
        data,
        `{"tokens": ["Ada", "met", "Bob"], "ner_tags": ["B-PER", "O", "B-PER"]}\n`,
      );
      const r = await runCli(["eval", "--model", model, "--data", data, "--seq-len", "16", "--json"]);
      assertEquals(r.code, 0, r.err);
      const result = JSON.parse(r.out);
      assertEquals([result.accuracy, result.f1], [0, 0]);
    });
  } finally {
    await Deno.remove(model, { recursive: true });
  }
});
