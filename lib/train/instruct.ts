/**
 * Supervised fine-tuning data for a causal LM, in TRL's dataset formats: a `prompt` and the
 * `completion` to learn (texts, or lists of messages), or a conversation (`messages`, a list of
 * `{role, content, …}`; ShareGPT's `conversations` of `{from, value}` too) rendered with the model's
 * chat template, each message whole (`tool_calls`, `reasoning_content`, …) and with the row's `tools`
 * and `chat_template_kwargs`, as TRL renders it. The loss is taken on the completion alone unless
 * `lossOn: "all"`: a text completion, as TRL's `completion_only_loss`; a conversation's assistant
 * turns, as TRL's `assistant_only_loss=True` (TRL's default for `messages` is every token): the text a
 * template's `{% generation %}` blocks write, as TRL takes it, or, for a template without them (which
 * TRL refuses), each assistant turn found by rendering the conversation around it
 * ({@link tokenizeInstruction}).
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
  /** The row's `tools` (function schemas), the template's `tools`. */
  tools?: unknown[];
  /** The row's `chat_template_kwargs`: variables for the template, over the model's (--template-kwargs). */
  chatTemplateKwargs?: Record<string, unknown>;
}

/** One supervised example, and where it was read (`file:line`, the row for Parquet), for errors. */
export type Instruction = (TextInstruction | ChatInstruction) & { source?: string };

/** Which tokens the loss is taken on: the completions (assistant turns) alone, or all. */
export type LossOn = "completion" | "all";

/** Learning every token, as the command line and the library ask for it (for advice). */
const EVERY_TOKEN = `--loss-on all, or lossOn "all"`;

/**
 * Whether records with these fields are instructions: a `messages` list (or ShareGPT's
 * `conversations`), or `prompt` and `completion`.
 */
export function isInstructionRecord(fieldNames: readonly string[]): boolean {
  return fieldNames.includes("messages") || fieldNames.includes("conversations") ||
    (fieldNames.includes("prompt") && fieldNames.includes("completion"));
}

/**
 * The instructions of a JSONL, CSV/TSV or Parquet file whose records have `prompt` and
 * `completion` fields or a `messages` (or `conversations`) list. Errors name the file and the line.
 */
export async function readInstructions(path: string): Promise<Instruction[]> {
  const records = await readRecords(path);
  const first = records[0], fields = Object.keys(first.fields);
  if (!isInstructionRecord(fields)) {
    throw new DataError(
      `${path}:${first.line}: expected "prompt" and "completion" fields or a "messages" (or ` +
        `"conversations") list; the fields are ${fields.join(", ")}`,
    );
  }
  return records.map((r) => instructionOf(r, path));
}

function instructionOf({ line, fields }: SourceRecord, path: string): Instruction {
  const at = `${path}:${line}`;
  // as TRL's maybe_convert_to_chatml: ShareGPT's "conversations" are the messages
  const field = Array.isArray(fields.messages) ? "messages" : "conversations";
  if (Array.isArray(fields[field])) {
    const messages = messagesOf(fields[field] as unknown[], at, field);
    return { messages, completionFrom: 0, ...templateFields(fields, at), source: at };
  }
  const { prompt, completion } = fields;
  if (typeof prompt === "string" && typeof completion === "string") return { prompt, completion, source: at };
  if (Array.isArray(prompt) && Array.isArray(completion)) {
    const first = messagesOf(prompt, at, "prompt");
    return {
      messages: [...first, ...messagesOf(completion, at, "completion")],
      completionFrom: first.length,
      ...templateFields(fields, at),
      source: at,
    };
  }
  throw new DataError(
    `${at}: expected "prompt" and "completion" both texts or both lists of messages, or a "messages" list`,
  );
}

type TemplateFields = Pick<ChatInstruction, "tools" | "chatTemplateKwargs">;

/** A row's `tools` and `chat_template_kwargs`, which TRL gives apply_chat_template (null: none). */
function templateFields(fields: Record<string, unknown>, at: string): TemplateFields {
  const { tools, chat_template_kwargs: kwargs } = fields;
  const out: TemplateFields = {};
  if (tools !== undefined && tools !== null) {
    if (!Array.isArray(tools)) {
      throw new DataError(`${at}: "tools" must be a list of tool schemas, got ${JSON.stringify(tools)}`);
    }
    out.tools = tools;
  }
  if (kwargs !== undefined && kwargs !== null) {
    if (typeof kwargs !== "object" || Array.isArray(kwargs)) {
      const got = JSON.stringify(kwargs);
      throw new DataError(
        `${at}: "chat_template_kwargs" must be an object of template variables, got ${got}`,
      );
    }
    out.chatTemplateKwargs = kwargs as Record<string, unknown>;
  }
  return out;
}

