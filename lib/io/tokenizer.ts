/**
 * Hugging Face `tokenizer.json` tokenizers (byte-level BPE, WordPiece, Unigram, …) through the
 * pinned npm package `@huggingface/tokenizers`, behind a small API: encode, batch encode with
 * padding/truncation into Int32Arrays, decode, special-token ids, and a check that a
 * tokenizer's ids fit a model's embedding table.
 *
 * The package lacks one normalizer that SentencePiece-converted tokenizers use, `Nmt`, and drops
 * the second text of a pair under a `ByteLevel` post-processor (GPT-2's); both are rewritten
 * before loading (see {@link adaptForTokenizersJs}). tokenizer_config.json's `add_bos_token` and
 * `add_eos_token` rebuild the post-processor, as transformers 5 does (see {@link loadTokenizer}).
 * Decoding follows the Python `tokenizers` library: special tokens skipped by default and no
 * extra "clean up tokenization spaces" pass unless tokenizer_config.json asks for one.
 * @module
 */
// The package is pinned in deno.json's import map; this module is its only user.
import { TemplateProcessingPostProcessor, Tokenizer as JsTokenizer } from "@huggingface/tokenizers";
import { dirname, join } from "node:path";
import type { HfConfig } from "./hf_config.ts";

/** Ids of the special tokens a model or a batch needs (null when the tokenizer has none). */
export interface SpecialTokens {
  /** Padding token, e.g. `[PAD]`, `<pad>`. */
  pad: number | null;
  /** Beginning-of-sequence token, e.g. `<s>`. */
  bos: number | null;
  /** End-of-sequence token, e.g. `</s>`, `<|endoftext|>`. */
  eos: number | null;
  /** Classification token that starts a sequence, e.g. `[CLS]`. */
  cls: number | null;
  /** Separator token between and after sequences, e.g. `[SEP]`. */
  sep: number | null;
  /** Token for text outside the vocabulary, e.g. `[UNK]`. */
  unk: number | null;
  /** Mask token for masked language modelling, e.g. `[MASK]`. */
  mask: number | null;
}

/** Options of {@link Tokenizer.encodeBatch}. */
export interface BatchOptions {
  /** Longest sequence allowed (special tokens included); required for padding "max_length". */
  maxLength?: number;
  /** Pad every row to the longest row (default) or to maxLength. Padding goes on the right. */
  padding?: "longest" | "max_length";
  /**
   * Cut sequences longer than maxLength, keeping the special tokens the post-processor adds
   * (e.g. RoBERTa's `</s>`), as the Python library does. Without it, a sequence over maxLength
   * is an error. Default false.
   */
  truncation?: boolean;
  /** Add the post-processor's special tokens (default true). */
  addSpecialTokens?: boolean;
}

/** A padded batch, row-major [rows, length]. */
export interface Batch {
  /** Token ids; padding positions hold the tokenizer's padId. */
  ids: Int32Array;
  /** 1 for real tokens, 0 for padding. */
  attentionMask: Int32Array;
  /** [rows, length]. */
  shape: [number, number];
}

/** A tokenizer.json or tokenizer/model mismatch the package cannot handle. */
export class TokenizerError extends Error {
  /** Always "TokenizerError". */
  override name = "TokenizerError";
}

/** A text the tokenizer library cannot encode as one piece (see {@link Tokenizer.encode}). */
export class TextTooLongError extends TokenizerError {
  /** Always "TextTooLongError". */
  override name = "TextTooLongError";
}

/** A loaded tokenizer (see the module doc). */
export class Tokenizer {
  /** One more than the largest id the tokenizer can produce (vocabulary plus added tokens). */
  readonly vocabSize: number;
  /** Ids of the special tokens, from the tokenizer files, the model config or conventional names. */
  readonly special: Readonly<SpecialTokens>;
  /** Id used for padding in batches: pad, else eos, else 0 (masked out either way). */
  readonly padId: number;
  /** Whether decode applies transformers' "clean up tokenization spaces" (tokenizer_config.json). */
  private readonly cleanUp: boolean;
  /** A byte-level pre-tokenizer (GPT-2, RoBERTa, LLaMA 3, Qwen2): words need their leading space. */
  private readonly byteLevel: boolean;

