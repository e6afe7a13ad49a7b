/**
 * Text generation with a causal LM: a prompt continued greedily or by sampling (temperature,
 * top-k, top-p, min-p), optionally with a repetition penalty, with a key/value cache so that
 * each new token runs through the layers alone, greedy tokens picked on the GPU between
 * readbacks, and a cache that a conversation can keep from turn to turn.
 *
 * ```ts
 * import type { Model } from "../models/model.ts";
 * import type { Tokenizer } from "../io/tokenizer.ts";
 * declare const model: Model, tokenizer: Tokenizer;
 * const { text } = await generate(model, tokenizer, "Once upon a time", { maxNewTokens: 20 });
 * ```
 * @module
 */
import { maxTokens } from "../io/hf_config.ts";
import type { Tokenizer } from "../io/tokenizer.ts";
import { CacheRotationError, type KvCache, type KvCacheDtype } from "../models/kv_cache.ts";
import type { Batch, Model } from "../models/model.ts";
import { Prng } from "../spectral/prng.ts";
import { argmax, noGrad, reshape, Tensor, tidy } from "../tensor/mod.ts";
import { copyAll } from "../tensor/ops/copy.ts";
import { markSeen, repetitionPenalty } from "../tensor/ops/penalty.ts";
import { type GpuSampling, samplesOnGpu, sampleTokens } from "../tensor/ops/sample.ts";
import { applyRepetitionPenalty, sampleToken } from "./sampling.ts";

/** Options of {@link generate}. */
export interface GenerateOptions {
  /** Tokens to add at most (default 32). */
  maxNewTokens?: number;
  /** Sampling temperature; 0 (the default) takes the most probable token each time (greedy). */
  temperature?: number;
  /** Sample among the k most probable tokens only (default 0: all of them). */
  topK?: number;
  /**
   * Nucleus sampling: among the most probable tokens whose probabilities (after `topK`) add up to
   * `topP`, the token that crosses it included (default 1: all of them).
   */
  topP?: number;
  /**
   * Min-p sampling: among the tokens (after `topK` and `topP`) at least `minP` times as probable
   * as the most probable one (default 0: all of them).
   */
  minP?: number;
  /**
   * transformers' repetition penalty (default 1: none): before the token is picked, the logit of
   * each token already in the text (the prompt's included) is divided by it when positive and
   * multiplied by it otherwise; on the GPU where the tokens are picked there.
   */
  repetitionPenalty?: number;
  /** Seed of the sampling (default 0). */
  seed?: number;
  /** Stop at an end-of-sequence token (default true). */
  stopAtEos?: boolean;
  /**
   * Texts that end the generation when the continuation reaches one: the text is cut before it
   * (the ids keep the token that completed it), e.g. `["\n\n"]` for one paragraph.
   */
  stopTexts?: readonly string[];
  /** The tokens that end the text (default: {@link endTokenIds}). */
  eosTokenIds?: readonly number[];
  /**
   * A cache to continue (from {@link Model.newCache}), kept for the next call: it must hold the
   * keys and values of the prompt's first `cache.length` tokens, as after an earlier call on a
   * sequence the prompt extends ({@link KvCache.truncate} to what they share). Default: a new
   * cache, disposed at the end.
   */
  cache?: KvCache;
  /** Storage of a new cache's keys and values (default f32; f16 halves them, rounding each once). */
  cacheDtype?: KvCacheDtype;
  /**
   * Called as the text grows, with the new part of the decoded continuation (a character split
   * over several byte tokens is held back until it is whole): for printing while it generates.
   */
  onText?: (text: string) => void;
}

/** What {@link generate} produced. */
export interface Generation {
  /** The prompt's token ids followed by the new ones. */
  ids: number[];
  /** How many of `ids` are new. */
  newTokens: number;
  /** What the new tokens add to the decoded prompt (special tokens skipped). */
  text: string;
  /**
   * Why it stopped: the token budget, an end-of-sequence token, a stop text, or the model's last
   * position.
   */
  stop: "length" | "eos" | "stop" | "positions";
  /** The first `cached` of `ids` are in the cache (what {@link keepSharedPrefix} needs). */
  cached: number;
}

/**
 * Make `cache`, which holds the keys and values of `cachedIds`, a cache for `ids`: cut it to the
 * tokens they share, leaving at least one token of `ids` to run (a conversation's next turn
 * re-renders the earlier turns, which then cost nothing).
 */
export function keepSharedPrefix(cache: KvCache, cachedIds: readonly number[], ids: readonly number[]): void {
  let shared = 0;
  const most = Math.min(cache.length, cachedIds.length, ids.length - 1);
  while (shared < most && cachedIds[shared] === ids[shared]) shared++;
  cache.truncate(shared);
}