/** ShareGPT's speakers under ChatML's names; its other roles ("system", "tool", …) are kept. */
const SHAREGPT_ROLES = new Map([["human", "user"], ["gpt", "assistant"]]);

/**
 * The messages of `value`, each with all its fields. ShareGPT's `from`/`value` become `role`/`content`
 * (as TRL's maybe_convert_to_chatml; "human" and "gpt" also become "user" and "assistant", which TRL
 * leaves). Only what hartley reads is checked, as transformers checks nothing: the role is a text,
 * the content a text or a list of parts, or null or left out beside `tool_calls`.
 */
function messagesOf(value: unknown[], at: string, field: string): ChatMessage[] {
  if (value.length === 0) throw new DataError(`${at}: "${field}" has no messages`);
  return value.map((m, i) => {
    const { from, value: text, ...message } = (m ?? {}) as Record<string, unknown>;
    if (from !== undefined) message.role = SHAREGPT_ROLES.get(from as string) ?? from;
    if (text !== undefined) message.content = text;
    const { role, content } = message;
    const contentOk = typeof content === "string" || Array.isArray(content) ||
      (content == null && message.tool_calls != null);
    if (typeof role !== "string" || !contentOk) {
      throw new DataError(
        `${at}: ${field}[${i}] must be {"role": text, "content": text or list of parts} (the content ` +
          `null or left out beside "tool_calls"), got ${JSON.stringify(m)}`,
      );
    }
    return message as ChatMessage;
  });
}

/** An example's tokens and which of them are targets of the loss. */
export interface InstructionTokens {
  /** The token ids. */
  ids: Int32Array;
  /** 1 where the token is learnt. */
  trained: Uint8Array;
  /**
   * The assistant turns to learn that are not learnt: those before the last, in a conversation
   * the template does not render turn by turn (learnt by TRL's prompt/completion rule); else 0.
   */
  unlearntTurns: number;
}

