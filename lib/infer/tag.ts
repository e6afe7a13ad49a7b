/**
 * Using a trained token classifier: a tag for each word of each sentence (the tag of the word's
 * first token, as it was trained), with its probability, and the entities the tags name.
 *
 * ```ts
 * import type { Model } from "../models/model.ts";
 * import type { Tokenizer } from "../io/tokenizer.ts";
 * declare const model: Model, tokenizer: Tokenizer;
 * const [s] = await tagWords(model, tokenizer, [splitWords("EU rejects German call")]);
 * s.tags; // [3, 0, 7, 0]: ids of config.json's id2label
 * ```
 * @module
 */
import type { Tokenizer } from "../io/tokenizer.ts";
import { maxTokens } from "../io/hf_config.ts";
import type { Model } from "../models/model.ts";
import { noGrad, tidy } from "../tensor/mod.ts";
import { BatchIterator } from "../train/batches.ts";
import { entities, type Entity, isEntityTagSet } from "../train/entities.ts";
import { toModelBatch } from "../train/tasks.ts";
import { TokenClassificationDataset } from "../train/token_data.ts";

/** One sentence's tags. */
export interface TaggedWords {
  /** The words, as given. */
  words: string[];
  /** Each word's most probable tag id; −1 for a word without a token or cut off by maxLength. */
  tags: number[];
  /** The softmax probability of each word's tag (0 where it has none). */
  probabilities: number[];
}