  /** Use {@link loadTokenizer}. */
  constructor(
    /** The tokenizer.json this came from. */
    readonly path: string,
    private readonly tok: JsTokenizer,
    json: Record<string, unknown>,
    tokenizerConfig: Record<string, unknown>,
    /** The model config it was loaded with, for special-token ids (see {@link loadTokenizer}). */
    readonly modelConfig?: HfConfig,
  ) {
    let max = -1;
    for (const id of tok.get_vocab(true).values()) max = Math.max(max, id);
    this.vocabSize = max + 1;
    this.special = resolveSpecial(tok, json, tokenizerConfig, modelConfig);
    this.padId = this.special.pad ?? this.special.eos ?? 0;
    this.cleanUp = tokenizerConfig.clean_up_tokenization_spaces === true;
    this.byteLevel = JSON.stringify(json.pre_tokenizer ?? null).includes('"type":"ByteLevel"');
  }

  /** Token ids of `text`, with the post-processor's special tokens unless told otherwise. */
  encode(text: string, { addSpecialTokens = true } = {}): number[] {
    try {
      return this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
    } catch (e) {
      // the npm library spreads a piece's tokens into a call's arguments: one piece of a few
      // hundred thousand tokens (a text without the breaks its pre-tokenizer splits at) overflows
      if (!(e instanceof RangeError)) throw e;
      throw new TextTooLongError(
        `${this.path}: cannot encode a text of ${text.length} characters as one piece (${e.message}): ` +
          `split it into lines or records`,
      );
    }
  }

  /**
   * Token ids of a text pair (e.g. BERT's `[CLS] a [SEP] b [SEP]`) and their token type ids
   * (0 for the first text and its special tokens, 1 for the second, as the post-processor
   * assigns them; without a post-processor the texts are concatenated, types 0 then 1).
   * An empty `pair` is still a pair, as in transformers: the pair template's special tokens are
   * there (BERT's `[CLS] a [SEP] [SEP]`).
   */
  encodePair(
    text: string,
    pair: string,
    { addSpecialTokens = true } = {},
  ): { ids: number[]; typeIds: number[] } {
    // the npm package encodes an empty pair as none: encode a probe pair, then take its tokens out
    if (pair === "") return this.withoutPairTokens(this.encodePair(text, PROBE, { addSpecialTokens }));
    const e = this.tok.encode(text, {
      text_pair: pair,
      add_special_tokens: addSpecialTokens,
      return_token_type_ids: true,
    });
    if (e.token_type_ids) return { ids: e.ids, typeIds: e.token_type_ids };
    const first = this.encode(text, { addSpecialTokens: false }).length;
    return { ids: e.ids, typeIds: e.ids.map((_, i) => (i < first ? 0 : 1)) };
  }

  /** `e`, a pair encoding whose second text is {@link PROBE}, without the probe's own tokens (its last ones). */
  private withoutPairTokens(e: { ids: number[]; typeIds: number[] }): { ids: number[]; typeIds: number[] } {
    const probe = this.encode(PROBE, { addSpecialTokens: false });
    const at = locate(e.ids, probe, "last");
    if (at < 0) {
      throw new TokenizerError(`${this.path}: the post-processor changes the second text's own tokens`);
    }
    const cut = (xs: number[]) => [...xs.slice(0, at), ...xs.slice(at + probe.length)];
    return { ids: cut(e.ids), typeIds: cut(e.typeIds) };
  }

