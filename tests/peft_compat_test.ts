// PEFT's own rules on configs and saved adapters: what it refuses (layers_to_transform with a
// string target_modules), what it accepts (an empty exclude_modules, target and modules_to_save
// names a loaded adapter's model lacks), and what it writes (fan_in_fan_out for GPT-2's Conv1D).
import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import { loadHfConfig, parseHfConfig } from "../lib/io/hf_config.ts";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { type TensorData, writeSafetensors } from "../lib/io/safetensors_write.ts";
import { loadModel } from "../lib/models/load.ts";
import { type ModelShapes, modelShapes } from "../lib/models/shapes.ts";
import { attachAdapter, loadAdapterInto } from "../lib/peft/apply.ts";
import {
  AdapterConfigError,
  fourierftConfig,
  loraConfig,
  parseAdapterConfig,
  sshConfig,
} from "../lib/peft/config.ts";
import { loadAdapter } from "../lib/peft/files.ts";
import { AdapterFileError } from "../lib/peft/check_adapter.ts";
import { resolveModulesToSave, resolveTargets } from "../lib/peft/targets.ts";
import { runCli, withTempDir } from "./train_helpers.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;
const ADAPTERS = `${FIXTURES}adapters/`;

async function shapesOf(family: string): Promise<ModelShapes> {
  return modelShapes(await loadHfConfig(`${FIXTURES}models/${family}`));
}

async function fixtureJson(name: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(`${ADAPTERS}${name}/adapter_config.json`));
}

/**
 * A copy of fixture adapter `name` in `dir`, its config changed by `changes` and `extra` tensors
 * (module key without the base_model.model. prefix → tensor) added to its weights.
 */
async function editedAdapter(
  name: string,
  dir: string,
  changes: Record<string, unknown>,
  extra: Record<string, TensorData> = {},
): Promise<void> {
  const src = await openSafetensors(`${ADAPTERS}${name}/adapter_model.safetensors`);
  const tensors: Record<string, TensorData> = {};
  for (const key of src.names) {
    tensors[key] = { dtype: src.info(key).dtype, shape: src.info(key).shape, data: await src.read(key) };
  }
  for (const [key, t] of Object.entries(extra)) tensors[`base_model.model.${key}`] = t;
  await writeSafetensors(`${dir}/adapter_model.safetensors`, tensors, src.metadata);
  await Deno.writeTextFile(
    `${dir}/adapter_config.json`,
    JSON.stringify({ ...await fixtureJson(name), ...changes }),
  );
}

function zeros(...shape: number[]): TensorData {
  return { dtype: "F32", shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) };
}

Deno.test("layers_to_transform and layers_pattern are refused with a string target_modules, as PEFT", async () => {
  const lora = await fixtureJson("roberta-lora");
  for (const target_modules of [".*\\.(query|value)", "all-linear"]) {
    for (const [key, value] of [["layers_to_transform", [0]], ["layers_pattern", "layer"]] as const) {
      const e = assertThrows(() =>
        parseAdapterConfig({ ...lora, target_modules, [key]: value }, "x/adapter_config.json")
      );
      assert(e instanceof AdapterConfigError, String(e));
      assert(
        e.message.startsWith(
          `x/adapter_config.json: "${key}" cannot be used when "target_modules" is a string`,
        ),
        e.message,
      );
      assert(e.message.includes(JSON.stringify(target_modules)), e.message);
    }
  }
  // New adapters are refused the same way, naming the options
  assertThrows(
    () => sshConfig({ targetModules: "all-linear", layersToTransform: [1] }),
    `SSH options: "layers_to_transform" cannot be used`,
  );
  assertThrows(
    () => fourierftConfig({ targetModules: ".*query", layersPattern: ["layer"] }),
    `FourierFT options: "layers_pattern" cannot be used`,
  );
  // with a list of names they work
  const listed = loraConfig({ targetModules: ["query"], layersToTransform: [1], layersPattern: ["layer"] });
  assertEquals(resolveTargets(await shapesOf("roberta"), listed).map((l) => l.path), [
    "roberta.encoder.layer.1.attention.self.query",
  ]);
});

