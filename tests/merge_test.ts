import { assert, assertClose, assertEquals, assertRejects } from "./assert.ts";
import { FIXTURES, loadableFamilies, Prng, randomLinear, randomPositions } from "./peft_helpers.ts";
import { getGpu, type Gpu } from "../lib/gpu/mod.ts";
import { f32ToBf16, f32ToF16, toFloat32 } from "../lib/io/dtype.ts";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { type TensorData, writeSafetensors } from "../lib/io/safetensors_write.ts";
import { loadModel } from "../lib/models/load.ts";
import type { Batch, Model } from "../lib/models/model.ts";
import { referenceBatch } from "../lib/models/parity.ts";
import type { Linear } from "../lib/nn/linear.ts";
import { attachAdapter, type PeftModel } from "../lib/peft/apply.ts";
import { loraConfig, sshConfig } from "../lib/peft/config.ts";
import type { PeftLayer } from "../lib/peft/layer.ts";
import { LoraLayer } from "../lib/peft/lora.ts";
import { encodeMerge, readDeltaWeight } from "../lib/peft/merge.ts";
import { SpectralLayer } from "../lib/peft/spectral_layer.ts";
import { noGrad, Tensor, tidy } from "../lib/tensor/mod.ts";
import { AdamW } from "../lib/train/optim.ts";
import { tempModelDir, tokenBatch } from "./model_helpers.ts";

/** The layer's output for x without gradients. */
async function outputOf(gpu: Gpu, lin: Linear, x: Float32Array, tokens: number): Promise<Float32Array> {
  const xt = Tensor.from(gpu, x, [tokens, lin.inFeatures]);
  const y = noGrad(() => tidy(() => lin.forward(xt)));
  const out = Float32Array.from(await y.toArray());
  xt.dispose();
  y.dispose();
  return out;
}

Deno.test("merge and unmerge on f32 and f16 weights, both storages, for SSH, FourierFT and LoRA", async () => {
  const gpu = await getGpu();
  for (const f16 of [false, true]) {
    for (const layout of ["out_in", "in_out"] as const) {
      for (const kind of ["ssh", "fourierft", "lora"] as const) {
        const p = new Prng(kind.length * 10 + (f16 ? 1 : 0));
        const m = 9, n = 14, tokens = 3;
        const { lin } = randomLinear(gpu, p, m, n, layout, { f16 });
        const layer: PeftLayer = kind === "lora"
          ? new LoraLayer(gpu, {
            module: { outFeatures: m, inFeatures: n, r: 3, a: p.normals(3 * n), b: p.normals(3 * m) },
            scaling: 0.1,
          })
          : new SpectralLayer(gpu, kind, {
            outFeatures: m,
            inFeatures: n,
            positions: randomPositions(p, m, n, 8),
            transform: kind === "ssh" ? "dht" : "dft",
            alpha: 30,
            coef: p.normals(8),
          });
        lin.adapter = layer;
        const x = p.normals(tokens * n);
        const withAdapter = await outputOf(gpu, lin, x, tokens);
        const before = Float32Array.from(await lin.weight.toArray());
        encodeMerge(lin, layer, 1);
        lin.adapter = null;
        const merged = await outputOf(gpu, lin, x, tokens);
        const what = `${kind} ${layout} ${f16 ? "f16" : "f32"}`;
        assertClose(merged, withAdapter, f16 ? 2e-3 : 1e-6, `merged output ${what}`);
        // the merged weight is W + ΔW in storage orientation, rounded once to the dtype
        const dw = await readDeltaWeight(gpu, layer, layout === "in_out");
        const want = before.map((w, i) => w + dw[i]);
        const rounded = f16 ? Float32Array.from(Float16Array.from(want)) : Float32Array.from(want);
        const got = await lin.weight.toArray();
        const off = rounded.filter((v, i) =>
          Math.abs(v - got[i]) > (f16 ? 1e-3 * Math.abs(v) + 1e-7 : 0)
        ).length;
        assertEquals(off, 0, `merged weight ${what}: entries off`);
        encodeMerge(lin, layer, -1);
        lin.adapter = layer;
        assertClose(await lin.weight.toArray(), before, f16 ? 1e-3 : 1e-6, `unmerged weight ${what}`);
        layer.dispose();
        lin.weight.dispose();
      }
    }
  }
});

