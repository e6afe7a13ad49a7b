/**
 * Train a token classifier with SSH from TypeScript: tag the people and places of generated
 * sentences with the embedded GPT-2, through `TokenClassificationDataset`, `train` and
 * `evaluate`, then tag a new sentence with `tagWords`.
 *
 *     deno run -A examples/ner.ts [MODEL_DIR] [OUT_DIR]
 *
 * By default: the embedded model (models/default) and runs/example-ner.
 * @module
 */
import {
  adapterGroups,
  attachAdapter,
  BatchIterator,
  evaluate,
  getGpu,
  inOrder,
  loadModel,
  loadModelTokenizer,
  namedEntities,
  Prng,
  splitWords,
  sshConfig,
  type TaggedExample,
  tagWords,
  TokenClassificationDataset,
  train,
} from "../mod.ts";

const [modelDir = "models/default", outDir = "runs/example-ner"] = Deno.args;
const TAGS = ["O", "B-PER", "B-LOC"];

const gpu = await getGpu();
const model = await loadModel(gpu, modelDir, { task: "token-cls", numLabels: TAGS.length });
model.config.labels = TAGS; // the tag names: evaluations read entities from them
const tokenizer = await loadModelTokenizer(model.config);
// each word's first token learns the word's tag; its other tokens and the padding are ignored
const batches = (examples: TaggedExample[], shuffle: boolean) =>
  new BatchIterator(new TokenClassificationDataset(examples, tokenizer, { maxLength: 16 }), {
    batchSize: 16,
    shuffle,
  });
const trainData = batches(sentences(256, 1), true);
const heldOut = batches(sentences(64, 2), false);

const peft = await attachAdapter(
  model,
  sshConfig({ n: 200, alpha: 50, init: "zeros", targetModules: "all-linear", taskType: "TOKEN_CLS" }),
);
const before = await evaluate(model, inOrder(heldOut), "token-cls");
await train({
  model,
  task: "token-cls",
  data: trainData,
  groups: adapterGroups(peft, { lr: 0.1, headLr: 1e-2 }),
  totalSteps: 80,
  warmupSteps: 4,
  maxGradNorm: 1,
  seed: 0,
  setTraining: (on) => peft.train(on),
});
const after = await evaluate(model, inOrder(heldOut), "token-cls");
peft.labelNames = TAGS;
await peft.save(`${outDir}/adapter`);

const [tagged] = await tagWords(model, tokenizer, [splitWords("Ines moved to Oslo last spring")]);
const names = tagged.tags.map((id) => TAGS[id] ?? "O");
console.log(tagged.words.map((w, i) => `${w}/${names[i]}`).join(" "));
console.log(namedEntities(tagged.words, names).map((e) => `${e.type}: ${e.text}`).join("; "));
peft.detach();
model.dispose();
console.log(`entity F1 ${before.f1!.toFixed(3)} -> ${after.f1!.toFixed(3)}; wrote ${outDir}/adapter`);

/** `count` sentences naming people and places, each word tagged, drawn with a seeded generator. */
function sentences(count: number, seed: number): TaggedExample[] {
  const rng = new Prng(seed);
  const pick = (words: string[]) => words[rng.below(words.length)];
  const people = ["Ada", "Bob", "Maria", "Chen", "Omar", "Ines"];
  const places = ["Paris", "Lima", "Oslo", "Cairo", "Delhi", "Quito"];
  const frames = [
    "P moved to L",
    "P met P in L",
    "we saw P near L",
    "L was cold when P left",
    "P left L last spring",
    "last week P visited L",
  ];
  return Array.from({ length: count }, () => {
    const words: string[] = [], tags: number[] = [];
    for (const slot of pick(frames).split(" ")) {
      words.push(slot === "P" ? pick(people) : slot === "L" ? pick(places) : slot);
      tags.push(slot === "P" ? 1 : slot === "L" ? 2 : 0);
    }
    return { words, tags };
  });
}
