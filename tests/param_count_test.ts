import { assert, assertEquals, assertThrows } from "./assert.ts";
import { loadHfConfig, parseHfConfig } from "../lib/io/hf_config.ts";
import { openCheckpoint } from "../lib/io/safetensors.ts";
import { checkCheckpoint, modelShapes, ShapeError, totalParams } from "../lib/models/shapes.ts";
import { numel } from "../lib/tensor/shape.ts";
import { fourierftConfig, loraConfig, sshConfig } from "../lib/peft/config.ts";
import {
  fullFineTuneParams,
  headParams,
  paperModels,
  paramRows,
  paramTable,
  trainableParams,
} from "../lib/peft/param_count.ts";
import { matchesModules, resolveModulesToSave, resolveTargets, TargetError } from "../lib/peft/targets.ts";

const MODELS = new URL("./fixtures/models/", import.meta.url).pathname;
const FAMILIES = ["gpt2", "bert", "roberta", "llama", "vit"];

async function fixtureShapes(family: string) {
  return modelShapes(await loadHfConfig(`${MODELS}${family}`));
}

function paper(name: string) {
  const m = paperModels().find((p) => p.name === name)!;
  return modelShapes(m.config, { architecture: m.architecture, numLabels: 2 });
}

Deno.test("shapes list every tensor of the fixture checkpoints with its shape", async () => {
  for (const family of FAMILIES) {
    const shapes = await fixtureShapes(family);
    const ckpt = await openCheckpoint(`${MODELS}${family}`);
    const match = checkCheckpoint(shapes, ckpt);
    assertEquals([match.prefix, match.missingHead, match.unexpected], [shapes.basePrefix, [], []], family);
    for (const l of shapes.linears) {
      if (l.tiedTo) {
        assert(
          !ckpt.has(`${l.path}.weight`) && ckpt.has(l.tiedTo),
          `${family} ${l.path} tied to ${l.tiedTo}`,
        );
        continue;
      }
      const want = l.storage === "out_in" ? [l.outFeatures, l.inFeatures] : [l.inFeatures, l.outFeatures];
      assertEquals(ckpt.info(`${l.path}.weight`).shape, want, `${family} ${l.path}`);
      assertEquals(ckpt.has(`${l.path}.bias`), l.bias, `${family} ${l.path}.bias`);
      if (l.bias) assertEquals(ckpt.info(`${l.path}.bias`).shape, [l.outFeatures]);
    }
    const stored = ckpt.names.reduce((s, n) => s + numel(ckpt.info(n).shape), 0);
    assertEquals(totalParams(shapes), stored, `${family} parameter count`);
  }
});

