import { join } from "node:path";
import { getGpu } from "../lib/gpu/mod.ts";
import { loadHfConfig } from "../lib/io/hf_config.ts";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { type TensorData, writeSafetensors } from "../lib/io/safetensors_write.ts";
import { loadingProgress } from "../lib/cli/loading.ts";
import { loadModel, loadModelTokenizer, registeredFamilies } from "../lib/models/load.ts";
import { assert, assertClose, assertEquals } from "./assert.ts";
import {
  evalForward,
  fixtureModel,
  randomIds,
  referenceForward,
  tempModelDir,
  tokenBatch,
} from "./model_helpers.ts";

const gpt2 = fixtureModel("gpt2");

/** The checkpoint's tensors, each passed through `edit` (return null to drop one). */
async function rewrite(
  dir: string,
  edit: (name: string, t: TensorData) => TensorData | null = (_, t) => t,
  rename: (name: string) => string = (n) => n,
): Promise<Record<string, TensorData>> {
  const file = await openSafetensors(join(dir, "model.safetensors"));
  const out: Record<string, TensorData> = {};
  for (const name of file.names) {
    const info = file.info(name);
    const t = edit(name, { dtype: info.dtype, shape: info.shape, data: await file.read(name) });
    if (t) out[rename(name)] = t;
  }
  return out;
}