/**
 * Tokenize one instruction. A text one as TRL does: `prompt + completion` with the tokenizer's
 * special tokens, the end-of-sequence token appended, the completion's tokens being those after
 * the prompt's own (from a token that spans the two texts, which TRL would leave unlearnt).
 *
 * A conversation through `template` (with the row's tools and template variables), its text
 * tokenized without adding special tokens (the template writes them). A template with
 * `{% generation %}` blocks says what is learnt, as TRL's `assistant_only_loss` takes it
 * (`generatedTokens`). Without them, each assistant turn to learn is what the whole text
 * writes after the conversation up to it rendered with the generation prompt (so the turn's
 * header is not learnt, and a reasoning block before its answer is), through
 * the turn's content and end-of-turn text (`turnSpan`; a token across a boundary, as a
 * SentencePiece word that joins the newline before it, is learnt). A template that does not render
 * the conversation turn by turn so (Qwen3 moves a `<think>` block out of the content, and drops it
 * from earlier turns) falls back on TRL's prompt/completion rule: the last assistant turn alone,
 * everything after the conversation before it with the generation prompt through the turn, the
 * earlier ones left unlearnt (counted in `unlearntTurns`); when even that text is not the start of
 * the whole, the example is refused. `where` names the example in errors.
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
    return { ids: Int32Array.from(ids), trained, unlearntTurns: 0 };
  }
  const template = opts.template;
  if (!template) {
    throw new DataError(
      `${where}: a conversation needs the model's chat template (tokenizer_config.json "chat_template", or ` +
        `chat_template.jinja), and the model directory has none`,
    );
  }
  const variables = templateVariables(example), messages = example.messages;
  const render = (upTo: readonly ChatMessage[], generationPrompt: boolean) =>
    template.render(upTo, generationPrompt, variables);
  const encode = (text: string) => tokenizer.encode(text, { addSpecialTokens: false });
  // where the template's {% generation %} blocks wrote: what is learnt, when it has them
  const { text, generation } = lossOn === "all"
    ? { text: render(messages, false), generation: null }
    : template.renderGeneration(messages, false, variables);
  const ids = encode(text);
  const trained = new Uint8Array(ids.length);
  let unlearntTurns = 0;
  const prefixTokens = prefixEncoder(text, ids, tokenizer);
  // a span of the text as tokens [start, end); null where its ends do not fall on the text's tokens
  const tokenSpan = ([from, to, closed]: [number, number, boolean]): [number, number] | null => {
    const start = boundary(prefixTokens(from), ids, false);
    // where the last turn's closing differs, the text it shares ends inside the next token: not learnt
    const end = boundary(prefixTokens(to), ids, closed);
    return start === null || end === null ? null : [start, end];
  };
  if (lossOn === "all") trained.fill(1);
  else if (generation) {
    const prompt = example.completionFrom > 0
      ? encode(render(messages.slice(0, example.completionFrom), true))
      : [];
    generatedTokens(generation, tokenSpan, prompt.length, where).forEach(([start, end]) =>
      trained.fill(1, start, end)
    );
  } else {
    const turns = learntTurns(example);
    // the turns' spans, up to the first not found (then the fallback below uses none of them)
    let spans: ([number, number] | null)[] = [];
    for (const i of turns) {
      const m = messages[i], upTo = messages.slice(0, i), marked = { ...m, content: MARK };
      const span = turnSpan(
        { text, marked: render([...upTo, marked, ...messages.slice(i + 1)], false) },
        { text: render([...upTo, m], false), marked: render([...upTo, marked], false) },
        render(upTo, true),
        typeof m.content === "string" ? m.content : "",
      );
      spans.push(span && tokenSpan(span));
      if (spans.at(-1) === null) break;
    }
    const broken = spans.indexOf(null);
    if (broken >= 0) {
      const last = turns[turns.length - 1];
      const before = render(messages.slice(0, last), true),
        through = render(messages.slice(0, last + 1), false);
      const span = text.startsWith(before) && text.startsWith(through) && through.length > before.length
        ? tokenSpan([before.length, through.length, true])
        : null;
      if (!span) {
        throw new DataError(
          `${where}: the chat template (${template.source}) does not render the conversation turn by turn ` +
            `(its text up to message ${turns[broken]} with the generation prompt is not the start of the ` +
            `whole, or the turn's text is not in it), nor does the whole text start with the ` +
            `conversation up to its last assistant turn (message ${last}) with the generation prompt and ` +
            `then that turn, as TRL's prompt/completion takes it; so the assistant's tokens cannot be ` +
            `found; train on every token instead (${EVERY_TOKEN})`,
        );
      }
      spans = [span];
      unlearntTurns = turns.length - 1;
    }
    for (const [start, end] of spans as [number, number][]) trained.fill(1, start, end);
  }
  return { ids: Int32Array.from(ids), trained, unlearntTurns };
}

/**
 * The tokens a template's `{% generation %}` blocks wrote, as transformers' assistant mask has them:
 * for each range of characters, from the token that holds its first character through the one that
 * holds its last (`tokenSpan`), none of an empty range unless one token holds the characters on
 * both sides of it; and, as TRL's completion mask for a conversational prompt/completion row, none
 * of the first `promptTokens` (the prompt rendered with the generation prompt).
 */
function generatedTokens(
  ranges: readonly [number, number][],
  tokenSpan: (range: [number, number, boolean]) => [number, number] | null,
  promptTokens: number,
  where: string,
): [number, number][] {
  return ranges.map(([from, to]) => {
    const span = tokenSpan([from, to, true]);
    if (!span) {
      throw new DataError(
        `${where}: the tokens of the text the chat template's {% generation %} block wrote (characters ` +
          `${from}–${to}) cannot be found: the text before it tokenizes otherwise alone; train on every ` +
          `token instead (${EVERY_TOKEN})`,
      );
    }
    return [Math.max(span[0], promptTokens), span[1]];
  });
}

/** The messages of a conversation whose turns are learnt: its assistant turns from `completionFrom` on. */
function learntTurns({ messages, completionFrom }: ChatInstruction): number[] {
  return messages.flatMap((m, i) => (m.role === "assistant" && i >= completionFrom ? [i] : []));
}

