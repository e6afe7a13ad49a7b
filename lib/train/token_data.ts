/**
 * Token classification data (named entities, part-of-speech tags): sentences split into words,
 * one tag per word, read from JSONL or a `datasets` Parquet split (`tokens` and `ner_tags`, as
 * conll2003 and wnut_17 hold them, the ClassLabel names naming the ids) or a CoNLL file (a word
 * and its tag per line, a blank line between sentences; `-DOCSTART-` and comment lines skipped);
 * and their rows, tokenized as transformers' run_ner does: each word's first token learns the
 * word's tag, its other tokens and the special tokens are ignored (−100). {@link readWordLists}
 * reads the words alone, to tag them.
 *
 * ```ts
 * import type { Tokenizer } from "../io/tokenizer.ts";
 * declare const tokenizer: Tokenizer;
 * const data = await readTaggedFile("train.jsonl");
 * const dataset = new TokenClassificationDataset(data.examples, tokenizer, { maxLength: 128 });
 * ```
 * @module
 */
import type { Tokenizer } from "../io/tokenizer.ts";
import { IGNORE_INDEX } from "../tensor/mod.ts";
import { checkIndex, type Dataset, type Row } from "./data.ts";
import { readDataText, readRecordTable, recordFieldNames, type SourceRecord } from "./readers.ts";
import { DataError } from "./data_error.ts";
import { entities, isEntityTag, isEntityTagSet } from "./entities.ts";
import { LabelMap } from "./labels.ts";

/** One tagged sentence: its words and each word's tag id. */
export interface TaggedExample {
  /** The words, as the data splits them. */
  words: string[];
  /** Each word's tag id. */
  tags: number[];
  /** Where it was read, `file:line` (the row, for Parquet), for errors. */
  source?: string;
}

/** Tagged sentences read by {@link readTaggedFile}. */
export interface TaggedData {
  /** The file read. */
  path: string;
  /** The sentences, in file order. */
  examples: TaggedExample[];
  /**
   * Tag names by id: the `labels` option when given, a Parquet split's ClassLabel names, or the
   * file's string tags in first-seen order; null when the file has integer tags only.
   */
  labelNames: string[] | null;
  /** The field read as the words ("" for a CoNLL file). */
  wordField: string;
  /** The field read as the tags ("" for a CoNLL file). */
  tagField: string;
}

/** Options of {@link readTaggedFile}. */
export interface TaggedReadOptions {
  /** Field holding each sentence's words (default: the first of {@link WORD_FIELDS} present). */
  wordField?: string;
  /** Field holding each word's tag (default: the first of {@link TAG_FIELDS} present). */
  tagField?: string;
  /**
   * Tag names by id (a model's id2label): string tags are looked up here, and so are a Parquet
   * split's tag ids by their ClassLabel names.
   */
  labels?: readonly string[];
  /** Where `labels` come from, in errors: e.g. "the model head's classes, config.json's id2label". */
  labelsFrom?: string;
  /**
   * The tags must be integer ids, as those of another file (the training file's, for an eval
   * file): a tag name is refused, naming this file.
   */
  idsAs?: string;
  /** The head's num_labels: every tag id must be below it (default labels.length). */
  numLabels?: number;
  /**
   * Told, in one line each, what was read but may be a mistake (tags that are not entity tags
   * among entity tags; a tag matched to a name of `labels` only ignoring case); without it nothing
   * is said (the CLI prints each on stderr).
   */
  onWarning?: (message: string) => void;
}

/** Word-list fields tried in order when no wordField is given. */
export const WORD_FIELDS: readonly string[] = ["tokens", "words"];

/** Tag-list fields tried in order when no tagField is given. */
export const TAG_FIELDS: readonly string[] = ["ner_tags", "tags", "labels", "pos_tags"];

/** CoNLL files: a word per line with its tag last, blank lines between sentences. */
const CONLL = /\.(conll|bio|iob|iob2)$/i;

/**
 * A CoNLL file's comment lines, skipped as their datasets' loaders skip them: MultiCoNER's
 * `# id <id> domain=<lang>` and CoNLL-U's `# key = value`. Another line whose word is "#" is a
 * word (WNUT's hashtags: `# O`).
 */
