/**
 * Supervised fine-tuning data for a causal LM, in TRL's dataset formats: a `prompt` and the
 * `completion` to learn (texts, or lists of messages), or a conversation (`messages`, a list of
 * `{role, content}`) rendered with the model's chat template. The loss is taken on the completion
 * (a conversation's assistant turns) alone, as TRL's completion-only loss, unless `lossOn: "all"`.
 *
 * ```ts
 * import type { Tokenizer } from "../io/tokenizer.ts";
 * import type { ChatTemplate } from "../io/chat_template.ts";
 * declare const tokenizer: Tokenizer, template: ChatTemplate;
 * const examples = await readInstructions("sft.jsonl");
 * const { dataset } = instructionDataset(examples, tokenizer, { seqLen: 512, template });
 * ```
 * @module
 */
import type { ChatMessage, ChatTemplate } from "../io/chat_template.ts";
import type { Tokenizer } from "../io/tokenizer.ts";
import { IGNORE_INDEX } from "../tensor/mod.ts";
import type { Dataset, Row } from "./data.ts";
import { readRecords, type SourceRecord } from "./readers.ts";
import { DataError } from "./data_error.ts";

/** A prompt and the text that should follow it. */
export interface TextInstruction {
  /** The text the model is given. */
  prompt: string;
  /** The text it should continue with (learnt). */
  completion: string;
}

/**
 * A conversation: the assistant turns from `completionFrom` on are learnt (0 for a `messages`
 * row: every assistant turn; the prompt's length for a conversational prompt/completion row).
 */
export interface ChatInstruction {
  /** The conversation. */
  messages: ChatMessage[];
  /** The first message whose assistant turns are learnt. */
  completionFrom: number;
}

/** One supervised example, and where it was read (`file:line`, the row for Parquet), for errors. */
export type Instruction = (TextInstruction | ChatInstruction) & { source?: string };

/** Which tokens the loss is taken on: the completions (assistant turns) alone, or all. */
export type LossOn = "completion" | "all";

/** Whether records with these fields are instructions: a `messages` list, or `prompt` and `completion`. */
export function isInstructionRecord(fieldNames: readonly string[]): boolean {
  return fieldNames.includes("messages") ||
    (fieldNames.includes("prompt") && fieldNames.includes("completion"));
}

/**
 * The instructions of a JSONL, CSV/TSV or Parquet file whose records have `prompt` and
 * `completion` fields or a `messages` list. Errors name the file and the line.
 */
export async function readInstructions(path: string): Promise<Instruction[]> {
  const records = await readRecords(path);
  if (!isInstructionRecord(Object.keys(records[0].fields))) {
    throw new DataError(
      `${path}:${
        records[0].line
      }: expected "prompt" and "completion" fields or a "messages" list; the fields are ` +
        Object.keys(records[0].fields).join(", "),
    );
  }
  return records.map((r) => instructionOf(r, path));
}

function instructionOf({ line, fields }: SourceRecord, path: string): Instruction {
  const at = `${path}:${line}`;
  if (Array.isArray(fields.messages)) {
    return { messages: messagesOf(fields.messages, at, "messages"), completionFrom: 0, source: at };
  }
  const { prompt, completion } = fields;
  if (typeof prompt === "string" && typeof completion === "string") return { prompt, completion, source: at };
  if (Array.isArray(prompt) && Array.isArray(completion)) {
    const first = messagesOf(prompt, at, "prompt");
    return {
      messages: [...first, ...messagesOf(completion, at, "completion")],
      completionFrom: first.length,
      source: at,
    };
  }
  throw new DataError(
    `${at}: expected "prompt" and "completion" both texts or both lists of messages, or a "messages" list`,
  );
}

