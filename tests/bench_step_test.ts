import { assert, assertEquals } from "./assert.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import { benchStep } from "../bench/step.ts";
import { BENCH_MODELS } from "../bench/models.ts";

Deno.test("bench/step.ts: one SSH and one LoRA step of a small RoBERTa, with a kernel profile", async () => {
  const gpu = await getGpu();
  const m = { ...BENCH_MODELS["roberta-small"], batch: 2, seq: 8 };
  const ssh = await benchStep(gpu, m, "ssh", { steps: 1, profile: true });
  // 2 layers × (query, value) × 750 coefficients, plus the classifier (64·64 + 64 + 64·2 + 2)
  assertEquals(ssh.trainable, 4 * 750 + 64 * 64 + 64 + 64 * 2 + 2);
  assert(Number.isFinite(ssh.loss) && ssh.loss > 0, `loss ${ssh.loss}`);
  assert(ssh.wallMs > 0 && ssh.dispatches > 0, JSON.stringify(ssh));
  if (gpu.timestamps) {
    const names = ssh.kernels!.map((k) => k.name);
    assert(names.includes("sparse.product") && names.some((n) => n.startsWith("fht.")), names.join(", "));
  }
  const lora = await benchStep(gpu, m, "lora", { steps: 1 });
  assertEquals(lora.trainable, 4 * 8 * (64 + 64) + 64 * 64 + 64 + 64 * 2 + 2);
});