const CONLL_COMMENT = /^#\s+(id\s|[\w.-]+\s*=)/;

/** True when `fields` (a record file's field names) hold a sentence's words and their tags. */
export function isTaggedRecord(fields: readonly string[], tagField?: string): boolean {
  return WORD_FIELDS.some((f) => fields.includes(f)) &&
    (tagField ? fields.includes(tagField) : TAG_FIELDS.some((f) => fields.includes(f)));
}

/** True for a file read as CoNLL columns (.conll, .bio, .iob, .iob2). */
export function isConllFile(path: string): boolean {
  return CONLL.test(path);
}

/**
 * Read tagged sentences: JSONL or Parquet records with a list of words and a list of tags (names,
 * or ids named by the split's ClassLabel feature), or a CoNLL file. Errors name the file, the line
 * (the row, for Parquet) and what was wrong.
 */
export async function readTaggedFile(path: string, opts: TaggedReadOptions = {}): Promise<TaggedData> {
  if (isConllFile(path)) return conllExamples(path, await readDataText(path), opts);
  const { records, classLabels } = await readRecordTable(path);
  const first = Object.keys(records[0].fields);
  const pick = (given: string | undefined, tried: readonly string[], what: string, flag: string) => {
    const field = given ?? tried.find((f) => first.includes(f));
    if (field === undefined || !first.includes(field)) {
      throw new DataError(
        `${path}: no ${what} field ${given ? `"${given}"` : `(tried ${tried.join(", ")})`}; name it with ` +
          `${flag}. The fields are ${first.join(", ")}`,
      );
    }
    return field;
  };
  const wordField = pick(opts.wordField, WORD_FIELDS, "word list", "--text-field (wordField)");
  const tagField = pick(opts.tagField, TAG_FIELDS, "tag list", "--label-field (tagField)");
  const labels = new LabelMap({
    labels: opts.labels,
    classNames: classLabels.get(tagField),
    numLabels: opts.numLabels,
    labelsFrom: opts.labelsFrom,
    idsAs: opts.idsAs,
    onWarning: opts.onWarning,
  });
  const examples = records.map((r) => taggedRecord(r, wordField, tagField, labels, path));
  return sayOddTags({ path, examples, labelNames: labels.names(), wordField, tagField }, opts.onWarning);
}

/**
 * Tell `onWarning` once which of `data`'s tags are not entity tags when others are ("domain=en"
 * among "O", "B-PER", …): seqeval scores them all, warning that such a tag "seems not to be NE
 * tag", and reads it as a chunk typed by what follows its first letter ("omain=en"); so do the
 * scores here.
 */
function sayOddTags(data: TaggedData, onWarning?: (message: string) => void): TaggedData {
  const names = data.labelNames;
  if (!onWarning || !names || !isEntityTagSet(names)) return data;
  const odd = new Map<string, string>();
  for (const { tags, source } of data.examples) {
    for (const name of tags.map((t) => names[t])) {
      if (name !== undefined && !isEntityTag(name) && !odd.has(name)) odd.set(name, String(source));
    }
  }
  if (odd.size === 0) return data;
  const listed = [...odd].map(([tag, where]) => {
    const type = entities([tag])[0]?.type;
    return `${JSON.stringify(tag)} (${type ? `an entity of type "${type}"` : "no entity"} to seqeval; ` +
      `first in the sentence at ${where})`;
  });
  const one = odd.size === 1;
  onWarning(
    `${data.path}: tag${one ? "" : "s"} ${listed.join(", ")} ${one ? "is" : "are"} not O, B-, I-, E- or ` +
      `S- and a type: entity scores read ${one ? "it" : "them"} as seqeval does (warning "seems not to be ` +
      `NE tag"); fix ${one ? "it if it is a mistake" : "them if they are mistakes"}`,
  );
  return data;
}

