// Token classification (named entities): seqeval's entity scores, words tokenized as transformers'
// is_split_into_words, tagged data files, and the heads of the four text families against float64
// (the CLI end to end: token_cls_cli_test.ts).
import { getGpu } from "../lib/gpu/mod.ts";
import { loadTokenizer } from "../lib/io/tokenizer.ts";
import { loadModel } from "../lib/models/load.ts";
import { tidy } from "../lib/tensor/mod.ts";
import { BatchIterator, collate } from "../lib/train/batches.ts";
import { entities, entityScores, isEntityTagSet } from "../lib/train/entities.ts";
import { DataError } from "../lib/train/data_error.ts";
import { namedEntities, splitWords } from "../lib/infer/tag.ts";
import { evaluate, inOrder, toModelBatch } from "../lib/train/tasks.ts";
import { readTaggedFile, type TaggedExample, TokenClassificationDataset } from "../lib/train/token_data.ts";
import { assert, assertClose, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { fixtureModel } from "./model_helpers.ts";

Deno.test("entities: conlleval's chunks of IOB1, IOB2 and IOBES tags, as seqeval reads them", () => {
  const spans = (tags: string[]) => entities(tags).map((e) => `${e.type}:${e.start}-${e.end}`);
  assertEquals(spans(["B-PER", "I-PER", "O", "B-LOC"]), ["PER:0-1", "LOC:3-3"]);
  // an I- after O or after another type starts an entity (IOB1); a type change ends one
  assertEquals(spans(["I-PER", "I-LOC", "O", "I-ORG", "I-ORG"]), ["PER:0-0", "LOC:1-1", "ORG:3-4"]);
  assertEquals(spans(["B-PER", "B-PER", "I-LOC"]), ["PER:0-0", "PER:1-1", "LOC:2-2"]);
  // IOBES: S- is an entity of its own, E- ends one
  assertEquals(spans(["S-PER", "B-LOC", "E-LOC", "E-LOC", "O"]), ["PER:0-0", "LOC:1-2", "LOC:3-3"]);
  // a hyphen in the type stays in it; a tag without one is its own type
  assertEquals(spans(["B-ORG-X", "I-ORG-X", "BPER"]), ["ORG-X:0-1", "PER:2-2"]);
  assertEquals(spans(["O", "O"]), []);
});

Deno.test("entityScores: seqeval's micro precision, recall, F1 and tag accuracy", () => {
  // seqeval's README example: f1 0.50, accuracy 0.80
  const truth = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]];
  const pred = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]];
  const s = entityScores(pred, truth);
  assertClose([s.precision, s.recall, s.f1, s.accuracy], [0.5, 0.5, 0.5, 0.8], 1e-12, "README example");
  // its classification_report: MISC 0 0 0 (1 true), PER 1 1 1 (1 true)
  assertEquals(s.byType, {
    MISC: { precision: 0, recall: 0, f1: 0, support: 1 },
    PER: { precision: 1, recall: 1, f1: 1, support: 1 },
  });
  // 3 found, 2 right, 4 true: p 2/3, r 1/2, f1 4/7
  const t = entityScores([["B-A", "O", "B-B", "I-B", "B-C"]], [["B-A", "B-X", "B-B", "I-B", "I-D"]]);
  assertClose([t.precision, t.recall, t.f1, t.accuracy], [2 / 3, 1 / 2, 4 / 7, 3 / 5], 1e-12, "counts");
  // a span that is off by a word is wrong
  assertEquals(entityScores([["B-B", "O"]], [["B-B", "I-B"]]).f1, 0);
  assertEquals(entityScores([["O"]], [["O"]]).f1, 0);
  assertThrows(() => entityScores([["O", "O"]], [["O"]]), "sequence 0 has 2 predicted tags for 1 true ones");
  assert(isEntityTagSet(["O", "B-PER", "I-PER", "E-LOC", "S-LOC"]), "IOBES tags");
  assert(!isEntityTagSet(["NN", "DT", "O"]), "part-of-speech tags name no entities");
});