/** gpt2 with SSH (random coefficients) on c_attn and c_proj. */
async function sshOnGpt2(gpu: Gpu, dir: string): Promise<{ model: Model; peft: PeftModel }> {
  const model = await loadModel(gpu, dir);
  const peft = await attachAdapter(
    model,
    sshConfig({ n: 30, alpha: 40, targetModules: ["c_attn", "c_proj"] }),
  );
  return { model, peft };
}

Deno.test("PeftModel.merge / unmerge keep the outputs and restore the weights (f32 and f16 storage)", async () => {
  if (!loadableFamilies().includes("gpt2")) return;
  const gpu = await getGpu();
  const dir = `${FIXTURES}models/gpt2`;
  const batch = await referenceBatch(gpu, await openSafetensors(`${dir}/reference.safetensors`));
  for (const dtype of gpu.f16 ? ["f32", "f16"] as const : ["f32"] as const) {
    const model = await loadModel(gpu, dir, { dtype });
    const peft = await attachAdapter(
      model,
      sshConfig({ n: 30, alpha: 40, targetModules: ["c_attn", "c_proj"] }),
    );
    const logits = () => noGrad(() => tidy(() => model.forward(batch).logits)).toArray();
    const a = await logits();
    const lin = model.linears.get("transformer.h.0.attn.c_attn")!;
    assertEquals(lin.weight.dtype, dtype);
    const w0 = await lin.weight.toArray();
    peft.merge();
    assert(
      peft.merged && [...model.linears.values()].every((l) => l.adapter === null),
      "merged: adapters off",
    );
    assertClose(await logits(), a, dtype === "f16" ? 1e-3 : 1e-5, `${dtype} merged logits`);
    peft.unmerge();
    assertClose(await lin.weight.toArray(), w0, dtype === "f16" ? 1e-3 : 1e-6, `${dtype} unmerged weight`);
    assertClose(await logits(), a, dtype === "f16" ? 1e-3 : 1e-6, `${dtype} unmerged logits`);
    peft.detach();
    model.dispose();
  }
});

Deno.test("PeftModel.merge / unmerge on an encoder whose q/k/v share a kept stack (LoRA, not folded)", async () => {
  if (!loadableFamilies().includes("roberta")) return;
  const gpu = await getGpu();
  const dir = `${FIXTURES}models/roberta`;
  const batch = await referenceBatch(gpu, await openSafetensors(`${dir}/reference.safetensors`));
  const model = await loadModel(gpu, dir);
  const peft = await attachAdapter(
    model,
    loraConfig({ r: 2, loraAlpha: 4, targetModules: ["query", "value"] }),
  );
  // B starts at zero: random factors make ΔW ≠ 0
  const p = new Prng(31);
  for (const t of peft.adapterParameters()) gpu.stream.write(t.buffer, Float32Array.from(p.normals(t.size)));
  const logits = () => noGrad(() => tidy(() => model.forward(batch).logits)).toArray();
  const a = await logits();
  assertClose(await logits(), a, 1e-6, "the same forward twice (the stack kept)");
  peft.merge();
  const merged = await logits();
  assertClose(merged, a, 1e-5, "merged logits (the stacked rows copied again from W + ΔW)");
  peft.unmerge();
  assertClose(await logits(), a, 1e-5, "unmerged logits");
  peft.detach();
  const plain = await logits();
  assert(plain.some((v, i) => Math.abs(v - a[i]) > 1e-3), "the adapters change the logits");
  model.dispose();
});