/**
 * Continue `prompt` (a text, or token ids) with `model` (a causal LM, in eval mode). A key/value
 * cache keeps every position's keys and values, so each new token runs through the layers alone.
 * Greedy with temperature 0, else sampled from softmax(logits / temperature), optionally among
 * the top k, the top p and those above min-p, seeded (the same seed gives the same text). Greedy tokens, and
 * sampled ones with a top-k of 1 to 64 (`SAMPLE_MAX_K`; on a software adapter with a small
 * vocabulary only, `samplesOnGpu`), are picked on the GPU,
 * {@link GREEDY_TOKENS_PER_READ} per readback; other sampled ones on the CPU, a readback each.
 */
export async function generate(
  model: Model,
  tokenizer: Tokenizer,
  prompt: string | readonly number[],
  opts: GenerateOptions = {},
): Promise<Generation> {
  const d = decodingOf(model, tokenizer, opts, "generate");
  const ids = typeof prompt === "string" ? tokenizer.encode(prompt) : [...prompt];
  if (ids.length === 0) throw new Error(`generate: the prompt has no tokens`);
  const positions = maxTokens(model.config);
  if (ids.length > positions) {
    throw new Error(
      `generate: the prompt has ${ids.length} tokens, more than the model's ${positions} positions`,
    );
  }
  const cache = opts.cache ?? newCache(model, "generate", opts.cacheDtype);
  if (cache.length >= ids.length) {
    throw new Error(
      `generate: the cache holds ${cache.length} positions, the prompt only ${ids.length} tokens`,
    );
  }
  const start = ids.length;
  let emitted = 0; // characters of the continuation handed to onText
  const onChunk = opts.onText && ((running: ReadonlySet<number>) => {
    if (!running.has(0)) return; // what is left is written once the text is cut
    // hold back a character split over tokens, and what may be the start of a stop text
    const text = continuation(tokenizer, ids, start);
    const shown = text.length - heldBack(text, d.stopTexts);
    if (!text.endsWith("\uFFFD") && shown > emitted) {
      opts.onText!(text.slice(emitted, shown));
      emitted = shown;
    }
  });
  const next = Int32Array.from(ids.slice(cache.length));
  let stop: Generation["stop"];
  try {
    [stop] = await decode(model, tokenizer, [ids], { ids: next, b: 1, t: next.length }, cache, d, onChunk);
  } finally {
    if (!opts.cache) cache.dispose();
  }
  const text = cutAtStop(continuation(tokenizer, ids, start), d.stopTexts);
  if (opts.onText && text.length > emitted) opts.onText(text.slice(emitted));
  return { ids, newTokens: ids.length - start, text, stop, cached: Math.min(cache.length, ids.length) };
}

/** Options of {@link generateBatch}: {@link GenerateOptions} without streaming or a kept cache. */
export type GenerateBatchOptions = Omit<GenerateOptions, "onText" | "cache">;

/**
 * Continue several prompts at once: left-padded into one batch (positions counted from each row's
 * first real token, the padding masked, as transformers' generate does), one forward pass per new
 * token for them all. Each row stops at its own end-of-sequence token; the batch runs until every
 * row has stopped or the budget is spent. The same tokens as {@link generate} on each prompt alone
 * when greedy; sampled rows draw from seeded streams of their own (on the GPU) or in row order
 * from one seeded generator (on the CPU).
 */
export async function generateBatch(
  model: Model,
  tokenizer: Tokenizer,
  prompts: readonly (string | readonly number[])[],
  opts: GenerateBatchOptions = {},
): Promise<Generation[]> {
  const d = decodingOf(model, tokenizer, opts, "generateBatch");
  if (prompts.length === 0) return [];
  const rows = prompts.map((p) => (typeof p === "string" ? tokenizer.encode(p) : [...p]));
  const positions = maxTokens(model.config);
  const longest = Math.max(...rows.map((r) => r.length));
  rows.forEach((r, i) => {
    if (r.length === 0) throw new Error(`generateBatch: prompt ${i} has no tokens`);
  });
  if (longest > positions) {
    throw new Error(
      `generateBatch: a prompt has ${longest} tokens, more than the model's ${positions} positions`,
    );
  }
  const starts = rows.map((r) => r.length);
  const cache = newCache(model, "generateBatch", opts.cacheDtype);
  let stops: Generation["stop"][];
  try {
    stops = await decode(model, tokenizer, rows, leftPadded(rows, tokenizer.padId), cache, d);
  } finally {
    cache.dispose();
  }
  return rows.map((r, i) => ({
    ids: r,
    newTokens: r.length - starts[i],
    text: cutAtStop(continuation(tokenizer, r, starts[i]), d.stopTexts),
    stop: stops[i],
    cached: 0,
  }));
}