Deno.test("encodeWords: each word's own tokens, as in running text, between the special tokens", async () => {
  const words = ["Ada", "Lovelace", "lived", "in", "Londonderry", "."];
  // byte-level BPE takes each word after a space (transformers' add_prefix_space=True)
  const text = {
    bert: words.join(" "),
    llama: words.join(" "),
    gpt2: ` ${words.join(" ")}`,
    roberta: ` ${words.join(" ")}`,
  };
  for (const [family, joined] of Object.entries(text)) {
    const tokenizer = await loadTokenizer(`${fixtureModel(family)}/tokenizer.json`);
    const plain = tokenizer.encodeWords(words, { addSpecialTokens: false });
    assertEquals(plain.ids, tokenizer.encode(joined, { addSpecialTokens: false }), `${family} ids`);
    assertEquals(
      [...new Set(plain.wordIds)],
      [0, 1, 2, 3, 4, 5],
      `${family}: every word has tokens, in order`,
    );
    assert(plain.ids.length > words.length, `${family}: some word has several tokens`);
    const [before, after] = tokenizer.specialAround();
    const full = tokenizer.encodeWords(words);
    assertEquals(full.ids, [...before, ...plain.ids, ...after], `${family} special tokens`);
    assertEquals(full.wordIds, [...before.map(() => null), ...plain.wordIds, ...after.map(() => null)]);
  }
  const roberta = await loadTokenizer(`${fixtureModel("roberta")}/tokenizer.json`);
  // as add_prefix_space: an empty word gets no token (its tag is dropped), a space no second one
  const odd = roberta.encodeWords(["New", "", " ", "York"], { addSpecialTokens: false });
  assertEquals([...new Set(odd.wordIds)], [0, 2, 3]);
  assertEquals(odd.wordIds.filter((w) => w === 2).length, 1);
  assertEquals(roberta.specialAround().map((ids) => ids.length), [1, 1], "<s> … </s>");
  // found once and handed out as copies: a caller's changes do not reach the next answer
  const first = roberta.specialAround();
  first[0].push(7);
  assertEquals(roberta.specialAround().map((ids) => ids.length), [1, 1], "a copy");
});

