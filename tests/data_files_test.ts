/**
 * Data files read as transformers reads them: integer labels looked up by name first, an eval file of the training file's
 * kind of labels, strict UTF-8, decimal labels in text, an empty eval split that flags need, JSON
 * arrays, the fields and label sources that errors name, and field flags that cannot apply.
 */
import { join } from "node:path";
import { loadHfConfig } from "../lib/io/hf_config.ts";
import { loadTokenizer } from "../lib/io/tokenizer.ts";
import { ArgsError } from "../lib/cli/args.ts";
import { type DataSpec, loadSplits } from "../lib/cli/setup.ts";
import { LabelMap } from "../lib/train/labels.ts";
import {
  readClassificationFile,
  readTextDocuments,
  readTexts,
  recordFieldNames,
} from "../lib/train/readers.ts";
import { DataError } from "../lib/train/data_error.ts";
import { assertEquals, assertRejects } from "./assert.ts";
import { fixtureModel } from "./model_helpers.ts";
import { withTempDir } from "./train_helpers.ts";

const BERT = fixtureModel("bert"), GPT2 = fixtureModel("gpt2");
const TINY = new URL("./fixtures/data/tiny.txt", import.meta.url).pathname;
const jsonl = (rows: object[]) => rows.map((r) => JSON.stringify(r)).join("\n") + "\n";
const labelsOf = async (path: string, labels?: string[]) =>
  (await readClassificationFile(path, { labels })).examples.map((e) => e.label);

/** loadSplits on a fixture model; `headLabels` keeps its head of that many classes. */
async function splits(spec: Partial<DataSpec> & { data: string }, model = BERT, headLabels?: number) {
  const config = await loadHfConfig(model);
  if (headLabels !== undefined) config.labels = ["negative", "positive"];
  const tokenizer = await loadTokenizer(join(model, "tokenizer.json"));
  const full: DataSpec = { task: "seq-cls", evalFraction: 0, seqLen: 16, batchSize: 2, seed: 0, ...spec };
  return await loadSplits(full, config, tokenizer, model, headLabels);
}

Deno.test('labels: an integer is looked up among the given names by its text first (1 and "1" are one class)', async () => {
  await withTempDir("hartley_label_names_", async (dir) => {
    const stars = ["1", "2", "3", "4", "5"]; // run_classification's id2label for labels 1..5
    await Deno.writeTextFile(`${dir}/num.jsonl`, jsonl([{ text: "a", label: 1 }, { text: "b", label: 4 }]));
    await Deno.writeTextFile(
      `${dir}/str.jsonl`,
      jsonl([{ text: "a", label: "1" }, { text: "b", label: "4" }]),
    );
    await Deno.writeTextFile(`${dir}/num.csv`, "text,label\na,1\nb,4.0\n");
    for (const name of ["num.jsonl", "str.jsonl", "num.csv"]) {
      assertEquals(await labelsOf(`${dir}/${name}`, stars), [0, 3], name);
    }
    // names that are numbers other than their ids: an integer no name matches is not taken as an id
    await Deno.writeTextFile(`${dir}/zero.jsonl`, jsonl([{ text: "a", label: 1 }, { text: "b", label: 0 }]));
    await assertRejects(
      () => labelsOf(`${dir}/zero.jsonl`, ["1", "2"]),
      DataError,
      `zero.jsonl:2: label 0 is not one of the labels ["1","2"]; these names are numbers, so integer labels ` +
        `are looked up by name, not taken as ids`,
    );
    // names that are their own ids, or not numbers: integers stay ids (the documented behaviour)
    await Deno.writeTextFile(`${dir}/ids.jsonl`, jsonl([{ text: "a", label: 1 }, { text: "b", label: 0 }]));
    assertEquals(await labelsOf(`${dir}/ids.jsonl`, ["0", "1"]), [1, 0]);
    assertEquals(await labelsOf(`${dir}/ids.jsonl`, ["neg", "pos"]), [1, 0]);
    // a Parquet ClassLabel column's integers are its ids, never looked up among its names
    assertEquals(new LabelMap({ classNames: ["1", "2", "3"] }).id(1, "x"), 1);
  });
});

