/**
 * Writes the Arrow fixtures of tests/arrow_data_test.ts (tests/fixtures/data/arrow/) as Hugging Face
 * `datasets` lays a split out on disk, from the Parquet fixtures' rows (so that each holds the same
 * data as a Parquet file the tests read beside it): Arrow IPC stream files with the column types
 * `datasets` writes (string → utf8, int64 labels, ClassLabel ids as int64 with their names in the
 * `huggingface` schema metadata, List(Value("string")) → list<utf8>, List(ClassLabel) → list<int64>,
 * Image → struct<bytes: binary, path: utf8>), and the JSON files of `Dataset.save_to_disk`
 * (state.json, dataset_info.json) and `DatasetDict.save_to_disk` (dataset_dict.json). They are
 * written with `@uwdata/flechette`'s writer, not by `datasets` itself (which cannot be installed
 * here). Run: `deno run -A tools/make_arrow_fixtures.ts`.
 * @module
 */
import {
  binary,
  type DataType,
  field,
  int64,
  list,
  map,
  struct,
  tableFromArrays,
  tableToIPC,
  utf8,
} from "@uwdata/flechette";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { readParquet } from "../lib/io/parquet.ts";

const FIXTURES = fileURLToPath(new URL("../tests/fixtures/", import.meta.url));
const OUT = join(FIXTURES, "data/arrow");

/** A column: its Arrow type and its values. */
type Columns = Record<string, { type: DataType; values: unknown[] }>;

const value = (dtype: string) => ({ dtype, _type: "Value" });
const classLabel = (names: string[]) => ({ names, _type: "ClassLabel" });
const listOf = (feature: unknown) => ({ feature, _type: "List" });

/**
 * `columns` as an Arrow IPC stream (or file) with `features` in the `huggingface` metadata, as
 * `datasets`' ArrowWriter stores them; `batchRows` rows a record batch.
 */
function ipc(
  columns: Columns,
  features: unknown,
  opts: { format?: "stream" | "file"; batchRows?: number } = {},
) {
  const table = tableFromArrays(
    Object.fromEntries(Object.entries(columns).map(([name, c]) => [name, c.values])),
    {
      types: Object.fromEntries(Object.entries(columns).map(([name, c]) => [name, c.type])),
      maxBatchRows: opts.batchRows,
    },
  );
  if (features !== null) {
    table.schema.metadata = new Map([["huggingface", JSON.stringify({ info: { features } })]]);
  }
  return tableToIPC(table, { format: opts.format ?? "stream" })!;
}

/** The rows `from` to `to` of every column. */
function slice(columns: Columns, from: number, to?: number): Columns {
  return Object.fromEntries(
    Object.entries(columns).map(([name, c]) => [name, { type: c.type, values: c.values.slice(from, to) }]),
  );
}

/**
 * A `Dataset.save_to_disk` folder: `shards` as data-0000K-of-0000N.arrow, listed in state.json's
 * `_data_files`, and dataset_info.json with the features.
 */
async function saveToDisk(dir: string, shards: Columns[], features: unknown, split: string | null) {
  await Deno.mkdir(dir, { recursive: true });
  const n = shards.length, pad = (k: number) => String(k).padStart(5, "0");
  const files = shards.map((_, k) => `data-${pad(k)}-of-${pad(n)}.arrow`);
  for (const [k, shard] of shards.entries()) await Deno.writeFile(join(dir, files[k]), ipc(shard, features));
  const state = {
    _data_files: files.map((filename) => ({ filename })),
    _fingerprint: "f1a2b3c4d5e6f708",
    _format_columns: null,
    _format_kwargs: {},
    _format_type: null,
    _output_all_columns: false,
    _split: split,
  };
  const info = { citation: "", description: "", features, homepage: "", license: "" };
  await Deno.writeTextFile(join(dir, "state.json"), JSON.stringify(state, null, 2) + "\n");
  await Deno.writeTextFile(join(dir, "dataset_info.json"), JSON.stringify(info, null, 2) + "\n");
}

/** The rows of a Parquet fixture, by column. */
async function parquetColumns(path: string): Promise<Record<string, unknown[]>> {
  const table = await readParquet(join(FIXTURES, path));
  return Object.fromEntries(table.columns.map((c) => [c, table.rows.map((row) => row[c])]));
}

