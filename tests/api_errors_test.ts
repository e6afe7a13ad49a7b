/**
 * What a library user catches: `loadModel`'s and `attachAdapter`'s common mistakes throw the
 * exported error classes of mod.ts (for `instanceof`); and an adapter merged into a layer keeps
 * that layer from a second adapter, which unmerging would otherwise drop; nor is a model whose weight
 * holds a kept merge saved merged from its checkpoint.
 */
import { join } from "node:path";
import {
  AdapterConfigError,
  attachAdapter,
  getGpu,
  HfConfigError,
  loadHfConfig,
  loadModel,
  loadModelTokenizer,
  loraConfig,
  ModelDirError,
  sshConfig,
} from "../mod.ts";
import { assert, assertClose, assertEquals, assertRejects } from "./assert.ts";
import { withTempDir } from "./train_helpers.ts";
import { pathExists } from "../lib/io/paths.ts";

const MODELS = new URL("./fixtures/models", import.meta.url).pathname;
const GPT2 = join(MODELS, "gpt2");
const C_ATTN = "transformer.h.0.attn.c_attn";

Deno.test("loadModel: a missing path, a file, a folder without config.json throw ModelDirError", async () => {
  const gpu = await getGpu();
  await withTempDir("hartley_api_errors_", async (dir) => {
    const missing = join(dir, "nope");
    let e = await assertRejects(
      () => loadModel(gpu, missing),
      ModelDirError,
      `${missing}: model directory not found`,
    );
    assertEquals(e.name, "ModelDirError");
    const file = join(GPT2, "config.json");
    await assertRejects(() => loadModel(gpu, file), ModelDirError, `${file}: not a directory`);
    e = await assertRejects(() => loadModel(gpu, dir), ModelDirError, "config.json: not found");
    assert(e.message.startsWith(join(dir, "config.json")), e.message);
  });
});

Deno.test("loadModelTokenizer: a model folder without tokenizer.json throws ModelDirError", async () => {
  await withTempDir("hartley_api_errors_", async (dir) => {
    await Deno.copyFile(join(GPT2, "config.json"), join(dir, "config.json"));
    const config = await loadHfConfig(join(dir, "config.json"));
    await assertRejects(
      () => loadModelTokenizer(config),
      ModelDirError,
      `model directory ${dir} has no tokenizer.json`,
    );
  });
});

Deno.test("loadModel: a task the model_type has no head for throws HfConfigError", async () => {
  const gpu = await getGpu();
  await assertRejects(
    () => loadModel(gpu, join(MODELS, "vit"), { task: "causal-lm" }),
    HfConfigError,
    `task "causal-lm" is not supported for model_type "vit"`,
  );
});

Deno.test("attachAdapter: a new head the config does not train throws AdapterConfigError", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, GPT2, { task: "seq-cls", numLabels: 2 });
  try {
    await assertRejects(
      () => attachAdapter(model, sshConfig({ n: 4 })),
      AdapterConfigError,
      'but the adapter config does not train it: set taskType "SEQ_CLS"',
    );
  } finally {
    model.dispose();
  }
});

Deno.test("an adapter merged into a layer keeps a second one off it until unmerged or unloaded; the weights stay right", async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, GPT2);
  try {
    const lin = model.linears.get(C_ATTN)!;
    const w0 = await lin.weight.toArray();
    const a = await attachAdapter(
      model,
      loraConfig({ r: 2, targetModules: ["c_attn"], initLoraWeights: false }),
    );
    a.merge();
    const merged = await lin.weight.toArray();
    assert(merged.some((v, i) => v !== w0[i]), "merging changes the weight");
    const b = () => attachAdapter(model, sshConfig({ n: 8, targetModules: ["c_attn", "c_proj"] }));
    await assertRejects(b, Error, `"${C_ATTN}" has a lora adapter merged into its weight`);
    assert(model.linears.get("transformer.h.0.attn.c_proj")!.adapter === null, "nothing attached on refusal");
    // unmerging gives A back its layers and the weight its values
    a.unmerge();
    assert(lin.adapter !== null && lin.merged.length === 0, "A attached again");
    assertClose(await lin.weight.toArray(), w0, 1e-6, "unmerged weight");
    // merged and unloaded (PEFT's merge_and_unload): ΔW stays in the weight, and B attaches on top
    a.merge();
    a.detach({ keepMerged: true });
    const peft = await b();
    assertClose(await lin.weight.toArray(), merged, 0, "B attached over W + ΔW_A");
    // B's merged model would be built from the checkpoint's files, without ΔW_A: refused
    await withTempDir("hartley_kept_", async (dir) => {
      await assertRejects(
        () => peft.saveMerged(join(dir, "merged")),
        Error,
        `"${C_ATTN}" holds the ΔW of an adapter detached with keepMerged`,
      );
      assert(!(await pathExists(join(dir, "merged"))), "nothing written");
    });
    peft.detach();
  } finally {
    model.dispose();
  }
});
