/**
 * A plain-text file tokenized a chunk at a time (textFileTokens, readTextChunks): the ids
 * documentTokens gives for the whole text, for each kind of fixture tokenizer, with characters and
 * line breaks cut by the chunks' ends; the same refusals; and no more text held at once than a
 * chunk (a piece of about a megabyte, for a tokenizer that takes the text as one).
 */
import { join } from "node:path";
import { loadTokenizer, type Tokenizer } from "../lib/io/tokenizer.ts";
import { documentTokens, POOLED_CHARS, textFileTokens } from "../lib/train/data.ts";
import { liveTokenizingWorkers } from "../lib/train/tokenizing_pool.ts";
import { DataError } from "../lib/train/data_error.ts";
import { readTextChunks, readTextDocuments } from "../lib/train/readers.ts";
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { withTempDir } from "./temp_dir.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;
const load = (path: string) => loadTokenizer(join(FIXTURES, path));

/** The fixture tokenizers, by what they add and how they split a text. */
const TOKENIZERS = {
  gpt2: "models/gpt2/tokenizer.json", // byte-level BPE, no special tokens
  bytelevel: "tokenizers/bytelevel_bpe.json",
  wordpiece: "tokenizers/wordpiece.json", // BERT's
  bert: "models/bert/tokenizer.json",
  roberta: "tokenizers/roberta_bpe.json", // <s> … </s>: a line at a time
  llama: "models/llama/tokenizer.json", // a prefix space: no cut holds, and long text is no one piece
};

/** `tok` with the length of each text its `encode` is given recorded. */
function recording(tok: Tokenizer): { tok: Tokenizer; lengths: number[] } {
  const lengths: number[] = [], encode = tok.encode.bind(tok);
  tok.encode = (text, opts) => (lengths.push(text.length), encode(text, opts));
  return { tok, lengths };
}

/** The ids of the text of `path` as the whole text gives them. */
async function wholeTokens(path: string, tok: Tokenizer): Promise<Int32Array> {
  return documentTokens(await readTextDocuments(path), tok, { lines: true });
}

/** Asserts that `path` read `chunkBytes` at a time gives the ids of its whole text. */
async function assertSameIds(path: string, tok: Tokenizer, chunkBytes: number, what: string): Promise<void> {
  const streamed = await textFileTokens(path, tok, { chunkBytes });
  const whole = await wholeTokens(path, tok);
  assertEquals(streamed.length, whole.length, `${what}: ids`);
  assert(streamed.every((id, i) => id === whole[i]), `${what}: the ids of the whole text`);
}

const SHORT_TEXTS = {
  "lines": "The jury said\n\nit was over\n",
  "multi-byte": "héllo wörld 😀 日本語 ok\nnaïve café 🎉🎉\n",
  "CRLF": "first line\r\nsecond line\r\n\r\nthird\r\n",
  "no trailing newline": "one\ntwo words",
  "blank lines only": "\n\n\n",
  "one character": "x",
  "a BOM": "\uFEFFafter the mark\n",
};

Deno.test("textFileTokens: short texts read a few bytes at a time give the ids of the whole text, for each tokenizer", async () => {
  await withTempDir("hartley-stream-", async (dir) => {
    for (const [name, file] of Object.entries(TOKENIZERS)) {
      const tok = await load(file);
      for (const [what, text] of Object.entries(SHORT_TEXTS)) {
        const path = join(dir, "a.txt");
        await Deno.writeTextFile(path, text);
        // 4, 5 and 7 bytes cut 2-, 3- and 4-byte characters and CRLFs every way
        for (const chunkBytes of [4, 5, 7, 1 << 20]) {
          await assertSameIds(path, tok, chunkBytes, `${name}, ${what}, ${chunkBytes} bytes a chunk`);
        }
      }
    }
  });
});

