/**
 * `hartley predict`: use a model directory (with an optional adapter). A sequence classifier
 * labels texts, a token classifier tags their words (and names the entities), a ViT classifier
 * images; a causal LM continues prompts. One `--text`, or every
 * text of a `--data` file (.txt: one per line; .jsonl/.csv/.tsv or a `datasets` split, a
 * .parquet or .arrow file or a save_to_disk folder: the text field, labels ignored; for a token
 * classifier also words already split: a CoNLL file, or records with a `tokens` or `words` list,
 * their tags ignored); for images, `--data` is a PNG/JPEG file, a folder of them or a split. The
 * flags are checked, the inputs read and the chat template found before the model loads. One
 * `--text`, or one image file, is answered in plain words; every other `--data` (even of one
 * record), or `--json`, as one JSON object per line (to `--out` when given,
 * written atomically: never over the `--data` file, over another only with `--overwrite`).
 * @module
 */
import type { WeightDtype } from "../nn/load.ts";
import { getGpu } from "../gpu/mod.ts";
import { writeFileAtomic } from "../io/atomic.ts";
import { type ChatTemplate, loadChatTemplate } from "../io/chat_template.ts";
import { maxTokens, type VitConfig } from "../io/hf_config.ts";
import { statOrNull } from "../io/paths.ts";
import { loadImageProcessorConfig } from "../io/image.ts";
import type { Tokenizer } from "../io/tokenizer.ts";
import type { Model } from "../models/model.ts";
import type { PeftModel } from "../peft/apply.ts";
import { classifierLabels } from "../peft/model_shapes.ts";
import { type AttentionPath, withAttentionPath } from "../tensor/mod.ts";
import { readTexts, recordFieldNames } from "../train/readers.ts";
import {
  type Instruction,
  instructionQuery,
  isInstructionRecord,
  questionTurn,
  readInstructions,
} from "../train/instruct.ts";
import {
  decodeImages,
  defaultImageMemory,
  listImages,
  type SourcedImage,
  type UnloadedImage,
} from "../train/image_data.ts";
import {
  endTokenIds,
  generate,
  generateBatch,
  type GenerateBatchOptions,
  type Generation,
} from "../infer/generate.ts";
import { classify, classifyImages, type Prediction } from "../infer/predict.ts";
import { namedEntities, splitWordSpans, type TaggedWords, tagWords } from "../infer/tag.ts";
import { readWordLists } from "../train/token_data.ts";
import { Progress } from "../train/progress.ts";
import {
  ArgsError,
  ATTENTION_FLAG,
  checkSampling,
  type CommandSpec,
  DTYPE_FLAG,
  FIELD_FLAGS,
  GENERATION_FLAGS,
  listOf,
  MODEL_FLAGS,
  refuseGiven,
  refuseUnused,
  stopTexts,
  templateKwargs,
  withArgs,
} from "./args.ts";
import { parseBytes } from "./environment.ts";
import { explainDeviceError } from "./errors.ts";
import { cacheDtypeOf, chatTemplateOf, type Sampling, samplingOf } from "./generation.ts";
import { type Loaded, loadForUse, planUse, type UsePlan } from "./load.ts";
import { progressFrom, SHOW_EXAMPLES, SHOW_IMAGES } from "./loading.ts";
import { checkOutputFolder, writeStdout } from "./output.ts";
import { withArticle } from "./task.ts";