Deno.test("shapes: fixture architectures, storage and tying", async () => {
  const gpt2 = await fixtureShapes("gpt2");
  assertEquals([gpt2.architecture, gpt2.basePrefix, gpt2.outputLayer], [
    "GPT2LMHeadModel",
    "transformer.",
    "lm_head",
  ]);
  assertEquals(gpt2.linears[0], {
    path: "transformer.h.0.attn.c_attn",
    outFeatures: 192,
    inFeatures: 64,
    storage: "in_out",
    bias: true,
  });
  assertEquals(gpt2.linears.find((l) => l.path === "lm_head")!.tiedTo, "transformer.wte.weight");
  const llama = await fixtureShapes("llama");
  const v = llama.linears.find((l) => l.path === "model.layers.0.self_attn.v_proj")!;
  assertEquals([v.outFeatures, v.inFeatures, v.storage, v.bias], [32, 64, "out_in", false]);
  assertEquals(llama.linears.find((l) => l.path === "lm_head")!.tiedTo, undefined);
  const roberta = await fixtureShapes("roberta");
  assertEquals(roberta.head, ["classifier"]);
  assertEquals(headParams(roberta), 64 * 64 + 64 + 3 * 64 + 3);
  const vit = await fixtureShapes("vit");
  assertEquals(vit.linears[0].path, "vit.encoder.layer.0.attention.attention.query");
  // A bare-backbone checkpoint (keys without "transformer.") is accepted for the LM model.
  const bare = modelShapes(await loadHfConfig(`${MODELS}gpt2`), { architecture: "GPT2Model" });
  assertEquals(bare.basePrefix, "");
  assertEquals(bare.linears[0].path, "h.0.attn.c_attn");
  const ckpt = await openCheckpoint(`${MODELS}gpt2`);
  const renamed = {
    ...ckpt,
    path: ckpt.path,
    names: ckpt.names.map((n) => n.slice("transformer.".length)),
    has: (n: string) => ckpt.has("transformer." + n),
    info: (n: string) => ckpt.info("transformer." + n),
  };
  assertEquals(checkCheckpoint(gpt2, renamed).prefix, "");
  // A different architecture's checkpoint is reported tensor by tensor.
  const llamaCkpt = await openCheckpoint(`${MODELS}llama`);
  assertThrows(() => checkCheckpoint(gpt2, llamaCkpt), "missing transformer.wte.weight [512,64]");
  const robertaConfig = await loadHfConfig(`${MODELS}roberta`);
  const wrong = assertThrows(() => modelShapes(robertaConfig, { architecture: "GPT2LMHeadModel" }));
  assert(wrong instanceof ShapeError);
  assertThrows(
    () => modelShapes(robertaConfig, { architecture: "RobertaForQuestionAnswering" }),
    'architecture "RobertaForQuestionAnswering" is not supported for model_type "roberta" (supported: ',
  );
  // Another task's head of the same name (BertForSequenceClassification's classifier) is not read
  // as a token classifier's: that head starts new.
  const bertConfig = await loadHfConfig(`${MODELS}bert`);
  const tagger = modelShapes(bertConfig, { architecture: "BertForTokenClassification", numLabels: 5 });
  const bertCkpt = await openCheckpoint(`${MODELS}bert`);
  // a head of another label count starts new as well (transformers' ignore_mismatched_sizes)
  assertEquals(checkCheckpoint(tagger, bertCkpt).missingHead, ["classifier.weight", "classifier.bias"]);
  const fresh = checkCheckpoint(tagger, bertCkpt, bertConfig.architectures[0]);
  assertEquals(fresh.missingHead, ["classifier.weight", "classifier.bias"]);
  assertEquals(tagger.linears.some((l) => l.path.endsWith("pooler.dense")), false, "no pooler");
});

Deno.test("target matching follows PEFT's rule", () => {
  assert(matchesModules("roberta.encoder.layer.0.attention.self.query", ["query"]));
  assert(matchesModules("query", ["query"]));
  assert(!matchesModules("roberta.encoder.layer.0.attention.self.query_x", ["query"]));
  assert(!matchesModules("transformer.h.0.attn.c_proj", ["mlp.c_proj"]));
  assert(matchesModules("transformer.h.0.mlp.c_proj", ["mlp.c_proj"]));
  assert(matchesModules("model.layers.3.self_attn.q_proj", ".*\\.layers\\.\\d+\\.self_attn\\.q_proj"));
  assert(!matchesModules("model.layers.3.self_attn.q_proj", "q_proj"), "a string is a full-match regex");
  assert(!matchesModules("model.layers.3.self_attn.q_proj.x", ".*q_proj"));
});

