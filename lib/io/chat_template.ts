/**
 * A model's chat template: the Jinja template that `transformers`' `apply_chat_template` renders a
 * conversation with, read from chat_template.jinja or else from tokenizer_config.json (`chat_template`,
 * a string or a list of named templates, "default" taken; without one, rendering is refused, as
 * transformers refuses it unless told a name), as transformers, and rendered with the pinned npm
 * package `@huggingface/jinja` (Hugging Face's JavaScript port of the Jinja subset templates use).
 * @module
 */
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { readTokenizerConfig, type Tokenizer } from "./tokenizer.ts";

/** One turn of a conversation. */
export interface ChatMessage {
  /** "system", "user", "assistant", … */
  role: string;
  /** The turn's text. */
  content: string;
}

/** A chat template, ready to render. */
export interface ChatTemplate {
  /** Where it was read from, for errors. */
  readonly source: string;
  /**
   * The conversation as text, as `apply_chat_template(messages, tokenize=False,
   * add_generation_prompt=...)`: with `addGenerationPrompt`, ending with the header of an
   * assistant turn to be generated.
   */
  render(messages: readonly ChatMessage[], addGenerationPrompt?: boolean): string;
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
  return {
    source,
    render(messages, addGenerationPrompt = false) {
      try {
        return template.render({
          // transformers renders with tools and documents None when none are given
          tools: null,
          documents: null,
          ...context,
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
