/**
 * Fine-tune a model with SSH from TypeScript, as `hartley train` does: load a Hugging Face model
 * directory with a new two-class head, attach SSH to every linear layer, train the coefficients
 * and the head at their own learning rates, evaluate, and write the adapter (PEFT layout) and a
 * merged model directory that transformers loads.
 *
 *     deno run -A examples/finetune.ts [MODEL_DIR] [OUT_DIR]
 *
 * By default: the embedded model (models/default, a small GPT-2) on a toy task made up below:
 * does a sentence talk about the weather or about food?
 * @module
 */
import {
  adapterGroups,
  attachAdapter,
  BatchIterator,
  ClassificationDataset,
  evaluate,
  type Example,
  getGpu,
  inOrder,
  loadModel,
  loadModelTokenizer,
  Prng,
  Progress,
  sshConfig,
  train,
} from "../mod.ts";

const [modelDir = "models/default", outDir = "runs/example"] = Deno.args;

const gpu = await getGpu();
const model = await loadModel(gpu, modelDir, { task: "seq-cls", numLabels: 2 });
const tokenizer = await loadModelTokenizer(model.config);
// GPT-2 has no pad token; the classifier reads each row's last token that is not padding.
model.config.padTokenId ??= tokenizer.padId;

const batches = (examples: Example[], shuffle: boolean) =>
  new BatchIterator(new ClassificationDataset(examples, tokenizer, { maxLength: 24, numLabels: 2 }), {
    batchSize: 16,
    shuffle,
  });
const trainData = batches(sentences(320, 1), true);
const heldOut = batches(sentences(160, 2), false);

// n coefficients per layer at the positions of largest Hartley energy (70%) and random ones.
const peft = await attachAdapter(
  model,
  sshConfig({ n: 200, alpha: 50, init: "zeros", targetModules: "all-linear", taskType: "SEQ_CLS" }),
);
const trainable = peft.trainableCount();
const before = await evaluate(model, inOrder(heldOut), "seq-cls");
const steps = 100;
await train({
  model,
  task: "seq-cls",
  data: trainData,
  groups: adapterGroups(peft, { lr: 0.1, headLr: 5e-3 }), // the coefficients, the new head
  totalSteps: steps,
  warmupSteps: 4,
  maxGradNorm: 1,
  seed: 0,
  setTraining: (on) => peft.train(on), // dropout on while training
  progress: new Progress(steps, { label: "ssh" }), // a bar on a terminal, else a line every 10 s
});
const after = await evaluate(model, inOrder(heldOut), "seq-cls");

await peft.save(`${outDir}/adapter`); // adapter_config.json + adapter_model.safetensors
await peft.saveMerged(`${outDir}/merged`, { overwrite: true, labelNames: ["weather", "food"] });
peft.detach();
model.dispose();

// The merged directory is a plain GPT2ForSequenceClassification: no adapter needed.
const merged = await loadModel(gpu, `${outDir}/merged`);
const again = await evaluate(merged, inOrder(heldOut), "seq-cls");
merged.dispose();
console.log(`wrote ${outDir}/adapter and ${outDir}/merged (held-out accuracy ${again.accuracy!.toFixed(3)})`);
console.log(
  `${trainable} trainable values, ${steps} steps: held-out accuracy ` +
    `${before.accuracy!.toFixed(3)} -> ${after.accuracy!.toFixed(3)}`,
);

/** `count` labelled sentences (0: weather, 1: food), drawn with a seeded generator. */
function sentences(count: number, seed: number): Example[] {
  const rng = new Prng(seed);
  const pick = (words: string[]) => words[rng.below(words.length)];
  const topics = [
    ["rain", "snow", "wind", "fog", "the storm", "the sun", "thunder", "the cold"],
    ["bread", "soup", "cheese", "rice", "the cake", "coffee", "an apple", "the pie"],
  ];
  const frames = ["we talked about {} all day", "{} was all she could think of", "he said {} came early"];
  return Array.from({ length: count }, () => {
    const label = rng.below(2);
    return { text: pick(frames).replace("{}", pick(topics[label])), label };
  });
}
