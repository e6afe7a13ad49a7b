/**
 * Instructions tokenized on a pool of Workers (lib/train/instruct_worker.ts; the pool's rules in
 * lib/io/worker_pool.ts): a chat template's renders and the tokenizer's pre-tokenizing take
 * 1–10 ms a conversation on one core, minutes for a data set of a few hundred thousand, which
 * every core shares here. Each worker loads the tokenizer from its file and builds the template
 * from its text once; the examples go to them in chunks, and come back in order, as
 * {@link instructionDataset} would have made them; the first error in input order is thrown, as
 * that thread would have thrown it.
 * @module
 */
import { type ChatTemplate, chatTemplate, ChatTemplateError } from "../io/chat_template.ts";
import type { HfConfig } from "../io/hf_config.ts";
import { loadTokenizer, TextTooLongError, type Tokenizer, TokenizerError } from "../io/tokenizer.ts";
import { type PoolKind, WorkerPool } from "../io/worker_pool.ts";
import { DataError } from "./data_error.ts";
import {
  checkSeqLen,
  exampleName,
  type Instruction,
  instructionDataset,
  type InstructionDatasetOptions,
  type InstructionDatasetResult,
  instructionRows,
  type InstructionTokens,
  type LossOn,
  tokenizeInstruction,
} from "./instruct.ts";

/** How a worker makes the tokenizer and the template this thread has: from their files and text. */
export interface TokenizingRecipe {
  /** The tokenizer.json, and the model config it was loaded with. */
  tokenizer: { path: string; modelConfig?: HfConfig };
  /** The chat template's Jinja text, source and context; null without one. */
  template: { jinja: string; source: string; context: Readonly<Record<string, unknown>> } | null;
}

/** Examples to tokenize, one chunk of a data set, each with its name for errors. */
export interface TokenizeJob {
  recipe: TokenizingRecipe;
  examples: Instruction[];
  names: string[];
  lossOn: LossOn;
}

/** A job, with the tokenizer and template this thread tokenizes it with where no worker can start. */
interface Chunk extends TokenizeJob {
  tokenizer: Tokenizer;
  template: ChatTemplate | null;
}

/** Examples a job takes: tens of milliseconds of work, against a message's fraction of one. */
export const EXAMPLES_PER_JOB = 32;

/**
 * The examples from which the CLI tokenizes on workers: a second or more of work on one core,
 * against the 0.1–0.5 s a worker takes to start and load the tokenizer.
 */
export const POOLED_EXAMPLES = 1000;

/** The workers: every core (this thread waits for them), at most 8 (each holds a tokenizer). */
export function tokenizingWorkerCount(): number {
  return Math.min(8, Math.max(1, navigator.hardwareConcurrency));
}

/**
 * {@link instructionDataset}'s result, the examples tokenized on the workers (in this thread where
 * none can start). The same rows, counts and errors; progress as chunks finish, in order.
 */
export async function instructionDatasetOnWorkers(
  examples: readonly Instruction[],
  tokenizer: Tokenizer,
  opts: InstructionDatasetOptions,
): Promise<InstructionDatasetResult> {
  checkSeqLen(opts.seqLen);
  const template = opts.template ?? null;
  // a template that refuses every render fails on the first conversation: no worker is needed
  if (template?.jinja === null) return instructionDataset(examples, tokenizer, opts);
  const recipe = recipeOf(tokenizer, template);
  const pool = (tokenizing ??= new WorkerPool(TOKENIZING, tokenizingWorkerCount()));
  const job = (from: number): Chunk => {
    const to = Math.min(from + EXAMPLES_PER_JOB, examples.length);
    const names = Array.from({ length: to - from }, (_, k) => exampleName(examples, from + k, opts.source));
    const lossOn = opts.lossOn ?? "completion";
    return { recipe, examples: examples.slice(from, to), names, lossOn, tokenizer, template };
  };
  // a few jobs a worker queued: none idles between two, and few run on after an error
  const window = pool.size * 3, inFlight: Promise<InstructionTokens[]>[] = [];
  let next = 0;
  const submit = () => {
    const running = pool.run(job(next), true);
    running.catch(() => {}); // thrown in turn below, or dropped after an earlier error
    inFlight.push(running);
    next += EXAMPLES_PER_JOB;
  };
  while (next < examples.length && inFlight.length < window) submit();
  const tokens: InstructionTokens[] = [];
  while (inFlight.length > 0) {
    tokens.push(...await inFlight.shift()!);
    opts.onProgress?.(tokens.length, examples.length);
    if (next < examples.length) submit();
  }
  return instructionRows(examples, tokens, tokenizer.padId, opts);
}

/** The workers tokenizing in this process, loaded or loading (none before the first job, nor once idle). */
export function liveTokenizingWorkers(): number {
  return tokenizing?.live ?? 0;
}

function recipeOf(tokenizer: Tokenizer, template: ChatTemplate | null): TokenizingRecipe {
  return {
    tokenizer: { path: tokenizer.path, modelConfig: tokenizer.modelConfig },
    template: template && { jinja: template.jinja!, source: template.source, context: template.context },
  };
}

/** A job tokenized with a tokenizer and template made from its recipe: what a worker does. */
export function tokenizeJob(job: TokenizeJob, tokenizer: Tokenizer, template: ChatTemplate | null) {
  return job.examples.map((ex, k) =>
    tokenizeInstruction(ex, tokenizer, { template, lossOn: job.lossOn, where: job.names[k] })
  );
}

/** The tokenizer and template a recipe makes (a worker keeps the last). */
export async function fromRecipe(
  recipe: TokenizingRecipe,
): Promise<{ tokenizer: Tokenizer; template: ChatTemplate | null }> {
  const { path, modelConfig } = recipe.tokenizer, t = recipe.template;
  return {
    tokenizer: await loadTokenizer(path, modelConfig),
    template: t && chatTemplate(t.jinja, t.source, { ...t.context }),
  };
}

/** The errors tokenizing throws, rebuilt by class from what a worker posts. */
const ERRORS: Record<string, new (message: string) => Error> = {
  DataError,
  ChatTemplateError,
  TokenizerError,
  TextTooLongError,
};

const TOKENIZING: PoolKind<Chunk, InstructionTokens[]> = {
  name: "tokenizing",
  url: new URL("./instruct_worker.ts", import.meta.url),
  here: (job) => Promise.resolve(tokenizeJob(job, job.tokenizer, job.template)),
  message: ({ tokenizer: _, template: __, ...job }) => ({ message: job, transfer: [] }),
  error: ({ name, message }) =>
    ERRORS[name] ? new ERRORS[name](message) : Object.assign(new Error(message), { name }),
  describe: (job) => `${job.names[0]} to ${job.names.at(-1)}`,
};

let tokenizing: WorkerPool<Chunk, InstructionTokens[]> | null = null;
