// SSH's positions do not depend on how the base model is stored (--dtype): they are ranked on the
// checkpoint's values, not on the f16-rounded or quantized weights the model computes with.
import { join } from "node:path";
import { getGpu } from "../lib/gpu/mod.ts";
import { readF32 } from "../lib/gpu/buffers.ts";
import { openCheckpoint } from "../lib/io/safetensors.ts";
import { loadModel } from "../lib/models/load.ts";
import type { WeightDtype } from "../lib/nn/load.ts";
import { attachAdapter } from "../lib/peft/apply.ts";
import { sshConfig } from "../lib/peft/config.ts";
import type { SSHModule } from "../lib/peft/files.ts";
import { withF32Weight } from "../lib/peft/ssh.ts";
import { cast, noGrad, Tensor } from "../lib/tensor/mod.ts";
import { copyAll } from "../lib/tensor/ops/copy.ts";
import { assert, assertEquals } from "./assert.ts";
import { FIXTURES } from "./peft_helpers.ts";
import { runCli, withTempDir } from "./train_helpers.ts";

/** Every target's positions, in order, of a new SSH adapter on the fixture `family` loaded as `dtype`. */
async function sshPositions(
  family: string,
  dtype: WeightDtype,
  selection: "layer" | "global",
): Promise<{ positions: Map<string, number[]>; stored: Set<string> }> {
  const gpu = await getGpu();
  const model = await loadModel(gpu, `${FIXTURES}models/${family}`, { dtype });
  try {
    // δ = 1: every position by energy, so any change of the ranked values shows
    const config = sshConfig({ n: 200, energyRatio: 1, selection, targetModules: "all-linear", seed: 5 });
    const peft = await attachAdapter(model, config);
    const adapter = await peft.toAdapter();
    peft.detach();
    const positions = new Map<string, number[]>();
    for (const [path, m] of adapter.modules) positions.set(path, [...(m as SSHModule).indices]);
    const stored = new Set([...positions.keys()].map((p) => model.linears.get(p)!.weight.dtype));
    return { positions, stored };
  } finally {
    model.dispose();
  }
}

for (const family of ["gpt2", "llama"]) {
  for (const selection of ["layer", "global"] as const) {
    Deno.test(`${family}, selection ${selection}: SSH picks the same positions for every --dtype as for f32`, async () => {
      const gpu = await getGpu();
      const f32 = await sshPositions(family, "f32", selection);
      const dtypes: WeightDtype[] = gpu.f16 ? ["f16", "q8", "q4"] : ["q8", "q4"];
      for (const dtype of dtypes) {
        const got = await sshPositions(family, dtype, selection);
        // the targets' weights really are stored otherwise than f32
        assert(got.stored.has(dtype), `${dtype}: targets stored as ${[...got.stored]}`);
        assertEquals([...got.positions.keys()], [...f32.positions.keys()], `${dtype}: targets`);
        for (const [path, expected] of f32.positions) {
          const differ = got.positions.get(path)!.filter((v, i) => v !== expected[i]).length;
          assertEquals(differ, 0, `${dtype}: entries of ${path}'s positions that differ from f32's`);
        }
      }
    });
  }
}

Deno.test("a quantized weight is ranked on its checkpoint values, in its storage layout", async () => {
  const gpu = await getGpu();
  const dir = `${FIXTURES}models/gpt2`;
  const model = await loadModel(gpu, dir, { dtype: "q4" });
  try {
    const lin = model.linears.get("transformer.h.0.attn.c_attn")!;
    assertEquals(lin.weight.dtype, "q4");
    const seen = await withF32Weight(lin, (w) => readF32(gpu, w, lin.weight.size));
    const stored = await (await openCheckpoint(dir)).readF32("transformer.h.0.attn.c_attn.weight");
    assertEquals([...seen], [...stored]);
  } finally {
    model.dispose();
  }
});

Deno.test({
  name: "a stored weight rewritten in place (merged) is ranked on its current values",
  // f16 storage is the rounded one a merge rewrites in place
  ignore: !(await getGpu()).f16,
}, async () => {
  const gpu = await getGpu();
  const model = await loadModel(gpu, `${FIXTURES}models/gpt2`, { dtype: "f16" });
  try {
    const lin = model.linears.get("transformer.h.1.mlp.c_fc")!;
    const values = Float32Array.from(
      { length: lin.weight.size },
      (_, i) => Math.sin(i * 0.37) * (1 + (i % 7)),
    );
    const other = Tensor.from(gpu, values, lin.weight.shape, { dtype: "f16" });
    copyAll(other, lin.weight, 0);
    other.dispose();
    const current = noGrad(() => cast(lin.weight, "f32"));
    const seen = await withF32Weight(lin, (w) => readF32(gpu, w, lin.weight.size));
    assertEquals([...seen], [...await current.toArray()]);
    current.dispose();
  } finally {
    model.dispose();
  }
});

Deno.test("inspect --layer: the energy heatmap and SSH's marks are the same with --dtype q4 as with f32", async () => {
  await withTempDir("hartley_ssh_dtype_", async (dir) => {
    const svgs: string[] = [];
    for (const dtype of ["f32", "q4"]) {
      const svg = join(dir, `${dtype}.svg`);
      const model = `${FIXTURES}models/gpt2`;
      const r = await runCli([
        "inspect",
        "--model",
        model,
        "--dtype",
        dtype,
        "--layer",
        "h.0.mlp.c_fc",
        "--svg",
        svg,
      ]);
      assertEquals(r.code, 0, r.err);
      svgs.push(await Deno.readTextFile(svg));
    }
    assert(svgs[1] === svgs[0], "the q4 heatmap differs from the f32 one");
  });
});