Deno.test("train --eval-data: an eval file of names beside integer training labels is refused, naming both files", async () => {
  await withTempDir("hartley_eval_kind_", async (dir) => {
    const train = `${dir}/tr_int.jsonl`, named = `${dir}/ev_names.jsonl`;
    await Deno.writeTextFile(train, jsonl([0, 1, 0, 1].map((label, i) => ({ text: `t${i}`, label }))));
    await Deno.writeTextFile(named, jsonl(["pos", "neg"].map((label, i) => ({ text: `e${i}`, label }))));
    await assertRejects(
      () => splits({ data: train, evalData: named }),
      DataError,
      `${named}:1: label "pos" is a name, but the labels of ${train} are integer ids`,
    );
    // names beside names: those of the training file, named as theirs
    const names = `${dir}/tr_names.jsonl`;
    await Deno.writeTextFile(names, jsonl(["neg", "pos"].map((label, i) => ({ text: `t${i}`, label }))));
    await Deno.writeTextFile(`${dir}/odd.jsonl`, jsonl([{ text: "x", label: "meh" }]));
    await assertRejects(
      () => splits({ data: names, evalData: `${dir}/odd.jsonl` }),
      DataError,
      `odd.jsonl:1: label "meh" is not one of the labels ["neg","pos"] (those of ${names})`,
    );
    // tags too
    const tags = `${dir}/tags.jsonl`, tagNames = `${dir}/tag_names.jsonl`;
    await Deno.writeTextFile(tags, jsonl([{ tokens: ["a", "b"], ner_tags: [0, 1] }]));
    await Deno.writeTextFile(tagNames, jsonl([{ tokens: ["a"], ner_tags: ["O"] }]));
    await assertRejects(
      () => splits({ task: "token-cls", data: tags, evalData: tagNames }),
      DataError,
      `${tagNames}:1: label "O" is a name, but the labels of ${tags} are integer ids`,
    );
  });
});

Deno.test("data files are decoded as strict UTF-8: the first bad byte by line and offset; UTF-16 by its BOM", async () => {
  await withTempDir("hartley_utf8_", async (dir) => {
    const write = (name: string, bytes: number[] | string) =>
      Deno.writeFile(
        `${dir}/${name}`,
        typeof bytes === "string" ? new TextEncoder().encode(bytes) : Uint8Array.from(bytes),
      );
    const ascii = (s: string) => [...s].map((c) => c.charCodeAt(0));
    await write("latin1.csv", [...ascii("text,label\ncaf"), 0xe9, ...ascii(",pos\n")]);
    await assertRejects(
      () => readClassificationFile(`${dir}/latin1.csv`),
      DataError,
      "latin1.csv:2: not UTF-8 text (byte 0xE9 at offset 14); convert the file to UTF-8",
    );
    // a 3-byte sequence cut short on line 3, after a valid 4-byte one: the offset of its first byte
    const emoji = [...new TextEncoder().encode("😀")];
    await write("cut.jsonl", [
      ...ascii('{"text":"a","label":0}\n\n{"text":"'),
      ...emoji,
      0xe2,
      0x82,
      ...ascii('x","label":1}\n'),
    ]);
    await assertRejects(
      () => readClassificationFile(`${dir}/cut.jsonl`),
      DataError,
      "cut.jsonl:3: not UTF-8 text (byte 0xE2 at offset 37)",
    );
    // the first line read alone (the task is chosen from it) gives the same error
    await write("first.jsonl", [...ascii('{"text":"caf'), 0xe9, ...ascii('","label":0}\n')]);
    await assertRejects(
      () => recordFieldNames(`${dir}/first.jsonl`),
      DataError,
      "first.jsonl:1: not UTF-8 text",
    );
    await write("l1.txt", [...ascii("caf"), 0xe9, ...ascii(" au lait est tr"), 0xe8, ...ascii("s bon.\n")]);
    await assertRejects(
      () => readTextDocuments(`${dir}/l1.txt`),
      DataError,
      "l1.txt:1: not UTF-8 text (byte 0xE9",
    );
    await assertRejects(() => readTexts(`${dir}/l1.txt`), DataError, "l1.txt:1: not UTF-8 text (byte 0xE9");
    await write("le.csv", [0xff, 0xfe, ...ascii("text,label\n").flatMap((b) => [b, 0])]);
    await write("be.csv", [0xfe, 0xff, ...ascii("text,label\n").flatMap((b) => [0, b])]);
    for (const [name, endian] of [["le.csv", "little"], ["be.csv", "big"]]) {
      await assertRejects(
        () => readClassificationFile(`${dir}/${name}`),
        DataError,
        `${name}: UTF-16 (${endian}-endian) text, by its byte-order mark; convert the file to UTF-8`,
      );
    }
    // UTF-16 without a byte-order mark is valid UTF-8, but mostly NULs
    await write("nobom.txt", ascii("plain text ".repeat(20)).flatMap((b) => [b, 0]));
    await assertRejects(
      () => readTextDocuments(`${dir}/nobom.txt`),
      DataError,
      "nobom.txt: not UTF-8 text (a binary file, or UTF-16?)",
    );
    // a UTF-8 BOM is dropped, and U+FFFD written as UTF-8 is a character like any other
    await write("bom.csv", "\ufefftext,label\nna\u00efve \ufffd,pos\n");
    assertEquals((await readClassificationFile(`${dir}/bom.csv`)).examples[0].text, "na\u00efve \ufffd");
  });
});

