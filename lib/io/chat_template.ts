/**
 * A model's chat template: the Jinja template that `transformers`' `apply_chat_template` renders a
 * conversation with, read from chat_template.jinja or else from tokenizer_config.json (`chat_template`,
 * a string or a list of named templates, "default" taken), as transformers, and rendered with the pinned
 * npm package `@huggingface/jinja` (Hugging Face's JavaScript port of the Jinja subset templates use).
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
 * tokenizer_config.json or special_tokens_map.json name, else those `tokenizer` resolved.
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
  // as transformers: a chat_template.jinja file takes priority over the config's entry
  const jinjaPath = join(dir, "chat_template.jinja");
  let source = jinjaPath, text: string | null;
  try {
    text = await Deno.readTextFile(jinjaPath);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    source = configPath;
    text = templateText(config.chat_template, configPath);
    if (text === null) return null;
  }
  // the special tokens the files name, else the ones the tokenizer resolved (config.json's ids)
  const special = (role: "bos" | "eos" | "pad" | "unk") => {
    const id = tokenizer?.special[role];
    return tokenText(config[`${role}_token`]) ??
      (id == null ? "" : tokenizer!.decode([id], { skipSpecialTokens: false }));
  };
  return chatTemplate(text, source, {
    bos_token: special("bos"),
    eos_token: special("eos"),
    pad_token: special("pad"),
    unk_token: special("unk"),
    ...variables,
  });
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

/** tokenizer_config.json's `chat_template`: a string, or the "default" one of a named list. */
function templateText(value: unknown, path: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    const named = value.find((t) => t?.name === "default") ?? value[0];
    if (typeof named?.template === "string") return named.template;
  }
  throw new ChatTemplateError(`${path}: "chat_template" must be a string or a list of {name, template}`);
}

/** A special token's text: a string, or an AddedToken object's `content`. */
function tokenText(value: unknown): string | null {
  if (typeof value === "string") return value;
  const content = (value as { content?: unknown } | null)?.content;
  return typeof content === "string" ? content : null;
}