  /**
   * Token ids of a text already split into words (transformers' `is_split_into_words`), with
   * the post-processor's special tokens around them unless told otherwise, and the word each
   * token came from (null for special tokens). Each word is encoded alone; a byte-level
   * tokenizer encodes it after a space, as transformers does with `add_prefix_space=True`
   * (which its byte-level tokenizers need for pre-split words), so a word has the tokens it has
   * inside running text. A word that encodes to nothing has no tokens.
   */
  encodeWords(
    words: readonly string[],
    { addSpecialTokens = true } = {},
  ): { ids: number[]; wordIds: (number | null)[] } {
    const ids: number[] = [], wordIds: (number | null)[] = [];
    words.forEach((word, w) => {
      for (const id of this.#wordTokens(word)) {
        ids.push(id);
        wordIds.push(w);
      }
    });
    if (!addSpecialTokens) return { ids, wordIds };
    const [before, after] = this.specialAround();
    return {
      ids: [...before, ...ids, ...after],
      wordIds: [...before.map(() => null), ...wordIds, ...after.map(() => null)],
    };
  }

  /**
   * The ids of `word` encoded alone, as {@link encodeWords} takes it; kept for the next time, as
   * words recur (a data set of a million words has some tens of thousands of different ones).
   */
  #wordTokens(word: string): readonly number[] {
    let ids = this.#wordIds.get(word);
    if (ids === undefined) {
      // a byte-level tokenizer's prefix space, as add_prefix_space: none before an empty word or a space
      const text = this.byteLevel && word !== "" && !word.startsWith(" ") ? ` ${word}` : word;
      ids = this.encode(text, { addSpecialTokens: false });
      if (this.#wordIds.size >= WORD_CACHE_SIZE) this.#wordIds.clear();
      this.#wordIds.set(word, ids);
    }
    return ids;
  }

  /** The ids {@link encodeWords} found for each word. */
  #wordIds = new Map<string, readonly number[]>();