await Deno.remove(OUT, { recursive: true }).catch(() => {});
await Deno.mkdir(OUT, { recursive: true });

// spam: text and a ClassLabel (ham, spam), 8 rows
const spam = await parquetColumns("data/spam_snappy.parquet");
const spamColumns: Columns = {
  text: { type: utf8(), values: spam.text },
  label: { type: int64(), values: spam.label },
};
const spamFeatures = { text: value("string"), label: classLabel(["ham", "spam"]) };
// the cache's NAME-train.arrow, record batches of 3 rows; and the IPC file format
await Deno.writeFile(join(OUT, "spam-train.arrow"), ipc(spamColumns, spamFeatures, { batchRows: 3 }));
await Deno.writeFile(join(OUT, "spam_file_format.arrow"), ipc(spamColumns, spamFeatures, { format: "file" }));
// DatasetDict.save_to_disk: train (all 8 rows in 2 shards) and test (the last 3)
const dict = join(OUT, "spam_dict");
await saveToDisk(
  join(dict, "train"),
  [slice(spamColumns, 0, 5), slice(spamColumns, 5)],
  spamFeatures,
  "train",
);
await saveToDisk(join(dict, "test"), [slice(spamColumns, 5)], spamFeatures, "test");
await Deno.writeTextFile(join(dict, "dataset_dict.json"), JSON.stringify({ splits: ["train", "test"] }));

// the same rows with string labels ("spam", "ham": a Value, not a ClassLabel), saved alone
await saveToDisk(
  join(OUT, "spam_strings"),
  [{
    text: spamColumns.text,
    label: { type: utf8(), values: spam.label.map((l) => ["ham", "spam"][Number(l)]) },
  }],
  { text: value("string"), label: value("string") },
  "train",
);

// named entities: tokens and List(ClassLabel) tags
const ner = await parquetColumns("data/ner.parquet");
await Deno.writeFile(
  join(OUT, "ner-train.arrow"),
  ipc(
    {
      tokens: { type: list(field("item", utf8())), values: ner.tokens },
      ner_tags: { type: list(field("item", int64())), values: ner.ner_tags },
    },
    {
      tokens: listOf(value("string")),
      ner_tags: listOf(classLabel(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])),
    },
  ),
);

// conversations: a list of {role, content} structs
const chat = await parquetColumns("data/chat.parquet");
const turn = struct([field("role", utf8()), field("content", utf8())]);
await Deno.writeFile(
  join(OUT, "chat-train.arrow"),
  ipc(
    { messages: { type: list(field("item", turn)), values: chat.messages } },
    { messages: listOf({ role: value("string"), content: value("string") }) },
  ),
);

// images: Image structs with bytes, and with paths alone (relative to the save_to_disk folder)
const imageType = struct([field("bytes", binary()), field("path", utf8())]);
const imageFeatures = { image: { decode: true, _type: "Image" }, label: classLabel(["cat", "dog"]) };
const images = await parquetColumns("images/images.parquet");
await saveToDisk(
  join(OUT, "images"),
  [{ image: { type: imageType, values: images.image }, label: { type: int64(), values: images.label } }],
  imageFeatures,
  "train",
);
const paths = await parquetColumns("images/layouts/paths.parquet");
const moved = (paths.image as { bytes: null; path: string }[]).map(({ bytes, path }) => ({
  bytes,
  path: relative(join(OUT, "image_paths"), resolve(join(FIXTURES, "images/layouts"), path)),
}));
await saveToDisk(
  join(OUT, "image_paths"),
  [{ image: { type: imageType, values: moved }, label: { type: int64(), values: paths.label } }],
  imageFeatures,
  "train",
);

// broken on purpose: an id past a safe integer in the second shard's first row (row 3 of the
// split), and a map column (no plain value)
const ids = {
  text: { type: utf8(), values: ["a", "b", "c"] },
  label: { type: int64(), values: [0n, 1n, 2n ** 60n] },
};
await saveToDisk(join(OUT, "big_id"), [slice(ids, 0, 2), slice(ids, 2)], { text: value("string") }, null);
await Deno.writeFile(
  join(OUT, "map_column.arrow"),
  ipc({ counts: { type: map(utf8(), int64()), values: [[["a", 1n]]] } }, null),
);
console.log(`wrote ${OUT}`);