Deno.test("decimal labels written as text are real values, as JSON numbers are: refused with the --regression hint", async () => {
  await withTempDir("hartley_decimal_labels_", async (dir) => {
    await Deno.writeTextFile(`${dir}/fl.csv`, "text,label\na b,0.25\nc d,0.75\n");
    await Deno.writeTextFile(`${dir}/neg.tsv`, "text\tlabel\na b\t-1\nc d\t1\n");
    const hint = "is not a class id (an integer ≥ 0); real-valued labels train a regressor: --regression";
    await assertRejects(
      () => readClassificationFile(`${dir}/fl.csv`),
      DataError,
      `fl.csv:2: label "0.25" ${hint}`,
    );
    await assertRejects(
      () => readClassificationFile(`${dir}/neg.tsv`),
      DataError,
      `neg.tsv:2: label "-1" is not a class id: in Hugging Face datasets -1 means "no label"`,
    );
    const scores = await readClassificationFile(`${dir}/fl.csv`, { regression: true });
    assertEquals(scores.examples.map((e) => e.label), [0.25, 0.75]);
    // a mix of ids and names names no library option the CLI lacks
    await Deno.writeTextFile(`${dir}/mixed.csv`, "text,label\na,1\nb,spam\n");
    const e = await assertRejects(() => readClassificationFile(`${dir}/mixed.csv`), DataError);
    assertEquals(
      e.message,
      `${dir}/mixed.csv:3: the labels mix integer ids and names ("spam"); give one kind`,
    );
  });
});

Deno.test("an eval split that comes out empty is refused when --eval-every, --save-best or --early-stop need it", async () => {
  await withTempDir("hartley_empty_eval_", async (dir) => {
    const four = `${dir}/four.csv`;
    await Deno.writeTextFile(four, "text,label\na b,pos\nc d,neg\ne f,pos\ng h,neg\n");
    const flags = ["--eval-every", "--save-best", "--early-stop"];
    const e = await assertRejects(() => splits({ data: four, evalFraction: 0.1, evalFor: flags }), ArgsError);
    assertEquals(
      e.message,
      `--eval-every, --save-best and --early-stop need eval data, but holding out 0.1 of the 4 rows of ` +
        `--data ${four} leaves none: raise --eval-fraction or give --eval-data`,
    );
    // without those flags the run trains without evaluating, as before
    assertEquals((await splits({ data: four, evalFraction: 0.1 })).eval, null);
    // a held-out text too short for one window
    const causal = { task: "causal-lm" as const, data: TINY, evalFraction: 0.1, seqLen: 32 };
    await assertRejects(
      () => splits({ ...causal, evalFor: ["--eval-every"] }, GPT2),
      ArgsError,
      `--eval-every needs eval data, but the held-out 0.1 of --data ${TINY} makes 7 tokens, no window of ` +
        `--seq-len 32 + 1: raise --eval-fraction or lower --seq-len`,
    );
    const quiet = await splits(causal, GPT2);
    assertEquals([quiet.eval, quiet.summary.endsWith("(no evaluation: too few for one window of 32 + 1)")], [
      null,
      true,
    ]);
  });
});

