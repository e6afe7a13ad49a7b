/**
 * A model's chat template: the Jinja template that `transformers`' `apply_chat_template` renders a
 * conversation with, read from chat_template.jinja or else from tokenizer_config.json (`chat_template`,
 * a string or a list of named templates, "default" taken; without one, rendering is refused, as
 * transformers refuses it unless told a name), as transformers, and rendered with the pinned npm
 * package `@huggingface/jinja` (Hugging Face's JavaScript port of the Jinja subset templates use),
 * what it computes otherwise than Python's Jinja2 (printed values, `tojson`, string methods) computed
 * as Python's (see chat_template_python.ts). The text of a template's `{% generation %}` blocks is
 * located, as transformers' `return_assistant_tokens_mask` locates it.
 * @module
 */
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { readTokenizerConfig, type Tokenizer } from "./tokenizer.ts";
import { PYTHON_CALL, pythonCall, pythonSemantics } from "./chat_template_python.ts";

/**
 * One turn of a conversation, given to the template as it is: besides `role` and `content`, any
 * other field a template reads (`tool_calls`, `name`, `tool_call_id`, `reasoning_content`, …).
 */
export interface ChatMessage {
  /** "system", "user", "assistant", "tool", … */
  role: string;
  /**
   * The turn's text; or a list of parts (`{"type": "text", "text": …}`, …) for a template that
   * reads them; null or left out beside `tool_calls`.
   */
  content?: string | null | readonly unknown[];
  /** Any other field, for the template. */
  [field: string]: unknown;
}

/** A chat template, ready to render. */
export interface ChatTemplate {
  /** Where it was read from, for errors. */
  readonly source: string;
  /** Its Jinja text; null for one that refuses every render (a missing or malformed entry). */
  readonly jinja: string | null;
  /** What else it reads, as {@link chatTemplate} was given it: special tokens' texts, variables. */
  readonly context: Readonly<Record<string, unknown>>;
  /** Whether it has `{% generation %}` blocks ({@link renderGeneration}'s ranges). */
  readonly hasGeneration: boolean;
  /**
   * The conversation as text, as `apply_chat_template(messages, tokenize=False,
   * add_generation_prompt=..., tools=..., **kwargs)`: with `addGenerationPrompt`, ending with the
   * header of an assistant turn to be generated. `variables` are given to this render besides those
   * of the template (e.g. a row's `tools` and `chat_template_kwargs`), over them.
   */
  render(
    messages: readonly ChatMessage[],
    addGenerationPrompt?: boolean,
    variables?: Readonly<Record<string, unknown>>,
  ): string;
  /**
   * The same render, and where in its text the template's `{% generation %}` blocks wrote, as
   * character ranges [from, to) in order (what transformers turns into `assistant_masks`); null
   * ranges when the template has no such block.
   */
  renderGeneration(
    messages: readonly ChatMessage[],
    addGenerationPrompt?: boolean,
    variables?: Readonly<Record<string, unknown>>,
  ): GenerationRender;
}

/** A conversation rendered, and the ranges of its text that `{% generation %}` blocks wrote. */
export interface GenerationRender {
  /** The text, as {@link ChatTemplate.render} gives it. */
  text: string;
  /** [from, to) in `text`, for each block rendered; null when the template has no such block. */
  generation: [number, number][] | null;
}

/** A chat template that is missing, malformed or fails to render. */
export class ChatTemplateError extends Error {
  /** "ChatTemplateError". */
  override name = "ChatTemplateError";
}

/**
 * The chat template of the model directory `dir`, or null when it has none. `variables` are given
 * to every render besides the messages (transformers' apply_chat_template kwargs, e.g.
 * `enable_thinking`). The special tokens' texts (bos_token, eos_token, …) are those
 * tokenizer_config.json or special_tokens_map.json name, else those `tokenizer` resolved; one the
 * files set to null (Qwen2.5's bos_token), or that nothing names, is undefined, as in transformers.
 */