const FLAGS = {
  ...MODEL_FLAGS,
  task: {
    type: "string",
    choices: ["seq-cls", "token-cls", "causal-lm"],
    help: "classify, tag words or generate [default: adapter's task_type, else the model's head]",
  },
  text: { type: "string", arg: "TEXT", help: "one text to classify, or one prompt to continue" },
  data: {
    type: "string",
    arg: "PATH",
    help:
      "texts or prompts (.txt one per line, .jsonl/.csv/.tsv, or a datasets split: .parquet, .arrow or a " +
      "save_to_disk folder), for a token classifier also " +
      "split words (.conll, or records with a tokens/words list; tags ignored), or for an image classifier a " +
      "PNG/JPEG file, a folder of them, a datasets split or a .jsonl file of pixel arrays",
  },
  "text-field": FIELD_FLAGS["text-field"],
  "pair-field": FIELD_FLAGS["pair-field"],
  labels: {
    type: "string",
    arg: "LIST",
    help: "names of the class ids, comma-separated [default: the adapter's, else config.json's]",
  },
  "seq-len": {
    type: "integer",
    default: 512,
    min: 2,
    help: "tokens per text to classify or tag at most (longer ones are cut)",
  },
  "batch-size": { type: "integer", default: 16, min: 1, help: "inputs per forward pass" },
  "image-memory": {
    type: "string",
    arg: "SIZE",
    help: "decoded images held in memory at most, e.g. 4GiB (default: a quarter of this machine's memory); " +
      "more are decoded a batch at a time as they are classified",
  },
  ...GENERATION_FLAGS,
  chat: {
    type: "boolean",
    help:
      "each prompt is a user's message: rendered with the model's chat template, the assistant's answer generated",
  },
  system: { type: "string", arg: "TEXT", help: "with --chat: a system message before each prompt" },
  json: { type: "boolean", help: "one JSON object per text, even for one --text" },
  out: { type: "string", arg: "FILE", help: "write the JSON lines here instead of the terminal" },
  overwrite: { type: "boolean", help: "replace an existing --out file (never the --data file)" },
  dtype: DTYPE_FLAG,
  attention: ATTENTION_FLAG,
} as const;

/**
 * Refuse an --out whose folder is missing, that is a directory or the --data file, or that exists,
 * without --overwrite.
 */
async function checkOut(
  out: string,
  data: string | undefined,
  overwrite: boolean | undefined,
): Promise<void> {
  await checkOutputFolder("out", out);
  const stat = await statOrNull(out);
  if (!stat) return;
  if (stat.isDirectory) throw new ArgsError(`--out ${out} is a directory: give a file for the predictions`);
  if (data !== undefined && await Deno.realPath(out) === await Deno.realPath(data).catch(() => null)) {
    throw new ArgsError(
      `--out ${out} is the --data file: the predictions would replace it; write them elsewhere`,
    );
  }
  if (!overwrite) throw new ArgsError(`--out ${out} already exists: pass --overwrite to replace it`);
}

/**
 * The tasks each task-bound flag applies to: generation's to a causal LM, --labels to the
 * classifiers, --seq-len to the text classifiers, the field flags to the tasks that read fields.
 */
const PREDICT_FLAGS: Readonly<Record<string, readonly string[]>> = Object.fromEntries([
  ...[...Object.keys(GENERATION_FLAGS), "chat", "system"].map((f) => [f, ["causal-lm"]]),
  ["labels", ["seq-cls", "token-cls", "image-cls"]],
  ["seq-len", ["seq-cls", "token-cls"]],
  ["text-field", ["seq-cls", "token-cls", "causal-lm"]],
  ["pair-field", ["seq-cls"]],
  ["image-memory", ["image-cls"]],
]);

const SPEC: CommandSpec<typeof FLAGS> = {
  name: "predict",
  summary: "Label texts or images with a classifier, tag words, or continue prompts with a causal LM.",
  flags: FLAGS,
  notes: [
    "examples:",
    "  deno run -A cli.ts predict --adapter runs/demo/ssh/adapter --seq-len 32 \\",
    "    --text $'MAKE MONEY FAST!\\nDear friend, GET RICH with our amazing offer. Act now, limited time only!'",
    "  (the demo's adapter says spam; --seq-len as in training: the demo read each e-mail's first 32 tokens)",
    '  deno run -A cli.ts predict --model models/default --task causal-lm --text "The jury said" --max-new-tokens 20',
    "a token classifier's JSON: words, tags (null: the word has no token, or is past --seq-len), their",
    "  probabilities, and entities, each {type, text, score: the mean of its words' probabilities,",
    "  first_word and last_word: word indices, both inclusive; for texts split here also start and end:",
    "  where it lies in the text, in code points, end exclusive, as the transformers pipeline's offsets}",
  ].join("\n"),
};

