// Models loaded with quantized weights (--dtype q8 / q4): which weights are quantized,
// and a quantized model computes what an f32 model holding the dequantized values computes,
// forward and backward through an adapter.
import { getGpu } from "../lib/gpu/mod.ts";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { loadModel } from "../lib/models/load.ts";
import type { Model } from "../lib/models/model.ts";
import { referenceBatch } from "../lib/models/parity.ts";
import { applyAdapter, attachAdapter } from "../lib/peft/apply.ts";
import type { Adapter } from "../lib/peft/files.ts";
import { loraConfig, sshConfig } from "../lib/peft/config.ts";
import { isQuantized, QUANT_GROUP, type QuantKind } from "../lib/tensor/mod.ts";
import { copyAll } from "../lib/tensor/ops/copy.ts";
import { assert, assertClose, assertEquals, relL2 } from "./assert.ts";
import { evalForward } from "./model_helpers.ts";
import { FIXTURES } from "./peft_helpers.ts";

/**
 * What each kind may cost the fixtures' logits against f32 weights (rel-L2, eval mode). Their
 * random normal weights put a group's largest value near 2σ, so one step is ≈ 2σ/127 (q8) or
 * 2σ/8 (q4) and the rounding error ≈ 0.5% or 8% of a weight; the fixtures measured 0.4–2.0% and
 * 0.4–15% (the embedding tables and LM output layer are q8 in both).
 */
const LOGIT_ERROR: Record<QuantKind, number> = { q8: 0.03, q4: 0.2 };

/**
 * Train-mode logits, loss and adapter gradients of one pass, through `adapter` or a new one
 * (attached with a fixed seed), and the adapter.
 */
async function pass(model: Model, method: "ssh" | "lora", dir: string, adapter?: Adapter) {
  const gpu = model.gpu;
  const config = method === "ssh"
    ? sshConfig({ n: 40, init: "normal", targetModules: "all-linear" })
    : loraConfig({ r: 2, loraAlpha: 4, initLoraWeights: false, targetModules: "all-linear" });
  const peft = adapter ? applyAdapter(model, adapter) : await attachAdapter(model, config, { seed: 3 });
  peft.train(true);
  const batch = await referenceBatch(gpu, await openSafetensors(`${dir}/reference.safetensors`));
  const out = model.forward(batch, { headOnly: true });
  out.loss!.backward();
  const result = {
    logits: await out.logits.toArray(),
    loss: await out.loss!.item(),
    grads: await Promise.all(peft.parameters().map((p) => p.grad!.toArray())),
    adapter: await peft.toAdapter(),
  };
  for (const t of [out.logits, out.loss!, out.hidden]) t.dispose();
  peft.detach();
  return result;
}

for (const [family, method] of [["gpt2", "ssh"], ["llama", "lora"], ["bert", "ssh"]] as const) {
  for (const kind of ["q8", "q4"] as const) {
    Deno.test(`${family}, ${kind}: the linear weights are quantized and compute what their dequantized values do (${method})`, async () => {
      const gpu = await getGpu();
      const dir = `${FIXTURES}models/${family}`;
      const quantized = await loadModel(gpu, dir, { dtype: kind });
      // the f32 copies the weights were quantized from are not kept in the pool
      assertEquals(gpu.pool.stats().free, 0, "pooled bytes left free after loading");
      const plain = await loadModel(gpu, dir);
      try {
        // where their stored rows are whole groups: the blocks' linear weights as `kind`, the LM
        // output layer and the embedding tables as q8; a trained head not at all
        for (const [path, lin] of quantized.linears) {
          const w = lin.weight;
          const expected = path.includes("classifier") || w.shape[1] % QUANT_GROUP !== 0
            ? "not quantized"
            : path === "lm_head"
            ? "q8"
            : kind;
          assertEquals(isQuantized(w.dtype) ? w.dtype : "not quantized", expected, path);
        }
        const tables = [...quantized.parameters].filter(([key, t]) =>
          /embed|wte|wpe/.test(key) && t.shape.length === 2
        );
        assert(tables.length >= 1, "embedding tables");
        for (const [key, t] of tables) assertEquals(t.dtype, "q8", key);
        if (family === "llama") {
          assert(
            !isQuantized(quantized.linears.get("model.layers.0.mlp.down_proj")!.weight.dtype),
            "176-long rows",
          );
        }
        assert(
          [...quantized.linears.values()].filter((l) => isQuantized(l.weight.dtype)).length >= 8,
          "quantized layers",
        );
        // without an adapter (SSH's positions follow the weights' spectrum), close to the f32 weights'
        const batch = await referenceBatch(gpu, await openSafetensors(`${dir}/reference.safetensors`));
        const before = (await evalForward(plain, batch)).logits;
        const err = relL2((await evalForward(quantized, batch)).logits, before);
        assert(err > 0 && err < LOGIT_ERROR[kind], `${kind} logits off the f32 model's by ${err}`);
        // the f32 model with the quantized model's values (dequantized, or the f16 tables widened)
        for (const [key, t] of quantized.parameters) {
          if (t.dtype !== "f32") copyAll(t, plain.parameters.get(key)!);
        }
        // the same adapter on both: SSH ranks the quantized model on its checkpoint's values
        const got = await pass(quantized, method, dir);
        const want = await pass(plain, method, dir, got.adapter);
        assertClose(got.logits, want.logits, 1e-5, "logits");
        // the loss follows logits that agree to 1e-5, scaled by its gradient in them (p − onehot)
        assertClose([got.loss], [want.loss], 3e-5, "loss");
        got.grads.forEach((g, i) => assertClose(g, want.grads[i], 1e-4, `gradient ${i}`));
      } finally {
        quantized.dispose();
        plain.dispose();
      }
    });
  }
}
