import { assert, assertClose, assertEquals, assertRejects } from "./assert.ts";
import { loadHfConfig, parseHfConfig } from "../lib/io/hf_config.ts";
import { openCheckpoint, openSafetensors } from "../lib/io/safetensors.ts";
import { type TensorData, writeSafetensors } from "../lib/io/safetensors_write.ts";
import { type ModelShapes, modelShapes } from "../lib/models/shapes.ts";
import {
  adapterConfigToText,
  fourierftConfig,
  loraConfig,
  type SSHConfig,
  sshConfig,
} from "../lib/peft/config.ts";
import {
  type Adapter,
  type FourierFTAdapter,
  loadAdapter,
  type LoraAdapter,
  saveAdapter,
  type SSHAdapter,
  type SSHModule,
} from "../lib/peft/files.ts";
import { AdapterFileError } from "../lib/peft/check_adapter.ts";
import { resolveModulesToSave, resolveTargets } from "../lib/peft/targets.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { dftRef } from "../lib/spectral/reference.ts";
import { withTempDir } from "./temp_dir.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;
const ADAPTERS = `${FIXTURES}adapters/`;

async function shapesOf(family: string): Promise<ModelShapes> {
  return modelShapes(await loadHfConfig(`${FIXTURES}models/${family}`));
}

/** n distinct random positions of an out×in layer as [n, 2] pairs. */
function positions(rng: Prng, n: number, out: number, inF: number): Int32Array {
  const seen = new Set<number>(), pairs = new Int32Array(2 * n);
  for (let k = 0; k < n;) {
    const flat = rng.below(out * inF);
    if (seen.has(flat)) continue;
    seen.add(flat);
    pairs[2 * k] = Math.floor(flat / inF);
    pairs[2 * k + 1] = flat % inF;
    k++;
  }
  return pairs;
}

/** A random SSH adapter on `shapes` for `config` (modules_to_save filled from the checkpoint). */
async function sshAdapter(
  family: string,
  shapes: ModelShapes,
  config: SSHConfig,
  seed = 1,
): Promise<SSHAdapter> {
  const rng = new Prng(seed);
  const modules = new Map<string, SSHModule>();
  for (const l of resolveTargets(shapes, config)) {
    modules.set(l.path, {
      outFeatures: l.outFeatures,
      inFeatures: l.inFeatures,
      spectrum: rng.normals(config.n),
      indices: positions(rng, config.n, l.outFeatures, l.inFeatures),
    });
  }
  const ckpt = await openCheckpoint(`${FIXTURES}models/${family}`);
  const saved = new Map();
  for (const m of resolveModulesToSave(shapes, config)) {
    for (const p of m.params) saved.set(p.key, { shape: p.shape, data: await ckpt.readF32(p.key) });
  }
  return { config, modules, saved };
}

function assertSameAdapter(got: Adapter, want: Adapter): void {
  assertEquals(got.config, want.config);
  assertEquals([...got.modules.keys()].sort(), [...want.modules.keys()].sort());
  for (const [m, mod] of want.modules) {
    const g = got.modules.get(m)! as unknown as Record<string, unknown>;
    for (const [k, v] of Object.entries(mod)) {
      assertEquals(
        ArrayBuffer.isView(v) ? [...v as Int32Array] : v,
        ArrayBuffer.isView(g[k]) ? [...g[k] as Int32Array] : g[k],
        `${m}.${k}`,
      );
    }
  }
  assertEquals([...got.saved.keys()].sort(), [...want.saved.keys()].sort());
  for (const [k, t] of want.saved) {
    assertEquals(got.saved.get(k)!.shape, t.shape, k);
    assertEquals([...got.saved.get(k)!.data], [...t.data], k);
  }
}