/** `hartley predict`. */
export function predictCommand(args: string[]): Promise<number> {
  return withArgs(SPEC, args, (v, _, given) =>
    withAttentionPath(v.attention as AttentionPath, async () => {
      if ((v.text === undefined) === (v.data === undefined)) {
        throw new ArgsError(`give either --text TEXT or --data PATH`);
      }
      if (v.system !== undefined && !v.chat) throw new ArgsError(`--system goes with --chat`);
      checkSampling(v);
      if (v.out) await checkOut(v.out, v.data, v.overwrite);
      else if (v.overwrite) {
        throw new ArgsError(`--overwrite replaces an existing --out file: give --out FILE too`);
      }
      const options = {
        needHead: true,
        model: v.model,
        modelGiven: given.has("model"),
        adapter: v.adapter,
        task: v.task as "seq-cls" | "token-cls" | "causal-lm" | undefined,
        dtype: v.dtype as WeightDtype,
      };
      // the flags are checked against the task, and the inputs read, before the weights load
      const plan = await planUse(options);
      refuseUnused(given, PREDICT_FLAGS, plan.task, `${withArticle(plan.task)} model`);
      if (v.text !== undefined) {
        refuseGiven(
          given,
          ["text-field", "pair-field"],
          "to --text (the field flags name the fields of --data records)",
        );
      }
      checkLabels(plan, v.labels);
      const variables = templateKwargs(v["template-kwargs"]);
      const inputs = await readInputs(plan, v);
      checkInstructionFlags(inputs, given, v.chat);
      await checkTemplate(plan.modelDir, inputs, variables, v.chat);
      // a causal LM's sampling settings: generation_config.json's are read (and said) before the load too
      const sampling = plan.task === "causal-lm" ? await samplingOf(plan.modelDir, v) : null;
      if (sampling?.note) console.error(sampling.note);
      const gpu = await getGpu();
      const loaded = await loadForUse(gpu, options, plan);
      try {
        // one prompt for the terminal: written as it is generated
        const streaming = loaded.task === "causal-lm" && v.text !== undefined && !v.json && !v.out;
        let records: Record<string, unknown>[];
        try {
          records = await answer(loaded, inputs, { ...v, variables, sampling }, streaming);
        } catch (e) {
          throw explainDeviceError(e, Object.keys(FLAGS));
        }
        // --data naming one image file (not a folder or a split of one) is answered as --text is
        const loneImage = inputs.kind === "images" && inputs.images.length === 1 &&
          inputs.images[0].source === v.data;
        const lines = records.map((r) => JSON.stringify(r)).join("\n") + "\n";
        if (v.out) {
          await writeFileAtomic(v.out, lines);
          console.error(`wrote ${records.length} predictions to ${v.out}`);
        } else if (!v.json && (v.text !== undefined || loneImage)) {
          const r = records[0];
          if (loaded.task === "token-cls") console.log(describeTags(r));
          else if (loaded.task !== "causal-lm") {
            console.log(
              "value" in r
                ? (r.value as number).toFixed(4) // as probabilities print; --json keeps every digit
                : "labels" in r
                ? (r.labels as string[]).join(", ") || "(no label)"
                : `${r.label} (${r.probability})`,
            );
          } else if (!streaming) console.log(records[0].output); // a streamed one is written already
        } else {
          console.log(lines.trimEnd());
        }
        return 0;
      } finally {
        loaded.peft?.detach();
        loaded.model.dispose();
      }
    }));
}

/**
 * Refuse a --labels list that does not name every output of the head `plan` loads: the adapter's
 * saved head, else config.json's labels (as loadModel sizes it).
 */
