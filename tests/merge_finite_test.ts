/**
 * Values a merged checkpoint cannot hold: `merge` refuses a W + ΔW beyond the stored dtype's range
 * and non-finite values (of the adapter, a trained parameter, the base), naming the tensor and
 * the index, and writes nothing; and a quantized load stores a matrix whose rows cannot be
 * quantized as f32 where f16 cannot hold it, as `merge --dtype auto` (q4) loads the base.
 */
import { join } from "node:path";
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { runCli, withTempDir } from "./train_helpers.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import { openCheckpoint } from "../lib/io/safetensors.ts";
import { type TensorData, writeSafetensors } from "../lib/io/safetensors_write.ts";
import { loadModel } from "../lib/models/load.ts";
import { storageSummary } from "../lib/models/storage.ts";
import { loadAdapterInto } from "../lib/peft/apply.ts";
import { writeMergedModel } from "../lib/peft/merge.ts";
import { Tensor } from "../lib/tensor/mod.ts";

const LLAMA = "tests/fixtures/models/llama";
const LLAMA_LORA = "tests/fixtures/adapters/llama-lora";

/**
 * A copy of the safetensors checkpoint `file` as `to`, each tensor's values passed through `edit`
 * (in place), the F32 ones stored as `dtype` (default F32).
 */
async function editedCheckpoint(
  file: string,
  to: string,
  edit: (name: string, values: Float32Array) => void,
  dtype: "F32" | "F16" = "F32",
): Promise<void> {
  const ck = await openCheckpoint(file);
  const out: Record<string, TensorData> = {};
  for (const name of ck.names) {
    const info = ck.info(name), data = Float32Array.from(await ck.readF32(name));
    edit(name, data);
    out[name] = { dtype: info.dtype === "F32" ? dtype : info.dtype, shape: info.shape, data };
  }
  await writeSafetensors(to, out);
}

/** The LLaMA fixture in `dir`, edited and stored as {@link editedCheckpoint} does. */
async function llamaCopy(
  dir: string,
  edit: (name: string, values: Float32Array) => void = () => {},
  dtype: "F32" | "F16" = "F32",
): Promise<string> {
  await Deno.mkdir(dir);
  for (const f of ["config.json", "tokenizer.json", "generation_config.json"]) {
    await Deno.copyFile(join(LLAMA, f), join(dir, f));
  }
  await editedCheckpoint(join(LLAMA, "model.safetensors"), join(dir, "model.safetensors"), edit, dtype);
  return dir;
}

/** The LLaMA LoRA fixture (r 4, alpha 8: ΔW = 2·B·A) in `dir`, edited. */
async function loraCopy(dir: string, edit: (name: string, values: Float32Array) => void): Promise<string> {
  await Deno.mkdir(dir);
  await Deno.copyFile(join(LLAMA_LORA, "adapter_config.json"), join(dir, "adapter_config.json"));
  await editedCheckpoint(
    join(LLAMA_LORA, "adapter_model.safetensors"),
    join(dir, "adapter_model.safetensors"),
    edit,
  );
  return dir;
}

