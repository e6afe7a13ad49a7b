import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import {
  AdapterConfigError,
  adapterConfigToJson,
  adapterConfigToText,
  adapterScaling,
  type FourierFTConfig,
  fourierftConfig,
  loadAdapterConfig,
  type LoraConfig,
  loraConfig,
  parseAdapterConfig,
  type SSHConfig,
  sshConfig,
} from "../lib/peft/config.ts";

const ADAPTERS = new URL("./fixtures/adapters/", import.meta.url).pathname;
const FIXTURES = [
  "gpt2-lora",
  "llama-lora",
  "roberta-lora",
  "gpt2-fourierft",
  "llama-fourierft",
  "roberta-fourierft",
];

async function fixtureJson(name: string): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(`${ADAPTERS}${name}/adapter_config.json`));
}

/** A valid SSH config JSON with `changes` applied (undefined deletes a field). */
function sshJson(changes: Record<string, unknown> = {}): Record<string, unknown> {
  const json = adapterConfigToJson(sshConfig({ targetModules: ["query", "value"] }));
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined) delete json[k];
    else json[k] = v;
  }
  return json;
}

Deno.test("SSH defaults follow SPEC §1.4", () => {
  const c = sshConfig();
  assertEquals(
    [c.peftType, c.n, c.energyRatio, c.alpha, c.transform, c.selection, c.init, c.seed],
    ["SSH", 750, 0.7, 150, "dht", "layer", "normal", 0],
  );
  assertEquals([c.targetModules, c.modulesToSave, c.baseModelNameOrPath, c.taskType], [
    null,
    null,
    null,
    null,
  ]);
  const d = sshConfig({
    n: 1000,
    alpha: 300,
    transform: "dft",
    targetModules: ".*q_proj",
    taskType: "CAUSAL_LM",
  });
  assertEquals([d.n, d.alpha, d.transform, d.targetModules, d.taskType], [
    1000,
    300,
    "dft",
    ".*q_proj",
    "CAUSAL_LM",
  ]);
});

Deno.test("SSH config JSON uses PEFT's snake_case names and round-trips", () => {
  const c = sshConfig({
    n: 24,
    energyRatio: 0.5,
    alpha: 20,
    transform: "dht2d",
    selection: "global",
    init: "zeros",
    seed: 7,
    targetModules: ["query", "value"],
    modulesToSave: ["classifier"],
    baseModelNameOrPath: "FacebookAI/roberta-base",
    taskType: "SEQ_CLS",
  });
  const json = adapterConfigToJson(c);
  assertEquals(json.peft_type, "SSH");
  for (
    const [k, v] of Object.entries({
      n: 24,
      energy_ratio: 0.5,
      alpha: 20,
      transform: "dht2d",
      selection: "global",
    })
  ) {
    assertEquals(json[k], v, k);
  }
  assertEquals(
    [json.init, json.seed, json.target_modules, json.modules_to_save],
    ["zeros", 7, ["query", "value"], ["classifier"]],
  );
  assertEquals([json.base_model_name_or_path, json.task_type], ["FacebookAI/roberta-base", "SEQ_CLS"]);
  assertEquals(Object.keys(json), Object.keys(json).sort(), "keys sorted as PEFT writes them");
  const text = adapterConfigToText(c);
  assert(text.endsWith("}\n"));
  assertEquals(parseAdapterConfig(JSON.parse(text)), c);
});

Deno.test("the six PEFT fixture configs parse and write back unchanged", async () => {
  for (const name of FIXTURES) {
    const raw = await fixtureJson(name);
    const c = await loadAdapterConfig(`${ADAPTERS}${name}`);
    assertEquals(adapterConfigToJson(c), raw, name);
    assertEquals(c.modulesToSave, null, name);
    assertEquals(
      (c as LoraConfig | FourierFTConfig).fanInFanOut,
      name.startsWith("gpt2"),
      `${name} fan_in_fan_out`,
    );
  }
  const lora = await loadAdapterConfig(`${ADAPTERS}gpt2-lora`) as LoraConfig;
  assertEquals([lora.peftType, lora.r, lora.loraAlpha, lora.loraDropout, lora.bias], [
    "LORA",
    4,
    8,
    0,
    "none",
  ]);
  assertEquals(lora.targetModules, ["mlp.c_proj", "c_attn"]);
  assertEquals(lora.initLoraWeights, false);
  assertEquals(lora.extra.peft_version, "0.21.0");
  assertEquals(adapterScaling(lora), 2);
  assertEquals(adapterScaling({ ...lora, useRslora: true }), 4);
  const fft = await loadAdapterConfig(`${ADAPTERS}llama-fourierft/adapter_config.json`) as FourierFTConfig;
  assertEquals([fft.peftType, fft.nFrequency, fft.scaling, fft.randomLocSeed], ["FOURIERFT", 24, 20, 777]);
  assertEquals(fft.targetModules, ["q_proj", "v_proj", "down_proj"]);
  assertEquals(adapterScaling(fft), 20);
});

Deno.test("LoRA and FourierFT builders take PEFT's defaults", () => {
  const l = loraConfig({ targetModules: ["c_attn"], fanInFanOut: true });
  assertEquals([l.r, l.loraAlpha, l.loraDropout, l.fanInFanOut, l.useRslora], [8, 8, 0, true, false]);
  const json = adapterConfigToJson(l);
  assertEquals([json.peft_type, json.r, json.lora_alpha, json.use_dora], ["LORA", 8, 8, false]);
  const f = fourierftConfig({ targetModules: ["query", "value"] });
  assertEquals([f.nFrequency, f.scaling, f.randomLocSeed], [1000, 150, 777]);
  assertEquals(adapterConfigToJson(f).n_frequency, 1000);
});

