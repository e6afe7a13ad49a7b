/**
 * Labels and texts as Hugging Face `datasets` files hold them: -1 ("no label"), ClassLabel columns
 * under --regression, class names matched to config.json's id2label ignoring case (run_glue.py),
 * multi-hot vectors where id lists belong, TSV fields pandas quotes across lines, wikitext-style
 * records for a causal LM, `LargeList(ClassLabel)` metadata, and eval's note on how a head without
 * class names scores the data's labels.
 */
import { parseCsv } from "../lib/io/csv.ts";
import { loadTokenizer } from "../lib/io/tokenizer.ts";
import { documentTokens } from "../lib/train/data.ts";
import { DataError } from "../lib/train/data_error.ts";
import { LabelMap } from "../lib/train/labels.ts";
import { joinDocuments, readClassificationFile, readTextFile } from "../lib/train/readers.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { runCli, withTempDir } from "./train_helpers.ts";

const DATA = new URL("./fixtures/data/", import.meta.url).pathname;
const SPAM = `${DATA}spam_snappy.parquet`; // label: ClassLabel [ham, spam]; rows ham, spam, ham, spam, …
const SPAM_LABELS = [0, 1, 0, 1, 0, 1, 0, 1];

/** `read`'s result and the warnings it told its `onWarning`. */
async function withWarnings<T>(
  read: (onWarning: (message: string) => void) => Promise<T>,
): Promise<{ result: T; err: string[] }> {
  const err: string[] = [];
  return { result: await read((m) => err.push(m)), err };
}

Deno.test('label -1 is datasets\' "no label": said so, with what to do; --regression is refused on a ClassLabel column', async () => {
  const noLabel =
    `is not a class id: in Hugging Face datasets -1 means "no label" (a test split's labels, or ` +
    `unlabelled rows such as SNLI's): leave those rows out, or give an unlabelled split to predict`;
  // a ClassLabel column's -1 (a GLUE test split): no regression hint
  const column = new LabelMap({ classNames: ["negative", "positive"] });
  const e = assertThrows(() => column.id(-1, "sst2_test.parquet:1"));
  assert(e instanceof DataError, `${e}`);
  assertEquals(e.message, `sst2_test.parquet:1: label -1 ${noLabel}`);
  await withTempDir("hartley_no_label_", async (dir) => {
    // the same split exported to CSV: -1 may be a real value there, so the regression option is named too
    await Deno.writeTextFile(`${dir}/test.csv`, "sentence,label\na fine film,-1\n");
    await assertRejects(
      () => readClassificationFile(`${dir}/test.csv`),
      DataError,
      `test.csv:2: label "-1" ${noLabel}; if the labels are real values, train a regressor: --regression`,
    );
    // other negative numbers keep the plain regression hint
    await Deno.writeTextFile(`${dir}/neg.csv`, "sentence,label\na fine film,-2\n");
    await assertRejects(
      () => readClassificationFile(`${dir}/neg.csv`),
      DataError,
      `neg.csv:2: label "-2" is not a class id (an integer ≥ 0); real-valued labels train a regressor`,
    );
  });
  // a ClassLabel column holds class ids: never a regression target (run_glue.py regresses on floats only)
  await assertRejects(
    () => readClassificationFile(SPAM, { regression: true }),
    DataError,
    `spam_snappy.parquet: column "label" is a ClassLabel ["ham","spam"] by the split's metadata: its values ` +
      `are class ids, not real values, so --regression (the regression option) does not apply`,
  );
});

