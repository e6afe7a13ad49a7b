/**
 * The data path at the sizes users bring (a text file of hundreds of megabytes, hundreds of
 * thousands of tagged sentences or rows, image folders of tens of thousands of files), checked by
 * structure rather than by time: what the tokenizer library is given at once, how often it is
 * called, what is read of a file, and the progress the long phases report.
 */
import { join } from "node:path";
import { loadHfConfig, type VitConfig } from "../lib/io/hf_config.ts";
import { parseImageProcessorConfig } from "../lib/io/image.ts";
import { loadTokenizer, type Tokenizer } from "../lib/io/tokenizer.ts";
import { BatchIterator } from "../lib/train/batches.ts";
import { ClassificationDataset, documentTokens } from "../lib/train/data.ts";
import { DataError } from "../lib/train/data_error.ts";
import { readImageData, readImages } from "../lib/train/image_data.ts";
import { recordFieldNames } from "../lib/train/readers.ts";
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { withTempDir } from "./train_helpers.ts";

const MODELS = new URL("./fixtures/models/", import.meta.url).pathname;
const IMAGES = new URL("./fixtures/images/", import.meta.url).pathname;

/** `tok` with its `encode` calls recorded: the length of each text it was given. */
function recording(tok: Tokenizer): { tok: Tokenizer; lengths: number[] } {
  const lengths: number[] = [], encode = tok.encode.bind(tok);
  tok.encode = (text, opts) => {
    lengths.push(text.length);
    return encode(text, opts);
  };
  return { tok, lengths };
}

Deno.test("documentTokens: a long text for a tokenizer without special tokens is encoded a megabyte at a time, to the ids of the whole", async () => {
  const gpt2 = await loadTokenizer(join(MODELS, "gpt2/tokenizer.json")); // adds no special tokens
  const line = "The jury said it was over, and the city went home.\n";
  const text = line.repeat(Math.ceil(1.1 * 2 ** 20 / line.length));
  const whole = gpt2.encode(text);
  const { tok, lengths } = recording(gpt2);
  const ids = await documentTokens([text], tok, { lines: true });
  assertEquals(ids.length, whole.length);
  assert(ids.every((id, i) => id === whole[i]), "the ids of the text encoded whole");
  // the library holds every piece of what it encodes at once: gigabytes for a text of 100 MB
  const longest = Math.max(...lengths);
  assert(longest <= 2 ** 20 + line.length, `encode was given ${longest} characters at once`);
});

Deno.test("documentTokens: CRLF lines and blank-line paragraphs are encoded a megabyte at a time too, to the ids of the whole", async () => {
  const gpt2 = await loadTokenizer(join(MODELS, "gpt2/tokenizer.json"));
  for (
    const paragraph of [
      "The jury said it was over, and the city went home.\r\n",
      "The jury said it was over, and the city went home.\n\n",
      "The jury said it was over.\r\n\r\n  And the city went home.\r\n\r\n",
    ]
  ) {
    const text = paragraph.repeat(Math.ceil(1.1 * 2 ** 20 / paragraph.length));
    const whole = gpt2.encode(text);
    const { tok, lengths } = recording(await loadTokenizer(join(MODELS, "gpt2/tokenizer.json")));
    const ids = await documentTokens([text], tok, { lines: true });
    assertEquals(ids.length, whole.length);
    assert(
      ids.every((id, i) => id === whole[i]),
      `${JSON.stringify(paragraph)}: the ids of the text encoded whole`,
    );
    const longest = Math.max(...lengths);
    assert(
      longest <= 2 ** 20 + 2 * paragraph.length,
      `${JSON.stringify(paragraph)}: ${longest} characters at once`,
    );
  }
});

Deno.test("documentTokens: a cut that does not hold is passed over for the next line break", async () => {
  // a made-up tokenizer whose one id per text counts its "#"s: a cut before a line of "#" does not hold
  const lengths: number[] = [];
  const tok = {
    specialAround: () => [[], []],
    encode: (text: string) => (lengths.push(text.length), text.includes("#") ? [text.split("#").length] : []),
  } as unknown as Tokenizer;
  // the first line break a megabyte in ends the first of them
  const text = "word\n".repeat(Math.floor(2 ** 20 / 5)) + "###\n".repeat(3) + "word\n".repeat(2 ** 18);
  assertEquals(Array.from(await documentTokens([text], tok)), [10]);
  const longest = Math.max(...lengths);
  assert(longest < 2 ** 20 + 100, `${longest} characters at once`);
});

Deno.test("documentTokens: where a cut changes the ids (a tokenizer that treats a text's start apart), the text is encoded whole", async () => {
  // a made-up tokenizer whose one id depends on the whole text, as a prefix space makes the first token differ
  const lengths: number[] = [];
  const tok = {
    specialAround: () => [[], []],
    encode: (text: string) => (lengths.push(text.length), [text.length % 1000]),
  } as unknown as Tokenizer;
  const text = "word\n".repeat(2 ** 18 + 1);
  assertEquals(Array.from(await documentTokens([text], tok)), [text.length % 1000]);
  assertEquals(Math.max(...lengths), text.length);
});

Deno.test("documentTokens: onProgress says the characters tokenized, up to all of them", async () => {
  const bert = await loadTokenizer(join(MODELS, "bert/tokenizer.json")); // a record per line
  const text = "the jury said it was over\n".repeat(45_000); // more than a megabyte: 2 chunks of one piece
  for (const tok of [bert, await loadTokenizer(join(MODELS, "gpt2/tokenizer.json"))]) {
    const seen: [number, number][] = [];
    await documentTokens([text], tok, { lines: true, onProgress: (done, total) => seen.push([done, total]) });
    assert(seen.length >= 2, `${seen.length} calls`);
    assert(seen.every(([done], i) => i === 0 || done > seen[i - 1][0]), "done grows");
    assertEquals(seen[seen.length - 1], [text.length, text.length]);
  }
});

