/**
 * Tokenizing on a pool of Workers (lib/train/tokenizing_worker.ts; the pool's rules in
 * lib/io/worker_pool.ts): instructions (a chat template's renders and the tokenizer's
 * pre-tokenizing, 1–10 ms a conversation on one core) and plain text (3 µs a token: minutes for a
 * corpus of hundreds of megabytes), on every core. Each worker loads the tokenizer from its file and
 * builds the template from its text once, and keeps them for the jobs that bring the same; where no
 * worker can start, the jobs run in this thread with this thread's own. Errors come back as the
 * class this thread would have thrown.
 * @module
 */
import { type ChatTemplate, chatTemplate, ChatTemplateError } from "../io/chat_template.ts";
import type { HfConfig } from "../io/hf_config.ts";
import { loadTokenizer, TextTooLongError, Tokenizer, TokenizerError } from "../io/tokenizer.ts";
import { type PoolKind, WorkerPool } from "../io/worker_pool.ts";
import { DataError } from "./data_error.ts";
import { type Instruction, type InstructionTokens, type LossOn, tokenizeInstruction } from "./instruct.ts";

/** How a worker makes the tokenizer and the template this thread has: from their file and text. */
export interface TokenizingRecipe {
  /** The tokenizer.json, and the model config it was loaded with. */
  tokenizer: { path: string; modelConfig?: HfConfig };
  /** The chat template's Jinja text, source and context; null without one. */
  template: { jinja: string; source: string; context: Readonly<Record<string, unknown>> } | null;
}

/** Instructions to tokenize, one chunk of a data set, each with its name for errors. */
export interface InstructionsJob {
  kind: "instructions";
  recipe: TokenizingRecipe;
  examples: Instruction[];
  names: string[];
  lossOn: LossOn;
}

/** Texts to encode one after another, each with the tokenizer's special tokens. */
export interface TextsJob {
  kind: "texts";
  recipe: TokenizingRecipe;
  texts: string[];
}

/** A job a worker takes. */
export type TokenizingJob = InstructionsJob | TextsJob;

/** What a job gives: an instruction's tokens each, or the texts' ids one after another. */
export type TokenizingResult = InstructionTokens[] | Int32Array;

/** The workers: every core (this thread waits for them), at most 8 (each holds a tokenizer). */
export function tokenizingWorkerCount(): number {
  return Math.min(8, Math.max(1, navigator.hardwareConcurrency));
}

/**
 * Whether `tokenizer` and `template` can be made again on a worker: a tokenizer loaded from its file
 * (by {@link loadTokenizer}) as it was loaded (a subclass's methods, or a function set on the
 * instance, would not reach the worker's copy), and no template or one from Jinja text (not one that
 * refuses every render) whose context is plain data (what JSON writes: no function, Map or
 * undefined value).
 */
export function canTokenizeOnWorkers(tokenizer: Tokenizer, template: ChatTemplate | null = null): boolean {
  const asLoaded = Object.getPrototypeOf(tokenizer) === Tokenizer.prototype &&
    Object.values(tokenizer).every((v) => typeof v !== "function");
  return asLoaded && (template === null || (template.jinja !== null && isPlainData(template.context)));
}

/** Whether `value` is null, a boolean, a finite number, a text, or an array or plain object of such. */
function isPlainData(value: unknown): boolean {
  if (value === null || typeof value === "string" || typeof value === "boolean") return true;
  if (typeof value === "number") return Number.isFinite(value);
  if (Array.isArray(value)) return value.every(isPlainData);
  if (typeof value !== "object") return false;
  const proto = Object.getPrototypeOf(value);
  return (proto === Object.prototype || proto === null) && Object.values(value).every(isPlainData);
}

/** The recipe of a tokenizer and template that {@link canTokenizeOnWorkers} takes. */
export function recipeOf(tokenizer: Tokenizer, template: ChatTemplate | null = null): TokenizingRecipe {
  return {
    tokenizer: { path: tokenizer.path, modelConfig: tokenizer.modelConfig },
    template: template && { jinja: template.jinja!, source: template.source, context: template.context },
  };
}