function checkLabels(plan: UsePlan, labels: string | undefined): void {
  const names = listOf(labels);
  if (!names || plan.task === "causal-lm") return; // refused as not applying
  const classes = plan.numLabels ?? plan.config.labels.length;
  if (names.length !== classes) {
    const what = plan.task === "token-cls" ? "tags" : "classes";
    throw new ArgsError(`--labels names ${names.length} ${what}, but the model's head has ${classes}`);
  }
}

/**
 * Refuse the flags that instruction records leave unread (they are asked as they are), and
 * --template-kwargs for prompts that no template renders.
 */
function checkInstructionFlags(inputs: Inputs, given: ReadonlySet<string>, chat: boolean | undefined): void {
  if (inputs.kind === "instructions") {
    refuseGiven(
      given,
      ["text-field", "chat", "system"],
      `to instruction records (prompt/completion or messages): ${inputs.path} is asked as it is`,
    );
  } else if (inputs.kind === "texts" && !chat && given.has("template-kwargs")) {
    throw new ArgsError(`--template-kwargs goes with --chat (or conversations in --data)`);
  }
}

/**
 * Refuse, before the weights load, prompts that the model directory `dir` has no chat template
 * for (--chat, or conversations in --data), and conversations with no assistant turn to answer
 * ({@link questionTurn}, which {@link instructionQuery} asks after the load).
 */
async function checkTemplate(
  dir: string,
  inputs: Inputs,
  variables: Record<string, unknown>,
  chat: boolean | undefined,
): Promise<void> {
  if (inputs.kind !== "instructions") {
    if (chat) await chatTemplateOf(dir, variables);
    return;
  }
  const template = await loadChatTemplate(dir, variables);
  inputs.examples.forEach((example, i) => {
    if ("messages" in example) questionTurn(example, template, exampleName(inputs.path, example, i));
  });
}

/** How errors name example `i` of the instruction file `path`: where it was read, else its number. */
function exampleName(path: string, example: Instruction, i: number): string {
  return example.source ?? `${path}: example ${i + 1}`;
}

/** What predict answers, read (and checked) before the model loads. */
type Inputs =
  | { kind: "images"; images: (SourcedImage | UnloadedImage)[] }
  | { kind: "sentences"; sentences: Sentence[] }
  | { kind: "instructions"; path: string; examples: Instruction[] }
  | { kind: "texts"; texts: { text: string; pair?: string }[] };

/**
 * The inputs of `--text` or `--data` for the task of `plan`: images for an image classifier (the
 * model directory's preprocessing), sentences to tag for a token classifier, instructions for a
 * causal LM given prompt/completion or conversation records, else texts.
 */
async function readInputs(
  plan: UsePlan,
  v: { text?: string; data?: string; "text-field"?: string; "pair-field"?: string; "image-memory"?: string },
): Promise<Inputs> {
  const { text, data } = v;
  if (plan.task === "image-cls") {
    if (data === undefined) {
      throw new ArgsError(
        `${plan.modelDir} classifies images: give --data IMAGE, a folder of images, a .parquet, an .arrow, ` +
          `a save_to_disk folder or a .jsonl`,
      );
    }
    const processor = await loadImageProcessorConfig(plan.modelDir, plan.config as VitConfig);
    const listed = await listImages(data, processor, { onWarning: Progress.print });
    const budget = v["image-memory"] === undefined
      ? defaultImageMemory()
      : parseBytes(v["image-memory"], "--image-memory");
    if (listed.length * 3 * processor.width * processor.height > budget) {
      // more than it holds decoded: each batch is decoded as it runs (a broken image stops it there)
      return { kind: "images", images: listed };
    }
    return {
      kind: "images",
      images: await decodeImages(listed, progressFrom(SHOW_IMAGES, "decoding images")),
    };
  }
  if (plan.task === "token-cls") {
    const sentences = data === undefined ? [{ ...splitWordSpans(text!), text }] : await sentencesOf(data, v);
    return { kind: "sentences", sentences };
  }
  if (data === undefined) return { kind: "texts", texts: [{ text: text! }] };
  if (plan.task === "causal-lm" && await holdsInstructions(data)) {
    return { kind: "instructions", path: data, examples: await readInstructions(data) };
  }
  return {
    kind: "texts",
    texts: await readTexts(data, { textField: v["text-field"], pairField: v["pair-field"] }),
  };
}