Deno.test("recordFieldNames: a CSV or TSV file's header, without reading the rows after it", async () => {
  await withTempDir("hartley-header-", async (dir) => {
    // a later row the whole file's read refuses: the header alone is read
    await Deno.writeTextFile(join(dir, "a.csv"), `sentence1,sentence2,label\na,b,0\n"x,1\n`);
    assertEquals(await recordFieldNames(join(dir, "a.csv")), ["sentence1", "sentence2", "label"]);
    await Deno.writeTextFile(join(dir, "a.tsv"), `\uFEFF\nid\tquestion\tlabel\n1\tb\n`);
    assertEquals(await recordFieldNames(join(dir, "a.tsv")), ["id", "question", "label"]);
    // names that are integers come first, as a record's keys do
    await Deno.writeTextFile(join(dir, "n.csv"), `text,2,1\nx,y,z\n`);
    assertEquals(await recordFieldNames(join(dir, "n.csv")), ["1", "2", "text"]);
    // a quoted name across lines, read with the whole file
    await Deno.writeTextFile(join(dir, "q.csv"), `"te\nxt",label\nx,0\n`);
    assertEquals(await recordFieldNames(join(dir, "q.csv")), ["te\nxt", "label"]);
    await Deno.writeTextFile(join(dir, "twice.csv"), `text,text\nx,y\n`);
    await assertRejects(
      () => recordFieldNames(join(dir, "twice.csv")),
      DataError,
      'names field "text" twice',
    );
    await Deno.writeTextFile(join(dir, "empty.csv"), "\n\n");
    await assertRejects(() => recordFieldNames(join(dir, "empty.csv")), DataError, "the file is empty");
  });
});

Deno.test("recordFieldNames: a folder named as a data file is refused by name", async () => {
  await withTempDir("hartley-header-", async (dir) => {
    for (const name of ["d.jsonl", "d.csv", "d.json"]) {
      await Deno.mkdir(join(dir, name));
      await assertRejects(
        () => recordFieldNames(join(dir, name)),
        DataError,
        `${name}: is a directory, not a data file`,
      );
    }
  });
});

Deno.test("recordFieldNames: a JSON array written on one line is split into lines once, not again at each chunk read", async () => {
  await withTempDir("hartley-one-line-", async (dir) => {
    const path = join(dir, "records.json"); // as json.dump(records, f) writes them: no line break
    const record = JSON.stringify({ text: "the jury said it was over", label: 1 });
    await Deno.writeTextFile(path, `[${Array(100_000).fill(record).join(", ")}]`); // 5 MB
    // splitting the text read so far at each chunk takes time quadratic in the line's length
    const split = String.prototype.split;
    let calls = 0;
    String.prototype.split = function (this: string, ...args: Parameters<typeof split>) {
      if (this.length > 2 ** 20) calls++;
      return split.apply(this, args);
    } as typeof split;
    try {
      assertEquals(await recordFieldNames(path), ["text", "label"]);
    } finally {
      String.prototype.split = split;
    }
    assert(calls <= 2, `the text was split ${calls} times`);
  });
});

Deno.test("encodeWords: each different word is encoded once, to the ids it has alone", async () => {
  for (const name of ["bert", "gpt2"]) {
    const fresh = await loadTokenizer(join(MODELS, `${name}/tokenizer.json`));
    const tok = await loadTokenizer(join(MODELS, `${name}/tokenizer.json`));
    tok.specialAround(); // found once, before the count starts
    const { lengths } = recording(tok);
    const words = ["The", "jury", "said", "the", "jury", "The", "jury", ""];
    const first = tok.encodeWords(words), again = tok.encodeWords(words);
    assertEquals(again, first);
    assertEquals(first, fresh.encodeWords(words));
    assertEquals(lengths.length, 5, `${name}: encode calls for ${new Set(words).size} different words`);
  }
});

Deno.test("BatchIterator: groupByLength says how many rows it has measured (tokenized) so far", async () => {
  const tok = await loadTokenizer(join(MODELS, "bert/tokenizer.json"));
  const examples = Array.from(
    { length: 2500 },
    (_, i) => ({ text: "the jury ".repeat(1 + i % 7), label: 0 }),
  );
  const seen: number[] = [];
  const it = new BatchIterator(new ClassificationDataset(examples, tok, { maxLength: 32 }), {
    batchSize: 8,
    groupByLength: true,
    onProgress: (done, total) => {
      assertEquals(total, 2500);
      seen.push(done);
    },
  });
  it.order(0);
  it.order(1);
  assertEquals(seen, [1000, 2000, 2500]);
});

Deno.test("readImageData, readImages: onProgress after each image decoded, of all there are", async () => {
  const vit = await loadHfConfig(join(MODELS, "vit")) as VitConfig;
  const processor = parseImageProcessorConfig(null, vit, "defaults");
  for (const path of [`${IMAGES}folder`, `${IMAGES}images.parquet`]) {
    const seen: [number, number][] = [];
    const data = await readImageData(path, processor, { onProgress: (d, t) => seen.push([d, t]) });
    const n = data.examples.length;
    assertEquals(seen, Array.from({ length: n }, (_, i) => [i + 1, n]), path);
    const unlabelled: [number, number][] = [];
    await readImages(path, processor, { onProgress: (d, t) => unlabelled.push([d, t]) });
    assertEquals(unlabelled, seen, path);
  }
});