Deno.test("targets resolve on the fixture models, with family defaults", async () => {
  const paths = async (family: string, spec: Parameters<typeof resolveTargets>[1]) =>
    resolveTargets(await fixtureShapes(family), spec).map((l) => l.path);
  const none = sshConfig();
  assertEquals(await paths("gpt2", none), ["transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"]);
  assertEquals(await paths("llama", none), [
    "model.layers.0.self_attn.q_proj",
    "model.layers.0.self_attn.v_proj",
    "model.layers.1.self_attn.q_proj",
    "model.layers.1.self_attn.v_proj",
  ]);
  for (const family of ["bert", "roberta", "vit"]) {
    const got = await paths(family, none);
    assertEquals(got.length, 4, family);
    assert(got.every((p) => p.endsWith(".query") || p.endsWith(".value")), family);
  }
  // The fixture references' targets.
  for (const family of FAMILIES) {
    const ref = JSON.parse(await Deno.readTextFile(`${MODELS}${family}/reference.json`));
    const leaves = [...new Set((ref.targets as string[]).map((t) => t.split(".").slice(-2).join(".")))];
    assertEquals(await paths(family, sshConfig({ targetModules: leaves })), ref.targets, family);
  }
  assertEquals(await paths("gpt2", sshConfig({ targetModules: ["mlp.c_proj", "c_attn"] })), [
    "transformer.h.0.attn.c_attn",
    "transformer.h.0.mlp.c_proj",
    "transformer.h.1.attn.c_attn",
    "transformer.h.1.mlp.c_proj",
  ]);
  assertEquals(await paths("gpt2", sshConfig({ targetModules: "transformer\\.h\\.1\\..*c_proj" })), [
    "transformer.h.1.attn.c_proj",
    "transformer.h.1.mlp.c_proj",
  ]);
  const all = await paths("gpt2", sshConfig({ targetModules: "all-linear" }));
  assertEquals(all.length, 8);
  assert(!all.includes("lm_head"), "all-linear leaves the output layer out");
  assertEquals(await paths("llama", sshConfig({ targetModules: ["q_proj"], layersToTransform: [1] })), [
    "model.layers.1.self_attn.q_proj",
  ]);
  assertEquals(
    await paths("llama", sshConfig({ targetModules: ["q_proj", "v_proj"], excludeModules: ["v_proj"] })),
    ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"],
  );
  // Layers inside a module to save are not adapted (SEQ_CLS adds "classifier").
  const dense = await paths("roberta", sshConfig({ targetModules: ["dense"], taskType: "SEQ_CLS" }));
  assertEquals(dense.length, 6); // attention.output, intermediate and output dense of 2 layers
  assert(dense.every((p) => p.startsWith("roberta.encoder.")));
});

Deno.test("targets that match nothing are named with the available layer names", async () => {
  const roberta = await fixtureShapes("roberta");
  const e = assertThrows(() => resolveTargets(roberta, sshConfig({ targetModules: ["query", "q_proj"] })));
  assert(e instanceof TargetError);
  assert(
    e.message.includes(`target module "q_proj" matches no linear layer of RobertaForSequenceClassification`),
  );
  assert(e.message.includes("named query, key, value, dense, out_proj"), e.message);
  assertThrows(
    () => resolveTargets(roberta, sshConfig({ targetModules: ["attention"] })),
    "it names 2 modules that are not a linear layer (e.g. roberta.encoder.layer.0.attention)",
  );
  assertThrows(
    () => resolveTargets(roberta, sshConfig({ targetModules: "query" })),
    `target_modules regular expression "query" matches no linear layer`,
  );
  assertThrows(
    () => resolveTargets(roberta, sshConfig({ targetModules: ["query"], excludeModules: ".*" })),
    "leave no layer of RobertaForSequenceClassification to adapt",
  );
  assertThrows(
    () => resolveModulesToSave(roberta, sshConfig({ modulesToSave: ["head"] })),
    `modules_to_save "head" matches no module of RobertaForSequenceClassification (its head: classifier`,
  );
  const saved = resolveModulesToSave(roberta, sshConfig({ taskType: "SEQ_CLS" }));
  assertEquals(saved.map((s) => s.path), ["classifier"]);
  // PEFT's own SEQ_CLS adapters list both heads; the model has one of them
  const listed = sshConfig({ taskType: "SEQ_CLS", modulesToSave: ["classifier", "score"] });
  assertEquals(resolveModulesToSave(roberta, listed).map((s) => s.path), ["classifier"]);
  assertThrows(
    () => resolveModulesToSave(roberta, sshConfig({ modulesToSave: ["classifier", "score"] })),
    `modules_to_save "score" matches no module`,
  );
  assertEquals(saved[0].params.map((p) => p.key), [
    "classifier.dense.weight",
    "classifier.dense.bias",
    "classifier.out_proj.weight",
    "classifier.out_proj.bias",
  ]);
});

