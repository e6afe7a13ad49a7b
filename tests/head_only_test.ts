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

/** Train-mode logits, loss and trained gradients of one forward and backward pass. */
async function trainPass(dir: string, method: Method, headOnly: boolean, checkpointing = false) {
  const gpu = await getGpu();
  const model = await loadModel(gpu, dir);
  model.gradientCheckpointing = checkpointing;
  let params: T.Tensor[], detach = () => {};
  if (method === "full") {
    model.train(true);
    params = [...model.parameters.values()];
    for (const p of params) p.requiresGrad = true;
  } else {
    // LoRA with dropout on every layer of the pruned one too: its masks follow the rows
    const everywhere = method === "lora-all" ? { targetModules: ["query", "key", "value", "dense"] } : {};
    const config = method.startsWith("lora")
      ? loraConfig({ r: 2, loraAlpha: 4, loraDropout: 0.2, initLoraWeights: false, ...everywhere })
      : sshConfig({ n: 40, init: "normal" });
    const peft = await attachAdapter(model, config, { seed: 3 });
    peft.train(true);
    params = peft.parameters();
    detach = () => peft.detach();
  }
  const batch = await referenceBatch(gpu, await openSafetensors(`${dir}/reference.safetensors`));
  const out = model.forward(batch, { headOnly });
  out.loss!.backward();
  const result = {
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

const CASES: [string, Method][] = [
  ["bert", "ssh"],
  ["roberta", "lora"],
  ["bert", "lora-all"],
  ["roberta", "full"],
  ["vit", "ssh"],
  ["vit", "full"],
];

for (const [family, method] of CASES) {
  const checkpointing = method === "lora" ? " (and gradient checkpointing)" : "";
  Deno.test(`${family}: headOnly${checkpointing} computes the last layer at [CLS] alone, with the same train-mode loss and ${method} gradients`, async () => {
    const dir = await fixtureDir(family);
    try {
      const paths = family === "bert" ? ["materialized", "fused"] as const : ["materialized"] as const;
      for (const path of paths) {
        await withAttentionPath(path, async () => {
          const whole = await trainPass(dir, method, false);
          const head = await trainPass(dir, method, true, method === "lora");
          assert(
            whole.hiddenRows > 1 && head.hiddenRows === 1,
            `hidden rows ${whole.hiddenRows}, ${head.hiddenRows}`,
          );
          assertClose(head.logits, whole.logits, 1e-5, `${path}: logits`);
          assertClose([head.loss], [whole.loss], 1e-5, `${path}: loss`);
          assert(whole.grads.some((g) => g.some((v) => v !== 0)), "zero gradients");
          // relative to at least 1e-3 of the largest gradient: the key bias's is rounding noise
          const norm = (a: ArrayLike<number>) => Math.hypot(...Array.from(a));
          const floor = 1e-3 * Math.max(...whole.grads.map(norm));
          whole.grads.forEach((g, i) => {
            const err = norm(g.map((v, j) => v - head.grads[i][j])) / Math.max(norm(g), floor);
            assert(err <= 1e-5, `${path}: gradient ${i} differs by ${err.toExponential(3)}`);
          });
        });
      }
      FUSIONS.head = false;
      try {
        assertEquals((await trainPass(dir, method, true)).hiddenRows > 1, true, "FUSIONS.head off");
      } finally {
        FUSIONS.head = true;
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