export async function loadChatTemplate(
  dir: string,
  variables: Record<string, unknown> = {},
  tokenizer?: Tokenizer,
): Promise<ChatTemplate | null> {
  const configPath = join(dir, "tokenizer_config.json");
  let config: Record<string, unknown>;
  try {
    config = await readTokenizerConfig(dir);
  } catch (e) {
    throw new ChatTemplateError(`${configPath}: cannot read: ${(e as Error).message}`);
  }
  const context = { ...specialTokens(config, tokenizer), ...variables };
  // as transformers: a chat_template.jinja file takes priority over the config's entry
  const jinjaPath = join(dir, "chat_template.jinja");
  try {
    return chatTemplate(await Deno.readTextFile(jinjaPath), jinjaPath, context);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return configTemplate(config.chat_template, configPath, context);
}

/**
 * The texts of the special tokens a template reads: those `config` names, else those `tokenizer`
 * resolved (config.json's ids); none for a token `config` sets to null, or that neither has.
 */
function specialTokens(config: Record<string, unknown>, tokenizer?: Tokenizer): Record<string, string> {
  const out: Record<string, string> = {};
  for (const role of ["bos", "eos", "pad", "unk"] as const) {
    const key = `${role}_token`, id = tokenizer?.special[role];
    // a token the files set to null has no text, though config.json names its id (Qwen2.5's bos)
    let text = tokenText(config[key]);
    if (!(key in config) && id != null) text = tokenizer!.decode([id], { skipSpecialTokens: false });
    if (text !== null) out[key] = text;
  }
  return out;
}

/**
 * A chat template from its Jinja `text`; `context` holds what else the template may read: the
 * special tokens' texts (bos_token, eos_token, …) and any variables. A syntax error is a
 * ChatTemplateError naming `source`.
 */
export function chatTemplate(
  text: string,
  source: string,
  context: Record<string, unknown> = {},
): ChatTemplate {
  const template = parsed(text, source);
  // a second parse writes marks where {% generation %} blocks begin and end, for renderGeneration
  const marked = GENERATION_TAG.test(text) ? parsed(markGeneration(text), source) : null;
  const run = (t: Template, values: Record<string, unknown>) => {
    try {
      return t.render(values);
    } catch (e) {
      throw new ChatTemplateError(`${source}: the chat template failed: ${(e as Error).message}`);
    }
  };
  const values = (
    messages: readonly ChatMessage[],
    addGenerationPrompt: boolean,
    variables: Readonly<Record<string, unknown>>,
  ) => ({
    // transformers renders with tools and documents None when none are given
    tools: null,
    documents: null,
    ...context,
    ...variables,
    [PYTHON_CALL]: pythonCall,
    messages: messages.map((m) => ({ ...m })),
    add_generation_prompt: addGenerationPrompt,
  });
  const render: ChatTemplate["render"] = (messages, addGenerationPrompt = false, variables = {}) =>
    run(template, values(messages, addGenerationPrompt, variables));
  return {
    source,
    jinja: text,
    context,
    hasGeneration: marked !== null,
    render,
    renderGeneration(messages, addGenerationPrompt = false, variables = {}) {
      const text = render(messages, addGenerationPrompt, variables);
      if (!marked) return { text, generation: null };
      const found = generationRanges(run(marked, values(messages, addGenerationPrompt, variables)));
      if (found?.text !== text) {
        throw new ChatTemplateError(
          `${source}: where the chat template's {% generation %} blocks wrote cannot be told (the ` +
            `conversation holds the characters U+FDD0 or U+FDD1, which mark them)`,
        );
      }
      return { text, generation: found.ranges };
    },
  };
}

/** `text` parsed, with its printing, `tojson` and string methods made Python's. */
function parsed(text: string, source: string): Template {
  let template: Template;
  try {
    template = new Template(text);
  } catch (e) {
    throw new ChatTemplateError(`${source}: the chat template does not parse: ${(e as Error).message}`);
  }
  pythonSemantics(template.parsed);
  return template;
}

/**
 * Written where a `{% generation %}` block's text begins and ends: Unicode noncharacters, which
 * no text of a conversation should hold (a render that does is refused, not misread).
 */
const GENERATION_START = "\uFDD0", GENERATION_END = "\uFDD1";
/** A `{% generation %}` or `{% endgeneration %}` tag, with its whitespace control. */
const GENERATION_TAG = /{%(-?)\s*(end)?generation\s*(-?)%}/;

/**
 * `text` with each generation tag replaced by tags that write its marker and control whitespace
 * as the tag did: `{%- generation %}` becomes `{%- if true %}` + marker + `{% endif %}`, so that the
 * text before it is stripped, and `trim_blocks` takes the newline after it, as for the tag.
 */
function markGeneration(text: string): string {
  return text.replace(
    new RegExp(GENERATION_TAG, "g"),
    (_, left: string, end: string | undefined, right: string) =>
      `{%${left} if true %}${end ? GENERATION_END : GENERATION_START}{% endif ${right}%}`,
  );
}

/** A marked render's text without the markers, and the ranges they enclosed; null when unbalanced. */
function generationRanges(marked: string): { text: string; ranges: [number, number][] } | null {
  let text = "";
  const open: number[] = [], ranges: [number, number][] = [];
  for (const part of marked.split(/([\uFDD0\uFDD1])/)) {
    if (part === GENERATION_START) open.push(text.length);
    else if (part !== GENERATION_END) text += part;
    else if (open.length === 0) return null;
    else ranges.push([open.pop()!, text.length]);
  }
  return open.length === 0 ? { text, ranges: ranges.sort((a, b) => a[0] - b[0]) } : null;
}

/**
 * The template of tokenizer_config.json's `chat_template`: a string, or the "default" one of a
 * named list; null when it has none. A list without a "default" gives a template that refuses to
 * render: transformers' apply_chat_template then wants one of the names, which hartley takes no
 * flag for.
 */
function configTemplate(value: unknown, path: string, context: Record<string, unknown>): ChatTemplate | null {
  if (value === undefined || value === null) return null;
  if (typeof value === "string") return chatTemplate(value, path, context);
  if (!Array.isArray(value) || !value.every(isNamedTemplate)) {
    throw new ChatTemplateError(`${path}: "chat_template" must be a string or a list of {name, template}`);
  }
  const chosen = value.find((t) => t.name === "default");
  if (chosen) return chatTemplate(chosen.template, path, context);
  const names = value.map((t) => t.name).join(", ") || "none";
  return refusing(
    path,
    `"chat_template" names no "default" template (its names: ${names}), and hartley cannot be told ` +
      `which to use: rename the one to use "default"`,
  );
}

function isNamedTemplate(t: unknown): t is { name: string; template: string } {
  const o = t as { name?: unknown; template?: unknown } | null;
  return typeof o?.name === "string" && typeof o.template === "string";
}

/** A template from `source` whose every render fails with `reason`. */
function refusing(source: string, reason: string): ChatTemplate {
  const refuse = (): never => {
    throw new ChatTemplateError(`${source}: ${reason}`);
  };
  return { source, jinja: null, context: {}, hasGeneration: false, render: refuse, renderGeneration: refuse };
}

/** A special token's text: a string, or an AddedToken object's `content`. */
function tokenText(value: unknown): string | null {
  if (typeof value === "string") return value;
  const content = (value as { content?: unknown } | null)?.content;
  return typeof content === "string" ? content : null;
}