Deno.test("the three PEFT LoRA fixtures load with their shapes", async () => {
  const expected: Record<string, [string, number[], number[]][]> = {
    gpt2: [
      ["transformer.h.0.attn.c_attn", [192, 64], [4]],
      ["transformer.h.0.mlp.c_proj", [64, 256], [4]],
    ],
    llama: [
      ["model.layers.0.self_attn.q_proj", [64, 64], [4]],
      ["model.layers.0.self_attn.v_proj", [32, 64], [4]],
      ["model.layers.0.mlp.down_proj", [64, 176], [4]],
    ],
    roberta: [
      ["roberta.encoder.layer.0.attention.self.query", [64, 64], [4]],
      ["roberta.encoder.layer.0.attention.self.value", [64, 64], [4]],
    ],
  };
  for (const [family, mods] of Object.entries(expected)) {
    const shapes = await shapesOf(family);
    const a = await loadAdapter(`${ADAPTERS}${family}-lora`, { shapes }) as LoraAdapter;
    assertEquals(a.config.peftType, "LORA");
    assertEquals(a.modules.size, 2 * mods.length, family);
    assertEquals(a.saved.size, 0);
    for (const [path, [out, inF], [r]] of mods) {
      const m = a.modules.get(path)!;
      assertEquals([m.outFeatures, m.inFeatures, m.r, m.a.length, m.b.length], [
        out,
        inF,
        r,
        r * inF,
        out * r,
      ], path);
    }
    // Without the model, LoRA sizes come from the tensors themselves.
    assertEquals((await loadAdapter(`${ADAPTERS}${family}-lora`)).modules.size, 2 * mods.length);
  }
});

Deno.test("the three PEFT FourierFT fixtures load with PEFT's positions, redrawn from random_loc_seed, and reproduce ΔW", async () => {
  const counts: Record<string, number> = { gpt2: 4, llama: 6, roberta: 4 };
  for (const [family, count] of Object.entries(counts)) {
    const dir = `${ADAPTERS}${family}-fourierft`;
    const shapes = await shapesOf(family);
    const a = await loadAdapter(dir, { shapes }) as FourierFTAdapter;
    assertEquals([a.config.peftType, a.modules.size], ["FOURIERFT", count], family);
    const ref = await openSafetensors(`${dir}/reference.safetensors`);
    for (const [path, m] of a.modules) {
      assertEquals(m.spectrum.length, 24);
      const base = shapes.linears.find((l) => l.path === path)!;
      assertEquals([m.outFeatures, m.inFeatures], [base.outFeatures, base.inFeatures], path);
      const raw = await ref.read(`base_model.model.${path}.indices`) as Int32Array;
      for (let k = 0; k < 24; k++) {
        assertEquals([m.indices![2 * k], m.indices![2 * k + 1]], [raw[k], raw[24 + k]]);
      }
      // ΔW = scaling · Re(ifft2(S)) = scaling/(M·N) · Σ c cos(2π(ui/M + vj/N)), in (out, in).
      const M = m.outFeatures, N = m.inFeatures, S = new Float64Array(M * N);
      for (let k = 0; k < 24; k++) S[m.indices![2 * k] * N + m.indices![2 * k + 1]] = m.spectrum[k];
      const dw = dftRef(S, M, N).map((x) => x * a.config.scaling / (M * N));
      assertClose(dw, await ref.readF32(`base_model.model.${path}.delta_w`), 1e-5, `${family} ${path}`);
    }
  }
  const dir = `${ADAPTERS}roberta-fourierft`;
  // a side file's positions win over PEFT's draw (adapters of earlier versions drew their own past
  // torch's randperm threshold)
  await withTempDir("hartley_peft_", async (tmp) => {
    const head = {
      outFeatures: 151936,
      inFeatures: 4096,
      spectrum: new Float32Array(2),
      indices: Int32Array.of(0, 0, 5, 7),
    };
    const big: FourierFTAdapter = {
      config: fourierftConfig({ nFrequency: 2, targetModules: ["lm_head"] }),
      modules: new Map([["lm_head", head]]),
      saved: new Map(),
    };
    await saveAdapter(tmp, big);
    assertSameAdapter(await loadAdapter(tmp), big);
  });
  await assertRejects(
    () => loadAdapter(dir),
    AdapterFileError,
    'the layer size of "roberta.encoder.layer.0.attention.self.query" is not recorded; pass the base model\'s shapes',
  );
});

