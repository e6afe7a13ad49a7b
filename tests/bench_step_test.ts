import { assert, assertEquals } from "./assert.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import { benchStep } from "../bench/step.ts";
import { BENCH_MODELS, loadBenchModel } from "../bench/models.ts";
import { MULTI_SLOTS } from "../kernels/adamw.ts";

Deno.test("bench/step.ts: one SSH and one LoRA step of a small RoBERTa, with a kernel profile", async () => {
  const gpu = await getGpu();
  const m = { ...BENCH_MODELS["roberta-small"], batch: 2, seq: 8 };
  const ssh = await benchStep(gpu, m, "ssh", { steps: 1, profile: true });
  // 2 layers × (query, value) × 750 coefficients, plus the classifier (64·64 + 64 + 64·2 + 2)
  assertEquals(ssh.trainable, 4 * 750 + 64 * 64 + 64 + 64 * 2 + 2);
  assert(Number.isFinite(ssh.loss) && ssh.loss > 0, `loss ${ssh.loss}`);
  // wall time is a difference of two timings (2N steps less N): with N = 1 on a busy CPU it may be < 0
  assert(Number.isFinite(ssh.wallMs) && ssh.dispatches > 0, JSON.stringify(ssh));
  if (gpu.timestamps) {
    const names = ssh.kernels!.map((k) => k.name);
    assert(names.includes("sparse.product") && names.some((n) => n.startsWith("fht.")), names.join(", "));
  }
  const lora = await benchStep(gpu, m, "lora", { steps: 1 });
  assertEquals(lora.trainable, 4 * 8 * (64 + 64) + 64 * 64 + 64 + 64 * 2 + 2);
});

Deno.test("bench/step.ts --count: one step's commands by kernel, recorded and dropped unrun", async () => {
  const gpu = await getGpu();
  const m = { ...BENCH_MODELS["roberta-small"], batch: 2, seq: 8 };
  const model = await loadBenchModel(gpu, m, "f32");
  try {
    const head = () => model.parameters.get("classifier.out_proj.weight")!.toArray();
    const before = await head();
    const r = await benchStep(gpu, m, "ssh", { count: true, model });
    const census = new Map(r.census!);
    const dispatches = r.census!.filter(([k]) => !k.startsWith("(")).reduce((s, [, n]) => s + n, 0);
    assertEquals(dispatches, r.dispatches);
    assertEquals((census.get("(copy)") ?? 0) + (census.get("(clear)") ?? 0), r.transfers);
    assertEquals(census.get("(compute pass)"), r.passes);
    assert(r.passes <= r.transfers + 1, "a pass begins only after a copy or clear, or first");
    // 2 layers × 2 adapters and the classifier's 4 tensors: 8 parameters in as few optimiser
    // dispatches as the device's storage buffers allow (4 a parameter)
    const most = Math.min(MULTI_SLOTS, Math.floor((gpu.limits.maxStorageBuffersPerShaderStage - 2) / 4));
    const updates = r.census!.filter(([k]) => k.startsWith("adamw.update")).reduce((s, [, n]) => s + n, 0);
    assertEquals(updates, Math.ceil(8 / most));
    assert(Number.isNaN(r.wallMs) && Number.isNaN(r.loss), "a counted step reports no times");
    assertEquals(Array.from(await head()), Array.from(before), "the counted step ran");
    const after = await benchStep(gpu, m, "ssh", { steps: 1, model });
    assert(Number.isFinite(after.loss), "the stream works after a dropped step");
    assert(Array.from(await head()).some((x, i) => x !== before[i]), "a timed step trains the head");
  } finally {
    model.dispose();
  }
});