function messagesOf(value: unknown[], at: string, field: string): ChatMessage[] {
  if (value.length === 0) throw new DataError(`${at}: "${field}" has no messages`);
  return value.map((m, i) => {
    const { role, content } = (m ?? {}) as Record<string, unknown>;
    if (typeof role !== "string" || typeof content !== "string") {
      throw new DataError(
        `${at}: ${field}[${i}] must be {"role": text, "content": text}, got ${JSON.stringify(m)}`,
      );
    }
    return { role, content };
  });
}

/** An example's tokens and which of them are targets of the loss. */
export interface InstructionTokens {
  /** The token ids. */
  ids: Int32Array;
  /** 1 where the token is learnt. */
  trained: Uint8Array;
}

/**
 * Tokenize one instruction. A text one as TRL does: `prompt + completion` with the tokenizer's
 * special tokens, the end-of-sequence token appended, the completion's tokens being those after
 * the prompt's own (from a token that spans the two texts, which TRL would leave unlearnt). A conversation through `template`, its text tokenized without adding special
 * tokens (the template writes them), each learnt assistant turn's tokens found by rendering the
 * conversation up to the turn (with the generation prompt, so the turn's header is not learnt) and
 * through it: the tokens of the whole text from the turn's content to its end-of-turn token
 * ({@link turnSpan}; a token across a boundary, as a SentencePiece word that joins the newline
 * before it, is learnt).
 * `where` names the example in errors.
 */
export function tokenizeInstruction(
  example: Instruction,
  tokenizer: Tokenizer,
  opts: { template?: ChatTemplate | null; lossOn?: LossOn; where?: string } = {},
): InstructionTokens {
  const lossOn = opts.lossOn ?? "completion", where = opts.where ?? "instruction";
  if ("prompt" in example) {
    const prompt = promptTokens(tokenizer, example.prompt);
    const ids = tokenizer.encode(example.prompt + example.completion);
    const eos = tokenizer.special.eos;
    if (eos !== null && ids[ids.length - 1] !== eos) ids.push(eos);
    // a token across the boundary ("Answer: " + "There" → "ĠThe") is the completion's first
    const start = boundary(prompt, ids, false) ?? prompt.length;
    const trained = new Uint8Array(ids.length).fill(1, lossOn === "all" ? 0 : Math.min(start, ids.length));
    return { ids: Int32Array.from(ids), trained };
  }
  const template = opts.template;
  if (!template) {
    throw new DataError(
      `${where}: a conversation needs the model's chat template (tokenizer_config.json "chat_template", or ` +
        `chat_template.jinja), and the model directory has none`,
    );
  }
  const render = (messages: ChatMessage[], generation: boolean) => template.render(messages, generation);
  const encode = (text: string) => tokenizer.encode(text, { addSpecialTokens: false });
  const text = render(example.messages, false), ids = encode(text);
  const trained = new Uint8Array(ids.length);
  if (lossOn === "all") trained.fill(1);
  else {
    const broken = (i: number) =>
      new DataError(
        `${where}: the chat template (${template.source}) does not render the conversation turn by turn ` +
          `(its text up to message ${i} is not the start of the whole, or the turn's text is not in it), so ` +
          `the assistant's tokens cannot be found; train on every token instead (--loss-on all)`,
      );
    example.messages.forEach((m, i) => {
      if (m.role !== "assistant" || i < example.completionFrom) return;
      const upTo = example.messages.slice(0, i), marked = { ...m, content: MARK };
      const span = turnSpan(
        { text, marked: render([...upTo, marked, ...example.messages.slice(i + 1)], false) },
        { text: render([...upTo, m], false), marked: render([...upTo, marked], false) },
        render(upTo, true),
        m.content,
      );
      if (!span) throw broken(i);
      const [from, to, whole] = span;
      const start = boundary(encode(text.slice(0, from)), ids, false);
      // where the last turn's closing differs, the text it shares ends inside the next token: not learnt
      const end = boundary(encode(text.slice(0, to)), ids, whole);
      if (start === null || end === null) throw broken(i);
      trained.fill(1, start, end);
    });
  }
  return { ids: Int32Array.from(ids), trained };
}

