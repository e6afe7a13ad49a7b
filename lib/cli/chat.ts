/**
 * `hartley chat`: talk with a chat model (with an optional adapter). Each line read is a user's
 * message; the assistant's answer is written as it is generated. `/reset` starts over, `/exit`
 * (or the end of the input) ends. The conversation goes through the model's chat template, and
 * the key/value cache is kept across turns.
 * @module
 */
import type { WeightDtype } from "../nn/load.ts";
import { getGpu } from "../gpu/mod.ts";
import { type AttentionPath, withAttentionPath } from "../tensor/mod.ts";
import { Chat } from "../infer/chat.ts";
import { endTokenIds } from "../infer/generate.ts";
import {
  ArgsError,
  ATTENTION_FLAG,
  checkSampling,
  type CommandSpec,
  DTYPE_FLAG,
  type FlagValues,
  GENERATION_FLAGS,
  MODEL_FLAGS,
  stopTexts,
  templateKwargs,
  withArgs,
} from "./args.ts";
import { explainDeviceError } from "./errors.ts";
import { cacheDtypeOf, chatTemplateOf, type Sampling, samplingOf } from "./generation.ts";
import { type Loaded, loadForUse, type LoadForUseOptions, planUse } from "./load.ts";
import { writeStdout } from "./output.ts";

const FLAGS = {
  ...MODEL_FLAGS,
  system: { type: "string", arg: "TEXT", help: "a system message that opens the conversation" },
  ...GENERATION_FLAGS,
  "max-new-tokens": { ...GENERATION_FLAGS["max-new-tokens"], default: 256 },
  dtype: DTYPE_FLAG,
  attention: ATTENTION_FLAG,
} as const;

const SPEC: CommandSpec<typeof FLAGS> = {
  name: "chat",
  summary: "Talk with a chat model: each line is a user's message, the answer is written as it is generated.",
  flags: FLAGS,
  notes: [
    "/reset starts the conversation over; /exit or the end of the input ends it.",
    "",
    "example:",
    "  deno run -A cli.ts chat --model ~/models/Qwen2.5-0.5B-Instruct --adapter runs/sft/adapter",
  ].join("\n"),
};

/** Where the conversation is read from and written to (a terminal, or a test's strings). */
export interface ChatIo {
  /** The user's side, one message per line. */
  input: ReadableStream<Uint8Array>;
  /** Writes the assistant's side. */
  write: (text: string) => void;
  /** Show a prompt before each message (when the input is a terminal). */
  prompt: boolean;
}

/** `hartley chat`. */
export function chatCommand(args: string[], io: ChatIo = terminal()): Promise<number> {
  return withArgs(SPEC, args, (v, _, given) =>
    withAttentionPath(v.attention as AttentionPath, async () => {
      checkSampling(v);
      const options: LoadForUseOptions = {
        needHead: true,
        model: v.model,
        modelGiven: given.has("model"),
        adapter: v.adapter,
        task: "causal-lm",
        taskFixed: true,
        dtype: v.dtype as WeightDtype,
      };
      // a model without a chat template, or with a malformed generation_config.json, is refused
      // before its weights load
      const plan = await planUse(options);
      const variables = templateKwargs(v["template-kwargs"]);
      await chatTemplateOf(plan.modelDir, variables);
      const sampling = await samplingOf(plan.modelDir, v);
      if (sampling.note) console.error(sampling.note);
      const gpu = await getGpu();
      const loaded = await loadForUse(gpu, options, plan);
      try {
        return await converse(loaded, { ...v, variables, sampling }, io);
      } finally {
        loaded.peft?.detach();
        loaded.model.dispose();
      }
    }));
}

/** The flags {@link converse} reads, with the template's variables and the sampling settings. */
type ConverseFlags = FlagValues<typeof FLAGS> & { variables: Record<string, unknown>; sampling: Sampling };

/** Answer each line of `io.input` with the loaded model until /exit or the input's end. */
async function converse(loaded: Loaded, v: ConverseFlags, io: ChatIo): Promise<number> {
  const { model, tokenizer, modelDir } = loaded;
  if (!tokenizer) throw new ArgsError(`${modelDir} has no tokenizer.json`);
  const template = await chatTemplateOf(modelDir, v.variables, tokenizer);
  const { sampling } = v;
  const chat = new Chat(model, tokenizer, template, {
    system: v.system,
    maxNewTokens: v["max-new-tokens"],
    temperature: sampling.temperature,
    topK: sampling.topK,
    topP: sampling.topP,
    minP: sampling.minP,
    repetitionPenalty: sampling.repetitionPenalty,
    seed: v.seed,
    cacheDtype: cacheDtypeOf(v["kv-cache"], v.dtype as WeightDtype),
    stopTexts: stopTexts(v.stop),
    eosTokenIds: endTokenIds(model, tokenizer),
  });
  try {
    if (io.prompt) {
      console.error(`chat with ${modelDir}${v.adapter ? ` + ${v.adapter}` : ""}: /reset, /exit`);
    }
    const ask = () => io.prompt && Deno.stderr.writeSync(new TextEncoder().encode("> "));
    for await (const line of lines(io.input, ask)) {
      const text = line.trim();
      if (text === "") continue;
      if (text === "/exit") break;
      if (text === "/reset") {
        chat.reset();
        continue;
      }
      try {
        const t0 = performance.now();
        const g = await chat.say(text, io.write);
        io.write("\n");
        const rate = g.newTokens / ((performance.now() - t0) / 1000);
        if (io.prompt) {
          console.error(`(${g.newTokens} tokens, ${rate.toFixed(1)} tokens/s, stop: ${g.stop})`);
        }
      } catch (e) {
        const err = explainDeviceError(e, Object.keys(FLAGS));
        // out of memory: advice, and the end; a closed stdout ends the conversation (cli.ts, quietly)
        if (err !== e || e instanceof ArgsError || e instanceof Deno.errors.BrokenPipe) throw err;
        // a turn that cannot be answered (e.g. the conversation outgrew the model) ends nothing
        console.error(`error: ${(err as Error).message}${io.prompt ? " (/reset starts over)" : ""}`);
        if (!io.prompt) return 1;
      }
    }
    return 0;
  } finally {
    chat.dispose();
  }
}

/** The lines of `input` (decoded as UTF-8), calling `ask` before each. */
async function* lines(input: ReadableStream<Uint8Array>, ask: () => void): AsyncGenerator<string> {
  let rest = "";
  ask();
  for await (const chunk of input.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    let nl: number;
    while ((nl = rest.indexOf("\n")) >= 0) {
      yield rest.slice(0, nl).replace(/\r$/, "");
      rest = rest.slice(nl + 1);
      ask();
    }
  }
  if (rest !== "") yield rest;
}

/** Standard input and output; a prompt when the input is a terminal. */
function terminal(): ChatIo {
  return { input: Deno.stdin.readable, write: writeStdout, prompt: Deno.stdin.isTerminal() };
}