/** The checked settings of a generation. */
interface Decoding {
  maxNew: number;
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repetitionPenalty: number;
  eos: ReadonlySet<number>;
  stopTexts: readonly string[];
  rng: Prng;
  /** The seed of the GPU's draws (see {@link sampleTokens}). */
  seed: number;
}

/**
 * The ids that end generated text by default: config.json's eos_token_id, those of the
 * generation_config.json beside it (chat models list their end-of-turn ids there: Llama 3's
 * <|eot_id|> is there alone; read by loadModel) and the tokenizer's end-of-sequence token.
 */
export function endTokenIds(model: Model, tokenizer: Tokenizer): number[] {
  const special = tokenizer.special.eos === null ? [] : [tokenizer.special.eos];
  const generation = model.config.generationEosTokenIds ?? [];
  return [...new Set([...model.config.eosTokenIds, ...generation, ...special])];
}

/** The settings of `opts` for `model`, checked; errors name `fn`. */
function decodingOf(
  model: Model,
  tokenizer: Tokenizer,
  opts: GenerateBatchOptions,
  fn: string,
): Decoding {
  if (model.task !== "causal-lm") {
    throw new Error(`${fn}: the model has a ${model.task} head, not a causal language model head`);
  }
  const maxNew = opts.maxNewTokens ?? 32, temperature = opts.temperature ?? 0, topK = opts.topK ?? 0;
  const topP = opts.topP ?? 1, minP = opts.minP ?? 0, repetitionPenalty = opts.repetitionPenalty ?? 1;
  if (!(Number.isInteger(maxNew) && maxNew >= 0)) {
    throw new RangeError(`${fn}: maxNewTokens must be an integer ≥ 0, got ${maxNew}`);
  }
  if (!(temperature >= 0)) throw new RangeError(`${fn}: temperature must be ≥ 0, got ${temperature}`);
  if (!(Number.isInteger(topK) && topK >= 0)) {
    throw new RangeError(`${fn}: topK must be an integer ≥ 0, got ${topK}`);
  }
  if (!(topP > 0 && topP <= 1)) throw new RangeError(`${fn}: topP must be in (0, 1], got ${topP}`);
  if (!(minP >= 0 && minP <= 1)) throw new RangeError(`${fn}: minP must be in [0, 1], got ${minP}`);
  if (!(repetitionPenalty > 0)) {
    throw new RangeError(`${fn}: repetitionPenalty must be > 0, got ${repetitionPenalty}`);
  }
  const eos = new Set(
    opts.stopAtEos === false ? [] : opts.eosTokenIds ?? endTokenIds(model, tokenizer),
  );
  const stopTexts = (opts.stopTexts ?? []).filter((t) => t !== "");
  return {
    maxNew,
    temperature,
    topK,
    topP,
    minP,
    repetitionPenalty,
    eos,
    stopTexts,
    rng: new Prng(opts.seed ?? 0),
    seed: opts.seed ?? 0,
  };
}

function newCache(model: Model, fn: string, dtype?: KvCacheDtype): KvCache {
  const cache = model.newCache?.(dtype);
  if (!cache) throw new Error(`${fn}: the ${model.family} model keeps no key/value cache`);
  return cache;
}

/**
 * Extend each of `rows` (a prompt's ids, the new tokens appended) until it stops or the budget is
 * spent: `first` (the ids the cache lacks) through the model, then each row's last token, tokens
 * picked on the GPU {@link GREEDY_TOKENS_PER_READ} per readback, those sampled on the CPU one at a
 * time. `onChunk` sees
 * which rows still run after each readback. Returns why each row stopped.
 */