Deno.test("readTaggedFile: JSONL names, a Parquet split's ClassLabel ids, CoNLL columns; errors name the line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tagged" });
  try {
    const jsonl = `${dir}/ner.jsonl`;
    await Deno.writeTextFile(
      jsonl,
      [
        { tokens: ["Ada", "met", "Bob"], ner_tags: ["B-PER", "O", "B-PER"] },
        { tokens: ["in", "Rome"], ner_tags: ["O", "B-LOC"] },
      ].map((r) => JSON.stringify(r)).join("\n"),
    );
    const data = await readTaggedFile(jsonl);
    assertEquals([data.wordField, data.tagField], ["tokens", "ner_tags"]);
    assertEquals(data.labelNames, ["B-PER", "O", "B-LOC"]);
    assertEquals(data.examples, [{ words: ["Ada", "met", "Bob"], tags: [0, 1, 0], source: `${jsonl}:1` }, {
      words: ["in", "Rome"],
      tags: [1, 2],
      source: `${jsonl}:2`,
    }]);
    // the names of a trained head map the tags
    const named = await readTaggedFile(jsonl, { labels: ["O", "B-PER", "B-LOC"] });
    assertEquals(named.examples.map((e) => e.tags), [[1, 0, 1], [0, 2]]);
    await assertRejects(
      () => readTaggedFile(jsonl, { labels: ["O", "B-PER"] }),
      DataError,
      `ner.jsonl:2: label "B-LOC" is not one of the labels ["O","B-PER"]`,
    );

    const parquet = await readTaggedFile(new URL("./fixtures/data/ner.parquet", import.meta.url).pathname);
    assertEquals(parquet.labelNames, ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]);
    assertEquals(parquet.examples[0], {
      words: ["Ada", "Lovelace", "lived", "in", "London"],
      tags: [1, 2, 0, 0, 3],
      source: `${new URL("./fixtures/data/ner.parquet", import.meta.url).pathname}:1`,
    });
    // a head's tags are matched by name: the split's ids go through its ClassLabel names
    const head = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"];
    const mapped = await readTaggedFile(new URL("./fixtures/data/ner.parquet", import.meta.url).pathname, {
      labels: head,
    });
    assertEquals(mapped.labelNames, head);
    assertEquals(mapped.examples[0].tags.map((t) => head[t]), ["B-PER", "I-PER", "O", "O", "B-LOC"]);
    await assertRejects(
      () =>
        readTaggedFile(new URL("./fixtures/data/ner.parquet", import.meta.url).pathname, {
          labels: ["O", "B-PER"],
        }),
      DataError,
      `ner.parquet:1: label 2 (class "I-PER") is not one of the labels ["O","B-PER"]`,
    );

    const conll = `${dir}/train.conll`;
    await Deno.writeTextFile(
      conll,
      "-DOCSTART- -X- O O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\nPeter NNP B-NP B-PER\n# NN O O\n",
    );
    const c = await readTaggedFile(conll);
    // a "#" line is a word (WNUT's hashtags), not a comment
    assertEquals(c.examples, [{ words: ["EU", "rejects"], tags: [0, 1], source: `${conll}:3` }, {
      words: ["Peter", "#"],
      tags: [2, 1],
      source: `${conll}:7`,
    }]);
    assertEquals(c.labelNames, ["B-ORG", "O", "B-PER"]);

    await Deno.writeTextFile(jsonl, `{"tokens": ["a", "b"], "ner_tags": ["O"]}\n`);
    await assertRejects(
      () => readTaggedFile(jsonl),
      DataError,
      `ner.jsonl:1: 2 words but 1 tags in "ner_tags"`,
    );
    await Deno.writeTextFile(jsonl, `{"words": ["a"], "label": 0}\n`);
    await assertRejects(
      () => readTaggedFile(jsonl),
      DataError,
      "no tag list field (tried ner_tags, tags, labels, pos_tags); name it with --label-field (tagField). The fields are words, label",
    );
    await Deno.writeTextFile(conll, "EU\n");
    await assertRejects(
      () => readTaggedFile(conll),
      DataError,
      `train.conll:1: expected a word and its tag, got "EU"`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("TokenClassificationDataset: a word's tag on its first token, −100 on the rest; long rows lose their last words", async () => {
  const tokenizer = await loadTokenizer(`${fixtureModel("roberta")}/tokenizer.json`);
  const words = ["Ada", "Lovelace", "lived", "in", "Londonderry"];
  const examples: TaggedExample[] = [{ words, tags: [1, 2, 0, 0, 3] }, { words: ["It"], tags: [0] }];
  const ds = new TokenClassificationDataset(examples, tokenizer, { maxLength: 64, numLabels: 4 });
  const { wordIds } = tokenizer.encodeWords(words);
  const row = ds.row(0);
  assertEquals(Array.from(row.ids), tokenizer.encodeWords(words).ids);
  const expected = wordIds.map((w, i) => w === null || wordIds[i - 1] === w ? -100 : examples[0].tags[w]);
  assertEquals(Array.from(row.label as Int32Array), expected);
  assert(expected.filter((l) => l === -100).length > 2, "later pieces of a word are ignored too");
  assertEquals(ds.wordStarts(0), words.map((_, w) => wordIds.indexOf(w)));
  // cut to 4 tokens: <s>, two word tokens, </s>
  const cut = new TokenClassificationDataset(examples, tokenizer, { maxLength: 4 });
  const short = cut.row(0);
  assertEquals(short.ids.length, 4);
  assertEquals(
    Array.from(short.ids).slice(1, 3),
    tokenizer.encodeWords(words, { addSpecialTokens: false }).ids.slice(0, 2),
  );
  assertEquals(cut.wordStarts(0).filter((at) => at >= 0).length, new Set(wordIds.slice(1, 3)).size);
  // batches pad the labels with −100
  const batch = collate(ds, [1, 0]);
  assertEquals(
    Array.from(batch.labels.subarray(0, batch.shape[1])).slice(3),
    new Array(batch.shape[1] - 3).fill(-100),
  );
  assertThrows(
    () => new TokenClassificationDataset(examples, tokenizer, { maxLength: 2 }),
    "above the 2 special tokens",
  );
  assertThrows(
    () => new TokenClassificationDataset(examples, tokenizer, { maxLength: 8, numLabels: 3 }),
    "sentence 0 has tag 3, which does not fit the head's 3 labels",
  );
});

const SENTENCES: TaggedExample[] = [
  { words: ["Ada", "Lovelace", "lived", "in", "London"], tags: [1, 2, 0, 0, 3] },
  { words: ["It", "rained", "in", "Rome"], tags: [0, 0, 0, 3] },
  { words: ["Bob"], tags: [1] },
];
const TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"];

for (
  const [family, head] of [["bert", "classifier"], ["roberta", "classifier"], ["gpt2", "classifier"], [
    "llama",
    "score",
  ]]
) {
  Deno.test(`${family}: the token classifier's logits, loss, head gradient and evaluation against float64`, async () => {
    const gpu = await getGpu();
    const dir = fixtureModel(family);
    const model = await loadModel(gpu, dir, { task: "token-cls", numLabels: TAGS.length });
    const tokenizer = await loadTokenizer(`${dir}/tokenizer.json`);
    try {
      // the checkpoint's own head (a sequence classifier's, or none) is not this one: it starts new
      assert(model.initialised.includes(`${head}.weight`), `${family}: a new ${head}`);
      const ds = new TokenClassificationDataset(SENTENCES, tokenizer, {
        maxLength: 32,
        numLabels: TAGS.length,
      });
      const host = collate(ds, [0, 1, 2]);
      const [b, t] = host.shape, l = TAGS.length;
      const weight = model.parameters.get(`${head}.weight`)!, bias = model.parameters.get(`${head}.bias`)!;
      weight.requiresGrad = true;
      const out = tidy(() => {
        const o = model.forward(toModelBatch(model, host, "token-cls"));
        return { hidden: o.hidden, logits: o.logits, loss: o.loss! };
      });
      out.loss.backward();
      const h = await out.hidden.toArray(), w = await weight.toArray(), c = await bias.toArray();
      const width = h.length / (b * t);
      assertEquals(out.logits.shape, [b, t, l]);
      const ref = new Float64Array(b * t * l), gradRef = new Float64Array(l * width);
      let lossRef = 0, count = 0;
      for (let p = 0; p < b * t; p++) {
        for (let k = 0; k < l; k++) {
          let s = c[k];
          for (let j = 0; j < width; j++) s += w[k * width + j] * h[p * width + j];
          ref[p * l + k] = s;
        }
        const label = host.labels[p];
        if (label === -100) continue;
        const row = ref.subarray(p * l, (p + 1) * l), max = Math.max(...row);
        const z = row.reduce((a, v) => a + Math.exp(v - max), 0);
        lossRef += max + Math.log(z) - row[label];
        count++;
        for (let k = 0; k < l; k++) {
          const g = Math.exp(row[k] - max) / z - (k === label ? 1 : 0);
          for (let j = 0; j < width; j++) gradRef[k * width + j] += g * h[p * width + j];
        }
      }
      assertEquals(count, SENTENCES.reduce((n, s) => n + s.words.length, 0), "one target per word");
      assertClose(await out.logits.toArray(), ref, 1e-5, `${family} logits`);
      assertClose([await out.loss.item()], [lossRef / count], 1e-5, `${family} loss`);
      assertClose(
        await weight.grad!.toArray(),
        gradRef.map((g) => g / count),
        1e-4,
        `${family} ∂loss/∂${head}`,
      );

      // evaluate: seqeval's scores of the tags picked at each word's first token
      model.config.labels = TAGS;
      const picked = (p: number) => {
        const row = ref.subarray(p * l, (p + 1) * l);
        return TAGS[row.indexOf(Math.max(...row))];
      };
      const pred: string[][] = [], truth: string[][] = [];
      for (let r = 0; r < b; r++) {
        const at = ds.wordStarts(r).map((s) => r * t + s);
        pred.push(at.map(picked));
        truth.push(SENTENCES[r].tags.map((id) => TAGS[id]));
      }
      const want = entityScores(pred, truth);
      const got = await evaluate(
        model,
        inOrder(new BatchIterator(ds, { batchSize: 2, shuffle: false })),
        "token-cls",
      );
      assertClose(
        [got.accuracy!, got.precision!, got.recall!, got.f1!],
        [want.accuracy, want.precision, want.recall, want.f1],
        1e-12,
        `${family} scores`,
      );
      assertClose([got.loss], [lossRef / count], 1e-5, `${family} eval loss`);
      assertEquals(got.targets, count);
      for (const x of Object.values(out)) x.dispose();
    } finally {
      model.dispose();
    }
  });
}

Deno.test("splitWords and namedEntities: CoNLL-style words, and the entities their tags name", () => {
  assertEquals(splitWords("Dr. O'Neil met Bob (in São Paulo), didn't he?"), [
    "Dr",
    ".",
    "O'Neil",
    "met",
    "Bob",
    "(",
    "in",
    "São",
    "Paulo",
    ")",
    ",",
    "didn't",
    "he",
    "?",
  ]);
  const words = ["Ada", "Lovelace", "met", "Bob"];
  assertEquals(namedEntities(words, ["B-PER", "I-PER", "O", "B-PER"]), [
    { type: "PER", start: 0, end: 1, text: "Ada Lovelace" },
    { type: "PER", start: 3, end: 3, text: "Bob" },
  ]);
  assertEquals(namedEntities(words, ["NNP", "NNP", "VBD", "NNP"]), [], "part-of-speech tags");
  // a kept head's placeholder output (LABEL_i) is read as "O", as evaluation scores it
  assertEquals(namedEntities(words, ["B-PER", "I-PER", "LABEL_4", "B-PER"]), [
    { type: "PER", start: 0, end: 1, text: "Ada Lovelace" },
    { type: "PER", start: 3, end: 3, text: "Bob" },
  ]);
});
