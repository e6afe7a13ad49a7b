/**
 * `Model.dispose()` gives back every buffer the model holds: its parameters, the q/k/v weight
 * stacks that training keeps, and its adapters, attached or merged; the adapter's handle
 * (`PeftModel`) can still be detached or disposed afterwards.
 */
import {
  type AdapterConfig,
  attachAdapter,
  fourierftConfig,
  getGpu,
  type Gpu,
  loadModel,
  loraConfig,
  type PeftModel,
  sshConfig,
  tensor,
  toModelBatch,
} from "../mod.ts";
import { TWO_ROW_BATCH as BATCH } from "./model_helpers.ts";
import { assert, assertEquals, assertThrows } from "./assert.ts";

const ROBERTA = new URL("./fixtures/models/roberta", import.meta.url).pathname;

const CONFIGS: [string, () => AdapterConfig][] = [
  ["SSH", () => sshConfig({ n: 300, taskType: "SEQ_CLS" })],
  ["LoRA", () => loraConfig({ r: 4, taskType: "SEQ_CLS" })],
  ["FourierFT", () => fourierftConfig({ nFrequency: 300, taskType: "SEQ_CLS" })],
];

/**
 * RoBERTa with `config` attached, after one training step's forward and backward: query, key and
 * value run as one product, whose stacked weight (the adapter folded in) the model keeps.
 */
async function trainedOnce(gpu: Gpu, config: AdapterConfig): Promise<PeftModel> {
  const model = await loadModel(gpu, ROBERTA, { task: "seq-cls" });
  const peft = await attachAdapter(model, config);
  peft.train(true);
  tensor.tidy(() => model.forward(toModelBatch(model, BATCH, "seq-cls")).loss!.backward());
  peft.train(false);
  return peft;
}

/** Bytes in use once the work queued so far is done. */
async function inUse(gpu: Gpu): Promise<number> {
  await gpu.sync();
  return gpu.pool.stats().inUse;
}

/**
 * Bytes in use after a whole cycle (merging when `merge`) that frees the adapter first: the
 * device's own tables (the transforms' twiddles, by size) made and kept.
 */
async function baseline(gpu: Gpu, config: AdapterConfig, merge = false): Promise<number> {
  const peft = await trainedOnce(gpu, config);
  if (merge) peft.merge();
  peft.detach();
  peft.model.dispose();
  return await inUse(gpu);
}

for (const [name, config] of CONFIGS) {
  for (const merged of [false, true]) {
    Deno.test(`model.dispose() frees the ${merged ? "merged" : "attached"} ${name} adapter and the kept q/k/v stacks; detach afterwards does nothing`, async () => {
      const gpu = await getGpu();
      const before = await baseline(gpu, config(), merged);
      const peft = await trainedOnce(gpu, config());
      if (merged) peft.merge();
      assert((await inUse(gpu)) > before, "the model holds buffers");
      peft.model.dispose();
      assertEquals(await inUse(gpu), before, "bytes in use after model.dispose()");
      peft.detach();
      assertEquals(await inUse(gpu), before, "bytes in use after detach");
    });
  }
}

Deno.test("PeftModel.dispose() frees the model and its adapter; the handle then refuses use", async () => {
  const gpu = await getGpu();
  const before = await baseline(gpu, sshConfig({ n: 300, taskType: "SEQ_CLS" }), true);
  const peft = await trainedOnce(gpu, sshConfig({ n: 300, taskType: "SEQ_CLS" }));
  peft.merge();
  peft.dispose();
  assertEquals(await inUse(gpu), before, "bytes in use after peft.dispose()");
  peft.dispose();
  assertThrows(() => peft.unmerge(), "detached");
});

Deno.test("a PeftModel whose model was disposed says so instead of reading freed tensors", async () => {
  const gpu = await getGpu();
  const peft = await trainedOnce(gpu, loraConfig({ r: 4, taskType: "SEQ_CLS" }));
  peft.model.dispose();
  assertThrows(() => peft.merge(), "model was disposed");
  peft.detach();
});
