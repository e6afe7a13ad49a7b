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

/**
 * A text split into words as CoNLL-style data splits it: runs of letters, digits, marks and
 * apostrophes inside a word, and every other non-space character on its own.
 */
export function splitWords(text: string): string[] {
  return text.match(/[\p{L}\p{M}\p{N}_]+(?:['’][\p{L}\p{M}\p{N}_]+)*|[^\s\p{L}\p{M}\p{N}_]/gu) ?? [];
}

/** An entity of tagged words: its type, its words joined by spaces, and its word span. */
export interface NamedEntity extends Entity {
  /** The entity's words, joined by spaces. */
  text: string;
}

/**
 * The entities `tags` (names, e.g. "B-PER") name over `words`, seqeval's way; none when the tag
 * names are not entity tags. Untagged words (−1 ids upstream) should be given as "O", and so is a
 * placeholder (LABEL_i: an output of a kept head beyond the data's tags), as evaluation scores it.
 */
export function namedEntities(words: readonly string[], tags: readonly string[]): NamedEntity[] {
  const named = tags.map((t) => /^LABEL_\d+$/.test(t) ? "O" : t);
  if (!isEntityTagSet([...new Set(named)])) return [];
  return entities(named).map((e) => ({ ...e, text: words.slice(e.start, e.end + 1).join(" ") }));
}
