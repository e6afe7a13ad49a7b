// `forward(batch, { headOnly: true })`: a [CLS] classifier's last layer at that position alone
// gives the whole layer's logits, loss and gradients, with the same dropout masks.
import { getGpu } from "../lib/gpu/mod.ts";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { loadModel } from "../lib/models/load.ts";
import { referenceBatch } from "../lib/models/parity.ts";
import { FUSIONS } from "../lib/nn/fusions.ts";
import { attachAdapter } from "../lib/peft/apply.ts";
import { loraConfig, sshConfig } from "../lib/peft/config.ts";
import * as T from "../lib/tensor/mod.ts";
import { withAttentionPath } from "../lib/tensor/ops/attention_fused.ts";
import { dropoutMask } from "../lib/tensor/reference/dropout.ts";
import { assert, assertClose, assertEquals, assertThrows } from "./assert.ts";
import { FIXTURES } from "./peft_helpers.ts";
import { leaf, randArr, Rng } from "./tensor_helpers.ts";
import { randomIds, tempModelDir, tokenBatch } from "./model_helpers.ts";
import type { Gpu } from "../lib/gpu/mod.ts";
import type { Batch } from "../lib/models/model.ts";
import type { LoadModelOptions } from "../lib/models/load.ts";
import { arr } from "../lib/tensor/reference/array.ts";

Deno.test("dropout rows: one position per sequence draws the whole tensor's masks there (GPU and reference)", async () => {
  const gpu = await getGpu();
  const [b, t, h] = [3, 7, 13]; // odd sizes: rows that are not vec4-aligned
  const rng = new Rng(81);
  const x = randArr(rng, [b, t, h]), r = randArr(rng, [b, t, h]), g = randArr(rng, [b, 1, h]);
  const key = { seed: 5, step: 2, site: 9 };
  const whole = T.dropoutAdd(leaf(gpu, x, false), leaf(gpu, r, false), 0.4, key);
  const wholeMask = dropoutMask(b * t * h, 0.4, key);
  const wholeOut = await whole.toArray();
  // the kernels' own index map (first positions), and factors drawn on the CPU (any positions)
  for (const at of [undefined, Int32Array.of(4, 0, 6)]) {
    const rows = { batch: b, length: t, ...(at ? { at } : {}) };
    const pick = <A extends Float32Array | Float64Array | Uint8Array>(a: A) =>
      Array.from({ length: b }, (_, i) => {
        const p = (i * t + (at?.[i] ?? 0)) * h;
        return Array.from(a.subarray(p, p + h));
      }).flat();
    const label = at ? "positions" : "first positions";
    assertEquals(
      Array.from(dropoutMask(b * h, 0.4, { ...key, rows })),
      pick(wholeMask),
      `${label}: reference`,
    );
    const x0 = leaf(gpu, arr(Float64Array.from(pick(x.data)), [b, 1, h]));
    const r0 = leaf(gpu, arr(Float64Array.from(pick(r.data)), [b, 1, h]), false);
    const part = T.dropoutAdd(x0, r0, 0.4, { ...key, rows });
    assertEquals(Array.from(await part.toArray()), pick(wholeOut), `${label}: dropoutAdd`);
    part.backward(leaf(gpu, g, false));
    const keep = dropoutMask(b * h, 0.4, { ...key, rows });
    assertClose(
      await x0.grad!.toArray(),
      g.data.map((v, i) => keep[i] ? v / 0.6 : 0),
      1e-6,
      `${label}: gradient`,
    );
  }
  assertThrows(
    () => T.dropout(leaf(gpu, randArr(rng, [2, 5])), 0.4, { ...key, rows: { batch: 3, length: 4 } }),
    "does not hold one row for each of 3 sequences",
  );
});

Deno.test("dropoutFactors: the masks at given positions, drawn on the GPU, against the CPU twin", async () => {
  const gpu = await getGpu();
  // 5 sequences of 7 positions; 3 rows of 13 per sequence (e.g. heads of one query's probabilities)
  const rows = { batch: 5, length: 7, at: Int32Array.of(6, 0, 3, 1, 5) };
  for (const p of [0.1, 0.5, 1]) {
    const drop = { p, key: { seed: 8, step: 3, site: 2, rows } };
    const factors = await T.dropoutFactors(gpu, [5, 3, 13], drop, 13, 3).toArray();
    const scale = p === 1 ? 0 : Math.fround(1 / (1 - p));
    const keep = dropoutMask(195, p, drop.key, 13, 3);
    assertEquals(Array.from(factors), Array.from(keep, (k) => k * scale), `p = ${p}`);
  }
  const drop = { p: 0.5, key: { seed: 8, step: 3, rows } };
  assertThrows(
    () => T.dropoutFactors(gpu, [5, 3, 12], drop, 13, 3),
    "180 elements are not 5 sequences of 3 rows of 13",
  );
  assertThrows(() => T.dropoutFactors(gpu, [5, 13], { p: 0.5, key: { seed: 8, step: 3 } }, 13, 1), "no rows");
});