Deno.test("hand-checked counts: RoBERTa-base, GPT-2 medium, LLaMA-3.1-8B", () => {
  const base = paper("RoBERTa-base");
  const qv = ["query", "value"];
  assertEquals(
    trainableParams(base, loraConfig({ r: 8, targetModules: qv })).total,
    12 * 2 * 8 * (768 + 768),
  );
  assertEquals(trainableParams(base, loraConfig({ r: 8, targetModules: qv })).total, 294_912);
  assertEquals(trainableParams(base, sshConfig({ n: 750, targetModules: qv })).total, 12 * 2 * 750);
  assertEquals(trainableParams(base, fourierftConfig({ nFrequency: 1000, targetModules: qv })).total, 24_000);
  // The published roberta-base size (RobertaModel, with the pooler) is 124,645,632.
  const bare = modelShapes(paperModels()[0].config, { architecture: "RobertaModel" });
  assertEquals(totalParams(bare), 124_645_632);
  assertEquals(fullFineTuneParams(base, { excludeHead: true }), 124_645_632 - (768 * 768 + 768));
  assertEquals(headParams(base), 768 * 768 + 768 + 2 * 768 + 2);
  // modules_to_save (the classifier) counts in full on top of the adapter.
  const withHead = trainableParams(base, sshConfig({ targetModules: qv, taskType: "SEQ_CLS" }));
  assertEquals([withHead.adapter, withHead.modulesToSave, withHead.total], [18_000, 592_130, 610_130]);

  const gpt2 = paper("GPT-2 medium");
  assertEquals(totalParams(gpt2), 354_823_168);
  assertEquals(
    trainableParams(gpt2, loraConfig({ r: 8, targetModules: ["c_attn"] })).total,
    24 * 8 * (1024 + 3072),
  );

  const llama = paper("LLaMA-3.1-8B");
  const q = llama.linears.find((l) => l.path === "model.layers.0.self_attn.q_proj")!;
  const v = llama.linears.find((l) => l.path === "model.layers.0.self_attn.v_proj")!;
  assertEquals([q.outFeatures, q.inFeatures, v.outFeatures, v.inFeatures], [4096, 4096, 1024, 4096]);
  const lora = trainableParams(llama, loraConfig({ r: 8, targetModules: ["q_proj", "v_proj"] }));
  assertEquals([lora.layers, lora.total], [64, 32 * 8 * ((4096 + 4096) + (4096 + 1024))]);
  assertEquals(
    trainableParams(llama, sshConfig({ n: 1000, targetModules: ["q_proj", "v_proj"] })).total,
    64_000,
  );
  assertEquals(fullFineTuneParams(llama), 8_030_261_248);
  const config = parseHfConfig({ ...paperModels()[3].config.raw, tie_word_embeddings: true }, "tied");
  assertEquals(
    totalParams(modelShapes(config)),
    8_030_261_248 - 128256 * 4096,
    "a tied head is counted once",
  );
});

Deno.test("the paper table", () => {
  const rows = paramRows();
  assertEquals(rows.map((r) => [r.model.name, r.ssh, r.lora, r.fourierft, r.full]), [
    ["RoBERTa-base", 18_000, 294_912, 24_000, 124_055_040],
    ["RoBERTa-large", 36_000, 786_432, 48_000, 354_310_144],
    ["GPT-2 medium", 18_000, 786_432, 24_000, 354_823_168],
    ["LLaMA-3.1-8B", 64_000, 3_407_872, 64_000, 8_030_261_248],
  ]);
  const table = paramTable(rows);
  assert(table.startsWith("| Model | Targets (adapted layers) | SSH | LoRA r=8 | FourierFT n=1000 |"));
  assert(
    table.includes("| RoBERTa-base | query, value (24) | n=750: 18,000 (0.0145%) | 294,912 (0.238%) |"),
    table,
  );
  assert(table.includes("¹ Excluding the classification head"));
});
