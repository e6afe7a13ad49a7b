/**
 * Bind groups that decoding creates: a model's first greedy generation in a new process, and a
 * second, longer one (whose lengths the first did not reach), each in new bind groups per token
 * (a bind group the stream has not cached costs a `createBindGroup` on the CPU) and wall ms per
 * token. A repeated generation of the same lengths creates none (`bench/generate.ts` times those).
 *
 *     deno run -A bench/bind_groups.ts [--model DIR] [--tokens 96]
 * @module
 */
import { benchArgs } from "./args.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import { loadModel, loadModelTokenizer } from "../lib/models/load.ts";
import { generate } from "../lib/infer/generate.ts";
import { table } from "./stats.ts";

const { values: v } = benchArgs(import.meta.url, {
  model: {
    type: "string",
    default: new URL("../tests/fixtures/models/gpt2-brown", import.meta.url).pathname,
  },
  tokens: { type: "string", default: "96" },
});
const gpu = await getGpu();
const model = await loadModel(gpu, v.model!, { task: "causal-lm" });
const tokenizer = await loadModelTokenizer(model.config);
const tokens = Number(v.tokens);
console.log(`greedy generation of ${v.model} on ${gpu.description}; ${new Date().toISOString()}`);
const rows = [];
for (const [what, n] of [["first generation", tokens], ["a longer second one", 2 * tokens]] as const) {
  const groups = gpu.stream.bindGroupsCreated, t0 = performance.now();
  const g = await generate(model, tokenizer, "The jury said", { maxNewTokens: n, eosTokenIds: [] });
  const ms = (performance.now() - t0) / g.newTokens;
  rows.push([
    what,
    String(g.newTokens),
    ((gpu.stream.bindGroupsCreated - groups) / g.newTokens).toFixed(1),
    ms.toFixed(2),
  ]);
}
console.log(table(["generation", "tokens", "new bind groups/token", "ms/token"], rows));
model.dispose();