/** A copy of the fixture model directory with its weights converted and/or sharded. */
async function convertedCopy(
  src: string,
  opts: { dtype?: "F16" | "BF16"; shards?: number; gammaBeta?: boolean },
): Promise<string> {
  const dir = await Deno.makeTempDir();
  for (const f of ["config.json", "tokenizer.json"]) await Deno.copyFile(`${src}/${f}`, `${dir}/${f}`);
  const file = await openSafetensors(`${src}/model.safetensors`);
  const tensors: [string, TensorData][] = [];
  for (const name of file.names) {
    const info = file.info(name);
    let data = await file.read(name);
    let dtype = info.dtype;
    if (opts.dtype && info.dtype === "F32") {
      const v = toFloat32("F32", data);
      data = opts.dtype === "F16" ? f32ToF16(v) : f32ToBf16(v);
      dtype = opts.dtype;
    }
    // TensorFlow-era names (bert-base-uncased's): LayerNorm weights as gamma, biases as beta
    const stored = opts.gammaBeta
      ? name.replace(/LayerNorm\.weight$/, "LayerNorm.gamma").replace(/LayerNorm\.bias$/, "LayerNorm.beta")
      : name;
    tensors.push([stored, { dtype, shape: info.shape, data }]);
  }
  const shards = opts.shards ?? 1;
  if (shards === 1) {
    await writeSafetensors(`${dir}/model.safetensors`, Object.fromEntries(tensors), { format: "pt" });
    return dir;
  }
  const weightMap: Record<string, string> = {};
  const per = Math.ceil(tensors.length / shards);
  for (let s = 0; s < shards; s++) {
    const name = `model-0000${s + 1}-of-0000${shards}.safetensors`;
    const part = tensors.slice(s * per, (s + 1) * per);
    for (const [k] of part) weightMap[k] = name;
    await writeSafetensors(`${dir}/${name}`, Object.fromEntries(part), { format: "pt" });
  }
  const totalSize = tensors.reduce((sum, [, t]) => sum + t.data.byteLength, 0);
  const index = { metadata: { total_size: totalSize }, weight_map: weightMap };
  await Deno.writeTextFile(`${dir}/model.safetensors.index.json`, JSON.stringify(index));
  return dir;
}

Deno.test("saveMerged writes a Hugging Face directory: same keys, dtypes and files; W + ΔW merged", async () => {
  if (!loadableFamilies().includes("gpt2")) return;
  const gpu = await getGpu();
  const src = `${FIXTURES}models/gpt2`;
  const { model, peft } = await sshOnGpt2(gpu, src);
  const batch = await referenceBatch(gpu, await openSafetensors(`${src}/reference.safetensors`));
  const logits = await noGrad(() => tidy(() => model.forward(batch).logits)).toArray();
  const out = `${await Deno.makeTempDir()}/merged`;
  try {
    await peft.saveMerged(out);
    const names = [...Deno.readDirSync(out)].map((e) => e.name).sort();
    assertEquals(names, [
      "config.json",
      "generation_config.json",
      "model.safetensors",
      "reference.json",
      "tokenizer.json",
    ]);
    assertEquals(
      await Deno.readTextFile(`${out}/config.json`),
      await Deno.readTextFile(`${src}/config.json`),
    );
    const a = await openSafetensors(`${src}/model.safetensors`),
      b = await openSafetensors(`${out}/model.safetensors`);
    assertEquals([...b.names].sort(), [...a.names].sort());
    assertEquals(b.metadata, a.metadata);
    for (const name of a.names) {
      assertEquals(b.info(name), a.info(name), name);
      const layer = peft.layers.get(name.replace(/\.weight$/, ""));
      const va = await a.readF32(name), vb = await b.readF32(name);
      if (!layer || !name.endsWith(".weight")) {
        assertEquals(Array.from(vb), Array.from(va), `${name} copied bit for bit`);
      } else {
        const dw = await readDeltaWeight(gpu, layer, true);
        assertEquals(
          Array.from(vb),
          Array.from(Float32Array.from(va, (v, i) => v + dw[i])),
          `${name} = W + ΔWᵀ`,
        );
      }
    }
    const merged = await loadModel(gpu, out);
    const again = await noGrad(() => tidy(() => merged.forward(batch).logits)).toArray();
    assertClose(again, logits, 1e-5, "merged model logits");
    merged.dispose();
    await assertRejects(() => peft.saveMerged(out), Error, "already exists");
    await peft.saveMerged(out, { overwrite: true });
    await assertRejects(() => peft.saveMerged(src), Error, "holding its source");
  } finally {
    await Deno.remove(out.slice(0, -"/merged".length), { recursive: true });
  }
  peft.detach();
  model.dispose();
});