Deno.test("class names that match the head's only ignoring case are matched, as run_glue.py does, and said once", async () => {
  // a ClassLabel split against a head that names its classes in capitals, in another order (MNLI's case)
  const { result: spam, err } = await withWarnings((onWarning) =>
    readClassificationFile(SPAM, { labels: ["SPAM", "HAM"], labelsFrom: "config.json's id2label", onWarning })
  );
  assertEquals(spam.examples.map((e) => e.label), SPAM_LABELS.map((l) => 1 - l));
  assertEquals(spam.labelNames, ["SPAM", "HAM"]);
  assertEquals(err.length, 1, err.join("\n"));
  assert(
    err[0].includes(
      `spam_snappy.parquet:1: label "ham" is taken as "HAM" of the labels ["SPAM","HAM"] ` +
        `(config.json's id2label), ignoring case as run_glue.py does`,
    ),
    err[0],
  );
  await withTempDir("hartley_label_case_", async (dir) => {
    await Deno.writeTextFile(`${dir}/d.csv`, "text,label\na,Positive\nb,neg\nc,positive\n");
    // an exact match first: "neg" is "neg", not "NEG"
    const { result: mixed, err: said } = await withWarnings((onWarning) =>
      readClassificationFile(`${dir}/d.csv`, { labels: ["neg", "POSITIVE"], onWarning })
    );
    assertEquals(mixed.examples.map((e) => e.label), [1, 0, 1]);
    assertEquals(said.length, 1, said.join("\n"));
    // names that only case tells apart are matched exactly
    await assertRejects(
      () => readClassificationFile(`${dir}/d.csv`, { labels: ["positive", "POSITIVE"] }),
      DataError,
      `d.csv:2: label "Positive" is not one of the labels ["positive","POSITIVE"]`,
    );
  });
});

Deno.test("multi-hot label vectors are refused, pointing to id lists; id lists of 0s and 1s are not", async () => {
  await withTempDir("hartley_multi_hot_", async (dir) => {
    // as HF's multi-label tutorials build them, exported with to_json: floats, one entry per class
    await Deno.writeTextFile(
      `${dir}/hot.jsonl`,
      '{"text":"joy and love","labels":[0.0,1.0,0.0,0.0,1.0]}\n{"text":"sad","labels":[0.0,0.0,0.0,1.0,0.0]}\n',
    );
    await assertRejects(
      () => readClassificationFile(`${dir}/hot.jsonl`),
      DataError,
      `hot.jsonl:1: the labels in field "labels" are multi-hot vectors (every list has 5 entries, each 0 or 1), ` +
        `but a label list names its classes by id, as go_emotions' labels do: [1,4] for [0,1,0,0,1]`,
    );
    // id lists of a 2-class set, and id lists that happen to hold 0s and 1s only
    const lists = [[[0, 1], [1], [], [1, 0]], [[0, 1], [1, 0]], [[0, 1, 2], [2, 1, 0]], [[0, 1], [0, 1, 2]]];
    for (const labels of lists) {
      const rows = labels.map((l, i) => JSON.stringify({ text: `t${i}`, labels: l })).join("\n");
      await Deno.writeTextFile(`${dir}/ids.jsonl`, rows + "\n");
      const data = await readClassificationFile(`${dir}/ids.jsonl`);
      assertEquals(data.examples.map((e) => e.labels), labels.map((l) => [...new Set(l)]));
    }
  });
});

Deno.test("TSV: a field pandas quotes across lines is one field where the record then has the header's width", async () => {
  // pandas' to_csv(sep="\t") quotes a field holding a line break
  assertEquals(
    parseCsv('label\ttext\npositive\t"a fine film\nsecond\tpart"\nnegative\tdull\n', "p.tsv", "\t", "line"),
    [
      { line: 1, fields: ["label", "text"] },
      { line: 2, fields: ["positive", "a fine film\nsecond\tpart"] },
      { line: 4, fields: ["negative", "dull"] },
    ],
  );
  assertEquals(parseCsv('text\tlabel\n"first line\nsecond ""line"""\t1\nplain\t0', "q.tsv", "\t", "line"), [
    { line: 1, fields: ["text", "label"] },
    { line: 2, fields: ['first line\nsecond "line"', "1"] },
    { line: 4, fields: ["plain", "0"] },
  ]);
  // a record of another width: the lines stay apart, and the quote left open is told
  const apart = parseCsv('a\tb\n1\t"x\n2\ty"\t3\n', "r.tsv", "\t", "line");
  assertEquals(apart, [
    { line: 1, fields: ["a", "b"] },
    { line: 2, fields: ["1", '"x'], unclosedQuote: 2 },
    { line: 3, fields: ["2", 'y"', "3"] },
  ]);
  await withTempDir("hartley_tsv_lines_", async (dir) => {
    await Deno.writeTextFile(
      `${dir}/film.tsv`,
      'label\ttext\npositive\t"a fine film\nsecond\tpart"\nnegative\tdull\n',
    );
    const film = await readClassificationFile(`${dir}/film.tsv`);
    assertEquals(film.labelNames, ["positive", "negative"]);
    assertEquals(film.examples.map((e) => e.text), ["a fine film\nsecond\tpart", "dull"]);
    await Deno.writeTextFile(
      `${dir}/split.tsv`,
      'label\ttext\n1\t"first line\nsecond line" and more\n0\tplain\n',
    );
    await assertRejects(
      () => readClassificationFile(`${dir}/split.tsv`),
      DataError,
      `split.tsv:3: 1 fields, but the header has 2 (label, text); line 2 opens a quote that does not close on ` +
        `it, read as a character (a field quoted across lines must close right before a tab or a line end, in ` +
        `a record of 2 fields)`,
    );
  });
});