/** Stands in for a turn's content to find where a template writes it: private-use characters, untrimmed. */
const MARK = "\u{E000}turn\u{E001}";

/** A rendering of a conversation, and the same with one turn's content replaced by {@link MARK}. */
interface Rendered {
  text: string;
  marked: string;
}

/**
 * Where an assistant turn lies in the whole conversation's text (`whole`), as characters [from, to):
 * from its content, which follows `before` (the conversation up to the turn with the generation
 * prompt, a start of the text), to the end of what the turn rendered last (`through`) writes after its
 * content that the whole text writes too (its end-of-turn token), and whether the whole text writes
 * all of that. The content is found where the template writes it (see {@link contentAt}), never by
 * searching for its text, which may also occur in the markup around it ("d" in `<|im_end|>`); an
 * empty content's span is its end-of-turn token. So templates that close the last turn otherwise
 * (Phi-3's <|endoftext|>) or write earlier turns otherwise (Qwen3 leaves their empty <think> out)
 * are read as the whole text has them. Null when `before` does not start the text or the content is
 * not where the template puts it.
 */
function turnSpan(
  whole: Rendered,
  through: Rendered,
  before: string,
  content: string,
): [number, number, boolean] | null {
  if (!whole.text.startsWith(before)) return null;
  const inWhole = contentAt(whole, content), inThrough = contentAt(through, content);
  if (!inWhole || !inThrough || inWhole[0] < before.length) return null;
  const [from, length] = inWhole;
  const tail = through.text.slice(inThrough[0] + inThrough[1]), rest = whole.text.slice(from + length);
  let same = 0;
  while (same < tail.length && tail[same] === rest[same]) same++;
  return [from, from + length + same, same === tail.length];
}

/**
 * Where a template wrote a turn's content in `r.text` (where it wrote {@link MARK} in `r.marked`,
 * the text before being the same), and its length there: the content's, or its trimmed content's
 * for a template that trims it. Null when the content is not there.
 */
function contentAt(r: Rendered, content: string): [number, number] | null {
  const at = r.marked.indexOf(MARK);
  if (at < 0 || !r.text.startsWith(r.marked.slice(0, at))) return null;
  for (const body of [content, content.trim()]) {
    if (r.text.startsWith(body, at)) return [at, body.length];
  }
  return null;
}

/**
 * Where the tokens of a text's start (`prefix`, tokenized alone) end among the whole text's `ids`:
 * their count when they begin `ids`; when only the last one or two differ (a token of the whole
 * spans the boundary, as a SentencePiece word joins the space before it), the first differing
 * token, counted in with `inclusive`; null when they differ earlier.
 */
function boundary(prefix: readonly number[], ids: readonly number[], inclusive: boolean): number | null {
  let same = 0;
  while (same < prefix.length && same < ids.length && prefix[same] === ids[same]) same++;
  if (same === prefix.length) return same;
  if (same < prefix.length - 2) return null;
  return Math.min(ids.length, inclusive ? same + 1 : same);
}

/** What a model is asked for an instruction, and what it should answer. */
export interface InstructionQuery {
  /** The prompt: a text, or the conversation before the answer. */
  prompt: string | ChatMessage[];
  /** The prompt's tokens. */
  ids: number[];
  /** The expected answer: the completion, or the first learnt assistant turn. */
  expected: string;
}

/** A text prompt's tokens without what the tokenizer appends after a text (a template's </s>). */
function promptTokens(tokenizer: Tokenizer, prompt: string): number[] {
  const ids = tokenizer.encode(prompt), after = tokenizer.specialAround()[1];
  ids.splice(ids.length - after.length, after.length);
  return ids;
}

/**
 * The question of `example` for generation: a text prompt with the special tokens the tokenizer
 * puts before it, none after (as in training), or a conversation up to its first learnt assistant turn rendered with the
 * generation prompt; and that turn's content (or the completion) as the expected answer.
 */
