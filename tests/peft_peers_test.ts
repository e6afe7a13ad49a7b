// LoRA and FourierFT as PEFT makes and loads them: FourierFT positions past torch's 64-bit randperm
// threshold, PEFT's FourierFT `alpha`, a LoRA adapter on GPT-2's tied LM head, layers_to_transform
// with targets named by their whole path, FourierFT's layers_pattern alone, and the errors of heads
// an adapter leaves frozen.
import { assert, assertClose, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { fixtureModel, tempModelDir } from "./model_helpers.ts";
import { FIXTURES, loadableFamilies, Prng } from "./peft_helpers.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import { loadHfConfig, parseHfConfig } from "../lib/io/hf_config.ts";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { type TensorData, writeSafetensors } from "../lib/io/safetensors_write.ts";
import { loadModel } from "../lib/models/load.ts";
import { referenceBatch } from "../lib/models/parity.ts";
import { modelShapes } from "../lib/models/shapes.ts";
import type { Linear } from "../lib/nn/linear.ts";
import { attachAdapter, loadAdapterInto } from "../lib/peft/apply.ts";
import {
  AdapterConfigError,
  adapterConfigToJson,
  fourierftConfig,
  loraConfig,
  parseAdapterConfig,
  sshConfig,
} from "../lib/peft/config.ts";
import { type FourierFTAdapter, loadAdapter, saveAdapter } from "../lib/peft/files.ts";
import { AdapterFileError } from "../lib/peft/check_adapter.ts";
import { initFourierftModule, peftFourierftPositions } from "../lib/peft/fourierft.ts";
import { trainableParams } from "../lib/peft/param_count.ts";
import { resolveTargets } from "../lib/peft/targets.ts";
import {
  insideOutPrefix,
  mod64,
  Mt19937,
  TORCH_RANDPERM_LIMIT,
  TORCH_RANDPERM_MAX,
  torchRandpermPrefix,
} from "../lib/peft/torch_randperm.ts";
import { noGrad, tidy } from "../lib/tensor/mod.ts";
import { withTempDir } from "./temp_dir.ts";

const ADAPTERS = `${FIXTURES}adapters/`;

/**
 * `torch.randperm(n, generator=torch.Generator().manual_seed(777))[:12]` past the threshold, as
 * PyTorch 2.7 and later draw it: its C++ loop (randperm_cpu, with std::mt19937 as the engine)
 * compiled and run whole, for n = 28672·8192 (a LLaMA-2/3-70B feed-forward weight).
 */
const TORCH_MLP_70B = [
  150358698,
  199533091,
  83306822,
  145970095,
  40813261,
  111338416,
  71047571,
  163718730,
  64709267,
  26058358,
  56327884,
  134404678,
];

Deno.test("mod64 is (hi·2³² + lo) mod m exactly, as BigInt computes it, for every m up to 2³⁶", () => {
  const rng = new Mt19937(9);
  const check = (hi: number, lo: number, m: number) => {
    const want = Number(((BigInt(hi) << 32n) | BigInt(lo)) % BigInt(m));
    assertEquals(mod64(hi, lo, m), want, `(${hi}·2³² + ${lo}) mod ${m}`);
  };
  const max = 0xffffffff;
  for (const m of [1, 2, 3, 65535, 65536, 2 ** 21, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 36 - 1, 2 ** 36]) {
    for (const [hi, lo] of [[0, 0], [max, max], [max, 0], [0, max], [m % 2 ** 32, 0], [1, 0]]) {
      check(hi, lo, m);
    }
  }
  // random m in every binade from 2 to 2³⁶, most of them around 2³⁰–2³⁴ (the layer sizes past the threshold)
  for (let k = 0; k < 40_000; k++) {
    const bits = k % 2 === 0 ? 30 + (k % 5) : 1 + (k % 36);
    const m = Math.min(2 ** 36, Math.floor((rng.next() / 2 ** 32) * 2 ** bits) + 2 ** (bits - 1));
    check(rng.next(), rng.next(), m);
  }
});

Deno.test("insideOutPrefix keeps the prefix of PyTorch's inside-out loop run on the whole array", () => {
  // randperm_cpu's large-n loop as PyTorch writes it, on a full array, with BigInt arithmetic
  const whole = (n: number, seed: number) => {
    const r: number[] = new Array(n), rng = new Mt19937(seed);
    for (let i = 0; i < n; i++) {
      const hi = BigInt(rng.next()), lo = BigInt(rng.next());
      const z = Number(((hi << 32n) | lo) % BigInt(i + 1));
      r[i] = i;
      r[i] = r[z];
      r[z] = i;
    }
    return r;
  };
  // from 2¹³ + take on, most steps past the prefix are decided without the exact remainder
  for (const [n, seed] of [[1, 0], [2, 5], [3, 777], [10, 1], [97, 2 ** 32 + 5], [500, 42], [60_000, 7]]) {
    const want = whole(n, seed);
    assertEquals(new Set(want).size, n, `a permutation of ${n}`);
    for (const take of [0, 1, Math.min(n, 3), Math.floor(n / 2), n]) {
      assertEquals(
        Array.from(insideOutPrefix(n, new Mt19937(seed), take)),
        want.slice(0, take),
        `n ${n}, take ${take}`,
      );
    }
  }
});

Deno.test("torch randperm takes PyTorch's 64-bit branch from n = ⌊(2³²−1)/20⌋ on, exactly", () => {
  assertEquals(TORCH_RANDPERM_LIMIT, 214748364);
  // below: the 32-bit Fisher–Yates shuffle, as torch.randperm(214748363, generator=manual_seed(777)) drew it
  assertEquals(
    Array.from(torchRandpermPrefix(TORCH_RANDPERM_LIMIT - 1, 777, 8)),
    [11440646, 199500216, 10121607, 3119241, 51696020, 155711086, 42349920, 206414740],
  );
  // at the threshold: the inside-out shuffle (PyTorch ≥ 2.7's C++ loop, run whole; torch < 2.7 would
  // still shuffle as below it, giving 11440643, 199500204, …)
  const started = performance.now();
  assertEquals(
    Array.from(torchRandpermPrefix(TORCH_RANDPERM_LIMIT, 777, 8)),
    [150358698, 199533091, 83306822, 145970095, 40813261, 111338416, 71047571, 163718730],
  );
  console.log(`torch randperm of 2³²/20 positions: ${((performance.now() - started) / 1000).toFixed(1)} s`);
  assertThrows(() => torchRandpermPrefix(TORCH_RANDPERM_MAX + 1, 0, 1), "must be an integer in [0, 2^36]");
});

Deno.test("FourierFT on a layer past the threshold: new adapters draw PEFT's positions, and PEFT's adapters load without a side file", async () => {
  const [m, n] = [8192, 28672]; // down_proj of a LLaMA-70B: out 8192, in 28672
  const want = TORCH_MLP_70B.flatMap((f) => [Math.floor(f / n), f % n]);
  assertEquals(Array.from(peftFourierftPositions(m, n, 12, 777)), want);
  const lin = { path: "model.layers.0.mlp.down_proj", outFeatures: m, inFeatures: n } as Linear;
  const config = fourierftConfig({ nFrequency: 12, targetModules: ["down_proj"] });
  const module = initFourierftModule(config, lin, 0);
  assertEquals(Array.from(module.indices!), want, "a new adapter's positions are PEFT's");
  // an adapter as PEFT writes it: the spectrum alone, no recorded layer sizes, no side file
  const hf = JSON.parse(await Deno.readTextFile(`${FIXTURES}models/llama/config.json`));
  const shapes = modelShapes(parseHfConfig(
    {
      ...hf,
      hidden_size: m,
      intermediate_size: n,
      num_hidden_layers: 1,
      head_dim: 128,
      num_attention_heads: 64,
    },
    "llama-70b-like",
  ));
  await withTempDir("hartley_peers_", async (dir) => {
    const spectrum = new Prng(3).normals(12);
    const key = "base_model.model.model.layers.0.mlp.down_proj.fourierft_spectrum";
    await writeSafetensors(`${dir}/adapter_model.safetensors`, {
      [key]: { dtype: "F32", shape: [12], data: spectrum },
    }, { format: "pt" });
    await Deno.writeTextFile(
      `${dir}/adapter_config.json`,
      JSON.stringify({
        peft_type: "FOURIERFT",
        n_frequency: 12,
        random_loc_seed: 777,
        target_modules: ["down_proj"],
      }),
    );
    const loaded = await loadAdapter(dir, { shapes }) as FourierFTAdapter;
    const mod = loaded.modules.get("model.layers.0.mlp.down_proj")!;
    assertEquals(Array.from(mod.indices!), want, "PEFT's positions, redrawn");
    assertEquals(Array.from(mod.spectrum), Array.from(spectrum));
  });
});

Deno.test("FourierFT alpha: int(alpha·N·M) coefficients per layer, as PEFT, loaded, made and saved", async () => {
  // the roberta fixture (24 coefficients on 64×64 layers) with PEFT's alpha: int(0.005859375·64·64) = 24
  const json = JSON.parse(await Deno.readTextFile(`${ADAPTERS}roberta-fourierft/adapter_config.json`));
  const shapes = modelShapes(await loadHfConfig(`${FIXTURES}models/roberta`));
  const plain = await loadAdapter(`${ADAPTERS}roberta-fourierft`, { shapes }) as FourierFTAdapter;
  await withTempDir("hartley_peers_", async (dir) => {
    await Deno.copyFile(
      `${ADAPTERS}roberta-fourierft/adapter_model.safetensors`,
      `${dir}/adapter_model.safetensors`,
    );
    await Deno.writeTextFile(
      `${dir}/adapter_config.json`,
      JSON.stringify({ ...json, alpha: 0.005859375, n_frequency: 1000 }),
    );
    const a = await loadAdapter(dir, { shapes }) as FourierFTAdapter;
    for (const [path, mod] of plain.modules) {
      assertEquals(Array.from(a.modules.get(path)!.indices!), Array.from(mod.indices!), path);
    }
    assertEquals(adapterConfigToJson(a.config).alpha, 0.005859375, "alpha written back");
    // int(0.0062·64·64) = int(25.39…) = 25: the fixture's 24 do not fit, and the message says why
    await Deno.writeTextFile(`${dir}/adapter_config.json`, JSON.stringify({ ...json, alpha: 0.0062 }));
    await assertRejects(
      () => loadAdapter(dir, { shapes }),
      AdapterFileError,
      "has 24 coefficients, expected int(alpha·N·M) = int(0.0062·64·64) = 25",
    );
  });
  // a new adapter: the count per layer, in PEFT's order of the product
  const config = fourierftConfig({ nFrequency: 1000, extra: { alpha: 0.01 } });
  const lin = (outFeatures: number, inFeatures: number) => ({ path: "l", outFeatures, inFeatures }) as Linear;
  assertEquals(initFourierftModule(config, lin(64, 64), 0).spectrum.length, 40); // int(40.96)
  assertEquals(initFourierftModule(config, lin(192, 64), 0).spectrum.length, 122); // int(122.88)
  assertEquals(trainableParams(shapes, { ...config, targetModules: ["query"] }).adapter, 2 * 40);
  assertThrows(
    () => initFourierftModule(fourierftConfig({ extra: { alpha: 0.01 } }), lin(5, 5), 0),
    "l: alpha = 0.01 gives int(alpha·N·M) = 0 coefficients, which must be at least 1",
  );
  for (const alpha of [-0.1, 1.5, "0.1", true]) {
    const e = assertThrows(() => fourierftConfig({ extra: { alpha } }));
    assert(
      e instanceof AdapterConfigError && e.message.includes('"alpha" must be null, or a number in [0, 1]'),
      e.message,
    );
  }
  // 0 and null leave n_frequency, as PEFT's `if alpha:`
  for (const alpha of [0, null]) {
    assertEquals(
      initFourierftModule(fourierftConfig({ nFrequency: 7, extra: { alpha } }), lin(8, 8), 0).spectrum.length,
      7,
    );
  }
  // saved and loaded back: each module checked against its own count
  await withTempDir("hartley_peers_", async (dir) => {
    const modules = new Map([
      ["roberta.encoder.layer.0.attention.self.query", initFourierftModule(config, lin(64, 64), 0)],
      ["roberta.encoder.layer.1.attention.self.query", initFourierftModule(config, lin(64, 64), 1)],
    ]);
    for (const [path, mod] of modules) modules.set(path, { ...mod, indices: null });
    await saveAdapter(dir, { config: { ...config, targetModules: ["query"] }, modules, saved: new Map() });
    const back = await loadAdapter(dir, { shapes }) as FourierFTAdapter;
    assertEquals(back.config.extra.alpha, 0.01);
    assertEquals([...back.modules.values()].map((m) => m.spectrum.length), [40, 40]);
  });
});

Deno.test("a LoRA adapter on GPT-2's tied lm_head loads and runs; merging it is refused, naming the tie", async () => {
  if (!loadableFamilies().includes("gpt2")) return;
  const gpu = await getGpu();
  const mdir = `${FIXTURES}models/gpt2`;
  const model = await loadModel(gpu, mdir, { task: "causal-lm" });
  const head = model.linears.get("lm_head")!;
  const [vocab, width, r] = [head.outFeatures, head.inFeatures, 4];
  const p = new Prng(11);
  const a = p.normals(r * width), b = p.normals(vocab * r);
  await withTempDir("hartley_peers_", async (dir) => {
    const src = await openSafetensors(`${ADAPTERS}gpt2-lora/adapter_model.safetensors`);
    const tensors: Record<string, TensorData> = {};
    for (const k of src.names) {
      tensors[k] = { dtype: src.info(k).dtype, shape: src.info(k).shape, data: await src.read(k) };
    }
    tensors["base_model.model.lm_head.lora_A.weight"] = { dtype: "F32", shape: [r, width], data: a };
    tensors["base_model.model.lm_head.lora_B.weight"] = { dtype: "F32", shape: [vocab, r], data: b };
    await writeSafetensors(`${dir}/adapter_model.safetensors`, tensors, src.metadata);
    const cfg = JSON.parse(await Deno.readTextFile(`${ADAPTERS}gpt2-lora/adapter_config.json`));
    await Deno.writeTextFile(
      `${dir}/adapter_config.json`,
      JSON.stringify({ ...cfg, target_modules: [...cfg.target_modules, "lm_head"] }),
    );
    const peft = await loadAdapterInto(model, dir);
    try {
      assert(peft.layers.has("lm_head"), "lm_head adapted");
      const batch = await referenceBatch(gpu, await openSafetensors(`${mdir}/reference.safetensors`));
      const out = noGrad(() => tidy(() => model.forward(batch)));
      const [logits, hidden] = [await out.logits.toArray(), await out.hidden.toArray()];
      out.logits.dispose();
      out.hidden.dispose();
      head.adapter = null;
      const without = await noGrad(() => tidy(() => model.forward(batch).logits)).toArray();
      head.adapter = peft.layers.get("lm_head")!;
      // the head's LoRA adds s·x·Aᵀ·Bᵀ to its output alone (s = lora_alpha / r = 2)
      const tokens = hidden.length / width,
        got = new Float64Array(tokens * vocab),
        want = new Float64Array(tokens * vocab);
      for (let t = 0; t < tokens; t++) {
        const xa = Array.from({ length: r }, (_, k) => {
          let s = 0;
          for (let j = 0; j < width; j++) s += hidden[t * width + j] * a[k * width + j];
          return s;
        });
        for (let v = 0; v < vocab; v++) {
          let s = 0;
          for (let k = 0; k < r; k++) s += b[v * r + k] * xa[k];
          want[t * vocab + v] = 2 * s;
          got[t * vocab + v] = logits[t * vocab + v] - without[t * vocab + v];
        }
      }
      assertClose(got, want, 1e-4, "the head's ΔW on the final hidden states");
      // merging would change the token embedding too: refused before any weight changes
      const wte = await model.parameters.get("transformer.wte.weight")!.toArray();
      assertThrows(
        () => peft.merge(),
        'cannot merge the adapter of "lm_head": its weight is "transformer.wte.weight" too',
      );
      assert(!peft.merged, "not merged");
      assert([...peft.layers].every(([path, l]) => model.linears.get(path)!.adapter === l), "adapters kept");
      await assertRejects(
        () => peft.saveMerged(`${dir}/merged`),
        Error,
        'cannot merge the adapter of "lm_head"',
      );
      assertEquals(
        Array.from(await model.parameters.get("transformer.wte.weight")!.toArray()),
        Array.from(wte),
      );
    } finally {
      peft.detach();
    }
    // a new adapter may target it too
    const fresh = await attachAdapter(model, loraConfig({ targetModules: ["lm_head"] }));
    assertEquals([...fresh.layers.keys()], ["lm_head"]);
    fresh.detach();
  });
  model.dispose();
});

Deno.test("layers_to_transform leaves the layers listed by their whole path alone, as PEFT", async () => {
  const shapes = modelShapes(await loadHfConfig(`${FIXTURES}models/roberta`));
  const config = loraConfig({
    targetModules: ["roberta.encoder.layer.0.attention.self.query", "value"],
    layersToTransform: [1],
  });
  assertEquals(resolveTargets(shapes, config).map((l) => l.path), [
    "roberta.encoder.layer.0.attention.self.query",
    "roberta.encoder.layer.1.attention.self.value",
  ]);
});

Deno.test("FourierFT takes layers_pattern without layers_to_transform, as PEFT's FourierFTConfig; LoRA still refuses it", async () => {
  const json = JSON.parse(await Deno.readTextFile(`${ADAPTERS}roberta-fourierft/adapter_config.json`));
  const config = parseAdapterConfig({ ...json, layers_pattern: "layer" });
  assertEquals(config.layersPattern, ["layer"]);
  const shapes = modelShapes(await loadHfConfig(`${FIXTURES}models/roberta`));
  assertEquals(
    resolveTargets(shapes, config).map((l) => l.path),
    resolveTargets(shapes, parseAdapterConfig(json)).map((l) => l.path),
    "the pattern alone selects nothing",
  );
  assertEquals((await loadAdapter(`${ADAPTERS}roberta-fourierft`, { shapes })).modules.size, 4);
  assertThrows(
    () => loraConfig({ layersPattern: ["layer"] }),
    `"layers_pattern" ["layer"] needs "layers_to_transform"`,
  );
});

Deno.test("attachAdapter: a causal LM whose checkpoint lacks its untied output layer names tie_word_embeddings", async () => {
  const dir = await tempModelDir(fixtureModel("gpt2"), { tie_word_embeddings: false });
  try {
    const model = await loadModel(await getGpu(), dir);
    try {
      await assertRejects(
        () => attachAdapter(model, sshConfig({ n: 8, targetModules: ["c_attn"] })),
        Error,
        `config.json's tie_word_embeddings is false`,
      );
    } finally {
      model.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("attachAdapter: a new image classifier left frozen is told to go in modulesToSave (PEFT has no task type for it)", async () => {
  const model = await loadModel(await getGpu(), fixtureModel("vit"), { numLabels: 3, newHead: true });
  try {
    const e = await assertRejects(
      () => attachAdapter(model, sshConfig({ n: 8, targetModules: ["query"] })),
      Error,
      "list the head in modulesToSave",
    );
    assert(!e.message.includes("taskType"), e.message);
  } finally {
    model.dispose();
  }
});