Deno.test("causal LM records that end in a line break (wikitext's) are concatenated as run_clm.py does", async () => {
  // wikitext's Parquet rows: a line each, its line break kept, and empty rows for blank lines
  const records = [
    "",
    " = Valkyria Chronicles III = \n",
    "",
    " Senjō no Valkyria 3 is a game . \n",
    "",
    " It was released . \n",
  ];
  assertEquals(joinDocuments(records), records.join(""));
  const gpt2 = await loadTokenizer("tests/fixtures/models/gpt2/tokenizer.json"); // adds no special tokens
  const tokens = Array.from(await documentTokens(records, gpt2));
  assertEquals(tokens, gpt2.encode(records.join("")));
  assertEquals(tokens, records.flatMap((r) => gpt2.encode(r)), "run_clm.py's tokens, record by record");
  // documents without a final line break stay apart by a blank line
  assertEquals(joinDocuments(["a", "", "b\n", "c"]), "a\n\n\n\nb\nc");
  await withTempDir("hartley_wikitext_", async (dir) => {
    const rows = records.map((text) => JSON.stringify({ text })).join("\n");
    await Deno.writeTextFile(`${dir}/wiki.jsonl`, rows + "\n");
    assertEquals(await readTextFile(`${dir}/wiki.jsonl`), records.join(""));
  });
});

Deno.test("LargeList(ClassLabel) metadata names a label list's ids, as Sequence and List do", async () => {
  await withTempDir("hartley_large_list_", async (dir) => {
    // tags.parquet's labels are Sequence(ClassLabel); the same footer, the feature retyped (same byte length)
    const bytes = await Deno.readFile(`${DATA}tags.parquet`);
    const [from, to] = ['"_type": "Sequence"', '"_type":"LargeList"'].map((t) => new TextEncoder().encode(t));
    let patches = 0;
    for (let i = bytes.indexOf(from[0]); i >= 0; i = bytes.indexOf(from[0], i + 1)) {
      if (!from.every((b, k) => bytes[i + k] === b)) continue;
      bytes.set(to, i);
      patches++;
    }
    assertEquals(patches, 1);
    await Deno.writeFile(`${dir}/tags.parquet`, bytes);
    const data = await readClassificationFile(`${dir}/tags.parquet`);
    assertEquals(data.labelNames, ["color", "fruit", "weather"]);
    assertEquals(data.examples.map((e) => e.labels), [[0, 1], [], [2, 1]]);
  });
});

Deno.test("eval: a head without class names gets no 'order of appearance' note for ClassLabel data or image folders", async () => {
  const bert = ["eval", "--model", "tests/fixtures/models/bert", "--seq-len", "12"];
  const parquet = await runCli([...bert, "--data", SPAM]);
  assertEquals(parquet.code, 0, parquet.err);
  assert(!parquet.err.includes("names no classes"), parquet.err);
  const folder = await runCli([
    "eval",
    "--model",
    "tests/fixtures/models/vit",
    "--data",
    "tests/fixtures/images/folder",
  ]);
  assertEquals(folder.code, 0, folder.err);
  assert(!folder.err.includes("names no classes"), folder.err);
  await withTempDir("hartley_eval_note_", async (dir) => {
    await Deno.writeTextFile(`${dir}/d.csv`, "text,label\nstone rock,hard\napple berry,fruit\n");
    const csv = await runCli([...bert, "--data", `${dir}/d.csv`]);
    assertEquals(csv.code, 0, csv.err);
    assert(
      csv.err.includes(
        `the labels of ${dir}/d.csv count in their order of appearance there (hard = 0, fruit = 1)`,
      ),
      csv.err,
    );
  });
});