function taggedRecord(
  { line, fields }: SourceRecord,
  wordField: string,
  tagField: string,
  labels: LabelMap,
  path: string,
): TaggedExample {
  const where = `${path}:${line}`, words = fields[wordField], tags = fields[tagField];
  if (!Array.isArray(words) || words.some((w) => typeof w !== "string")) {
    throw new DataError(`${where}: field "${wordField}" must be a list of words (strings)`);
  }
  if (!Array.isArray(tags)) throw new DataError(`${where}: field "${tagField}" must be a list of tags`);
  if (tags.length !== words.length) {
    throw new DataError(`${where}: ${words.length} words but ${tags.length} tags in "${tagField}"`);
  }
  return {
    words: words as string[],
    tags: tags.map((t) => labels.id(typeof t === "bigint" ? Number(t) : t, where)),
    source: where,
  };
}

/** A CoNLL file's sentences: each word line's columns and line number. */
function conllSentences(text: string): { columns: string[]; line: number }[][] {
  const sentences: { columns: string[]; line: number }[][] = [];
  let lines: { columns: string[]; line: number }[] = [];
  const end = () => {
    if (lines.length > 0) sentences.push(lines);
    lines = [];
  };
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    // a document start or a comment ends a sentence, as a blank line does (datasets' loaders)
    if (line === "" || line.startsWith("-DOCSTART-") || CONLL_COMMENT.test(line)) return end();
    lines.push({ columns: line.split(/\s+/), line: i + 1 });
  });
  end();
  return sentences;
}

/**
 * CoNLL columns: the first is the word, the last its tag; `-DOCSTART-` and comment lines
 * ({@link CONLL_COMMENT}) are skipped.
 */
function conllExamples(path: string, text: string, opts: TaggedReadOptions): TaggedData {
  const labels = new LabelMap(opts);
  const examples = conllSentences(text).map((lines): TaggedExample => ({
    words: lines.map((l) => l.columns[0]),
    tags: lines.map(({ columns, line }) => {
      if (columns.length < 2) {
        throw new DataError(
          `${path}:${line}: expected a word and its tag, got ${JSON.stringify(columns[0])}`,
        );
      }
      return labels.id(columns[columns.length - 1], `${path}:${line}`);
    }),
    source: `${path}:${lines[0].line}`,
  }));
  if (examples.length === 0) throw new DataError(`${path}: no sentences (no word and tag lines)`);
  return sayOddTags(
    { path, examples, labelNames: labels.names(), wordField: "", tagField: "" },
    opts.onWarning,
  );
}

/** A sentence to tag: its words, and where it was read (`file:line`; the row, for Parquet). */
export interface WordList {
  /** The words, as the file splits them. */
  words: string[];
  /** Where it was read. */
  source: string;
}

/**
 * The sentences of a file of words already split, their tags (if any) ignored: a CoNLL file's
 * first column (lines of the word alone too), or the word lists of a record file's `wordField`
 * (default: the first of {@link WORD_FIELDS} its first record has). Null for a file of texts to
 * split into words: a record file without that field, or whose field holds a string.
 */
export async function readWordLists(path: string, wordField?: string): Promise<WordList[] | null> {
  if (isConllFile(path)) {
    const sentences = conllSentences(await readDataText(path));
    if (sentences.length === 0) throw new DataError(`${path}: no sentences (no word lines)`);
    return sentences.map((lines) => ({
      words: lines.map((l) => l.columns[0]),
      source: `${path}:${lines[0].line}`,
    }));
  }
  const fields = await recordFieldNames(path);
  if (fields === null) return null;
  const field = wordField ?? WORD_FIELDS.find((f) => fields.includes(f));
  if (field === undefined || !fields.includes(field)) return null;
  const { records } = await readRecordTable(path);
  if (!Array.isArray(records[0].fields[field])) return null;
  return records.map(({ line, fields }) => {
    const words = fields[field];
    if (!Array.isArray(words) || words.some((w) => typeof w !== "string")) {
      throw new DataError(`${path}:${line}: field "${field}" must be a list of words (strings)`);
    }
    return { words, source: `${path}:${line}` };
  });
}

/** Options of {@link TokenClassificationDataset}. */
export interface TokenClassificationOptions {
  /** Longest row in tokens, special tokens included; longer sentences lose their last words. */
  maxLength: number;
  /** The head's num_labels: tags are checked against it when given. */
  numLabels?: number;
}

