/**
 * A conversation with a chat model: each user message joins the conversation, which the model's
 * chat template renders, and the assistant's answer is generated (streamed as it grows). The
 * key/value cache is kept from turn to turn, so the earlier turns, which the next rendering
 * repeats, are not run through the model again.
 *
 * ```ts
 * import type { Model } from "../models/model.ts";
 * import type { Tokenizer } from "../io/tokenizer.ts";
 * import type { ChatTemplate } from "../io/chat_template.ts";
 * declare const model: Model, tokenizer: Tokenizer, template: ChatTemplate;
 * const chat = new Chat(model, tokenizer, template, { system: "Answer briefly." });
 * await chat.say("What is the capital of France?", (t) => console.log(t));
 * chat.dispose();
 * ```
 * @module
 */
import type { ChatMessage, ChatTemplate } from "../io/chat_template.ts";
import type { Tokenizer } from "../io/tokenizer.ts";
import type { KvCache } from "../models/kv_cache.ts";
import type { Model } from "../models/model.ts";
import { generate, type GenerateOptions, type Generation, keepSharedPrefix } from "./generate.ts";

/** Options of a {@link Chat}: a system message, and how each answer is generated. */
export interface ChatOptions extends Omit<GenerateOptions, "cache" | "onText"> {
  /** The system message that opens the conversation, if any. */
  system?: string;
}

/** A conversation with a causal LM through its chat template. */
export class Chat {
  /** The conversation so far (the system message first, when given). */
  readonly messages: ChatMessage[] = [];
  readonly #cache: KvCache;
  #cachedIds: readonly number[] = [];
  #turns = 0;

  /** A conversation with `model` (a causal LM) through `template`; it holds a cache until disposed. */
  constructor(
    readonly model: Model,
    readonly tokenizer: Tokenizer,
    readonly template: ChatTemplate,
    readonly options: ChatOptions = {},
  ) {
    const cache = model.newCache?.(options.cacheDtype);
    if (!cache) throw new Error(`chat: the ${model.family} model is not a causal language model`);
    this.#cache = cache;
    this.reset();
  }

  /**
   * Add the user's `text`, generate the assistant's answer (handed to `onText` as it grows) and
   * add it too. On an error (e.g. a conversation longer than the model's positions) the user's
   * message is taken back.
   */
  async say(text: string, onText?: (text: string) => void): Promise<Generation> {
    this.messages.push({ role: "user", content: text });
    try {
      const rendered = this.template.render(this.messages, true);
      const ids = this.tokenizer.encode(rendered, { addSpecialTokens: false });
      keepSharedPrefix(this.#cache, this.#cachedIds, ids);
      const seed = (this.options.seed ?? 0) + this.#turns;
      const g = await generate(this.model, this.tokenizer, ids, {
        ...this.options,
        seed,
        cache: this.#cache,
        onText,
      });
      this.#cachedIds = g.ids.slice(0, g.cached);
      this.#turns++;
      this.messages.push({ role: "assistant", content: g.text });
      return g;
    } catch (e) {
      this.messages.pop();
      throw e;
    }
  }

  /** Start over: the system message alone. */
  reset(): void {
    this.messages.length = 0;
    if (this.options.system !== undefined) {
      this.messages.push({ role: "system", content: this.options.system });
    }
  }

  /** Release the cache. */
  dispose(): void {
    this.#cache.dispose();
  }
}