  /**
   * The special tokens the post-processor puts before and after one text (e.g. `[CLS]` and
   * `[SEP]`), found by encoding the {@link PROBE} word with and without them.
   */
  specialAround(): [number[], number[]] {
    if (this.#around) return [[...this.#around[0]], [...this.#around[1]]];
    const full = this.encode(PROBE), plain = this.encode(PROBE, { addSpecialTokens: false });
    const at = locate(full, plain, "first");
    if (at < 0) throw new TokenizerError(`${this.path}: the post-processor changes a text's own tokens`);
    this.#around = [full.slice(0, at), full.slice(at + plain.length)];
    return this.specialAround();
  }

  /** {@link specialAround}'s answer, found once. */
  #around: [number[], number[]] | null = null;

  /** Token strings of `text` (as the Python library's `Encoding.tokens`). */
  tokens(text: string, { addSpecialTokens = true } = {}): string[] {
    return this.tok.encode(text, { add_special_tokens: addSpecialTokens }).tokens;
  }

  /** Encode `texts` into one right-padded [rows, length] batch (see {@link BatchOptions}). */
  encodeBatch(texts: readonly string[], opts: BatchOptions = {}): Batch {
    const { maxLength, padding = "longest", truncation = false, addSpecialTokens = true } = opts;
    if (maxLength !== undefined && !(Number.isInteger(maxLength) && maxLength >= 1)) {
      throw new RangeError(`encodeBatch: maxLength must be an integer ≥ 1, got ${maxLength}`);
    }
    if (padding === "max_length" && maxLength === undefined) {
      throw new RangeError(`encodeBatch: padding "max_length" needs maxLength`);
    }
    const rows = texts.map((text, i) => {
      const ids = this.encode(text, { addSpecialTokens });
      if (maxLength === undefined || ids.length <= maxLength) return ids;
      if (!truncation) {
        throw new RangeError(
          `encodeBatch: text ${i} has ${ids.length} tokens, more than maxLength ${maxLength} (pass truncation: true)`,
        );
      }
      return this.truncate(text, ids, maxLength, addSpecialTokens);
    });
    const length = padding === "max_length" ? maxLength! : Math.max(0, ...rows.map((r) => r.length));
    const ids = new Int32Array(rows.length * length).fill(this.padId);
    const attentionMask = new Int32Array(rows.length * length);
    rows.forEach((r, i) => {
      ids.set(r, i * length);
      attentionMask.fill(1, i * length, i * length + r.length);
    });
    return { ids, attentionMask, shape: [rows.length, length] };
  }

  /**
   * `ids` (of `text`) cut to maxLength: the text's own tokens are cut at the end and the
   * special tokens the post-processor put before and after them are kept.
   */
  private truncate(text: string, ids: number[], maxLength: number, addSpecialTokens: boolean): number[] {
    const plain = addSpecialTokens ? this.encode(text, { addSpecialTokens: false }) : ids;
    const added = ids.length - plain.length;
    const keep = maxLength - added;
    if (keep < 0) {
      throw new RangeError(
        `encodeBatch: maxLength ${maxLength} leaves no room for the ${added} special tokens`,
      );
    }
    for (let p = 0; p <= added; p++) {
      if (plain.every((id, j) => ids[p + j] === id)) {
        return [...ids.slice(0, p), ...plain.slice(0, keep), ...ids.slice(p + plain.length)];
      }
    }
    throw new TokenizerError(`${this.path}: cannot truncate: the post-processor changes the text's tokens`);
  }

  /**
   * Text of `ids`; special tokens are skipped unless skipSpecialTokens is false. Ids past the
   * vocabulary are skipped too, as the tokenizers library skips them: a model's logits may be
   * wider than its tokenizer (Qwen2.5's 151936 for 151665 ids), so generation can pick one.
   */
  decode(ids: ArrayLike<number>, { skipSpecialTokens = true } = {}): string {
    const known: number[] = [];
    for (const id of Array.from(ids)) {
      if (!Number.isInteger(id) || id < 0) {
        throw new RangeError(`${this.path}: cannot decode id ${id} (ids are integers ≥ 0)`);
      }
      if (id < this.vocabSize) known.push(id);
    }
    if (known.length === 0) return "";
    return this.tok.decode(known, {
      skip_special_tokens: skipSpecialTokens,
      clean_up_tokenization_spaces: this.cleanUp,
    });
  }

  /** Id of a token string, or undefined. */
  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  /** Token string of an id, or undefined. */
  idToToken(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }
}

/** Words whose ids a tokenizer keeps for {@link Tokenizer.encodeWords} (all are dropped when it holds as many). */
const WORD_CACHE_SIZE = 1 << 16;

/**
 * The probe text: a second text whose tokens stand in for an empty one's (see
 * {@link Tokenizer.encodePair}), and the word whose encodings show the special tokens around a
 * text (see {@link Tokenizer.specialAround}).
 */
const PROBE = "a";

/**
 * Where `plain` lies inside `full` (its first or last place), or -1 where it does not: a text's
 * own tokens found among those the post-processor puts around them.
 */
function locate(full: readonly number[], plain: readonly number[], which: "first" | "last"): number {
  const matches = (i: number) => plain.every((id, k) => full[i + k] === id);
  if (which === "first") {
    for (let i = 0; i + plain.length <= full.length; i++) if (matches(i)) return i;
  } else {
    for (let i = full.length - plain.length; i >= 0; i--) if (matches(i)) return i;
  }
  return -1;
}

/** tokenizer.json model types handled (the package guesses at others, so they are refused). */
const MODEL_TYPES = ["BPE", "WordPiece", "Unigram"];

/**
 * The type of a tokenizer.json model written without `"type"` (by tokenizers before 0.9, as
 * GPT-2's and bert-base-uncased's own), found as the Rust library finds it: the first of BPE
 * (`vocab` map and `merges`), WordPiece (`vocab` map, `unk_token`, `continuing_subword_prefix` and
 * `max_input_chars_per_word`), WordLevel (`vocab` map and `unk_token`) and Unigram (`vocab` list)
 * whose fields the model has; undefined for none.
 */
function untaggedType(model: Record<string, unknown>): string | undefined {
  const map = typeof model.vocab === "object" && model.vocab !== null && !Array.isArray(model.vocab);
  const has = (...keys: string[]) => keys.every((k) => k in model);
  if (map && has("merges")) return "BPE";
  if (map && has("unk_token", "continuing_subword_prefix", "max_input_chars_per_word")) return "WordPiece";
  if (map && has("unk_token")) return "WordLevel";
  if (Array.isArray(model.vocab)) return "Unigram";
  return undefined;
}

/**
 * The tokenizer_config.json of `dir` ({} without one), its special tokens completed from
 * special_tokens_map.json where it does not name them, as transformers completes them.
 */
export async function readTokenizerConfig(dir: string): Promise<Record<string, unknown>> {
  const optional = (path: string): Promise<Record<string, unknown>> =>
    readJson(path).catch((e) => {
      if (e instanceof Deno.errors.NotFound) return {};
      throw e;
    });
  const config = await optional(join(dir, "tokenizer_config.json"));
  const map = await optional(join(dir, "special_tokens_map.json"));
  const named = Object.entries(map).filter(([key]) => key.endsWith("_token") && config[key] == null);
  return { ...config, ...Object.fromEntries(named) };
}

/**
 * Load a tokenizer: `path` is a tokenizer.json or a folder holding one. A
 * tokenizer_config.json beside it (with special_tokens_map.json) is read for special tokens when
 * present; `modelConfig` (the model's config.json) fills special-token ids the tokenizer files do
 * not name. When tokenizer_config.json names `add_bos_token` or `add_eos_token`, the post-processor
 * is rebuilt from them, as transformers 5 rebuilds it: the tokenizer's bos before each text and eos
 * after it, each where its flag is true.
 */
export async function loadTokenizer(path: string, modelConfig?: HfConfig): Promise<Tokenizer> {
  const file = (await Deno.stat(path)).isDirectory ? join(path, "tokenizer.json") : path;
  const json = await readJson(file);
  const tokenizerConfig = await readTokenizerConfig(dirname(file));
  const model = json.model as Record<string, unknown> | undefined;
  const modelType = model?.type ?? (model && untaggedType(model));
  if (!MODEL_TYPES.includes(modelType as string)) {
    const what = modelType === undefined
      ? `model has no "type" and fits none of BPE, WordPiece, WordLevel, Unigram`
      : `model type ${JSON.stringify(modelType)} is not supported`;
    throw new TokenizerError(`${file}: ${what} (supported: ${MODEL_TYPES.join(", ")})`);
  }
  let tok: JsTokenizer;
  try {
    // the package guesses an untagged model's type otherwise, not as the Rust library does
    tok = new JsTokenizer(
      adaptForTokenizersJs({ ...json, model: { ...model, type: modelType } }),
      tokenizerConfig,
    );
  } catch (e) {
    throw new TokenizerError(`${file}: cannot load: ${(e as Error).message}`);
  }
  const tokenizer = new Tokenizer(file, tok, json, tokenizerConfig, modelConfig);
  // the special tokens are resolved first: the rebuilt post-processor adds the tokenizer's bos and eos
  const template = bosEosTemplate(tokenizerConfig, tokenizer);
  // the package's types want a special token's ids in each template item; it reads the id alone
  if (template) tok.post_processor = new TemplateProcessingPostProcessor(template as unknown as JsTemplate);
  return tokenizer;
}

/** The package's TemplateProcessing configuration type. */
type JsTemplate = ConstructorParameters<typeof TemplateProcessingPostProcessor>[0];

/** One piece of a TemplateProcessing post-processor, as tokenizer.json writes it: a special token or a text. */
type TemplateItem =
  | { SpecialToken: { id: string; type_id: number } }
  | { Sequence: { id: "A" | "B"; type_id: number } };

/** A TemplateProcessing post-processor, as tokenizer.json writes it. */
interface Template {
  type: "TemplateProcessing";
  single: TemplateItem[];
  pair: TemplateItem[];
  special_tokens: Record<string, { id: string; ids: number[]; tokens: string[] }>;
}

/**
 * The post-processor transformers 5 builds when tokenizer_config.json names `add_bos_token` or
 * `add_eos_token` (TokenizersBackend.update_post_processor), replacing tokenizer.json's:
 * `[bos:0] $A:0 [eos:0]`, a pair followed by `[bos:1] $B:1 [eos:1]`, bos and eos where their flag is
 * true (an absent flag is false) and the tokenizer has the token (none for a `bos_token` the config
 * sets to null, as Qwen2's). Null when the config names neither flag: tokenizer.json's stays.
 */
function bosEosTemplate(
  tokenizerConfig: Record<string, unknown>,
  tokenizer: Tokenizer,
): Template | null {
  if (!("add_bos_token" in tokenizerConfig) && !("add_eos_token" in tokenizerConfig)) return null;
  const [bos, eos] = (["bos", "eos"] as const).map((role) => {
    const id = tokenizer.special[role];
    const wanted = tokenizerConfig[`add_${role}_token`] === true && tokenizerConfig[`${role}_token`] !== null;
    const token = wanted && id !== null ? tokenizer.idToToken(id) : undefined;
    return token === undefined ? null : { token, id: id! };
  });
  const special = (t: typeof bos, type_id: number): TemplateItem[] =>
    t ? [{ SpecialToken: { id: t.token, type_id } }] : [];
  const items = (text: "A" | "B", type_id: number): TemplateItem[] => [
    ...special(bos, type_id),
    { Sequence: { id: text, type_id } },
    ...special(eos, type_id),
  ];
  const added = [bos, eos].filter((t) => t !== null);
  const special_tokens = Object.fromEntries(
    added.map((t) => [t.token, { id: t.token, ids: [t.id], tokens: [t.token] }]),
  );
  return {
    type: "TemplateProcessing",
    single: items("A", 0),
    pair: [...items("A", 0), ...items("B", 1)],
    special_tokens,
  };
}

/**
 * Throw unless every id the tokenizer can produce (and each special id) is below the model's
 * vocab_size, naming both files.
 */
export function checkTokenizerFits(tokenizer: Tokenizer, config: HfConfig): void {
  if (!("vocabSize" in config)) {
    throw new TokenizerError(
      `${config.path}: a ${config.modelType} model takes no token ids (${tokenizer.path})`,
    );
  }
  if (tokenizer.vocabSize > config.vocabSize) {
    throw new TokenizerError(
      `tokenizer ${tokenizer.path} produces ids up to ${
        tokenizer.vocabSize - 1
      }, but model config ${config.path} ` +
        `has vocab_size ${config.vocabSize}`,
    );
  }
  for (const [role, id] of Object.entries(tokenizer.special)) {
    if (id !== null && id >= config.vocabSize) {
      throw new TokenizerError(
        `tokenizer ${tokenizer.path}: ${role} id ${id} is outside model config ${config.path} (vocab_size ${config.vocabSize})`,
      );
    }
  }
}

/**
 * A copy of tokenizer.json content with components the npm package lacks replaced by
 * equivalents it has. `Nmt` (SentencePiece's nmt_nfkc preamble) drops the control characters
 * U+0001–0008, 000B, 000E–001F, 007F, 008F, 009F and maps U+0009, 000A, 000C, 000D, 1680,
 * 200B–200F, 2028, 2029, 2581, FEFF, FFFD to a space: two regex Replace normalizers. A
 * `ByteLevel` post-processor only trims offsets, which have no part in the ids, but the package's
 * returns the first text of a pair alone: it is left out (a pair is then joined, types 0 then 1,
 * as the Rust library joins it).
 */
export function adaptForTokenizersJs(json: Record<string, unknown>): Record<string, unknown> {
  const nmt = {
    type: "Sequence",
    normalizers: [
      {
        type: "Replace",
        pattern: { Regex: "[\\x{1}-\\x{8}\\x{B}\\x{E}-\\x{1F}\\x{7F}\\x{8F}\\x{9F}]" },
        content: "",
      },
      {
        type: "Replace",
        pattern: {
          Regex:
            "[\\x{9}\\x{A}\\x{C}\\x{D}\\x{1680}\\x{200B}-\\x{200F}\\x{2028}\\x{2029}\\x{2581}\\x{FEFF}\\x{FFFD}]",
        },
        content: " ",
      },
    ],
  };
  const fix = (n: unknown): unknown => {
    if (typeof n !== "object" || n === null) return n;
    const o = n as Record<string, unknown>;
    if (o.type === "Nmt") return nmt;
    if (o.type === "Sequence" && Array.isArray(o.normalizers)) {
      return { ...o, normalizers: o.normalizers.map(fix) };
    }
    return o;
  };
  return {
    ...json,
    normalizer: fix(json.normalizer ?? null),
    post_processor: withoutByteLevel(json.post_processor),
  };
}

/** A post-processor without its `ByteLevel` steps (null when nothing is left). */
function withoutByteLevel(post: unknown): unknown {
  if (typeof post !== "object" || post === null) return null;
  const o = post as Record<string, unknown>;
  if (o.type === "ByteLevel") return null;
  if (o.type !== "Sequence" || !Array.isArray(o.processors)) return o;
  const rest = o.processors.map(withoutByteLevel).filter((p) => p !== null);
  return rest.length === 0 ? null : rest.length === 1 ? rest[0] : { ...o, processors: rest };
}

/** Conventional spellings of each special token, most common first. */
const CONVENTIONAL: Record<keyof SpecialTokens, string[]> = {
  pad: ["[PAD]", "<pad>", "<|pad|>", "<|padding|>"],
  bos: ["<s>", "<|begin_of_text|>", "<|startoftext|>", "<|endoftext|>", "<bos>"],
  eos: ["</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>"],
  cls: ["[CLS]", "<s>", "<cls>"],
  sep: ["[SEP]", "</s>", "<sep>"],
  unk: ["[UNK]", "<unk>", "<|unk|>"],
  mask: ["[MASK]", "<mask>"],
};

/**
 * Special-token ids, each from the first source that names it: tokenizer_config.json
 * (`pad_token`, …), the post-processor (cls/sep), the model's unknown token, the model
 * config's pad/bos/eos ids, then conventional spellings present in the vocabulary.
 */
function resolveSpecial(
  tok: JsTokenizer,
  json: Record<string, unknown>,
  tokenizerConfig: Record<string, unknown>,
  modelConfig?: HfConfig,
): SpecialTokens {
  const idOf = (t: unknown): number | null => {
    const s = typeof t === "object" && t !== null ? (t as { content?: unknown }).content : t;
    return typeof s === "string" ? tok.token_to_id(s) ?? null : null;
  };
  const post = (json.post_processor ?? {}) as Record<string, unknown>;
  const fromPost = (key: "cls" | "sep"): number | null => {
    const v = post[key];
    return Array.isArray(v) && typeof v[1] === "number" ? v[1] : null;
  };
  const model = (json.model ?? {}) as Record<string, unknown>;
  const unk = typeof model.unk_id === "number" ? model.unk_id : idOf(model.unk_token);
  const fromModel: Partial<Record<keyof SpecialTokens, number | null>> = {
    pad: modelConfig?.padTokenId ?? null,
    bos: modelConfig?.bosTokenId ?? null,
    eos: modelConfig?.eosTokenIds[0] ?? null,
  };
  const out = {} as SpecialTokens;
  for (const role of Object.keys(CONVENTIONAL) as (keyof SpecialTokens)[]) {
    out[role] = idOf(tokenizerConfig[`${role}_token`]) ??
      (role === "cls" || role === "sep" ? fromPost(role) : null) ??
      (role === "unk" ? unk : null) ??
      fromModel[role] ??
      CONVENTIONAL[role].map(idOf).find((id) => id !== null) ??
      null;
  }
  return out;
}

async function readJson(path: string): Promise<Record<string, unknown>> {
  const text = await Deno.readTextFile(path);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new TokenizerError(`${path}: invalid JSON (${(e as Error).message})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new TokenizerError(`${path}: expected a JSON object`);
  }
  return json as Record<string, unknown>;
}