/** The names in `dir`, sorted. */
async function entries(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

/** Merge `adapter` into `base` (loaded f32) as `out`, with `opts`. */
async function saveMerged(
  base: string,
  adapter: string,
  out: string,
  opts: { overwrite?: boolean } = {},
): Promise<void> {
  const model = await loadModel(await getGpu(), base);
  const peft = await loadAdapterInto(model, adapter);
  try {
    await peft.saveMerged(out, opts);
  } finally {
    peft.detach();
    model.dispose();
  }
}

Deno.test("merge refuses a W + ΔW beyond F16's range, naming the tensor and index, and writes nothing", async () => {
  await withTempDir("hartley_merge_f16_", async (dir) => {
    const key = "model.layers.1.mlp.down_proj.weight", row = 176; // [64, 176]
    // ΔW = 2·B·A is 2·4·8190 = 65520 on rows 2 and 3, 0 elsewhere. W's row 2 is -2⁻⁸: W + ΔW is
    // an f32, which F16 rounds to its largest, 65504. Row 3's -2⁻⁹ makes W + ΔW a tie that rounds to
    // the f32 65520, which F16 rounds to Infinity.
    const base = await llamaCopy(`${dir}/base`, (name, v) => {
      if (name === key) v.fill(-(2 ** -8), 2 * row, 3 * row).fill(-(2 ** -9), 3 * row, 4 * row);
    }, "F16");
    const adapter = await loraCopy(`${dir}/adapter`, (name, v) => {
      if (!name.includes("layers.1.mlp.down_proj")) return;
      if (name.includes("lora_A")) v.fill(1);
      else v.fill(0).fill(8190, 2 * 4, 4 * 4);
    });
    const out = `${dir}/out`;
    await Deno.mkdir(out);
    await Deno.writeTextFile(`${out}/notes.txt`, "kept");
    await Deno.writeTextFile(`${out}/config.json`, "{}");
    const before = await entries(dir);
    const want = `W + ΔW is 65519.998046875 at index ${3 * row} of "${key}" [64,176] (W -0.001953125, ` +
      `ΔW 65520), which overflows F16's range (largest 65504); keep the adapter separate`;
    for (const [target, overwrite] of [[out, true], [`${dir}/fresh`, false]] as const) {
      await assertRejects(() => saveMerged(base, adapter, target, { overwrite }), Error, want);
      assertEquals(await entries(dir), before, "nothing written beside the target");
      assertEquals(await entries(out), ["config.json", "notes.txt"]);
      assertEquals(await Deno.readTextFile(`${out}/config.json`), "{}");
    }
    // the CLI's refusal names its way out, --merged-dtype f32, and F32 holds the sum
    const cli = (...flags: string[]) =>
      runCli(["merge", "--model", base, "--adapter", adapter, "--out", `${dir}/f32`, ...flags]);
    const refused = await cli();
    assert(refused.code !== 0 && refused.err.includes("merge's --merged-dtype f32"), refused.err);
    const r = await cli("--merged-dtype", "f32");
    assertEquals(r.code, 0, r.err);
    const merged = await (await openCheckpoint(`${dir}/f32`)).readF32(key);
    assertEquals([merged[2 * row], merged[3 * row]], [65520 - 2 ** -8, 65520]);
  });
});

Deno.test("merge refuses non-finite values: of the adapter's ΔW, a base weight, a trained parameter", async () => {
  await withTempDir("hartley_merge_nan_", async (dir) => {
    const nanAdapter = await loraCopy(`${dir}/nan_adapter`, (name, v) => {
      if (name.includes("layers.0.self_attn.q_proj.lora_A")) v[5] = NaN; // ΔW's column 5
    });
    await assertRejects(
      () => saveMerged(LLAMA, nanAdapter, `${dir}/out`),
      Error,
      `ΔW of "model.layers.0.self_attn.q_proj" holds NaN at index 5 of ` +
        `"model.layers.0.self_attn.q_proj.weight" [64,64]: the adapter is broken`,
    );

    const infBase = await llamaCopy(`${dir}/inf_base`, (name, v) => {
      if (name === "model.layers.1.self_attn.v_proj.weight") v[7] = -Infinity;
    });
    await assertRejects(
      () => saveMerged(infBase, LLAMA_LORA, `${dir}/out`),
      Error,
      `the base weight holds -Infinity at index 7 of "model.layers.1.self_attn.v_proj.weight"`,
    );

    // a trained parameter (modules_to_save, a trained head), written as the base's dtype
    const gpu = await getGpu();
    const base16 = await llamaCopy(`${dir}/base16`, undefined, "F16");
    const trained = [
      [LLAMA, NaN, `the trained "model.norm.weight" holds NaN at index 3: its trained values are not finite`],
      [
        base16,
        1e5,
        `the trained "model.norm.weight" holds 100000 at index 3, beyond F16's range (largest 65504)`,
      ],
    ] as const;
    for (const [base, value, want] of trained) {
      const model = await loadModel(gpu, base);
      const norm = new Float32Array(64).fill(1);
      norm[3] = value;
      const saved = new Map([["model.norm.weight", Tensor.from(gpu, norm, [64])]]);
      try {
        await assertRejects(
          () => writeMergedModel({ model, layers: new Map(), saved }, `${dir}/out`),
          Error,
          want,
        );
      } finally {
        saved.get("model.norm.weight")!.dispose();
        model.dispose();
      }
    }
    assertEquals((await entries(dir)).filter((n) => n.includes("out")), [], "nothing written");
  });
});

Deno.test("a quantized load stores a matrix that f16 cannot hold as f32 (an f16 load refuses it)", async () => {
  const gpu = await getGpu();
  if (!gpu.f16) return; // without shader-f16 such matrices are f32 anyway
  await withTempDir("hartley_quant_fallback_", async (dir) => {
    // down_proj [64, 176]: rows of 176, not a multiple of 32, are not quantized
    const base = await llamaCopy(`${dir}/base`, (name, v) => {
      if (name === "model.layers.0.mlp.down_proj.weight") v[5] = 1e5;
    });
    const model = await loadModel(gpu, base, { dtype: "q8" });
    try {
      const big = model.linears.get("model.layers.0.mlp.down_proj")!.weight;
      assertEquals(big.dtype, "f32");
      assertEquals((await big.toArray())[5], 1e5);
      assertEquals(model.linears.get("model.layers.1.mlp.down_proj")!.weight.dtype, "f16");
      assert(storageSummary(model).startsWith("linear weights 13 q8, 1 f16, 1 f32;"), storageSummary(model));
    } finally {
      model.dispose();
    }
    await assertRejects(
      () => loadModel(gpu, base, { dtype: "f16" }),
      Error,
      `"model.layers.0.mlp.down_proj.weight" holds 100000 at 5, which f16 cannot store`,
    );
    // merge's default (q4) loads it, and says how
    const r = await runCli(["merge", "--model", base, "--adapter", LLAMA_LORA, "--out", `${dir}/merged`]);
    assertEquals(r.code, 0, r.err);
    const storage = r.err.split("\n").find((l) => l.startsWith("storage "));
    assert(storage?.startsWith("storage linear weights 12 q4, 1 q8, 1 f16, 1 f32;"), r.err);
  });
});