/** Options of {@link tagWords}. */
export interface TagOptions {
  /** Longest row in tokens; later words go untagged (default: the model's positions, at most 512). */
  maxLength?: number;
  /** Sentences per forward pass (default 16). */
  batchSize?: number;
  /** Told the sentences tagged so far and all of them, every few batches (a progress display). */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Tag each word of `sentences` (lists of words) with `model`, a token classifier, in eval mode: the
 * tag of each word's first token. Each batch is submitted when encoded and read back a few later.
 */
export async function tagWords(
  model: Model,
  tokenizer: Tokenizer,
  sentences: readonly string[][],
  opts: TagOptions = {},
): Promise<TaggedWords[]> {
  if (model.task !== "token-cls") {
    throw new Error(`tagWords: the model has a ${model.task} head, not a token classifier`);
  }
  if (sentences.length === 0) return [];
  const maxLength = opts.maxLength ?? Math.min(maxTokens(model.config), 512);
  const examples = sentences.map((words) => ({ words: [...words], tags: words.map(() => 0) }));
  const dataset = new TokenClassificationDataset(examples, tokenizer, { maxLength });
  const batches = new BatchIterator(dataset, { batchSize: opts.batchSize ?? 16, shuffle: false });
  const wasTraining = model.training;
  model.train(false);
  const out: TaggedWords[] = [];
  let reads: { rows: Int32Array; length: number; logits: Promise<Float32Array> }[] = [];
  const collect = async () => {
    if (reads.length === 0) return; // all read at the last few batches' collect
    for (const { rows, length, logits } of reads) {
      const l = await logits, classes = l.length / (rows.length * length);
      rows.forEach((index, r) => {
        const starts = dataset.wordStarts(index);
        const tags: number[] = [], probabilities: number[] = [];
        for (const at of starts) {
          if (at < 0) {
            tags.push(-1);
            probabilities.push(0);
            continue;
          }
          const row = l.subarray((r * length + at) * classes, (r * length + at + 1) * classes);
          let best = 0, sum = 0;
          for (let k = 1; k < classes; k++) if (row[k] > row[best]) best = k;
          for (let k = 0; k < classes; k++) sum += Math.exp(row[k] - row[best]);
          tags.push(best);
          probabilities.push(1 / sum);
        }
        out.push({ words: examples[index].words, tags, probabilities });
      });
    }
    reads = [];
    opts.onProgress?.(out.length, sentences.length);
  };
  try {
    for (let step = 0; step < batches.stepsPerEpoch; step++) {
      const b = batches.batch({ epoch: 0, step });
      // wrapped: noGrad and tidy take synchronous functions, and readLater returns a promise
      const { logits } = tidy(() =>
        noGrad(() => ({
          logits: model.forward(toModelBatch(model, b, "token-cls", false)).logits.readLater(),
        }))
      );
      model.gpu.stream.flush();
      reads.push({ rows: b.rows, length: b.shape[1], logits });
      if (reads.length >= 8) await collect();
    }
    await collect();
    return out;
  } finally {
    model.train(wasTraining);
  }
}

/** What words are made of: a letter, mark, digit or "_". */
const W = String.raw`[\p{L}\p{M}\p{N}_]`;

/** {@link splitWords}' words; a format character (Cf) matches only inside a run. */
const WORDS = new RegExp(
  [
    String.raw`${W}+(?:(?:['’](?![sS](?!${W}))|\p{Cf}+)${W}+)*`, // a run, apostrophes inside but for a final 's
    String.raw`['’][sS](?!${W})`, // a final 's
    String.raw`[^\s\p{L}\p{M}\p{N}_\p{Cf}]`, // any other visible character
  ].join("|"),
  "gu",
);

/**
 * A text split into words as CoNLL-2003's text is split: runs of letters, marks and digits (an
 * apostrophe inside one stays, as in "O'Neil" and "didn't"; a final "'s" is a word of its own, as
 * in "Germany 's"), and every other character alone ("U.S." is four words). Invisible format
 * characters (Unicode Cf: a soft hyphen, a zero-width space) inside a run stay in it, as BERT's
 * tokenizer drops them from a word; elsewhere they are left out, as spaces are.
 */
export function splitWords(text: string): string[] {
  return splitWordSpans(text).words;
}

/**
 * {@link splitWords}, with where each word lies in `text`: its first character and one past its
 * last, counted in code points (as Python indexes a str, and the transformers pipeline's offsets).
 */
export function splitWordSpans(text: string): { words: string[]; offsets: [number, number][] } {
  const words: string[] = [], offsets: [number, number][] = [];
  let unit = 0, point = 0; // a UTF-16 index into text, and the code points before it
  const points = (s: string) => {
    let n = 0;
    for (const _ of s) n++;
    return n;
  };
  for (const m of text.matchAll(WORDS)) {
    point += points(text.slice(unit, m.index));
    const length = points(m[0]);
    words.push(m[0]);
    offsets.push([point, point + length]);
    point += length;
    unit = m.index + m[0].length;
  }
  return { words, offsets };
}

/**
 * An entity of tagged words: its type, its first and last word (`start` and `end`, both
 * inclusive), its text, and with {@link namedEntities}' options its score and place in the text.
 */
export interface NamedEntity extends Entity {
  /** The text its words span, when given; else its words joined by spaces. */
  text: string;
  /** The mean probability of its words' tags (the transformers pipeline's entity score), when given. */
  score?: number;
  /** Where it starts in the text (in code points), when the words' offsets are given. */
  charStart?: number;
  /** One past where it ends in the text (in code points), when the words' offsets are given. */
  charEnd?: number;
}

/**
 * The entities `tags` (names, e.g. "B-PER") name over `words`, seqeval's way; none when the tag
 * names are not entity tags ({@link isEntityTagSet}: of `opts.names`, the model's tags, when
 * given). A placeholder (LABEL_i: an output of a kept head beyond the data's tags) is read as "O",
 * as evaluation scores it. A word without a tag (null: it has no token, or was cut off) is passed
 * over, as the transformers pipeline never sees it: it neither ends an entity nor starts one.
 * `opts.probabilities` (of each word's tag) give each entity's score; `opts.offsets` (each
 * word's, from {@link splitWordSpans}) its place in `opts.text`, and its text from there.
 */
export function namedEntities(
  words: readonly string[],
  tags: readonly (string | null)[],
  opts: {
    probabilities?: readonly number[];
    text?: string;
    offsets?: readonly (readonly [number, number])[];
    names?: readonly string[];
  } = {},
): NamedEntity[] {
  const placeholder = (t: string) => /^LABEL_\d+$/.test(t);
  const tagged = tags.flatMap((t, i) => (t === null ? [] : [i]));
  const named = tagged.map((i) => placeholder(tags[i]!) ? "O" : tags[i]!);
  if (!isEntityTagSet((opts.names ?? named).filter((t) => !placeholder(t)))) return [];
  const points = opts.text === undefined ? null : [...opts.text];
  return entities(named).map((e) => {
    const start = tagged[e.start], end = tagged[e.end];
    const found: NamedEntity = { type: e.type, start, end, text: words.slice(start, end + 1).join(" ") };
    if (opts.probabilities) {
      const p = tagged.slice(e.start, e.end + 1).map((i) => opts.probabilities![i]);
      found.score = p.reduce((a, b) => a + b, 0) / p.length;
    }
    if (opts.offsets) {
      [found.charStart, found.charEnd] = [opts.offsets[start][0], opts.offsets[end][1]];
      if (points) found.text = points.slice(found.charStart, found.charEnd).join("");
    }
    return found;
  });
}