/** The fixture model `family`, with dropout on every site (ViT's fixture has none). */
async function fixtureDir(family: string): Promise<string> {
  const from = `${FIXTURES}models/${family}`;
  const dir = await Deno.makeTempDir({ prefix: `hartley-head-${family}-` });
  for await (const e of Deno.readDir(from)) await Deno.copyFile(`${from}/${e.name}`, `${dir}/${e.name}`);
  const config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  config.hidden_dropout_prob = 0.2;
  config.attention_probs_dropout_prob = 0.3;
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
  return dir;
}

type Method = "ssh" | "lora" | "lora-all" | "full";

/** LoRA on every linear layer of a block (its dropout then runs inside the pruned layer too). */
const ALL_LINEARS: Record<string, string[]> = {
  bert: ["query", "key", "value", "dense"],
  gpt2: ["c_attn", "c_proj", "c_fc"],
  llama: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
};

/** Train-mode logits, loss and trained gradients of one forward and backward pass. */
async function trainPass(
  dir: string,
  family: string,
  method: Method,
  headOnly: boolean,
  opts: { checkpointing?: boolean; batch?: (gpu: Gpu) => Batch; load?: LoadModelOptions } = {},
) {
  const gpu = await getGpu();
  const model = await loadModel(gpu, dir, opts.load);
  model.gradientCheckpointing = opts.checkpointing ?? false;
  let params: T.Tensor[], detach = () => {};
  if (method === "full") {
    model.train(true);
    params = [...model.parameters.values()];
    for (const p of params) p.requiresGrad = true;
  } else {
    const everywhere = method === "lora-all" ? { targetModules: ALL_LINEARS[family] } : {};
    // a decoder's classification head is new to its causal-LM checkpoint: it trains with the adapter
    const common = { ...everywhere, taskType: model.initialised.length > 0 ? "SEQ_CLS" as const : null };
    const config = method.startsWith("lora")
      ? loraConfig({ r: 2, loraAlpha: 4, loraDropout: 0.2, initLoraWeights: false, ...common })
      : sshConfig({ n: 40, init: "normal", ...common });
    const peft = await attachAdapter(model, config, { seed: 3 });
    peft.train(true);
    params = peft.parameters();
    detach = () => peft.detach();
  }
  const batch = opts.batch
    ? opts.batch(gpu)
    : await referenceBatch(gpu, await openSafetensors(`${dir}/reference.safetensors`));
  await gpu.sync();
  gpu.pool.trim();
  gpu.pool.resetPeak();
  const base = gpu.pool.stats().allocated;
  const out = model.forward(batch, { headOnly });
  out.loss!.backward();
  const peak = gpu.pool.stats().peak - base;
  const result = {
    peak,
    hiddenRows: out.hidden.shape[1],
    logits: await out.logits.toArray(),
    loss: await out.loss!.item(),
    grads: await Promise.all(params.map((p) => p.grad!.toArray())),
  };
  for (const t of [out.logits, out.loss!, out.hidden]) t.dispose();
  detach();
  model.dispose();
  return result;
}

type Pass = Awaited<ReturnType<typeof trainPass>>;

/**
 * The pruned pass gave the whole pass's logits, loss and gradients; with `lessMemory` (both
 * passes alike but for `headOnly`), at a lower peak.
 */
function assertSame(head: Pass, whole: Pass, label: string, lessMemory: boolean): void {
  assert(
    whole.hiddenRows > 1 && head.hiddenRows === 1,
    `hidden rows ${whole.hiddenRows}, ${head.hiddenRows}`,
  );
  if (lessMemory) assert(head.peak < whole.peak, `${label}: peak ${head.peak} bytes, ${whole.peak} whole`);
  assertClose(head.logits, whole.logits, 1e-5, `${label}: logits`);
  assertClose([head.loss], [whole.loss], 1e-5, `${label}: loss`);
  assert(whole.grads.some((g) => g.some((v) => v !== 0)), "zero gradients");
  // relative to at least 1e-3 of the largest gradient: the key bias's is rounding noise
  const norm = (a: ArrayLike<number>) => Math.hypot(...Array.from(a));
  const floor = 1e-3 * Math.max(...whole.grads.map(norm));
  whole.grads.forEach((g, i) => {
    const err = norm(g.map((v, j) => v - head.grads[i][j])) / Math.max(norm(g), floor);
    assert(err <= 1e-5, `${label}: gradient ${i} differs by ${err.toExponential(3)}`);
  });
}

const CASES: [string, Method][] = [
  ["bert", "ssh"],
  ["roberta", "lora"],
  ["bert", "lora-all"],
  ["roberta", "full"],
  ["vit", "ssh"],
  ["vit", "full"],
];

