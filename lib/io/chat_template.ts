/**
 * A model's chat template: the Jinja template that `transformers`' `apply_chat_template` renders a
 * conversation with, read from chat_template.jinja or else from tokenizer_config.json (`chat_template`,
 * a string or a list of named templates, "default" taken; without one, rendering is refused, as
 * transformers refuses it unless told a name), as transformers, and rendered with the pinned npm
 * package `@huggingface/jinja` (Hugging Face's JavaScript port of the Jinja subset templates use),
 * its string methods that differ from Python's (`strip(chars)`, `title`, …) computed as Python's.
 * @module
 */
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { readTokenizerConfig, type Tokenizer } from "./tokenizer.ts";

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
  let template: Template;
  try {
    template = new Template(text);
  } catch (e) {
    throw new ChatTemplateError(`${source}: the chat template does not parse: ${(e as Error).message}`);
  }
  pythonStrings(template.parsed);
  return {
    source,
    render(messages, addGenerationPrompt = false, variables = {}) {
      try {
        return template.render({
          // transformers renders with tools and documents None when none are given
          tools: null,
          documents: null,
          ...context,
          ...variables,
          [PYTHON_STR]: pythonStr,
          messages: messages.map((m) => ({ ...m })),
          add_generation_prompt: addGenerationPrompt,
        });
      } catch (e) {
        throw new ChatTemplateError(`${source}: the chat template failed: ${(e as Error).message}`);
      }
    },
  };
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
  return {
    source,
    render() {
      throw new ChatTemplateError(`${source}: ${reason}`);
    },
  };
}

/** A special token's text: a string, or an AddedToken object's `content`. */
function tokenText(value: unknown): string | null {
  if (typeof value === "string") return value;
  const content = (value as { content?: unknown } | null)?.content;
  return typeof content === "string" ? content : null;
}

/**
 * What @huggingface/jinja 0.5.11 computes otherwise than Python's Jinja: `strip`, `lstrip` and
 * `rstrip` ignore their characters (Qwen3's `content.lstrip('\n')` would drop a code answer's
 * indent) and strip JavaScript's whitespace; `capitalize` and `title` leave the rest of a word's
 * case. The parsed template's calls of these methods, and its `trim`, `capitalize` and `title`
 * filters, are rewritten into calls of {@link pythonStr} under this name, which no template can
 * write, so the library stays as published.
 */
const PYTHON_STR = "#python str";
const METHODS = new Set(["strip", "lstrip", "rstrip", "capitalize", "title"]);
const FILTERS = new Set(["trim", "capitalize", "title"]);

/** A node of the library's syntax tree: the interpreter goes by its `type` alone. */
interface SyntaxNode {
  type: string;
  [field: string]: unknown;
}

function isNode(value: unknown): value is SyntaxNode {
  return typeof value === "object" && value !== null && typeof (value as SyntaxNode).type === "string";
}

/** `node` with the string operations {@link PYTHON_STR} takes over rewritten, inner ones first. */
function pythonStrings(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(pythonStrings);
  if (node instanceof Map) return new Map([...node].map(([k, v]) => [pythonStrings(k), pythonStrings(v)]));
  if (!isNode(node)) return node;
  for (const key of Object.keys(node)) node[key] = pythonStrings(node[key]);
  const call = (op: string, args: unknown[]): SyntaxNode => ({
    type: "CallExpression",
    callee: { type: "Identifier", value: PYTHON_STR },
    args: [{ type: "StringLiteral", value: op }, ...args],
  });
  const { callee, filter } = node as { callee?: SyntaxNode; filter?: SyntaxNode };
  const method = callee?.type === "MemberExpression" && !callee.computed && isNode(callee.property) &&
    callee.property.type === "Identifier" && callee.property.value as string;
  // s.lstrip('\n') → #python str("lstrip", s, '\n')
  if (node.type === "CallExpression" && method && METHODS.has(method)) {
    return call(method, [callee!.object, ...node.args as unknown[]]);
  }
  // s | title → #python str("|title", s)
  if (
    node.type === "FilterExpression" && filter?.type === "Identifier" && FILTERS.has(filter.value as string)
  ) {
    return call(`|${filter.value}`, [node.operand]);
  }
  return node;
}

/** The characters Python's str.isspace() takes for whitespace, which str.strip() strips by default. */
const PYTHON_SPACE = new Set(
  "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007" +
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000",
);

/**
 * Python's `str.strip/lstrip/rstrip(chars=None)`, `str.capitalize()` and `str.title()` of `value`,
 * or Jinja's `trim`, `capitalize` or `title` filter (`op` "|trim", …).
 */
function pythonStr(op: string, value: unknown, ...args: unknown[]): string {
  const what = op.startsWith("|") ? `the filter ${op.slice(1)}` : `${op}()`;
  if (typeof value !== "string") throw new Error(`${what} of ${kind(value)}: expected a text`);
  const chars = args[0] ?? null, strips = /strip|trim/.test(op);
  if (args.length > (strips ? 1 : 0) || !(chars === null || typeof chars === "string")) {
    throw new Error(`${what}: expected ${strips ? "at most a text of characters" : "no argument"}`);
  }
  const cs = [...value];
  const word = (w: string[]) => (w[0] ?? "").toUpperCase() + w.slice(1).join("").toLowerCase();
  switch (op) {
    case "capitalize":
    case "|capitalize":
      return word(cs);
    case "title": {
      // a character after a cased letter is lowered, any other raised ("1st" → "1St", as Python)
      let cased = false, out = "";
      for (const c of cs) {
        out += cased ? c.toLowerCase() : c.toUpperCase();
        cased = /\p{Cased}/u.test(c);
      }
      return out;
    }
    case "|title":
      // Jinja's words begin after spaces, hyphens and opening brackets
      return value.split(/([-\s({\[<]+)/).map((w) => word([...w])).join("");
  }
  const strip = chars === null ? PYTHON_SPACE : new Set(chars);
  let from = 0, to = cs.length;
  if (op !== "rstrip") { while (from < to && strip.has(cs[from])) from++; }
  if (op !== "lstrip") { while (to > from && strip.has(cs[to - 1])) to--; }
  return cs.slice(from, to).join("");
}

/** What a template gave a string operation instead of a text, for errors. */
function kind(value: unknown): string {
  if (value === null) return "none";
  if (value === undefined) return "an undefined value";
  if (Array.isArray(value)) return "a list";
  return value instanceof Map ? "a mapping" : `a ${typeof value}`;
}