/**
 * The flags {@link answer} reads, with --template-kwargs parsed as the template's variables, and
 * a causal LM's sampling settings (null for the other tasks).
 */
type AnswerFlags = GenerationFlags & {
  "seq-len": number;
  labels?: string;
  chat?: boolean;
  variables: Record<string, unknown>;
  sampling: Sampling | null;
};

/** One record per input: its class, tags or continuation (see the command's notes). */
async function answer(
  loaded: Loaded,
  inputs: Inputs,
  v: AnswerFlags,
  streaming: boolean,
): Promise<Record<string, unknown>[]> {
  const { model, modelDir } = loaded;
  if (inputs.kind === "images") {
    const { images } = inputs;
    const predictions = await classifyImages(model, images.map((x) => "pixels" in x ? x.pixels : x), {
      batchSize: v["batch-size"],
      onProgress: progressFrom(SHOW_IMAGES, "classifying images"),
    });
    return labelled(loaded, predictions, images.map((x) => ({ file: x.source })), v.labels);
  }
  const tokenizer = loaded.tokenizer;
  if (!tokenizer) throw new ArgsError(`${modelDir} has no tokenizer.json`);
  if (inputs.kind === "sentences") {
    const { sentences } = inputs;
    const tagged = await tagWords(
      model,
      tokenizer,
      sentences.map((s) => s.words),
      classifyOptions(model, v, "tagging"),
    );
    return taggedRecords(loaded, tagged, sentences, v.labels);
  }
  if (inputs.kind === "instructions") {
    return await answerInstructions(model, tokenizer, inputs, {
      ...v,
      ...await promptSettings(modelDir, model, tokenizer, false, v),
      template: await loadChatTemplate(modelDir, v.variables, tokenizer),
    });
  }
  const { texts } = inputs;
  if (loaded.task === "seq-cls") {
    return labelled(
      loaded,
      await classify(model, tokenizer, texts, classifyOptions(model, v, "classifying")),
      texts,
      v.labels,
    );
  }
  return await continuePrompts(model, tokenizer, texts.map((x) => x.text), {
    ...v,
    ...await promptSettings(modelDir, model, tokenizer, v.chat, v),
  }, streaming);
}

/** classify's and tagWords' options: rows cut to --seq-len, --batch-size, progress shown for many inputs. */
function classifyOptions(model: Model, v: { "seq-len": number; "batch-size": number }, label: string) {
  return {
    maxLength: Math.min(v["seq-len"], maxTokens(model.config)),
    batchSize: v["batch-size"],
    onProgress: progressFrom(SHOW_EXAMPLES, label),
  };
}

/** One record per prediction: what was classified, the label's name and id, the probabilities. */
function labelled(
  { model, peft }: { model: Model; peft: PeftModel | null },
  predictions: Prediction[],
  inputs: Record<string, unknown>[],
  labels: string | undefined,
): Record<string, unknown>[] {
  const classes = predictions[0]?.probabilities.length ?? 0;
  const names = listOf(labels) ?? peft?.labelNames ?? model.config.labels;
  const nameOf = (id: number) => names.length === classes ? names[id] : `LABEL_${id}`;
  const probabilities = (p: Prediction) =>
    Object.fromEntries(p.probabilities.map((q, id) => [nameOf(id), round(q)]));
  return predictions.map((p, i) =>
    p.value !== undefined
      ? { ...inputs[i], value: p.value }
      : p.labels
      ? { ...inputs[i], labels: p.labels.map(nameOf), ids: p.labels, probabilities: probabilities(p) }
      : {
        ...inputs[i],
        label: nameOf(p.id),
        id: p.id,
        probability: round(p.probabilities[p.id]),
        probabilities: probabilities(p),
      }
  );
}

/** A sentence to tag: its words, and for a text split here the text and each word's place in it. */
interface Sentence {
  words: string[];
  text?: string;
  offsets?: [number, number][];
}