Deno.test("layers_pattern without layers_to_transform is refused, as PEFT", async () => {
  const lora = await fixtureJson("roberta-lora");
  for (const layers_to_transform of [undefined, null, []]) {
    const e = assertThrows(() =>
      parseAdapterConfig({ ...lora, layers_pattern: ["layer"], layers_to_transform }, "x/adapter_config.json")
    );
    assert(e instanceof AdapterConfigError, String(e));
    assert(
      e.message.startsWith(`x/adapter_config.json: "layers_pattern" ["layer"] needs "layers_to_transform"`),
    );
  }
  assertThrows(() => sshConfig({ layersPattern: ["layer"] }), `SSH options: "layers_pattern"`);
  // an empty pattern is no pattern
  assertEquals(parseAdapterConfig({ ...lora, layers_pattern: [] }).layersPattern, null);
});

Deno.test("exclude_modules [] excludes nothing (PEFT); an empty target_modules is still refused", async () => {
  const lora = await fixtureJson("roberta-lora");
  const c = parseAdapterConfig({ ...lora, exclude_modules: [] });
  assertEquals(c.excludeModules, null);
  assertEquals(resolveTargets(await shapesOf("roberta"), c).length, 4);
  assertThrows(
    () => parseAdapterConfig({ ...lora, target_modules: [] }),
    `"target_modules" must be a non-empty list of module names`,
  );
});

Deno.test("target names that match nothing: an error for a new adapter, skipped for a saved one while one matches", async () => {
  const roberta = await shapesOf("roberta");
  const spec = sshConfig({ targetModules: ["query", "q_proj"] });
  assertThrows(
    () => resolveTargets(roberta, spec),
    `target module "q_proj" matches no linear layer`,
  );
  assertEquals(resolveTargets(roberta, spec, { saved: true }).length, 2);
  // nothing matching at all is an error either way (PEFT: "Target modules … not found")
  assertThrows(
    () => resolveTargets(roberta, sshConfig({ targetModules: ["q_proj", "v_proj"] }), { saved: true }),
    `target module "q_proj" matches no linear layer of RobertaForSequenceClassification`,
  );
});

Deno.test("modules_to_save names that match nothing: an error for a new adapter, skipped for a saved one", async () => {
  const roberta = await shapesOf("roberta");
  const spec = loraConfig({ targetModules: ["query"], modulesToSave: ["classifier", "score"] });
  assertThrows(
    () => resolveModulesToSave(roberta, spec),
    `modules_to_save "score" matches no module`,
  );
  assertEquals(resolveModulesToSave(roberta, spec, { saved: true }).map((m) => m.path), ["classifier"]);
});

Deno.test("a PEFT adapter whose target_modules / modules_to_save name modules the model lacks loads", async () => {
  const llama = await shapesOf("llama");
  await withTempDir("hartley_compat_", async (dir) => {
    const c = await fixtureJson("llama-lora");
    await editedAdapter("llama-lora", dir, {
      target_modules: [...c.target_modules as string[], "query_key_value"],
    });
    assertEquals((await loadAdapter(dir, { shapes: llama })).modules.size, 6);
    // weights for a layer the model lacks are still refused, naming it
    await editedAdapter(
      "llama-lora",
      dir,
      { target_modules: [...c.target_modules as string[], "query_key_value"] },
      {
        "model.layers.0.self_attn.query_key_value.lora_A.weight": zeros(4, 64),
        "model.layers.0.self_attn.query_key_value.lora_B.weight": zeros(192, 4),
      },
    );
    await assertRejects(
      () => loadAdapter(dir, { shapes: llama }),
      AdapterFileError,
      `module "model.layers.0.self_attn.query_key_value" is not a linear layer of LlamaForCausalLM`,
    );
  });
  // PEFT's own SEQ_CLS adapters list both heads; without task_type the absent one is skipped too
  const roberta = await shapesOf("roberta");
  const head = resolveModulesToSave(roberta, loraConfig({ modulesToSave: ["classifier"] }))[0].params;
  await withTempDir("hartley_compat_", async (dir) => {
    await editedAdapter(
      "roberta-lora",
      dir,
      { task_type: null, modules_to_save: ["classifier", "score"] },
      Object.fromEntries(head.map((p) => [p.key, zeros(...p.shape)])),
    );
    const a = await loadAdapter(dir, { shapes: roberta });
    assertEquals([...a.saved.keys()].sort(), head.map((p) => p.key).sort());
  });
});