Deno.test("textFileTokens: a long text is encoded in the pieces of the whole text, none much longer than a megabyte", async () => {
  const gpt2 = await load(TOKENIZERS.gpt2);
  const lines = [
    "The jury said it was over, and the city went home.\n",
    "Ünïcode 😀 日本語 then\n",
    "  indented\n",
  ];
  const text = Array.from({ length: 2.2 * 2 ** 20 / 25 }, (_, i) => lines[i % 3]).join("") + "end";
  await withTempDir("hartley-stream-", async (dir) => {
    const path = join(dir, "long.txt");
    await Deno.writeTextFile(path, text);
    const { tok, lengths } = recording(gpt2);
    const progress: [number, number][] = [];
    const streamed = await textFileTokens(path, tok, {
      chunkBytes: 65_537,
      onProgress: (done, total) => progress.push([done, total]),
      workers: false, // the pieces encoded here, where `recording` sees them
    });
    // cutHolds encodes a few hundred characters at a seam; the pieces are a megabyte and a line
    const pieces = lengths.filter((n) => n > 1000);
    assertEquals(pieces.length, 3);
    assert(
      Math.max(...pieces) <= 2 ** 20 + 100,
      `encode was given ${Math.max(...pieces)} characters at once`,
    );
    const whole = await wholeTokens(path, gpt2);
    assertEquals(streamed.length, whole.length);
    assert(streamed.every((id, i) => id === whole[i]), "the ids of the whole text");
    const size = (await Deno.stat(path)).size;
    assert(progress.length >= 2 && progress.every(([done], i) => i === 0 || done > progress[i - 1][0]));
    assertEquals(progress[progress.length - 1], [size, size]);
  });
});

Deno.test("textFileTokens: CRLF and lone-CR lines and blank-line paragraphs are cut too, a megabyte a piece, to the ids of the whole text", async () => {
  const gpt2 = await load(TOKENIZERS.gpt2);
  const texts = {
    "CRLF": "The jury said it was over, and the city went home.\r\n",
    "paragraphs": "The jury said it was over, and the city went home.\n\n",
    "CRLF paragraphs": "The jury said it was over.\r\n\r\nAnd the city went home.\r\n\r\n",
    "indented paragraphs": "The jury said it was over.\n\n  And the city went home.\n",
    "lone CRs (old Mac files)": "The jury said it was over, and the city went home.\r",
  };
  await withTempDir("hartley-stream-", async (dir) => {
    for (const [what, paragraph] of Object.entries(texts)) {
      const text = paragraph.repeat(Math.ceil(1.2 * 2 ** 20 / paragraph.length)); // one cut, past a megabyte
      const path = join(dir, "a.txt");
      await Deno.writeTextFile(path, text);
      const { tok, lengths } = recording(await load(TOKENIZERS.gpt2));
      const streamed = await textFileTokens(path, tok, { chunkBytes: 4099 });
      const longest = Math.max(...lengths);
      assert(
        longest <= 2 ** 20 + 2 * paragraph.length,
        `${what}: encode was given ${longest} characters at once`,
      );
      const whole = gpt2.encode(text);
      assertEquals(streamed.length, whole.length, `${what}: ids`);
      assert(streamed.every((id, i) => id === whole[i]), `${what}: the ids of the whole text`);
    }
  });
});

Deno.test("readTextChunks: each chunk holds no more text than its bytes", async () => {
  await withTempDir("hartley-stream-", async (dir) => {
    const path = join(dir, "a.txt"), text = "ab😀\n日本\r\n".repeat(5000);
    await Deno.writeTextFile(path, text);
    const chunks: string[] = [];
    for await (const chunk of readTextChunks(path, 4096)) {
      assert(chunk.text.length <= chunk.bytes && chunk.bytes <= 4096, `${chunk.text.length} characters`);
      chunks.push(chunk.text);
    }
    assertEquals(chunks.join(""), text);
  });
});

Deno.test("textFileTokens: a tokenizer whose cuts do not hold (LLaMA's fixture) keeps the whole text's ids, and a file too large to read whole is refused", async () => {
  const llama = await load(TOKENIZERS.llama);
  const line = "The jury said it was over and the city went home.\n";
  await withTempDir("hartley-stream-", async (dir) => {
    // a megabyte and more: its cut does not hold; the whole text is no one piece: a line at a time
    const path = join(dir, "long.txt");
    await Deno.writeTextFile(path, line.repeat(Math.ceil(1.05 * 2 ** 20 / line.length)));
    await assertSameIds(path, llama, 1 << 16, "llama, a cut");
    await assertRejects(
      () => textFileTokens(path, llama, { wholeBytes: 1000 }),
      DataError,
      `${path}: `,
    ).then((e) => assert(/encodes otherwise.*split the file/.test(e.message), e.message));
    // text the library cannot take as one piece, larger than is read whole: a line at a time
    const short = join(dir, "short.txt");
    await Deno.writeTextFile(short, (line.repeat(20).replaceAll("\n", " ") + "\n").repeat(400));
    const { tok, lengths } = recording(llama);
    const streamed = await textFileTokens(short, tok, { wholeBytes: 1000, chunkBytes: 4099 });
    const calls = lengths.slice(); // tok is llama, recording
    assertEquals(Array.from(streamed), Array.from(await wholeTokens(short, llama)));
    assertEquals(calls.length, 401);
    assert(calls.slice(1).every((n) => n === 20 * line.length + 1), "a line at a time after the one try");
  });
});