async function decode(
  model: Model,
  tokenizer: Tokenizer,
  rows: number[][],
  first: Step,
  cache: KvCache,
  d: Decoding,
  onChunk?: (running: ReadonlySet<number>) => void,
): Promise<Generation["stop"][]> {
  const b = rows.length, positions = maxTokens(model.config), starts = rows.map((r) => r.length);
  const switchAt = cache.shape.rotationSwitch ?? Infinity;
  let refilled = false;
  const stops: Generation["stop"][] = rows.map(() => "length");
  const running = new Set(rows.keys());
  const wasTraining = model.training;
  model.train(false);
  try {
    // `length`: the positions the cache will hold once `first` has run (the next token's position).
    // `first` ends at position length − 1, and picking k tokens runs the first k − 1 of them at
    // length .. length + k − 2: so `first` runs while length ≤ positions, and k ≤ positions − length + 1
    // (a prompt of `positions` tokens still gets one, as transformers' generate gives it)
    for (let made = 0, length = cache.length + first.t; made < d.maxNew && running.size > 0;) {
      if (length > positions) {
        for (const r of running) stops[r] = "positions";
        break;
      }
      let k = Math.min(GREEDY_TOKENS_PER_READ, d.maxNew - made, positions - length + 1);
      // a chunk ends where the model's rotation switches (LongRoPE); the next one fills the cache again
      if (length <= switchAt && switchAt < length + k - 1) k = switchAt - length + 1;
      const penalty = d.repetitionPenalty;
      let picked: Int32Array[];
      const vocab = "vocabSize" in model.config ? model.config.vocabSize : 0;
      try {
        if (d.temperature === 0 || samplesOnGpu(model.gpu, d, vocab)) {
          const { temperature, topK, topP, minP, seed } = d;
          const sampling = temperature === 0 ? null : { temperature, topK, topP, minP, seed, step: made };
          picked = await gpuTokens(
            model,
            first,
            cache,
            k,
            penalty === 1 ? null : { penalty, rows },
            sampling,
          );
        } else {
          const logits = await nextTokenLogits(model, first, cache), v = logits.length / b;
          const draw = (r: number) => {
            const row = logits.subarray(r * v, (r + 1) * v);
            if (penalty !== 1) applyRepetitionPenalty(row, rows[r], penalty);
            return sampleToken(row, d, d.rng);
          };
          picked = [Int32Array.from({ length: b }, (_, r) => draw(r))];
        }
      } catch (e) {
        // a filled-again cache that still does not fit is no switch of factors: a bug to report
        if (!(e instanceof CacheRotationError) || refilled) throw e;
        refilled = true;
        // the rotary factors change at this length (LongRoPE): every row runs again with the new
        // ones, as transformers' Phi-3 recomputes its cache there
        cache.truncate(0);
        first = leftPadded(rows, tokenizer.padId);
        length = first.t;
        continue;
      }
      refilled = false;
      for (const r of [...running]) {
        const tokens = picked.map((step) => step[r]);
        const ended = extend(rows[r], starts[r], tokens, d.eos, d.stopTexts, tokenizer);
        if (ended) {
          stops[r] = ended;
          running.delete(r);
        }
      }
      onChunk?.(running);
      made += picked.length;
      length += picked.length;
      // every row's last token runs next (a stopped row's too: its text is complete)
      first = { ids: Int32Array.from(picked[picked.length - 1]), b, t: 1 };
    }
  } finally {
    model.train(wasTraining);
  }
  return stops;
}

/**
 * Add `tokens` to `ids` one at a time until one ends the text: an end-of-sequence id, or a
 * continuation (the text from `start`) that reaches a stop text. Returns why, or null.
 */
function extend(
  ids: number[],
  start: number,
  tokens: ArrayLike<number>,
  eos: ReadonlySet<number>,
  stopTexts: readonly string[],
  tokenizer: Tokenizer,
): "eos" | "stop" | null {
  for (let i = 0; i < tokens.length; i++) {
    ids.push(tokens[i]);
    if (eos.has(tokens[i])) return "eos";
    if (stopTexts.length > 0) {
      const text = continuation(tokenizer, ids, start);
      if (stopTexts.some((s) => text.includes(s))) return "stop";
    }
  }
  return null;
}

/** `text` cut before the first stop text in it. */
function cutAtStop(text: string, stopTexts: readonly string[]): string {
  const at = Math.min(...stopTexts.map((s) => text.indexOf(s)).filter((i) => i >= 0));
  return Number.isFinite(at) ? text.slice(0, at) : text;
}

/** How many characters at the end of `text` could start a stop text (not shown yet). */
function heldBack(text: string, stopTexts: readonly string[]): number {
  let most = 0;
  for (const s of stopTexts) {
    for (let n = Math.min(s.length - 1, text.length); n > most; n--) {
      if (text.endsWith(s.slice(0, n))) {
        most = n;
        break;
      }
    }
  }
  return most;
}

/**
 * The text the tokens from `start` add to the prompt: the whole sequence decoded, less the
 * decoded prompt. (Decoding the new tokens alone loses the space a SentencePiece tokenizer, as
 * LLaMA's, writes as part of a word's first piece.)
 */