/**
 * The sentences of a data file to tag: words already split (a CoNLL file's, or a record field's
 * lists: {@link readWordLists}; their tags ignored), else each text split into words.
 */
async function sentencesOf(path: string, v: { "text-field"?: string }): Promise<Sentence[]> {
  const lists = await readWordLists(path, v["text-field"]);
  if (lists) return lists.map(({ words }) => ({ words }));
  return (await readTexts(path, { textField: v["text-field"] })).map(({ text }) => ({
    ...splitWordSpans(text),
    text,
  }));
}

/**
 * One record per sentence: its words, each word's tag name (null: no token) and probability, the
 * entities (see the command's notes for their fields).
 */
function taggedRecords(
  { model, peft }: { model: Model; peft: PeftModel | null },
  tagged: TaggedWords[],
  sentences: Sentence[],
  labels: string | undefined,
): Record<string, unknown>[] {
  const classes = classifierLabels(model) ?? 0;
  const names = listOf(labels) ?? peft?.labelNames ?? model.config.labels;
  const known = names.length === classes;
  const nameOf = (id: number) => id < 0 ? null : known ? names[id] : `LABEL_${id}`;
  return tagged.map(({ words, tags, probabilities }, i) => {
    const tagNames = tags.map(nameOf);
    const { text, offsets } = sentences[i];
    const found = namedEntities(words, tagNames, {
      probabilities,
      text,
      offsets,
      names: known ? names : undefined,
    });
    return {
      words,
      tags: tagNames,
      probabilities: probabilities.map(round),
      entities: found.map((e) => ({
        type: e.type,
        text: e.text,
        score: round(e.score!),
        ...(e.charStart === undefined ? {} : { start: e.charStart, end: e.charEnd }),
        first_word: e.start,
        last_word: e.end,
      })),
    };
  });
}

/** `EU/B-ORG rejects/O German/B-MISC …`, then the entities found, if the tags name any. */
function describeTags(r: Record<string, unknown>): string {
  const words = r.words as string[], tags = r.tags as (string | null)[];
  const line = words.map((w, i) => tags[i] === null ? w : `${w}/${tags[i]}`).join(" ");
  const found = r.entities as { type: string; text: string }[];
  return found.length === 0 ? line : `${line}\n${found.map((e) => `${e.type}: ${e.text}`).join("; ")}`;
}

/** The generation flags of predict. */
interface GenerationFlags {
  stop?: string;
  system?: string;
  "batch-size": number;
  "max-new-tokens": number;
  seed: number;
  "kv-cache": string;
  dtype: string;
}

/** How prompts become token ids, and which tokens end the text. */
interface PromptSettings {
  /** With --chat: the template that wraps each prompt as a user's message. */
  template: ChatTemplate | null;
  /** The ids that end the text (generate's default: endTokenIds). */
  eosTokenIds: number[];
  /** The sampling flags, else generation_config.json's settings. */
  sampling: Sampling;
}

async function promptSettings(
  dir: string,
  model: Model,
  tokenizer: Tokenizer,
  chat: boolean | undefined,
  flags: { variables: Record<string, unknown>; sampling: Sampling | null },
): Promise<PromptSettings> {
  const template = chat ? await chatTemplateOf(dir, flags.variables, tokenizer) : null;
  // read before the load for every causal LM, the one task that prompts
  const sampling = flags.sampling!;
  return { template, eosTokenIds: endTokenIds(model, tokenizer), sampling };
}

/**
 * Continue each prompt: one streamed to the terminal as it grows, or several in batches of
 * `--batch-size` ({@link generateBatch}).
 */
