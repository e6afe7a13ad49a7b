/**
 * Instruction-tune a causal LM with SSH from TypeScript, as `hartley train` does on a
 * prompt/completion file: the loss on the completions alone, then greedy answers to the prompts.
 *
 *     deno run -A examples/instruct.ts [MODEL_DIR] [OUT_DIR]
 *
 * By default: the embedded model (models/default, a small GPT-2 pretrained on the Brown corpus)
 * learns to answer "The opposite of hot is" with " cold", for eight pairs of words.
 * @module
 */
import {
  adapterGroups,
  attachAdapter,
  BatchIterator,
  evaluate,
  generate,
  getGpu,
  inOrder,
  instructionDataset,
  loadModel,
  loadModelTokenizer,
  sshConfig,
  type TextInstruction,
  train,
} from "../mod.ts";

const [modelDir = "models/default", outDir = "runs/example-instruct"] = Deno.args;

const pairs = [
  ["hot", "cold"],
  ["up", "down"],
  ["big", "small"],
  ["day", "night"],
  ["yes", "no"],
  ["fast", "slow"],
  ["open", "closed"],
  ["light", "dark"],
];
const examples: TextInstruction[] = pairs.map(([a, b]) => ({
  prompt: `The opposite of ${a} is`,
  completion: ` ${b}`,
}));

const gpu = await getGpu();
const model = await loadModel(gpu, modelDir, { task: "causal-lm" });
const tokenizer = await loadModelTokenizer(model.config);
// each row: the prompt's and the completion's tokens and the end-of-sequence token; only the
// completion and the end are learnt
const { dataset } = instructionDataset(examples, tokenizer, { seqLen: 32 });
const rows = new BatchIterator(dataset, { batchSize: 8, seed: 0 });

const peft = await attachAdapter(
  model,
  sshConfig({ n: 300, alpha: 100, init: "zeros", targetModules: "all-linear", taskType: "CAUSAL_LM" }),
);
const before = await evaluate(model, inOrder(rows), "causal-lm");
await train({
  model,
  task: "causal-lm",
  data: rows,
  groups: adapterGroups(peft, { lr: 0.2 }),
  totalSteps: 120,
  warmupSteps: 3,
  maxGradNorm: 1,
  seed: 0,
});
const after = await evaluate(model, inOrder(rows), "causal-lm");
await peft.save(`${outDir}/adapter`);

let right = 0;
for (const { prompt, completion } of examples) {
  const answer = (await generate(model, tokenizer, prompt, { maxNewTokens: 4 })).text;
  if (answer.trim().startsWith(completion.trim())) right++;
  console.log(`${prompt} →${answer}`);
}
peft.detach();
model.dispose();
console.log(
  `completion loss ${before.loss.toFixed(3)} -> ${
    after.loss.toFixed(3)
  }; ${right}/${examples.length} answers right; ` +
    `wrote ${outDir}/adapter`,
);