export function instructionQuery(
  example: Instruction,
  tokenizer: Tokenizer,
  template?: ChatTemplate | null,
  where = "instruction",
): InstructionQuery {
  if ("prompt" in example) {
    return {
      prompt: example.prompt,
      ids: promptTokens(tokenizer, example.prompt),
      expected: example.completion,
    };
  }
  const turn = example.messages.findIndex((m, i) => i >= example.completionFrom && m.role === "assistant");
  if (turn < 0) throw new DataError(`${where}: the conversation has no assistant turn to answer`);
  if (!template) {
    throw new DataError(
      `${where}: a conversation needs the model's chat template, and the model directory has none`,
    );
  }
  const prompt = example.messages.slice(0, turn);
  const ids = tokenizer.encode(template.render(prompt, true), { addSpecialTokens: false });
  return { prompt, ids, expected: example.messages[turn].content };
}

/** Options of {@link instructionDataset}. */
export interface InstructionDatasetOptions {
  /** Tokens per row at most: longer examples keep their first seqLen tokens. */
  seqLen: number;
  /** The model's chat template (conversations need it). */
  template?: ChatTemplate | null;
  /** Default "completion". */
  lossOn?: LossOn;
  /** Names the examples in errors (e.g. the file), with their number where they have no `source`. */
  source?: string;
  /** Called as the examples are tokenized (every 256, and at the end). */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Rows of next-token targets on the learnt tokens of `examples`. Examples longer than seqLen are
 * cut (the rows kept so counted in `truncated`); those with no learnt token within it (a prompt that
 * fills it) are left out and counted in `dropped`.
 */
export function instructionDataset(
  examples: readonly Instruction[],
  tokenizer: Tokenizer,
  opts: InstructionDatasetOptions,
): { dataset: InstructionDataset; dropped: number; truncated: number } {
  if (!(Number.isInteger(opts.seqLen) && opts.seqLen >= 2)) {
    throw new RangeError(`instructionDataset: seqLen must be an integer ≥ 2, got ${opts.seqLen}`);
  }
  const rows: Row[] = [];
  let truncated = 0;
  examples.forEach((ex, i) => {
    const where = ex.source ?? `${opts.source ?? "instructions"}: example ${i + 1}`;
    const { ids, trained } = tokenizeInstruction(ex, tokenizer, { ...opts, where });
    const kept = ids.subarray(0, opts.seqLen);
    // position t predicts token t + 1, when that token is learnt
    const label = new Int32Array(kept.length).fill(IGNORE_INDEX);
    let targets = 0;
    for (let t = 0; t + 1 < kept.length; t++) {
      if (trained[t + 1]) [label[t], targets] = [kept[t + 1], targets + 1];
    }
    if ((i + 1) % 256 === 0 || i + 1 === examples.length) opts.onProgress?.(i + 1, examples.length);
    if (targets === 0) return;
    rows.push({ ids: kept, label });
    if (kept.length < ids.length) truncated++;
  });
  if (rows.length === 0) {
    throw new DataError(
      `${opts.source ?? "instructions"}: no example has a completion token within ${opts.seqLen} tokens ` +
        `(a longer --seq-len, or shorter prompts)`,
    );
  }
  const dropped = examples.length - rows.length;
  return { dataset: new InstructionDataset(rows, tokenizer.padId), dropped, truncated };
}

/** Tokenized instructions, one row each, padded on the right when batched. */
export class InstructionDataset implements Dataset {
  /** Rows in the dataset. */
  readonly size: number;

  /** A dataset of `rows` (token ids and next-token labels); `padId` fills padding. */
  constructor(private readonly rows: readonly Row[], readonly padId: number) {
    this.size = rows.length;
  }

  /** Row `index`: its ids and next-token labels (−100 where nothing is learnt). */
  row(index: number): Row {
    if (!(Number.isInteger(index) && index >= 0 && index < this.size)) {
      throw new RangeError(`row ${index} is outside the dataset (rows 0..${this.size - 1})`);
    }
    return this.rows[index];
  }
}