/** Run `fn` on a temporary copy of the gpt2 fixture; returns the message of the error it throws. */
async function errorIn(
  fn: (tmp: string) => Promise<unknown>,
  config: Record<string, unknown> = {},
): Promise<string> {
  const tmp = await tempModelDir(gpt2, config);
  try {
    await fn(tmp);
  } catch (e) {
    return (e as Error).message;
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
  throw new Error("expected an error, none was thrown");
}

function expectIncludes(message: string, ...parts: string[]): void {
  for (const p of parts) assert(message.includes(p), `"${message}" does not mention "${p}"`);
}

Deno.test("loadModel: gpt2 and llama are registered", () => {
  const families = registeredFamilies();
  assert(families.includes("gpt2") && families.includes("llama"), families.join());
});

Deno.test("loadModel: a missing directory, config.json or checkpoint is named", async () => {
  const gpu = await getGpu();
  const missing = await errorIn((tmp) => loadModel(gpu, join(tmp, "nope")));
  expectIncludes(missing, "nope", "not found");
  expectIncludes(
    await errorIn((tmp) => Deno.remove(join(tmp, "config.json")).then(() => loadModel(gpu, tmp))),
    "config.json",
  );
  const noWeights = await errorIn((tmp) =>
    Deno.remove(join(tmp, "model.safetensors")).then(() => loadModel(gpu, tmp))
  );
  expectIncludes(noWeights, "model.safetensors");
});

Deno.test("loadModel: an unknown model_type names the config file", async () => {
  const gpu = await getGpu();
  expectIncludes(await errorIn((tmp) => loadModel(gpu, tmp), { model_type: "t5" }), "config.json", "t5");
});

Deno.test("loadModel: a tensor of the wrong shape or dtype is named with its file", async () => {
  const gpu = await getGpu();
  const key = "transformer.h.1.mlp.c_fc.weight";
  const shape = await errorIn(async (tmp) => {
    const path = join(tmp, "model.safetensors");
    await writeSafetensors(path, await rewrite(tmp, (n, t) => (n === key ? { ...t, shape: [256, 64] } : t)));
    return loadModel(gpu, tmp);
  });
  expectIncludes(shape, "model.safetensors", key, "256,64");
  const norm = "transformer.ln_f.weight";
  const dtype = await errorIn(async (tmp) => {
    const path = join(tmp, "model.safetensors");
    const asInt = (t: TensorData): TensorData => ({ dtype: "I32", shape: t.shape, data: new Int32Array(64) });
    await writeSafetensors(path, await rewrite(tmp, (n, t) => (n === norm ? asInt(t) : t)));
    return loadModel(gpu, tmp);
  });
  expectIncludes(dtype, "model.safetensors", norm, "I32");
});

Deno.test("loadModel: a truncated safetensors file is named", async () => {
  const gpu = await getGpu();
  const message = await errorIn(async (tmp) => {
    const path = join(tmp, "model.safetensors");
    const bytes = await Deno.readFile(path);
    await Deno.writeFile(path, bytes.subarray(0, bytes.length - 1000));
    return loadModel(gpu, tmp);
  });
  expectIncludes(message, "model.safetensors");
  assert(/truncat|past the end|beyond|out of range|exceed/i.test(message), message);
});

Deno.test("loadModelTokenizer: a tokenizer with more ids than vocab_size names both files", async () => {
  const message = await errorIn(async (tmp) => loadModelTokenizer(await loadHfConfig(tmp)), {
    vocab_size: 300,
  });
  expectIncludes(message, "tokenizer.json", "config.json", "300");
  const ok = await loadModelTokenizer(await loadHfConfig(gpt2));
  assertEquals(ok.vocabSize <= 512, true);
});

Deno.test("loadModel: BF16 and F16 checkpoints load (values converted exactly)", async () => {
  const gpu = await getGpu();
  const [b, t] = [2, 6];
  const ids = randomIds(b * t, 512, 31);
  for (const dtype of ["BF16", "F16"] as const) {
    const tmp = await tempModelDir(gpt2, { dtype: dtype === "BF16" ? "bfloat16" : "float16" });
    try {
      const tensors = await rewrite(tmp, (_, x) => ({ dtype, shape: x.shape, data: x.data as Float32Array }));
      await writeSafetensors(join(tmp, "model.safetensors"), tensors);
      const model = await loadModel(gpu, tmp);
      const ours = await evalForward(model, tokenBatch(gpu, ids, b, t));
      model.dispose();
      assertClose(ours.logits, (await referenceForward(tmp, ids, b, t, null)).logits, 1e-5, dtype);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  }
});

Deno.test("loadModel: sharded, F64 and bare-backbone (unprefixed) checkpoints load", async () => {
  const gpu = await getGpu();
  const [b, t] = [1, 5];
  const ids = randomIds(b * t, 512, 41);
  const expected = (await referenceForward(gpt2, ids, b, t, null)).logits;
  const tmp = await tempModelDir(gpt2);
  try {
    // bare GPT2Model keys, as the original OpenAI checkpoints: "h.0.attn.c_attn.weight", ...
    await writeSafetensors(
      join(tmp, "model.safetensors"),
      await rewrite(tmp, undefined, (n) => n.replace(/^transformer\./, "")),
    );
    let model = await loadModel(gpu, tmp);
    assertClose((await evalForward(model, tokenBatch(gpu, ids, b, t))).logits, expected, 1e-5, "bare");
    model.dispose();
    // an F64 checkpoint, cast to f32 as transformers casts it to the model's dtype
    await writeSafetensors(
      join(tmp, "model.safetensors"),
      await rewrite(
        gpt2,
        (_, t) =>
          t.dtype === "F32" ? { ...t, dtype: "F64", data: Float64Array.from(t.data as Float32Array) } : t,
      ),
    );
    model = await loadModel(gpu, tmp);
    assertClose((await evalForward(model, tokenBatch(gpu, ids, b, t))).logits, expected, 1e-5, "F64");
    model.dispose();
    // two shards behind model.safetensors.index.json
    const all = await rewrite(gpt2);
    const names = Object.keys(all), half = Math.floor(names.length / 2);
    const shards = [names.slice(0, half), names.slice(half)];
    const weightMap: Record<string, string> = {};
    for (const [i, part] of shards.entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      await writeSafetensors(join(tmp, file), Object.fromEntries(part.map((n) => [n, all[n]])));
      for (const n of part) weightMap[n] = file;
    }
    await Deno.remove(join(tmp, "model.safetensors"));
    await Deno.writeTextFile(
      join(tmp, "model.safetensors.index.json"),
      JSON.stringify({ metadata: {}, weight_map: weightMap }),
    );
    model = await loadModel(gpu, tmp);
    assertClose((await evalForward(model, tokenBatch(gpu, ids, b, t))).logits, expected, 1e-5, "sharded");
    model.dispose();
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("loadModel: a head is kept whatever the spelling of its class's task (an old LLaMAForCausalLM)", async () => {
  const gpu = await getGpu();
  const tmp = await tempModelDir(fixtureModel("llama"), { architectures: ["LLaMAForCausalLM"] });
  try {
    const model = await loadModel(gpu, tmp, { task: "causal-lm" });
    assertEquals(model.initialised, [], "lm_head loaded, not started new");
    model.dispose();
    // another task's head starts new, as before
    const cls = await loadModel(gpu, tmp, { task: "seq-cls", numLabels: 2 });
    assertEquals(cls.initialised, ["score.weight"]);
    cls.dispose();
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("loadModel: a task the family lacks, or an architecture naming none, is explained", async () => {
  const gpu = await getGpu();
  expectIncludes(
    await errorIn((tmp) => loadModel(gpu, tmp, { task: "image-cls" })),
    "image-cls",
    "causal-lm",
  );
  const arch = await errorIn((tmp) => loadModel(gpu, tmp), { architectures: ["GPT2DoubleHeadsModel"] });
  expectIncludes(arch, "GPT2DoubleHeadsModel");
});

Deno.test("loadModel reports the checkpoint's bytes as it reads them; the CLI shows large ones", async () => {
  const gpu = await getGpu();
  const calls: [number, number][] = [];
  const model = await loadModel(gpu, gpt2, { onProgress: (done, total) => calls.push([done, total]) });
  model.dispose();
  const file = await openSafetensors(join(gpt2, "model.safetensors"));
  const stored = file.names.reduce((sum, n) => sum + file.info(n).byteLength, 0);
  assert(calls.length > 10, `${calls.length} calls`);
  assert(
    calls.every(([d, t], i) => t === stored && d > (calls[i - 1]?.[0] ?? 0)),
    JSON.stringify(calls.slice(0, 3)),
  );
  assertEquals(calls[calls.length - 1][0], stored);

  const lines: string[] = [];
  const sink = {
    writeSync: (b: Uint8Array) => (lines.push(new TextDecoder().decode(b)), b.length),
    isTerminal: () => false,
  };
  const small = loadingProgress(false, sink)!;
  small(1, 2 ** 20);
  small(2 ** 20, 2 ** 20);
  assertEquals(lines, [], "a small checkpoint loads without a display");
  const big = loadingProgress(false, sink)!;
  for (let mib = 64; mib <= 512; mib += 64) big(mib * 2 ** 20, 512 * 2 ** 20);
  assert(
    /^loading MiB 512\/512 {2}100% {2}\d+ MiB\/s {2}done in/.test(lines[lines.length - 1]),
    lines.join("|"),
  );
  assertEquals(loadingProgress(true), undefined);
});