for (const [family, method] of CASES) {
  const checkpointing = method === "lora";
  const also = checkpointing ? " (and gradient checkpointing)" : "";
  Deno.test(`${family}: headOnly${also} computes the last layer at [CLS] alone, with the same train-mode loss and ${method} gradients`, async () => {
    const dir = await fixtureDir(family);
    try {
      const paths = family === "bert" ? ["materialized", "fused"] as const : ["materialized"] as const;
      for (const path of paths) {
        await withAttentionPath(path, async () => {
          const whole = await trainPass(dir, family, method, false);
          assertSame(
            await trainPass(dir, family, method, true, { checkpointing }),
            whole,
            path,
            !checkpointing,
          );
        });
      }
      FUSIONS.head = false;
      try {
        assert((await trainPass(dir, family, method, true)).hiddenRows > 1, "FUSIONS.head off");
      } finally {
        FUSIONS.head = true;
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

const DECODER_CASES: [string, Method][] = [
  ["gpt2", "ssh"],
  ["gpt2", "lora-all"],
  ["gpt2", "full"],
  ["llama", "lora-all"],
  ["llama", "ssh"],
];

for (const [family, method] of DECODER_CASES) {
  Deno.test(`${family}: headOnly computes a classifier's last layer at each row's last token alone, with the same train-mode loss and ${method} gradients`, async () => {
    // dropout everywhere (LLaMA's fixture has none), a pad token, rows padded right and left
    const extra = family === "llama" ? { attention_dropout: 0.3 } : { resid_pdrop: 0.2, attn_pdrop: 0.3 };
    const dir = await tempModelDir(`${FIXTURES}models/${family}`, { pad_token_id: 0, ...extra });
    const [b, t] = [3, 10];
    const ids = Int32Array.from(randomIds(b * t, 50, 7), (v) => v + 1);
    ids.fill(0, 17, 20); // row 1: right padding
    ids.fill(0, 20, 22); // row 2: left padding
    const mask = Int32Array.from(ids, (v) => (v === 0 ? 0 : 1));
    const batch = (gpu: Gpu) => tokenBatch(gpu, ids, b, t, { mask, labels: Int32Array.of(1, 0, 2) });
    const opts = { batch, load: { task: "seq-cls" as const, numLabels: 3, seed: 4 } };
    try {
      // the fused path's pruned pass with gradient checkpointing too
      for (const path of ["materialized", "fused"] as const) {
        await withAttentionPath(path, async () => {
          const checkpointing = path === "fused";
          const whole = await trainPass(dir, family, method, false, opts);
          const head = await trainPass(dir, family, method, true, { ...opts, checkpointing });
          assertSame(head, whole, path, !checkpointing);
        });
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

for (const family of ["gpt2", "llama"]) {
  Deno.test(`${family}: headOnly takes a causal LM's head at the targets alone, with the same loss and LoRA gradients`, async () => {
    const gpu = await getGpu();
    const model = await loadModel(gpu, `${FIXTURES}models/${family}`);
    try {
      const peft = await attachAdapter(
        model,
        loraConfig({ r: 2, targetModules: "all-linear", initLoraWeights: false }),
        {
          seed: 4,
        },
      );
      const [b, t] = [2, 9];
      const ids = randomIds(b * t, 500, 12);
      // instruction-like: row 0 learns its last 3 tokens, row 1 its last 5 but one; HF's shifted labels too
      const next = Int32Array.from({ length: b * t }, (_, i) => {
        const [r, j] = [Math.floor(i / t), i % t];
        return (r === 0 && j >= 5 && j < 8) || (r === 1 && j >= 3 && j < 8 && j !== 6) ? ids[i + 1] : -100;
      });
      const hf = Int32Array.from({ length: b * t }, (_, i) => (i % t === 0 ? -100 : next[i - 1]));
      for (const [labels, nextTokenLabels] of [[next, true], [hf, false]] as const) {
        const run = async (headOnly: boolean) => {
          const params = peft.parameters();
          const loss = model.forward(tokenBatch(gpu, ids, b, t, { labels, nextTokenLabels }), { headOnly })
            .loss!;
          loss.backward();
          const out = {
            loss: await loss.item(),
            grads: await Promise.all(params.map((p) => p.grad!.toArray())),
          };
          for (const p of params) [p.grad?.dispose(), p.grad = null];
          return out;
        };
        const [whole, targets] = [await run(false), await run(true)];
        assertClose([targets.loss], [whole.loss], 1e-6, `${family} loss`);
        targets.grads.forEach((g, i) => assertClose(g, whole.grads[i], 1e-5, `${family} gradient ${i}`));
      }
      peft.detach();
    } finally {
      model.dispose();
    }
  });
}