Deno.test("saveMerged keeps F16 / BF16 storage and the sharding of the source", async () => {
  if (!loadableFamilies().includes("gpt2")) return;
  const gpu = await getGpu();
  for (const opts of [{ dtype: "F16" as const }, { dtype: "BF16" as const, shards: 2 }]) {
    const src = await convertedCopy(`${FIXTURES}models/gpt2`, opts);
    const model = await loadModel(gpu, src);
    const peft = await attachAdapter(
      model,
      loraConfig({ r: 2, loraAlpha: 16, initLoraWeights: false, fanInFanOut: true }),
    );
    const out = `${src}-merged`;
    try {
      await peft.saveMerged(out);
      const files = [...Deno.readDirSync(out)].map((e) => e.name).sort();
      const srcFiles = [...Deno.readDirSync(src)].map((e) => e.name).sort();
      assertEquals(files, srcFiles, `${opts.dtype}: files`);
      const sharded = (opts.shards ?? 1) > 1;
      if (sharded) {
        assertEquals(
          JSON.parse(await Deno.readTextFile(`${out}/model.safetensors.index.json`)),
          JSON.parse(await Deno.readTextFile(`${src}/model.safetensors.index.json`)),
        );
      }
      const weightFiles = files.filter((f) => f.endsWith(".safetensors"));
      for (const f of weightFiles) {
        const a = await openSafetensors(`${src}/${f}`), b = await openSafetensors(`${out}/${f}`);
        for (const name of a.names) {
          assertEquals(b.info(name), a.info(name), `${f} ${name}`);
          const layer = peft.layers.get(name.replace(/\.weight$/, ""));
          if (layer && name.endsWith(".weight")) {
            const va = await a.readF32(name), dw = await readDeltaWeight(gpu, layer, true);
            const sum = Float64Array.from(va, (v, i) => v + dw[i]);
            const want = toFloat32(opts.dtype, opts.dtype === "F16" ? f32ToF16(sum) : f32ToBf16(sum));
            assertEquals(
              Array.from(await b.readF32(name)),
              Array.from(want),
              `${name} rounded once to ${opts.dtype}`,
            );
          }
        }
      }
      const merged = await loadModel(gpu, out);
      assertEquals([...merged.parameters.keys()].sort(), [...model.parameters.keys()].sort());
      merged.dispose();
    } finally {
      peft.detach();
      model.dispose();
      await Deno.remove(src, { recursive: true });
      await Deno.remove(out, { recursive: true }).catch(() => {});
    }
  }
});

Deno.test("saveMerged: a sharded index's total_size counts the tensors written (F32 merged weights of a BF16 base), as its progress does", async () => {
  if (!loadableFamilies().includes("gpt2")) return;
  const gpu = await getGpu();
  const src = await convertedCopy(`${FIXTURES}models/gpt2`, { dtype: "BF16", shards: 2 });
  const out = `${src}-merged`;
  const model = await loadModel(gpu, src);
  const peft = await attachAdapter(model, loraConfig({ r: 2, initLoraWeights: false, fanInFanOut: true }));
  try {
    const told: [number, number][] = [];
    await peft.saveMerged(out, { dtype: "F32", onProgress: (done, all) => told.push([done, all]) });
    const index = JSON.parse(await Deno.readTextFile(`${out}/model.safetensors.index.json`));
    let total = 0, tensors = 0;
    for (const file of new Set<string>(Object.values(index.weight_map))) {
      const shard = await openSafetensors(`${out}/${file}`);
      for (const name of shard.names) total += shard.info(name).byteLength;
      tensors += shard.names.length;
    }
    const before = JSON.parse(await Deno.readTextFile(`${src}/model.safetensors.index.json`));
    assert(total > before.metadata.total_size, "the F32 merged weights take more bytes than the BF16 ones");
    assertEquals(index.metadata.total_size, total);
    // progress: told as each tensor is written, in bytes, up to all of them
    assertEquals(told.length, tensors);
    assert(
      told.every(([done, all], i) => all === total && done > (told[i - 1]?.[0] ?? 0)),
      JSON.stringify(told),
    );
    assertEquals(told.at(-1), [total, total]);
  } finally {
    peft.detach();
    model.dispose();
    for (const d of [src, out]) await Deno.remove(d, { recursive: true }).catch(() => {});
  }
});

Deno.test("saveMerged writes the trained modules_to_save (a classification head)", async () => {
  if (!loadableFamilies().includes("roberta")) return;
  const gpu = await getGpu();
  const src = `${FIXTURES}models/roberta`;
  const model = await loadModel(gpu, src);
  const peft = await attachAdapter(model, sshConfig({ n: 10, taskType: "SEQ_CLS" }));
  assert(peft.saved.size > 0, "the classifier is trained");
  const batch = await referenceBatch(gpu, await openSafetensors(`${src}/reference.safetensors`));
  const opt = new AdamW(gpu, peft.parameters(), { lr: 0.05 });
  const loss = tidy(() => model.forward(batch).loss!);
  loss.backward();
  opt.step(1);
  loss.dispose();
  const logits = await noGrad(() => tidy(() => model.forward(batch).logits)).toArray();
  const out = `${await Deno.makeTempDir()}/merged`;
  try {
    await peft.saveMerged(out);
    const b = await openSafetensors(`${out}/model.safetensors`);
    for (const [key, t] of peft.saved) {
      assertEquals(Array.from(await b.readF32(key)), Array.from(await t.toArray()), `${key} trained values`);
    }
    assertClose(await mergedLogits(gpu, out, batch), logits, 1e-5, "logits");
  } finally {
    await Deno.remove(out.slice(0, -"/merged".length), { recursive: true });
  }
  peft.detach();
  model.dispose();
});