Deno.test("weights saved with the adapter's name in their keys are named in the refusal", async () => {
  await withTempDir("hartley_peft_", async (dir) => {
    const src = `${ADAPTERS}gpt2-lora`;
    await Deno.copyFile(`${src}/adapter_config.json`, `${dir}/adapter_config.json`);
    const file = await openSafetensors(`${src}/adapter_model.safetensors`);
    const named: Record<string, TensorData> = {};
    for (const k of file.names) {
      const { dtype, shape } = file.info(k);
      named[k.replace(/\.(lora_[AB])\./, ".$1.default.")] = { dtype, shape, data: await file.read(k) };
    }
    await writeSafetensors(`${dir}/adapter_model.safetensors`, named);
    await assertRejects(() => loadAdapter(dir), AdapterFileError, "are not in PEFT's layout");
  });
});

Deno.test("an adapter made for another model is refused, naming the module and both shapes", async () => {
  await assertRejects(
    async () => loadAdapter(`${ADAPTERS}roberta-lora`, { shapes: await shapesOf("bert") }),
    AdapterFileError,
    `module "roberta.encoder.layer.0.attention.self.query" is not a linear layer of BertForSequenceClassification ` +
      `(its "query" layers are e.g. bert.encoder.layer.0.attention.self.query`,
  );
  const raw = JSON.parse(await Deno.readTextFile(`${FIXTURES}models/roberta/config.json`));
  const wider = modelShapes(parseHfConfig({ ...raw, hidden_size: 128 }, "wider"));
  await assertRejects(
    () => loadAdapter(`${ADAPTERS}roberta-lora`, { shapes: wider }),
    AdapterFileError,
    `module "roberta.encoder.layer.0.attention.self.query": the adapter was made for a 64×64 layer (out×in), ` +
      `the base model's (RobertaForSequenceClassification) is 128×128`,
  );
  await withTempDir("hartley_peft_", async (dir) => {
    const shapes = await shapesOf("roberta");
    await saveAdapter(
      dir,
      await sshAdapter("roberta", shapes, sshConfig({ n: 24, targetModules: ["query", "value"] })),
      {
        shapes,
      },
    );
    await assertRejects(
      () => loadAdapter(dir, { shapes: wider }),
      AdapterFileError,
      "the adapter was made for a 64×64 layer (out×in), the base model's (RobertaForSequenceClassification) is 128×128",
    );
    // target_modules must select exactly the modules with weights.
    const text = await Deno.readTextFile(`${dir}/adapter_config.json`);
    await Deno.writeTextFile(`${dir}/adapter_config.json`, text.replace('"value"', '"key"'));
    await assertRejects(
      () => loadAdapter(dir, { shapes }),
      AdapterFileError,
      `module "roberta.encoder.layer.0.attention.self.value" has weights but target_modules ["query","key"] does not select it`,
    );
  });
});

