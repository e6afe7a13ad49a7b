// Quantized frozen weights: kept quantized in an encoder's q/k/v product, a merge refused before it
// changes any layer, and values a code cannot hold refused when loading.
import { getGpu } from "../lib/gpu/mod.ts";
import { openSafetensors, SafetensorsError } from "../lib/io/safetensors.ts";
import { type TensorData, writeSafetensors } from "../lib/io/safetensors_write.ts";
import { loadModel } from "../lib/models/load.ts";
import { fusedProjection } from "../lib/nn/fused_linear.ts";
import { attachAdapter } from "../lib/peft/apply.ts";
import { loraConfig } from "../lib/peft/config.ts";
import { isQuantized, Tensor } from "../lib/tensor/mod.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./assert.ts";
import { FIXTURES } from "./peft_helpers.ts";
import { withTempDir } from "./train_helpers.ts";

Deno.test("an encoder's quantized q/k/v run as their own products: no f32 stack of them", async () => {
  const gpu = await getGpu();
  for (const dtype of ["q4", "f32"] as const) {
    const model = await loadModel(gpu, `${FIXTURES}models/bert`, { dtype });
    try {
      const attention = ["query", "key", "value"].map((name) =>
        model.linears.get(`bert.encoder.layer.0.attention.self.${name}`)!
      );
      assertEquals(attention.every((l) => isQuantized(l.weight.dtype)), dtype === "q4");
      const x = Tensor.zeros(gpu, [3, 64]);
      const y = fusedProjection(attention, x);
      // f32 weights are stacked into one product; q4 ones would be dequantized into an f32 stack
      assertEquals(y === null, dtype === "q4");
      y?.dispose();
      x.dispose();
    } finally {
      model.dispose();
    }
  }
});

Deno.test("merge on a model with a quantized target is refused before any layer changes", async () => {
  const gpu = await getGpu();
  // the llama fixture's down_proj rows (176) are no whole groups: it stays f16 beside q4 layers
  const model = await loadModel(gpu, `${FIXTURES}models/llama`, { dtype: "q4" });
  try {
    const plain = "model.layers.0.mlp.down_proj", quantized = "model.layers.1.self_attn.q_proj";
    const lin = model.linears.get(plain)!;
    assert(!isQuantized(lin.weight.dtype) && isQuantized(model.linears.get(quantized)!.weight.dtype));
    const config = loraConfig({
      r: 2,
      initLoraWeights: false,
      targetModules: `${plain}|${quantized}`.replaceAll(".", "\\."),
    });
    const peft = await attachAdapter(model, config, { seed: 1 });
    const before = await lin.weight.toArray();
    assertThrows(() => peft.merge(), `${quantized}: cannot merge into a q4`);
    assertEquals(peft.merged, false);
    assert(lin.adapter !== null, "the unquantized layer keeps its adapter");
    assertEquals(await lin.weight.toArray(), before, "and its weight");
    peft.detach();
  } finally {
    model.dispose();
  }
});

Deno.test("loading as q8 or q4 refuses a NaN or an infinity, naming the tensor, as f16 does", async () => {
  await withTempDir("hartley_quant_nan_", async (dir) => {
    const source = `${FIXTURES}models/gpt2`;
    for (const f of ["config.json", "tokenizer.json"]) await Deno.copyFile(`${source}/${f}`, `${dir}/${f}`);
    const file = await openSafetensors(`${source}/model.safetensors`);
    const key = "transformer.h.0.attn.c_proj.weight";
    for (const bad of [NaN, Infinity]) {
      const tensors: Record<string, TensorData> = {};
      for (const name of file.names) {
        const { dtype, shape } = file.info(name);
        tensors[name] = { dtype, shape, data: await file.read(name) } as TensorData;
      }
      const values = Float32Array.from(tensors[key].data as Float32Array);
      values[37] = bad;
      tensors[key] = { ...tensors[key], data: values };
      await writeSafetensors(`${dir}/model.safetensors`, tensors);
      const gpu = await getGpu();
      for (const dtype of ["q8", "q4"] as const) {
        await assertRejects(
          () => loadModel(gpu, dir, { dtype }),
          SafetensorsError,
          `tensor "${key}" holds ${bad} at 37, which ${dtype} cannot store; load with dtype "f32"`,
        );
      }
    }
  });
});