Deno.test("saveMerged: a bare GPT-2 checkpoint (h.0…, as openai-community/gpt2) with a new head is written whole", async () => {
  const gpu = await getGpu();
  const tmp = await tempModelDir(`${FIXTURES}models/gpt2`, {
    architectures: ["GPT2ForSequenceClassification"],
    pad_token_id: 0,
  });
  const out = `${tmp}-merged`;
  try {
    const file = await openSafetensors(`${tmp}/model.safetensors`);
    const bare: Record<string, TensorData> = {};
    for (const name of file.names) {
      const info = file.info(name);
      bare[name.replace(/^transformer\./, "")] = {
        dtype: info.dtype,
        shape: info.shape,
        data: await file.read(name),
      };
    }
    await writeSafetensors(`${tmp}/model.safetensors`, bare);
    const model = await loadModel(gpu, tmp, { task: "seq-cls" });
    const peft = await attachAdapter(
      model,
      loraConfig({ r: 2, initLoraWeights: false, taskType: "SEQ_CLS" }),
    );
    const ids = Int32Array.from({ length: 10 }, (_, i) => (i * 37 + 5) % 500);
    const batch = tokenBatch(gpu, ids, 2, 5);
    const logits = await noGrad(() => tidy(() => model.forward(batch).logits)).toArray();
    await peft.saveMerged(out);
    const names = (await openSafetensors(`${out}/model.safetensors`)).names;
    assert(
      names.includes("score.weight") && names.includes("transformer.h.0.attn.c_attn.weight"),
      `${names}`,
    );
    assert(!names.some((n) => n.startsWith("h.")), "no bare keys beside the head");
    assertClose(await mergedLogits(gpu, out, batch), logits, 1e-5, "logits");
    peft.detach();
    model.dispose();
  } finally {
    for (const d of [tmp, out]) await Deno.remove(d, { recursive: true }).catch(() => {});
  }
});

Deno.test("saveMerged computes one changed tensor at a time, and writes the shards byte for byte as writeSafetensors", async () => {
  if (!loadableFamilies().includes("gpt2")) return;
  const gpu = await getGpu();
  const src = await convertedCopy(`${FIXTURES}models/gpt2`, { dtype: "BF16", shards: 2 });
  const out = `${src}-merged`;
  const model = await loadModel(gpu, src);
  const peft = await attachAdapter(
    model,
    loraConfig({
      r: 2,
      initLoraWeights: false,
      fanInFanOut: true,
      targetModules: ["c_attn", "c_proj", "c_fc"],
      modulesToSave: ["ln_f"],
    }),
  );
  assert(peft.saved.has("transformer.ln_f.weight"), `${[...peft.saved.keys()]}`);
  try {
    let held = 0, peak = 0;
    const computed: string[] = [];
    await peft.saveMerged(out, {
      onMerged: (name, step) => {
        if (step === "computed") computed.push(name);
        held += step === "computed" ? 1 : -1;
        peak = Math.max(peak, held);
        assert(held >= 0, `${name} written before it was computed`);
      },
    });
    const changed = [...[...peft.layers.keys()].map((p) => `${p}.weight`), ...peft.saved.keys()];
    assertEquals(computed.sort(), changed.sort(), "each changed tensor computed once");
    assertEquals([held, peak], [0, 1], "changed tensors held at once: at the end, at most");
    const index = JSON.parse(await Deno.readTextFile(`${src}/model.safetensors.index.json`));
    for (const file of new Set<string>(Object.values(index.weight_map))) {
      const a = await openSafetensors(`${src}/${file}`);
      const want: Record<string, TensorData> = {};
      for (const name of a.names) {
        const info = a.info(name), layer = peft.layers.get(name.replace(/\.weight$/, ""));
        const saved = peft.saved.get(name);
        let data = await a.read(name);
        if (layer && name.endsWith(".weight")) {
          const va = await a.readF32(name), dw = await readDeltaWeight(gpu, layer, true);
          data = f32ToBf16(Float64Array.from(va, (v, i) => v + dw[i]));
        } else if (saved) {
          data = f32ToBf16(Float32Array.from(await saved.toArray()));
        }
        want[name] = { dtype: info.dtype, shape: info.shape, data };
      }
      await writeSafetensors(`${src}/want.safetensors`, want, a.metadata);
      assertEquals(
        await Deno.readFile(`${out}/${file}`),
        await Deno.readFile(`${src}/want.safetensors`),
        `${file} byte for byte`,
      );
    }
  } finally {
    peft.detach();
    model.dispose();
    for (const d of [src, out]) await Deno.remove(d, { recursive: true }).catch(() => {});
  }
});

