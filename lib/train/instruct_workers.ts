/**
 * Instruction data sets tokenized on every core (lib/train/tokenizing_pool.ts): a chat template's
 * renders and the tokenizer's pre-tokenizing take 1–10 ms a conversation on one core, minutes for a
 * data set of a few hundred thousand. The examples go to the workers in chunks and come back in
 * order, as {@link instructionDataset} would have made them; the first error in input order is
 * thrown, as that would have thrown it.
 * @module
 */
import type { Tokenizer } from "../io/tokenizer.ts";
import {
  checkSeqLen,
  exampleName,
  type Instruction,
  instructionDataset,
  type InstructionDatasetOptions,
  type InstructionDatasetResult,
  InstructionRows,
  type InstructionTokens,
} from "./instruct.ts";
import {
  canTokenizeOnWorkers,
  InOrder,
  type InstructionsJob,
  recipeOf,
  tokenizeOnWorkers,
} from "./tokenizing_pool.ts";

/** Examples a job takes: tens of milliseconds of work, against a message's fraction of one. */
export const EXAMPLES_PER_JOB = 32;

/**
 * The examples from which the CLI tokenizes on workers: a second or more of work on one core,
 * against the 0.1–0.5 s a worker takes to start and load the tokenizer.
 */
export const POOLED_EXAMPLES = 1000;

/**
 * {@link instructionDataset}'s result, the examples tokenized on a pool of workers (in this thread
 * where none can start, or where the workers cannot be given the tokenizer or template: see
 * `canTokenizeOnWorkers`). The same rows, counts and errors; progress as chunks finish, in order.
 */
export async function instructionDatasetOnWorkers(
  examples: readonly Instruction[],
  tokenizer: Tokenizer,
  opts: InstructionDatasetOptions,
): Promise<InstructionDatasetResult> {
  checkSeqLen(opts.seqLen);
  const template = opts.template ?? null;
  if (!canTokenizeOnWorkers(tokenizer, template)) return instructionDataset(examples, tokenizer, opts);
  const recipe = recipeOf(tokenizer, template), lossOn = opts.lossOn ?? "completion";
  const job = (from: number): InstructionsJob => {
    const to = Math.min(from + EXAMPLES_PER_JOB, examples.length);
    const names = Array.from({ length: to - from }, (_, k) => exampleName(examples, from + k, opts.source));
    return { kind: "instructions", recipe, examples: examples.slice(from, to), names, lossOn };
  };
  const running = new InOrder<InstructionTokens[]>();
  let next = 0;
  const submit = () => {
    running.add(tokenizeOnWorkers(job(next), { tokenizer, template }));
    next += EXAMPLES_PER_JOB;
  };
  while (next < examples.length && !running.full) submit();
  const rows = new InstructionRows(tokenizer.padId, opts);
  let done = 0;
  while (running.pending > 0) {
    for (const tokens of await running.next()) rows.add(examples[done++], tokens);
    opts.onProgress?.(done, examples.length);
    if (next < examples.length) submit();
  }
  return rows.finish();
}