async function continuePrompts(
  model: Model,
  tokenizer: Tokenizer,
  prompts: string[],
  v: GenerationFlags & PromptSettings,
  stream = false,
): Promise<Record<string, unknown>[]> {
  const system = v.system === undefined ? [] : [{ role: "system", content: v.system }];
  const ids = prompts.map((prompt) =>
    v.template
      ? tokenizer.encode(v.template.render([...system, { role: "user", content: prompt }], true), {
        addSpecialTokens: false,
      })
      : tokenizer.encode(prompt)
  );
  const generations = stream
    ? [await streamed(model, tokenizer, prompts[0], ids[0], v)]
    : await inBatches(model, tokenizer, ids, v);
  return generations.map((g, i) => {
    const output = v.template ? g.text : prompts[i] + g.text; // a chat answer does not continue the prompt
    return { prompt: prompts[i], completion: g.text, output, tokens: g.newTokens, stop: g.stop };
  });
}

/** One prompt's continuation, written to the terminal as it grows (after the prompt, but for a chat). */
async function streamed(
  model: Model,
  tokenizer: Tokenizer,
  prompt: string,
  ids: number[],
  v: GenerationFlags & PromptSettings,
): Promise<Generation> {
  if (!v.template) writeStdout(prompt);
  const g = await generate(model, tokenizer, ids, { ...generationOptions(v), onText: writeStdout });
  writeStdout("\n");
  return g;
}

/**
 * The generations of every prompt, `--batch-size` prompts per batch. Each batch is seeded with
 * --seed plus the index of its first prompt: a batch's draws are counted from its own rows, so one
 * seed for all would repeat them batch after batch (the first batch draws as a single prompt does).
 * More than one batch shows its progress on stderr.
 */
async function inBatches(
  model: Model,
  tokenizer: Tokenizer,
  prompts: number[][],
  v: GenerationFlags & PromptSettings,
): Promise<Generation[]> {
  const out: Generation[] = [];
  const progress = progressFrom(v["batch-size"] + 1, "generating");
  for (let i = 0; i < prompts.length; i += v["batch-size"]) {
    const batch = prompts.slice(i, i + v["batch-size"]);
    out.push(...await generateBatch(model, tokenizer, batch, { ...generationOptions(v), seed: v.seed + i }));
    progress?.(out.length, prompts.length);
  }
  return out;
}

function generationOptions(v: GenerationFlags & PromptSettings): GenerateBatchOptions {
  return {
    eosTokenIds: v.eosTokenIds,
    maxNewTokens: v["max-new-tokens"],
    temperature: v.sampling.temperature,
    topK: v.sampling.topK,
    topP: v.sampling.topP,
    minP: v.sampling.minP,
    repetitionPenalty: v.sampling.repetitionPenalty,
    seed: v.seed,
    cacheDtype: cacheDtypeOf(v["kv-cache"], v.dtype as WeightDtype),
    stopTexts: stopTexts(v.stop),
  };
}

/** Whether `path` is a record file of prompt/completion pairs or conversations. */
async function holdsInstructions(path: string): Promise<boolean> {
  const fields = await recordFieldNames(path);
  return fields !== null && isInstructionRecord(fields);
}

/**
 * Generate the answer to each instruction of file `path` (the completion's prompt, or a conversation
 * up to its first learnt assistant turn) and set it beside the expected one; the exact-match rate
 * (whitespace trimmed) goes to standard error.
 */
async function answerInstructions(
  model: Model,
  tokenizer: Tokenizer,
  { path, examples }: { path: string; examples: readonly Instruction[] },
  v: GenerationFlags & PromptSettings,
): Promise<Record<string, unknown>[]> {
  const queries = examples.map((example, i) =>
    instructionQuery(example, tokenizer, v.template, exampleName(path, example, i))
  );
  const generations = await inBatches(model, tokenizer, queries.map((q) => q.ids), v);
  let matches = 0;
  const out = generations.map((g, i) => {
    const { prompt, expected } = queries[i];
    const match = g.text.trim() === expected.trim();
    if (match) matches++;
    return { prompt, expected, completion: g.text, match, tokens: g.newTokens, stop: g.stop };
  });
  console.error(`exact match: ${matches}/${out.length} (${(matches / out.length).toFixed(4)})`);
  return out;
}

function round(p: number): number {
  return Math.round(p * 1e4) / 1e4;
}