/** What a row gives its template besides the messages: `tools` and `chat_template_kwargs`. */
function templateVariables(example: ChatInstruction): Record<string, unknown> {
  return { ...example.chatTemplateKwargs, ...(example.tools && { tools: example.tools }) };
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
 * from the end of `before` (the conversation up to the turn with the generation prompt, a start of
 * the text), through its content to the end of what the turn rendered last (`through`) writes after
 * its content that the whole text writes too (its end-of-turn token), and whether the whole text
 * writes all of that. The content is found where the template writes it (see {@link contentAt}), never
 * by searching for its text, which may also occur in the markup around it ("d" in `<|im_end|>`); a
 * content that is not a text (tool calls alone, a list of parts) is found as an empty one, so its
 * span is the rest of the turn. So templates that close the last turn otherwise (Phi-3's
 * <|endoftext|>) or write earlier turns otherwise (Qwen3 leaves their empty <think> out) are read as
 * the whole text has them. Null when `before` does not start the text or the content is not where the
 * template puts it.
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
  const end = inWhole[0] + inWhole[1];
  const tail = through.text.slice(inThrough[0] + inThrough[1]), rest = whole.text.slice(end);
  let same = 0;
  while (same < tail.length && tail[same] === rest[same]) same++;
  return [before.length, end + same, same === tail.length];
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
 * `encode(text.slice(0, end))` for the ends of spans, without encoding the text from its start each
 * time (which costs turns² for a conversation). A cut is a prefix whose tokens begin the whole
 * text's `ids`: the text before it is those tokens. A prefix is encoded from the cut before the
 * last one before it (`from`) and joined to the whole text's tokens before that cut, when its own
 * tokens take up the whole text's between the two cuts ({@link resync}): past its first tokens,
 * starting at `from` changed nothing up to the last cut, so (the tokenizer looking back no further
 * than a span, as pre-tokenizers and merges do) nothing after it either. Else it is encoded whole,
 * as before.
 */
function prefixEncoder(
  text: string,
  ids: readonly number[],
  tokenizer: Tokenizer,
): (end: number) => number[] {
  const encode = (piece: string) => tokenizer.encode(piece, { addSpecialTokens: false });
  // in order of `at` and of `tokens`, each adding tokens (so a prefix after it has some to repeat)
  const cuts: { at: number; tokens: number }[] = [{ at: 0, tokens: 0 }];
  const prefixTokens = (end: number): number[] => {
    const n = cuts.findLastIndex((c) => c.at <= end), last = cuts[n], from = cuts[n - 1];
    if (from) {
      const rest = encode(text.slice(from.at, end));
      const [skip, lead] = resync(rest, ids.slice(from.tokens, last.tokens)) ?? [];
      if (skip !== undefined) return [...ids.slice(0, from.tokens + skip), ...rest.slice(lead)];
    }
    return encode(text.slice(0, end));
  };
  return (end) => {
    const tokens = prefixTokens(end), latest = cuts.at(-1)!;
    const isCut = tokens.length <= ids.length && tokens.every((id, i) => id === ids[i]);
    if (isCut && end > latest.at && tokens.length > latest.tokens) {
      cuts.push({ at: end, tokens: tokens.length });
    }
    return tokens;
  };
}

/**
 * How a text's tokens alone (`rest`) take up the whole text's (`between`, from the same character):
 * the whole's first `skip` tokens and its own first `lead` (what a tokenizer writes at a text's
 * start, as SentencePiece's "▁", 2 at most each) differing, the rest of `between` repeated; null
 * when they do not agree on a token of `between`.
 */
function resync(rest: readonly number[], between: readonly number[]): [number, number] | null {
  for (let skip = 0; skip <= 2 && skip < between.length; skip++) {
    for (let lead = 0; lead <= 2; lead++) {
      if (between.every((id, i) => i < skip || rest[lead + i - skip] === id)) return [skip, lead];
    }
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
  /**
   * The expected answer: the completion, or the first learnt assistant turn's content (empty when
   * that is not a text: tool calls alone, a list of parts).
   */
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
 * puts before it, none after (as in training), or a conversation up to its first learnt assistant turn
 * rendered with the generation prompt (and the row's tools and template variables); and that turn's
 * content (or the completion) as the expected answer.
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
  const turn = questionTurn(example, template, where);
  const prompt = example.messages.slice(0, turn), content = example.messages[turn].content;
  const ids = tokenizer.encode(template!.render(prompt, true, templateVariables(example)), {
    addSpecialTokens: false,
  });
  return { prompt, ids, expected: typeof content === "string" ? content : "" };
}

/**
 * The message of a conversation that {@link instructionQuery} asks for: its first learnt assistant
 * turn. A DataError naming the example (`where`) when it has none, or when there is no `template`
 * to render the turns before it. It needs no tokenizer, so conversations can be checked before a
 * model loads.
 */
export function questionTurn(
  example: ChatInstruction,
  template: ChatTemplate | null | undefined,
  where = "instruction",
): number {
  const turn = learntTurns(example)[0];
  if (turn === undefined) throw new DataError(`${where}: the conversation has no assistant turn to answer`);
  if (!template) {
    throw new DataError(
      `${where}: a conversation needs the model's chat template, and the model directory has none`,
    );
  }
  return turn;
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
 * fills it, or a conversation without an assistant turn) are left out and counted in `dropped`. When
 * none is left, the error says why: the roles the conversations have, if none has an assistant turn.
 */
export function instructionDataset(
  examples: readonly Instruction[],
  tokenizer: Tokenizer,
  opts: InstructionDatasetOptions,
): InstructionDatasetResult {
  checkSeqLen(opts.seqLen);
  const rows = new InstructionRows(tokenizer.padId, opts);
  examples.forEach((ex, i) => {
    rows.add(
      ex,
      tokenizeInstruction(ex, tokenizer, { ...opts, where: exampleName(examples, i, opts.source) }),
    );
    if ((i + 1) % 256 === 0 || i + 1 === examples.length) opts.onProgress?.(i + 1, examples.length);
  });
  return rows.finish();
}

/** What {@link instructionDataset} makes: the rows, and what became of the examples. */
export interface InstructionDatasetResult {
  /** The rows. */
  dataset: InstructionDataset;
  /** Examples left out: no learnt token within seqLen (`noAssistant` of them have none at all). */
  dropped: number;
  /** Conversations left out for having no turn with the role "assistant" to learn. */
  noAssistant: number;
  /** Rows cut to seqLen tokens. */
  truncated: number;
  /** Conversations the template does not render turn by turn: their last assistant turn alone learnt. */
  lastTurnOnly: number;
}

/** Refuse a row length that holds no next-token target. */
export function checkSeqLen(seqLen: number): void {
  if (!(Number.isInteger(seqLen) && seqLen >= 2)) {
    throw new RangeError(`instructionDataset: seqLen must be an integer ≥ 2, got ${seqLen}`);
  }
}

/** How example `i` of `examples` is named in errors: its own source, else its number in `source`. */
export function exampleName(examples: readonly Instruction[], i: number, source?: string): string {
  return examples[i].source ?? `${source ?? "instructions"}: example ${i + 1}`;
}

/**
 * {@link instructionDataset}'s rows, made from the examples' tokens as they come, in input order
 * (each example's whole tokens dropped once its row is made: a long example cut to a short seqLen
 * keeps its first seqLen tokens alone), however they were tokenized: here, or on workers
 * (lib/train/instruct_workers.ts).
 */
export class InstructionRows {
  #rows: Row[] = [];
  #roles = new Set<string>();
  #examples = 0;
  #truncated = 0;
  #noAssistant = 0;
  #lastTurnOnly = 0;

  /** Rows of `opts.seqLen` tokens at most; `padId` fills padding. */
  constructor(private readonly padId: number, private readonly opts: InstructionDatasetOptions) {}

  /** The next example and its tokens. */
  add(example: Instruction, tokens: InstructionTokens): void {
    const { ids, trained, unlearntTurns } = tokens, seqLen = this.opts.seqLen;
    this.#examples++;
    if (unlearntTurns > 0) this.#lastTurnOnly++;
    if (this.opts.lossOn !== "all" && "messages" in example && learntTurns(example).length === 0) {
      this.#noAssistant++;
      for (const m of example.messages.slice(example.completionFrom)) this.#roles.add(m.role);
    }
    // a copy when cut: a view would keep the whole example's ids alive with the row
    const kept = ids.length > seqLen ? ids.slice(0, seqLen) : ids;
    // position t predicts token t + 1, when that token is learnt
    const label = new Int32Array(kept.length).fill(IGNORE_INDEX);
    let targets = 0;
    for (let t = 0; t + 1 < kept.length; t++) {
      if (trained[t + 1]) [label[t], targets] = [kept[t + 1], targets + 1];
    }
    if (targets === 0) return;
    this.#rows.push({ ids: kept, label });
    if (kept.length < ids.length) this.#truncated++;
  }

  /** The data set of the examples added; a DataError saying why when none gave a row. */
  finish(): InstructionDatasetResult {
    if (this.#rows.length === 0) {
      const source = this.opts.source ?? "instructions", found = [...this.#roles].join(", ");
      throw new DataError(
        this.#noAssistant > 0 && this.#noAssistant === this.#examples
          ? `${source}: no conversation has a turn with the role "assistant" to learn (their roles: ` +
            `${found}); name the answers' role "assistant", or train on every token (${EVERY_TOKEN})`
          : `${source}: no example has a completion token within ${this.opts.seqLen} tokens ` +
            `(raise --seq-len, or seqLen; or shorten the prompts)`,
      );
    }
    return {
      dataset: new InstructionDataset(this.#rows, this.padId),
      dropped: this.#examples - this.#rows.length,
      noAssistant: this.#noAssistant,
      truncated: this.#truncated,
      lastTurnOnly: this.#lastTurnOnly,
    };
  }
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