Deno.test("SSH adapters round-trip with modules_to_save, in PEFT's key layout", async () => {
  await withTempDir("hartley_peft_", async (dir) => {
    const shapes = await shapesOf("roberta");
    const config = sshConfig({
      n: 24,
      alpha: 20,
      taskType: "SEQ_CLS",
      baseModelNameOrPath: "fixtures/roberta",
    });
    const adapter = await sshAdapter("roberta", shapes, config);
    assertEquals(adapter.saved.size, 4);
    await saveAdapter(`${dir}/ssh`, adapter, { shapes });
    assertSameAdapter(await loadAdapter(`${dir}/ssh`, { shapes }), adapter);
    assertSameAdapter(await loadAdapter(`${dir}/ssh`), adapter);
    const file = await openSafetensors(`${dir}/ssh/adapter_model.safetensors`);
    const q = "base_model.model.roberta.encoder.layer.0.attention.self.query";
    assertEquals(file.info(`${q}.ssh_spectrum`), { dtype: "F32", shape: [24], byteLength: 96 });
    assertEquals(file.info(`${q}.ssh_indices`), { dtype: "I32", shape: [24, 2], byteLength: 192 });
    assertEquals(file.info("base_model.model.classifier.out_proj.weight").shape, [3, 64]);
    assertEquals(file.names.length, 4 * 2 + 4);
    const json = JSON.parse(await Deno.readTextFile(`${dir}/ssh/adapter_config.json`));
    assertEquals([json.peft_type, json.n, json.alpha, json.task_type], ["SSH", 24, 20, "SEQ_CLS"]);
    assertEquals((await loadAdapter(`${dir}/ssh`)).labels, undefined);
    // the head's class names travel in the weights file's metadata
    await saveAdapter(`${dir}/named`, { ...adapter, labels: ["neg", "neutral", "pos"] }, { shapes });
    assertEquals((await loadAdapter(`${dir}/named`)).labels, ["neg", "neutral", "pos"]);
    const named = await openSafetensors(`${dir}/named/adapter_model.safetensors`);
    assertEquals(named.metadata["hartley.labels"], '["neg","neutral","pos"]');
    const left = [];
    for await (const e of Deno.readDir(dir)) left.push(e.name);
    assertEquals(left.sort(), ["named", "ssh"], "no temporary left");

    // "global" selection: per-layer counts vary, the total is n·L.
    const global = await sshAdapter("roberta", shapes, sshConfig({ n: 24, selection: "global" }));
    const [first, second] = [...global.modules.values()];
    first.spectrum = first.spectrum.subarray(0, 20);
    first.indices = first.indices.subarray(0, 40);
    second.spectrum = new Float32Array(28);
    second.indices = positions(new Prng(9), 28, 64, 64);
    await saveAdapter(`${dir}/global`, global, { shapes });
    assertSameAdapter(await loadAdapter(`${dir}/global`, { shapes }), global);
    second.spectrum = second.spectrum.subarray(0, 27);
    second.indices = second.indices.subarray(0, 54);
    await assertRejects(
      () => saveAdapter(`${dir}/global2`, global),
      AdapterFileError,
      `95 coefficients in all, expected n·L = 24·4 (selection "global")`,
    );
  });
});

Deno.test("LoRA and FourierFT adapters round-trip (FourierFT positions in the side file)", async () => {
  await withTempDir("hartley_peft_", async (dir) => {
    const rng = new Prng(3);
    const gpt2 = await shapesOf("gpt2");
    const lora = loraConfig({
      r: 2,
      loraAlpha: 4,
      targetModules: ["c_attn", "mlp.c_proj"],
      fanInFanOut: true,
    });
    const loraAdapter: LoraAdapter = { config: lora, modules: new Map(), saved: new Map() };
    for (const l of resolveTargets(gpt2, lora)) {
      loraAdapter.modules.set(l.path, {
        outFeatures: l.outFeatures,
        inFeatures: l.inFeatures,
        r: 2,
        a: rng.normals(2 * l.inFeatures),
        b: rng.normals(l.outFeatures * 2),
      });
    }
    await saveAdapter(`${dir}/lora`, loraAdapter, { shapes: gpt2 });
    assertSameAdapter(await loadAdapter(`${dir}/lora`, { shapes: gpt2 }), loraAdapter);
    const lf = await openSafetensors(`${dir}/lora/adapter_model.safetensors`);
    assertEquals(lf.info("base_model.model.transformer.h.1.mlp.c_proj.lora_A.weight").shape, [2, 256]);
    assertEquals(lf.info("base_model.model.transformer.h.1.mlp.c_proj.lora_B.weight").shape, [64, 2]);

    const llama = await shapesOf("llama");
    const fft = fourierftConfig({ nFrequency: 10, scaling: 20, targetModules: ["q_proj", "down_proj"] });
    const fftAdapter: FourierFTAdapter = { config: fft, modules: new Map(), saved: new Map() };
    for (const l of resolveTargets(llama, fft)) {
      fftAdapter.modules.set(l.path, {
        outFeatures: l.outFeatures,
        inFeatures: l.inFeatures,
        spectrum: rng.normals(10),
        indices: positions(rng, 10, l.outFeatures, l.inFeatures),
      });
    }
    await saveAdapter(`${dir}/fft`, fftAdapter);
    assertSameAdapter(await loadAdapter(`${dir}/fft`, { shapes: llama }), fftAdapter);
    assertSameAdapter(await loadAdapter(`${dir}/fft`), fftAdapter);
    const side = await openSafetensors(`${dir}/fft/fourierft_indices.safetensors`);
    const key = "base_model.model.model.layers.0.mlp.down_proj.fourierft_indices";
    assertEquals(side.info(key).shape, [2, 10]);
    const rows = await side.read(key) as Int32Array;
    const mod = fftAdapter.modules.get("model.layers.0.mlp.down_proj")!;
    assertEquals([rows[0], rows[10]], [mod.indices![0], mod.indices![1]], "rows, then columns");
  });
});