Deno.test("on a model: a saved adapter with names the model lacks attaches; a new one with them is refused", async () => {
  const gpu = await getGpu();
  const roberta = await shapesOf("roberta");
  const head = resolveModulesToSave(roberta, loraConfig({ modulesToSave: ["classifier"] }))[0].params;
  const names = { target_modules: ["query", "value", "q_proj"], modules_to_save: ["classifier", "score"] };
  await withTempDir("hartley_compat_", async (dir) => {
    await editedAdapter(
      "roberta-lora",
      dir,
      { ...names, task_type: null },
      Object.fromEntries(head.map((p) => [p.key, zeros(...p.shape)])),
    );
    const model = await loadModel(gpu, `${FIXTURES}models/roberta`);
    try {
      const peft = await loadAdapterInto(model, dir);
      assertEquals([peft.layers.size, peft.saved.size], [4, 4]);
      await peft.save(`${dir}/resaved`); // as read: the names stay, and load again
      assertEquals(
        (await loadAdapter(`${dir}/resaved`, { shapes: roberta })).config.targetModules,
        names.target_modules,
      );
      peft.detach();
      await assertRejects(
        () => attachAdapter(model, loraConfig({ targetModules: names.target_modules })),
        Error,
        `target module "q_proj" matches no linear layer`,
      );
      await assertRejects(
        () => attachAdapter(model, loraConfig({ modulesToSave: names.modules_to_save })),
        Error,
        `modules_to_save "score" matches no module`,
      );
    } finally {
      model.dispose();
    }
  });
});

Deno.test("DistilBERT: SEQ_CLS saves pre_classifier too (PEFT's suffix match), as the README says", () => {
  const config = parseHfConfig({
    model_type: "distilbert",
    architectures: ["DistilBertForSequenceClassification"],
    dim: 32,
    n_layers: 1,
    n_heads: 2,
    hidden_dim: 64,
    vocab_size: 100,
    max_position_embeddings: 64,
  }, "distilbert");
  const saved = resolveModulesToSave(modelShapes(config), sshConfig({ taskType: "SEQ_CLS" }));
  assertEquals(saved.map((m) => m.path), ["pre_classifier", "classifier"]);
});

Deno.test("GPT-2 (Conv1D) LoRA and FourierFT adapters save fan_in_fan_out true, as PEFT; either value loads", async () => {
  const gpu = await getGpu();
  const cases = [
    ["gpt2", loraConfig({ r: 2, targetModules: ["c_attn"] }), true],
    ["gpt2", fourierftConfig({ nFrequency: 8, targetModules: ["c_attn"], fanInFanOut: false }), true],
    ["roberta", loraConfig({ r: 2, fanInFanOut: true }), false],
  ] as const;
  for (const [family, config, want] of cases) {
    await withTempDir("hartley_compat_", async (dir) => {
      const model = await loadModel(gpu, `${FIXTURES}models/${family}`);
      try {
        const peft = await attachAdapter(model, config);
        await peft.save(dir);
        peft.detach();
        const saved = JSON.parse(await Deno.readTextFile(`${dir}/adapter_config.json`));
        assertEquals(saved.fan_in_fan_out, want, `${family} ${config.peftType}`);
      } finally {
        model.dispose();
      }
    });
  }
  // a GPT-2 adapter that says false (as earlier versions saved them) loads, and saves true
  await withTempDir("hartley_compat_", async (dir) => {
    await editedAdapter("gpt2-lora", dir, { fan_in_fan_out: false });
    const model = await loadModel(gpu, `${FIXTURES}models/gpt2`);
    try {
      const peft = await loadAdapterInto(model, dir);
      assertEquals([peft.config.peftType, peft.config.peftType === "LORA" && peft.config.fanInFanOut], [
        "LORA",
        true,
      ]);
      peft.detach();
    } finally {
      model.dispose();
    }
  });
});

Deno.test("CLI on a classifier base: an adapter folder with adapter_model.bin only names the problem", async () => {
  await withTempDir("hartley_compat_", async (dir) => {
    await Deno.copyFile(`${ADAPTERS}roberta-lora/adapter_config.json`, `${dir}/adapter_config.json`);
    await Deno.writeFile(`${dir}/adapter_model.bin`, new Uint8Array(8));
    for (const cmd of [["inspect"], ["merge", "--out", `${dir}/merged`]]) {
      const r = await runCli([...cmd, "--model", `${FIXTURES}models/roberta`, "--adapter", dir]);
      assertEquals(r.code, 1, r.err);
      assert(
        r.err.includes(`no adapter_model.safetensors (adapter_model.bin, a PyTorch pickle, is not read`),
        `${cmd[0]}: ${r.err}`,
      );
    }
  });
});