function continuation(tokenizer: Tokenizer, ids: readonly number[], start: number): string {
  const all = tokenizer.decode(ids), prompt = tokenizer.decode(ids.slice(0, start));
  return all.startsWith(prompt) ? all.slice(prompt.length) : tokenizer.decode(ids.slice(start));
}

/**
 * Greedy tokens decided on the GPU between readbacks: each readback costs about 11 ms in Deno,
 * more than a small model's step, so this many forward passes run with each picked token fed to
 * the next, and their tokens come back together (those after an end-of-sequence token unused).
 */
export const GREEDY_TOKENS_PER_READ = 16;

/** The tokens of a forward pass: `b` rows of `t` ids, left-padded where `mask` has 0. */
interface Step {
  ids: Int32Array;
  b: number;
  t: number;
  mask?: Int32Array;
}

/** `rows` left-padded with `padId` into one step, the padding masked. */
function leftPadded(rows: readonly number[][], padId: number): Step {
  const b = rows.length, t = Math.max(...rows.map((r) => r.length));
  const ids = new Int32Array(b * t).fill(padId), mask = new Int32Array(b * t);
  rows.forEach((r, i) => {
    ids.set(r, (i + 1) * t - r.length);
    mask.fill(1, (i + 1) * t - r.length, (i + 1) * t);
  });
  return { ids, b, t, mask };
}

/** The model inputs of `step` (in the caller's tidy scope). */
function stepBatch(model: Model, step: Step): Batch {
  return {
    inputIds: Tensor.from(model.gpu, step.ids, [step.b, step.t]),
    inputIdsHost: step.ids,
    attentionMask: step.mask,
  };
}

/**
 * The next `k` tokens of each row, picked on the GPU: `first` through the model, then each row's
 * picked token; the most probable token, or with `sampling` one drawn as {@link sampleTokens}
 * does (its draws counted from `sampling.step`); after the repetition penalty over the tokens of
 * `rows` and those picked since, when given. One readback. Returns k arrays of b tokens.
 */
async function gpuTokens(
  model: Model,
  first: Step,
  cache: KvCache,
  k: number,
  repetition: { penalty: number; rows: readonly (readonly number[])[] } | null,
  sampling: GpuSampling | null,
): Promise<Int32Array[]> {
  const b = first.b;
  const { tokens } = tidy(() =>
    noGrad(() => {
      const picked = Tensor.empty(model.gpu, [k, b], "i32");
      let batch = stepBatch(model, first), seen: Tensor | null = null;
      for (let j = 0; j < k; j++) {
        // each token's intermediates are freed once it is encoded: the next token's passes get the
        // same buffers (the pool reuses them in stream order), and so the same bind groups
        const out = tidy(() => {
          const logits = model.forward(batch, { lastLogits: true, cache }).logits; // [b, 1, vocab]
          let scores = reshape(logits, [b, logits.shape[2]]);
          if (repetition) {
            seen ??= seenFlags(model, repetition.rows, logits.shape[2]);
            scores = repetitionPenalty(scores, seen, repetition.penalty);
          }
          let next: Tensor;
          if (sampling) {
            next = Tensor.empty(model.gpu, [b], "i32");
            sampleTokens(scores, { ...sampling, step: sampling.step + j }, next);
          } else next = argmax(scores);
          return { next, seen };
        });
        seen = out.seen;
        if (seen && j + 1 < k) markSeen(seen, out.next);
        copyAll(out.next, picked, j * b);
        batch = { inputIds: reshape(out.next, [b, 1]) };
      }
      return { tokens: picked.readLater() };
    })
  );
  model.gpu.stream.flush();
  const flat = Int32Array.from(await tokens);
  return Array.from({ length: k }, (_, j) => flat.subarray(j * b, (j + 1) * b));
}

/** Flags [rows, vocab] (i32) of the tokens each row holds. */
function seenFlags(model: Model, rows: readonly (readonly number[])[], vocab: number): Tensor {
  const flags = new Int32Array(rows.length * vocab);
  rows.forEach((row, r) => {
    for (const id of row) if (id >= 0 && id < vocab) flags[r * vocab + id] = 1;
  });
  return Tensor.from(model.gpu, flags, [rows.length, vocab]);
}

/**
 * The logits [b × vocab] of the token after each row: `first` (the ids the cache lacks) through
 * the model, the head on the last position alone.
 */
function nextTokenLogits(model: Model, first: Step, cache: KvCache): Promise<Float32Array> {
  const { logits } = tidy(() =>
    noGrad(() => {
      const last = model.forward(stepBatch(model, first), { lastLogits: true, cache }).logits; // [b, 1, vocab]
      return { logits: last.readLater() };
    })
  );
  model.gpu.stream.flush();
  return logits;
}