/**
 * Tagged sentences tokenized on first use (each once, then cached): the words' tokens between the
 * tokenizer's special tokens, each word's tag on its first token and −100 on every other token. A
 * sentence that makes no token at all (no special tokens either) is a DataError naming its source.
 */
export class TokenClassificationDataset implements Dataset {
  /** The tokenizer's padding id. */
  readonly padId: number;
  /** Each sentence's row and where its words start, made on first use. */
  private readonly cache: ({ row: Row; starts: number[] } | undefined)[];

  /**
   * A bad maxLength (no room beside the special tokens) is a RangeError; no examples, a bad tag, or
   * a sentence of no words with a tokenizer that adds no special tokens a DataError.
   */
  constructor(
    readonly examples: readonly TaggedExample[],
    private readonly tokenizer: Tokenizer,
    private readonly opts: TokenClassificationOptions,
  ) {
    const special = tokenizer.specialAround().flat().length;
    if (!(Number.isInteger(opts.maxLength) && opts.maxLength > special)) {
      throw new RangeError(
        `TokenClassificationDataset: maxLength must be an integer above the ${special} special tokens, got ${opts.maxLength}`,
      );
    }
    if (examples.length === 0) throw new DataError(`TokenClassificationDataset: no examples`);
    if (opts.numLabels !== undefined) checkTags(examples, opts.numLabels, "TokenClassificationDataset");
    this.padId = tokenizer.padId;
    this.cache = new Array(examples.length);
    // without special tokens a sentence of no words makes an empty row: refused now, not in training
    examples.forEach((ex, i) => {
      if (special === 0 && ex.words.length === 0) this.encoded(i);
    });
  }

  /** Sentences in the dataset. */
  get size(): number {
    return this.examples.length;
  }

  /** Row `index`: token ids and one label per token (the tag at each word's first token, else −100). */
  row(index: number): Row {
    return this.encoded(index).row;
  }

  /**
   * Where each word of row `index` starts: the position of its first token in the row, or −1 for
   * a word that has no token or was cut off by maxLength.
   */
  wordStarts(index: number): number[] {
    return this.encoded(index).starts;
  }

  /**
   * Sentence `index` tokenized (cached): its ids, special tokens included, each word's tag at its
   * first token and −100 elsewhere, and each word's first position (−1: none).
   */
  private encoded(index: number): { row: Row; starts: number[] } {
    checkIndex(index, this.size);
    const cached = this.cache[index];
    if (cached) return cached;
    const { words, tags, source } = this.examples[index];
    const { ids, wordIds } = this.tokenizer.encodeWords(words, { addSpecialTokens: false });
    const [before, after] = this.tokenizer.specialAround();
    if (before.length + ids.length + after.length === 0) {
      throw new DataError(
        `${source ?? `TokenClassificationDataset: sentence ${index}`}: the sentence has no tokens ` +
          `(${words.length} words, and this tokenizer adds no special tokens); leave it out`,
      );
    }
    const kept = Math.min(ids.length, this.opts.maxLength - before.length - after.length);
    const starts = new Array<number>(words.length).fill(-1);
    for (let k = kept - 1; k >= 0; k--) starts[wordIds[k]!] = before.length + k;
    const label = new Int32Array(before.length + kept + after.length).fill(IGNORE_INDEX);
    starts.forEach((at, w) => {
      if (at >= 0) label[at] = tags[w];
    });
    const row = { ids: Int32Array.from([...before, ...ids.slice(0, kept), ...after]), label };
    return this.cache[index] = { row, starts };
  }
}

/** Throw unless every tag id is below `numLabels` (the head's labels). */
export function checkTags(examples: readonly TaggedExample[], numLabels: number, source: string): void {
  examples.forEach((ex, i) => {
    const bad = ex.tags.find((t) => !(Number.isInteger(t) && t >= 0 && t < numLabels));
    if (bad !== undefined) {
      throw new DataError(
        `${source}: sentence ${i} has tag ${bad}, which does not fit the head's ${numLabels} labels ` +
          `(ids 0..${numLabels - 1})`,
      );
    }
  });
}