Deno.test("saving replaces a directory as a whole and keeps its other files", async () => {
  await withTempDir("hartley_peft_", async (dir) => {
    const target = `${dir}/adapter`;
    const llama = await shapesOf("llama");
    const fft = fourierftConfig({ nFrequency: 4, targetModules: ["q_proj"] });
    const rng = new Prng(5);
    const fftAdapter: FourierFTAdapter = { config: fft, modules: new Map(), saved: new Map() };
    for (const l of resolveTargets(llama, fft)) {
      fftAdapter.modules.set(l.path, {
        outFeatures: 64,
        inFeatures: 64,
        spectrum: rng.normals(4),
        indices: positions(rng, 4, 64, 64),
      });
    }
    await saveAdapter(target, fftAdapter);
    await Deno.writeTextFile(`${target}/README.md`, "notes");
    const ssh = await sshAdapter("llama", llama, sshConfig({ n: 8 }));
    await saveAdapter(target, ssh);
    const names = [];
    for await (const e of Deno.readDir(target)) names.push(e.name);
    assertEquals(names.sort(), ["README.md", "adapter_config.json", "adapter_model.safetensors"]);
    assertSameAdapter(await loadAdapter(target, { shapes: llama }), ssh);
    // A save that fails leaves the old adapter untouched and nothing behind.
    const bad = await sshAdapter("llama", llama, sshConfig({ n: 8 }));
    bad.modules.get("model.layers.0.self_attn.q_proj")!.indices[0] = 64;
    await assertRejects(
      () => saveAdapter(target, bad),
      AdapterFileError,
      `module "model.layers.0.self_attn.q_proj": position 0 = (64, `,
    );
    assertSameAdapter(await loadAdapter(target, { shapes: llama }), ssh);
    const siblings = [];
    for await (const e of Deno.readDir(dir)) siblings.push(e.name);
    assertEquals(siblings, ["adapter"]);
    await Deno.writeTextFile(`${dir}/file`, "x");
    await assertRejects(
      () => saveAdapter(`${dir}/file`, ssh),
      AdapterFileError,
      "exists and is not a directory",
    );
  });
});