Deno.test("saveMerged: a bare BERT checkpoint without a pooler writes the new pooler and head under the model's keys", async () => {
  if (!loadableFamilies().includes("bert")) return;
  const gpu = await getGpu();
  const tmp = await tempModelDir(`${FIXTURES}models/bert`);
  const out = `${tmp}-merged`;
  try {
    const file = await openSafetensors(`${tmp}/model.safetensors`);
    const bare: Record<string, TensorData> = {};
    for (const name of file.names) {
      if (name.startsWith("bert.pooler.") || name.startsWith("classifier.")) continue;
      const info = file.info(name);
      bare[name.replace(/^bert\./, "")] = {
        dtype: info.dtype,
        shape: info.shape,
        data: await file.read(name),
      };
    }
    await writeSafetensors(`${tmp}/model.safetensors`, bare);
    const model = await loadModel(gpu, tmp);
    const peft = await attachAdapter(
      model,
      loraConfig({ r: 2, initLoraWeights: false, taskType: "SEQ_CLS", modulesToSave: ["bert.pooler"] }),
    );
    assert(peft.saved.has("bert.pooler.dense.weight"), `${[...peft.saved.keys()]}`);
    const ids = Int32Array.from({ length: 10 }, (_, i) => (i * 37 + 5) % 500);
    const batch = tokenBatch(gpu, ids, 2, 5);
    const logits = await noGrad(() => tidy(() => model.forward(batch).logits)).toArray();
    await peft.saveMerged(out);
    const names = (await openSafetensors(`${out}/model.safetensors`)).names;
    assert(names.includes("bert.pooler.dense.weight") && names.includes("classifier.weight"), `${names}`);
    assertEquals(names.filter((n) => !n.startsWith("bert.") && !n.startsWith("classifier.")), []);
    assertClose(await mergedLogits(gpu, out, batch), logits, 1e-5, "logits");
    peft.detach();
    model.dispose();
  } finally {
    for (const d of [tmp, out]) await Deno.remove(d, { recursive: true }).catch(() => {});
  }
});

/** The logits on `batch` of the merged model in `dir`, loaded alone. */
async function mergedLogits(gpu: Gpu, dir: string, batch: Batch): Promise<Float32Array> {
  const merged = await loadModel(gpu, dir);
  try {
    return await noGrad(() => tidy(() => merged.forward(batch).logits)).toArray();
  } finally {
    merged.dispose();
  }
}

Deno.test("saveMerged of a sharded checkpoint with LayerNorm gamma/beta names writes an index its shards match", async () => {
  const gpu = await getGpu();
  const src = await convertedCopy(`${FIXTURES}models/bert`, { shards: 2, gammaBeta: true });
  const out = `${src}-merged`;
  const model = await loadModel(gpu, src);
  try {
    const peft = await attachAdapter(model, loraConfig({ r: 2, loraAlpha: 16, initLoraWeights: false }));
    await peft.saveMerged(out);
    peft.detach();
    const index = JSON.parse(await Deno.readTextFile(`${out}/model.safetensors.index.json`));
    for (const [name, file] of Object.entries(index.weight_map as Record<string, string>)) {
      assert((await openSafetensors(`${out}/${file}`)).names.includes(name), `${name} is in ${file}`);
    }
    (await loadModel(gpu, out)).dispose();
  } finally {
    model.dispose();
    await Deno.remove(src, { recursive: true });
    await Deno.remove(out, { recursive: true }).catch(() => {});
  }
});