Deno.test("a .json file holding one JSON array of objects is read as its records, each by the line it starts on", async () => {
  await withTempDir("hartley_json_array_", async (dir) => {
    const path = `${dir}/arr.json`;
    await Deno.writeTextFile(
      path,
      '[\n  {"text": "a [b], {c}", "label": 1},\n\n  {"text": "d \\"]\\"",\n "label": 0}\n]\n',
    );
    const data = await readClassificationFile(path);
    assertEquals(data.examples.map((e) => [e.text, e.label, e.source]), [
      ["a [b], {c}", 1, `${path}:2`],
      ['d "]"', 0, `${path}:4`],
    ]);
    assertEquals(await recordFieldNames(path), ["text", "label"]);
    assertEquals(await readTexts(path), [{ text: "a [b], {c}" }, { text: 'd "]"' }]);
    await Deno.writeTextFile(`${dir}/bad.json`, '[{"text": "a", "label": 1},\n 7]');
    await assertRejects(
      () => readClassificationFile(`${dir}/bad.json`),
      DataError,
      "bad.json:2: expected a JSON object in the array, got a number",
    );
    await Deno.writeTextFile(`${dir}/empty.json`, " []\n");
    await assertRejects(
      () => readClassificationFile(`${dir}/empty.json`),
      DataError,
      "empty.json: no examples",
    );
    await Deno.writeTextFile(`${dir}/cut.json`, '[{"text": "a", "label": 1},\n');
    await assertRejects(
      () => readClassificationFile(`${dir}/cut.json`),
      DataError,
      "cut.json: malformed JSON array (",
    );
  });
});

Deno.test("errors name the fields a record has, and where the labels a label must be one of come from", async () => {
  await withTempDir("hartley_error_context_", async (dir) => {
    await Deno.writeTextFile(`${dir}/m.csv`, "text,lbl\nhello,pos\n");
    await assertRejects(
      () => readClassificationFile(`${dir}/m.csv`, { labelField: "foo" }),
      DataError,
      'm.csv:2: missing field "foo"; the fields are text, lbl',
    );
    await assertRejects(
      () => readClassificationFile(`${dir}/m.csv`, { textField: "nope", labelField: "lbl" }),
      DataError,
      'm.csv:2: missing field "nope"; the fields are text, lbl',
    );
    await Deno.writeTextFile(`${dir}/small.csv`, "text,label\nhello,neg\n");
    await assertRejects(
      () => splits({ data: `${dir}/small.csv` }, BERT, 2),
      DataError,
      `small.csv:2: label "neg" is not one of the labels ["negative","positive"] (the model head's classes, ` +
        `config.json's id2label)`,
    );
  });
});

Deno.test("field flags data cannot use are refused: plain text, the built-in sets, instruction records", async () => {
  await withTempDir("hartley_field_flags_", async (dir) => {
    await assertRejects(
      () => readTextDocuments(TINY, { textField: "body" }),
      DataError,
      "tiny.txt: plain text is one document, without fields: --text-field (textField)",
    );
    await assertRejects(
      () => readTexts(TINY, { textField: "body" }),
      DataError,
      "tiny.txt: a .txt file is one text per line, without fields: --text-field and --pair-field",
    );
    await assertRejects(
      () => splits({ task: "causal-lm", data: "brown", textField: "body" }, GPT2),
      ArgsError,
      "--text-field does not apply to --data brown",
    );
    await assertRejects(
      () => splits({ data: "spamassassin", labelField: "y", textField: "x" }),
      ArgsError,
      "--text-field, --label-field do not apply to --data spamassassin",
    );
    const sft = `${dir}/sft.jsonl`;
    await Deno.writeTextFile(sft, jsonl([{ prompt: "Q", completion: "A" }]));
    await assertRejects(
      () => splits({ task: "causal-lm", data: sft, textField: "prompt" }, GPT2),
      ArgsError,
      "--text-field does not apply to instruction records (prompt/completion or messages)",
    );
  });
});