Deno.test("invalid SSH fields are named with the value and what was expected", () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ n: 0 }, `"n" must be an integer ≥ 1, got 0`],
    [{ n: 2.5 }, `"n" must be an integer ≥ 1, got 2.5`],
    [{ n: "750" }, `"n" must be an integer ≥ 1, got "750"`],
    [{ energy_ratio: 1.2 }, `"energy_ratio" must be a number in [0, 1], got 1.2`],
    [{ energy_ratio: -0.1 }, `"energy_ratio" must be a number in [0, 1], got -0.1`],
    [{ alpha: "150" }, `"alpha" must be a finite number, got "150"`],
    [{ transform: "fft" }, `"transform" must be one of "dht", "dht2d", "dft", got "fft"`],
    [{ selection: "all" }, `"selection" must be one of "layer", "global", got "all"`],
    [{ init: "uniform" }, `"init" must be one of "normal", "zeros", got "uniform"`],
    [{ seed: -1 }, `"seed" must be an integer ≥ 0 (below 2^53), got -1`],
    [{ task_type: "CLASSIFY" }, `"task_type" must be null or one of SEQ_CLS`],
    [{ target_modules: [] }, `"target_modules" must be a non-empty list of module names`],
    [{ target_modules: [3] }, `"target_modules" must be a list of module names or null, got [3]`],
    [{ target_modules: "(query" }, `"target_modules" "(query" is not a valid regular expression`],
    [{ modules_to_save: "classifier" }, `"modules_to_save" must be a list of module names or null`],
    [{ energy_ration: 0.5 }, `unknown field "energy_ration" in an SSH config (known: n, energy_ratio`],
  ];
  for (const [changes, message] of cases) {
    assertThrows(() => parseAdapterConfig(sshJson(changes), "x/adapter_config.json"), message);
    assertThrows(
      () => parseAdapterConfig(sshJson(changes), "x/adapter_config.json"),
      "x/adapter_config.json: ",
    );
  }
  assertThrows(() => sshConfig({ alpha: Infinity }), `SSH options: "alpha" must be a finite number`);
  assertThrows(() => sshConfig({ n: -3 }), `"n" must be an integer ≥ 1, got -3`);
  // Defaults fill absent fields.
  const c = parseAdapterConfig(sshJson({ n: undefined, alpha: undefined })) as SSHConfig;
  assertEquals([c.n, c.alpha], [750, 150]);
});

Deno.test("invalid LoRA / FourierFT fields and unsupported options are rejected", async () => {
  const lora = await fixtureJson("roberta-lora");
  const fft = await fixtureJson("roberta-fourierft");
  const cases: [Record<string, unknown>, Record<string, unknown>, string][] = [
    [lora, { r: 0 }, `"r" must be an integer ≥ 1, got 0`],
    [lora, { lora_dropout: 1 }, `"lora_dropout" must be in [0, 1), got 1`],
    [lora, { bias: "all" }, `"bias" "all" is not supported (only "none"`],
    [lora, { use_dora: true }, `LoRA option "use_dora" = true is not supported`],
    [
      lora,
      { init_lora_weights: "pissa_niter_4" },
      `"init_lora_weights" "pissa_niter_4" trains against a base`,
    ],
    [lora, { init_lora_weights: "olora" }, "path_initial_model_for_weight_conversion"],
    [lora, { rank_pattern: { query: 2 } }, `LoRA option "rank_pattern" = {"query":2} is not supported`],
    [lora, { fan_in_fan_out: "yes" }, `"fan_in_fan_out" must be true or false, got "yes"`],
    [fft, { n_frequency: 0 }, `"n_frequency" must be an integer ≥ 1, got 0`],
    [fft, { scaling: null, n_frequency: 1.5 }, `"n_frequency" must be an integer ≥ 1, got 1.5`],
    [fft, { n_frequency_pattern: { query: 10 } }, `FourierFT option "n_frequency_pattern"`],
    [fft, { layers_to_transform: [-1] }, `"layers_to_transform" must be a layer index or a list`],
  ];
  for (const [base, changes, message] of cases) {
    assertThrows(() => parseAdapterConfig({ ...base, ...changes }, "a.json"), message);
  }
  const layers = parseAdapterConfig({ ...lora, layers_to_transform: 1, layers_pattern: "layer" });
  assertEquals([layers.layersToTransform, layers.layersPattern], [[1], ["layer"]]);
});

Deno.test("unknown or missing peft_type lists the supported ones", async () => {
  assertThrows(
    () => parseAdapterConfig({ peft_type: "VERA", r: 4 }, "v.json"),
    `v.json: peft_type "VERA" is not supported (supported: SSH, LORA, FOURIERFT)`,
  );
  assertThrows(
    () => parseAdapterConfig({ r: 4 }, "v.json"),
    `v.json: no "peft_type" (supported: SSH, LORA, FOURIERFT)`,
  );
  assertThrows(() => parseAdapterConfig([1, 2]), "expected a JSON object");
  const dir = await Deno.makeTempDir({ prefix: "hartley_cfg_" });
  try {
    await Deno.writeTextFile(`${dir}/adapter_config.json`, "{ not json");
    await assertRejects(() => loadAdapterConfig(dir), AdapterConfigError, "invalid JSON");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