/** The tokenizer and template a recipe makes. */
export async function fromRecipe(
  recipe: TokenizingRecipe,
): Promise<{ tokenizer: Tokenizer; template: ChatTemplate | null }> {
  const { path, modelConfig } = recipe.tokenizer, t = recipe.template;
  return {
    tokenizer: await loadTokenizer(path, modelConfig),
    template: t && chatTemplate(t.jinja, t.source, { ...t.context }),
  };
}

/** `job` done with `tokenizer` and `template`: what a worker does. */
export function runTokenizingJob(
  job: TokenizingJob,
  tokenizer: Tokenizer,
  template: ChatTemplate | null,
): TokenizingResult {
  if (job.kind === "instructions") {
    return job.examples.map((ex, k) =>
      tokenizeInstruction(ex, tokenizer, { template, lossOn: job.lossOn, where: job.names[k] })
    );
  }
  const pieces = job.texts.map((text) => tokenizer.encode(text));
  const ids = new Int32Array(pieces.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const piece of pieces) {
    ids.set(piece, at);
    at += piece.length;
  }
  return ids;
}

/** The buffers of a result, moved back to this thread. */
export function resultBuffers(result: TokenizingResult): ArrayBuffer[] {
  const arrays = result instanceof Int32Array ? [result] : result.flatMap((t) => [t.ids, t.trained]);
  return arrays.map((a) => a.buffer as ArrayBuffer);
}

/** `job`'s tokens from a worker, or from this thread with `tokenizer` and `template` where none can start. */
export function tokenizeOnWorkers(job: InstructionsJob, local: Local): Promise<InstructionTokens[]>;
export function tokenizeOnWorkers(job: TextsJob, local: Local): Promise<Int32Array>;
export function tokenizeOnWorkers(job: TokenizingJob, local: Local): Promise<TokenizingResult> {
  return tokenizingPool().run({ job, ...local }, true);
}

/** The workers tokenizing in this process, loaded or loading (none before the first job, nor once idle). */
export function liveTokenizingWorkers(): number {
  return pool?.live ?? 0;
}

/** The tokenizing pool, made on first use. */
function tokenizingPool(): WorkerPool<Chunk, TokenizingResult> {
  return pool ??= new WorkerPool(TOKENIZING, tokenizingWorkerCount());
}

/** This thread's tokenizer and template, for a job run here. */
interface Local {
  tokenizer: Tokenizer;
  template: ChatTemplate | null;
}

/** A job, with what this thread runs it with where no worker can start. */
interface Chunk extends Local {
  job: TokenizingJob;
}

/** The errors tokenizing throws, rebuilt by class from what a worker posts. */
const ERRORS: Record<string, new (message: string) => Error> = {
  DataError,
  ChatTemplateError,
  TokenizerError,
  TextTooLongError,
};

const TOKENIZING: PoolKind<Chunk, TokenizingResult> = {
  name: "tokenizing",
  url: new URL("./tokenizing_worker.ts", import.meta.url),
  here: ({ job, tokenizer, template }) =>
    Promise.resolve().then(() => runTokenizingJob(job, tokenizer, template)),
  message: ({ job }) => ({ message: job, transfer: [] }),
  error: ({ name, message }) =>
    ERRORS[name] ? new ERRORS[name](message) : Object.assign(new Error(message), { name }),
  describe: ({ job }) =>
    job.kind === "instructions" ? `${job.names[0]} to ${job.names.at(-1)}` : job.recipe.tokenizer.path,
};

let pool: WorkerPool<Chunk, TokenizingResult> | null = null;

/**
 * Jobs a window at a time, their results taken in the order they were given: the first error in
 * that order is the one thrown, the later jobs' results (or errors) dropped.
 */
export class InOrder<R> {
  #running: Promise<R>[] = [];

  /** At most `window` jobs at once; by default a few a worker, so that none idles between two. */
  constructor(readonly window: number = tokenizingWorkerCount() * 3) {}

  /** Whether the window is full (take the oldest result first). */
  get full(): boolean {
    return this.#running.length >= this.window;
  }

  /** Jobs given and not yet taken. */
  get pending(): number {
    return this.#running.length;
  }

  /** A job's result to come. */
  add(running: Promise<R>): void {
    running.catch(() => {}); // thrown by next(), or dropped after an earlier error
    this.#running.push(running);
  }

  /** The oldest job's result (its error thrown). */
  next(): Promise<R> {
    return this.#running.shift()!;
  }
}