Deno.test("textFileTokens: the refusals of the whole text's reader, bad bytes at their offsets", async () => {
  const gpt2 = await load(TOKENIZERS.gpt2), roberta = await load(TOKENIZERS.roberta);
  const enc = new TextEncoder();
  const files: Record<string, Uint8Array> = {
    "empty": new Uint8Array(0),
    "a BOM alone": enc.encode("\uFEFF"),
    "a bad byte": Uint8Array.from([...enc.encode("ab\ncd\n"), 0xff, ...enc.encode("ef")]),
    "a bad byte at a chunk's start": Uint8Array.from([...enc.encode("abcd\n"), 0x80, 0x41]),
    "a character cut short across chunks": Uint8Array.from([...enc.encode("abc\n"), 0xe6, 0x97, 0x41, 0x0a]),
    "a character cut short by the end": Uint8Array.from([...enc.encode("abcdef\n"), 0xf0, 0x9f, 0x98]),
    "UTF-16": Uint8Array.from([0xff, 0xfe, 0x61, 0x00, 0x62, 0x00]),
    "mostly NULs": enc.encode("a\0b\0c\0d\0e\0f\0"),
  };
  await withTempDir("hartley-stream-", async (dir) => {
    for (const [what, bytes] of Object.entries(files)) {
      const path = join(dir, "bad.txt");
      await Deno.writeFile(path, bytes);
      const expected = await assertRejects(() => readTextDocuments(path), DataError);
      for (const chunkBytes of [4, 5, 1 << 20]) {
        for (const tok of [gpt2, roberta]) {
          const e = await assertRejects(() => textFileTokens(path, tok, { chunkBytes }), DataError);
          assertEquals(e.message, expected.message, `${what}, ${chunkBytes} bytes a chunk`);
        }
      }
    }
    await Deno.writeFile(join(dir, "bad.txt"), files["a bad byte"]);
    await assertRejects(
      () => textFileTokens(join(dir, "bad.txt"), gpt2, { chunkBytes: 4 }),
      DataError,
      ":3: not UTF-8 text (byte 0xFF at offset 6)",
    );
    await Deno.writeTextFile(join(dir, "a.txt"), "text\n");
    await assertRejects(
      () => textFileTokens(join(dir, "a.txt"), gpt2, { textField: "text" }),
      DataError,
      "--text-field",
    );
    await assertRejects(() => textFileTokens(join(dir, "missing.txt"), gpt2), DataError, "file not found");
    await Deno.writeTextFile(join(dir, "a.rst"), "text\n");
    await assertRejects(() => textFileTokens(join(dir, "a.rst"), gpt2), DataError, "unknown data format");
  });
});

Deno.test("textFileTokens, documentTokens: text of 2 MiB or more encoded on the tokenizing workers, to this thread's ids", async () => {
  const lines = [
    "The jury said it was over, and the city went home.\n",
    "Ünïcode 😀 日本語 then\r\n",
    "\n",
    "  x\n",
  ];
  const text = Array.from({ length: 1.1 * POOLED_CHARS / 20 }, (_, i) => lines[i % 4]).join("");
  assert(text.length >= POOLED_CHARS);
  await withTempDir("hartley-pooled-", async (dir) => {
    const path = join(dir, "corpus.txt");
    await Deno.writeTextFile(path, text);
    // a megabyte a piece (gpt2), a line at a time (roberta)
    for (const name of ["gpt2", "roberta"] as const) {
      const tok = await load(TOKENIZERS[name]);
      const here = await textFileTokens(path, tok, { workers: false });
      const progress: number[] = [];
      const pooled = await textFileTokens(path, tok, { onProgress: (done) => progress.push(done) });
      assert(liveTokenizingWorkers() >= 1, `${name}: encoded on workers`);
      assertEquals(pooled.length, here.length, name);
      assert(pooled.every((id, i) => id === here[i]), `${name}: the ids of this thread`);
      assert(progress.every((n, i) => i === 0 || n >= progress[i - 1]), `${name}: progress only up`);
      const documents = await documentTokens([text], tok, { lines: true });
      assert(documents.every((id, i) => id === here[i]) && documents.length === here.length, name);
    }
  });
});