Deno.test("malformed adapter files are refused with the tensor at fault", async () => {
  const shapes = await shapesOf("roberta");
  const config = sshConfig({ n: 4, targetModules: ["query"] });
  const q0 = "base_model.model.roberta.encoder.layer.0.attention.self.query";
  const q1 = "base_model.model.roberta.encoder.layer.1.attention.self.query";
  const good = (): Record<string, TensorData> => ({
    [`${q0}.ssh_spectrum`]: { dtype: "F32", shape: [4], data: new Float32Array(4) },
    [`${q0}.ssh_indices`]: { dtype: "I32", shape: [4, 2], data: Int32Array.from([0, 0, 0, 1, 5, 7, 63, 63]) },
    [`${q1}.ssh_spectrum`]: { dtype: "F32", shape: [4], data: new Float32Array(4) },
    [`${q1}.ssh_indices`]: { dtype: "I32", shape: [4, 2], data: Int32Array.from([1, 0, 2, 1, 3, 7, 4, 4]) },
  });
  const cases: [(t: Record<string, TensorData>) => void, string][] = [
    [() => {}, ""],
    [(t) => t[`${q0}.ssh_indices`].data[7] = 64, "position 3 = (63, 64) is outside the 64×64 spectrum"],
    [(t) => (t[`${q0}.ssh_indices`].data as Int32Array).set([5, 7], 6), "position 3 = (5, 7) appears twice"],
    [
      (t) => t[`${q0}.ssh_spectrum`] = { dtype: "I32", shape: [4], data: new Int32Array(4) },
      "is I32, expected a float dtype",
    ],
    [
      (t) => t[`${q0}.ssh_indices`] = { dtype: "F32", shape: [4, 2], data: new Float32Array(8) },
      "is F32, expected I32 (or I64)",
    ],
    [
      (t) => t[`${q0}.ssh_indices`] = { dtype: "I32", shape: [8], data: new Int32Array(8) },
      "is [8], expected [4, 2]",
    ],
    [
      (t) => delete t[`${q1}.ssh_indices`],
      `module "roberta.encoder.layer.1.attention.self.query" has no ssh_indices tensor`,
    ],
    [(t) => {
      t[`${q0}.ssh_spectrum`] = { dtype: "F32", shape: [3], data: new Float32Array(3) };
      t[`${q0}.ssh_indices`] = { dtype: "I32", shape: [3, 2], data: Int32Array.from([0, 0, 0, 1, 2, 2]) };
    }, "has 3 coefficients, expected n = 4"],
    [
      (t) => t[`${q0}.lora_A.weight`] = { dtype: "F32", shape: [1, 64], data: new Float32Array(64) },
      "is a LoRA tensor in an SSH adapter",
    ],
    [
      (t) => t["roberta.pooler.dense.weight"] = { dtype: "F32", shape: [1], data: new Float32Array(1) },
      'does not start with "base_model.model."',
    ],
    [
      (t) =>
        t["base_model.model.classifier.dense.weight"] = {
          dtype: "F32",
          shape: [64, 64],
          data: new Float32Array(4096),
        },
      "is not a parameter of a module to save",
    ],
    [
      (t) => {
        delete t[`${q1}.ssh_spectrum`];
        delete t[`${q1}.ssh_indices`];
      },
      `no weights for module "roberta.encoder.layer.1.attention.self.query", which target_modules ["query"] selects`,
    ],
  ];
  await withTempDir("hartley_peft_", async (dir) => {
    await Deno.writeTextFile(`${dir}/adapter_config.json`, adapterConfigToText(config));
    for (const [change, message] of cases) {
      const tensors = good();
      change(tensors);
      await writeSafetensors(`${dir}/adapter_model.safetensors`, tensors);
      if (message === "") {
        assertEquals((await loadAdapter(dir, { shapes })).modules.size, 2);
        continue;
      }
      const e = await assertRejects(() => loadAdapter(dir, { shapes }));
      assert(e.message.includes(message), `expected "${message}" in: ${e.message}`);
    }
    await Deno.remove(`${dir}/adapter_model.safetensors`);
    await Deno.writeTextFile(`${dir}/adapter_model.bin`, "");
    await assertRejects(
      () => loadAdapter(dir),
      AdapterFileError,
      "adapter_model.bin, a PyTorch pickle, is not read",
    );
    await Deno.remove(`${dir}/adapter_config.json`);
    await assertRejects(
      () => loadAdapter(dir),
      AdapterFileError,
      "not an adapter directory (no adapter_config.json)",
    );
  });
});
