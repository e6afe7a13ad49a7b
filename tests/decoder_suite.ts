/**
 * The tests every decoder family (GPT-2, LLaMA) passes, registered per family by its test
 * file: PyTorch parity, the parity tool, f16 storage, padding against the float64 reference,
 * both label conventions of the LM loss, the sequence classifier (pooling, loss, head
 * gradient), a gradient through the backbone, and dropout in train mode only.
 * @module
 */
import { getGpu } from "../lib/gpu/mod.ts";
import { loadModel } from "../lib/models/load.ts";
import { modelParity } from "../lib/models/parity.ts";
import { crossEntropyForward } from "../lib/tensor/reference/loss.ts";
import { type AttentionPath, Tensor, tidy, withAttentionPath } from "../lib/tensor/mod.ts";
import { main as parityMain } from "../tools/parity.ts";
import { assert, assertClose, assertEquals } from "./assert.ts";
import {
  evalForward,
  fixtureModel,
  keptRows,
  randomIds,
  referenceForward,
  tempModelDir,
  tokenBatch,
} from "./model_helpers.ts";

/** What a family's suite needs to know. */
export interface DecoderSuite {
  /** Fixture name under tests/fixtures/models. */
  name: string;
  /** An f32 parameter of the backbone to differentiate (a bias or small weight). */
  gradParam: string;
  /** The linear layer `gradParam` belongs to, and which of its tensors it is. */
  gradLinear: { path: string; part: "weight" | "bias" };
  /** config.json fields that set attention-probability dropout to `p` and every other dropout to 0. */
  attentionDropout: (p: number) => Record<string, number>;
}

/** Register the shared decoder tests for `s`. */
export function decoderSuite(s: DecoderSuite): void {
  const dir = fixtureModel(s.name);
  const vocab = 512, hiddenSize = 64;

  Deno.test(`${s.name}: logits, loss and last hidden state match PyTorch (rel-L2 ≤ 1e-4)`, async () => {
    const r = await modelParity(await getGpu(), dir);
    assertEquals(r.rows.map((x) => x.output), ["logits", "loss", "hidden_last"]);
    for (const row of r.rows) assert(row.relL2 <= 1e-4, `${row.output}: rel-L2 ${row.relL2}`);
  });

  Deno.test(`${s.name}: tools/parity.ts passes at 1e-4 and exits 1 above a tolerance it misses`, async () => {
    const log = console.log;
    console.log = () => {};
    try {
      assertEquals(await parityMain([dir]), 0);
      assertEquals(await parityMain([dir, "--tol", "1e-12"]), 1);
    } finally {
      console.log = log;
    }
  });

  Deno.test(`${s.name}: f16 weight storage stays within 2e-3 of PyTorch`, async () => {
    const gpu = await getGpu();
    if (!gpu.f16) return;
    const model = await loadModel(gpu, dir, { dtype: "f16" });
    const linear = [...model.linears.values()][0];
    assertEquals(linear.weight.dtype, "f16");
    model.dispose();
    const r = await modelParity(gpu, dir, { dtype: "f16" });
    for (const row of r.rows) assert(row.relL2 <= 2e-3, `${row.output}: rel-L2 ${row.relL2}`);
  });

  Deno.test(`${s.name}: left- and right-padded rows match the float64 reference at real tokens`, async () => {
    const gpu = await getGpu();
    const [b, t] = [3, 11];
    const ids = randomIds(b * t, vocab, 5);
    const mask = new Int32Array(b * t).fill(1);
    mask.fill(0, 7, 11); // row 0: right padding
    mask.fill(0, 11, 14); // row 1: left padding
    const model = await loadModel(gpu, dir);
    const ours = await evalForward(model, tokenBatch(gpu, ids, b, t, { mask }));
    model.dispose();
    const ref = await referenceForward(dir, ids, b, t, mask);
    assertClose(keptRows(ours.logits, mask, vocab), keptRows(ref.logits, mask, vocab), 1e-5, "logits");
    assertClose(
      keptRows(ours.hidden, mask, hiddenSize),
      keptRows(ref.hidden, mask, hiddenSize),
      1e-5,
      "hidden",
    );
  });

  Deno.test(`${s.name}: fused attention gives the materialised path's logits and backbone gradient, padded rows too`, async () => {
    const gpu = await getGpu();
    const [b, t] = [3, 11];
    const ids = randomIds(b * t, vocab, 6);
    const mask = new Int32Array(b * t).fill(1);
    mask.fill(0, 8, 11).fill(0, 11, 15);
    const model = await loadModel(gpu, dir);
    const p = model.parameters.get(s.gradParam)!;
    p.requiresGrad = true;
    const run = (path: AttentionPath) =>
      withAttentionPath(path, async () => {
        const out = tidy(() => model.forward(tokenBatch(gpu, ids, b, t, { mask, labels: ids })));
        out.loss!.backward();
        const result = {
          logits: keptRows(await out.logits.toArray(), mask, vocab),
          grad: await p.grad!.toArray(),
        };
        for (const x of [out.logits, out.loss!, out.hidden]) x.dispose();
        p.grad!.dispose();
        p.grad = null;
        return result;
      });
    const fused = await run("fused"), materialized = await run("materialized");
    model.dispose();
    assertClose(fused.logits, materialized.logits, 1e-5, "logits");
    assertClose(fused.grad, materialized.grad, 1e-4, `∂loss/∂${s.gradParam}`);
    assert(fused.grad.some((v) => v !== 0), "zero gradient");
  });

  Deno.test(`${s.name}: HF's shifted LM loss equals the loss on next-token labels`, async () => {
    const gpu = await getGpu();
    const [b, t] = [2, 9];
    const ids = randomIds(b * t, vocab, 9);
    const next = new Int32Array(b * t).fill(-100);
    for (let r = 0; r < b; r++) next.set(ids.subarray(r * t + 1, (r + 1) * t), r * t);
    const model = await loadModel(gpu, dir);
    const hf = await evalForward(model, tokenBatch(gpu, ids, b, t, { labels: ids }));
    const ours = await evalForward(
      model,
      tokenBatch(gpu, ids, b, t, { labels: next, nextTokenLabels: true }),
    );
    model.dispose();
    const expected = crossEntropyForward(Float64Array.from(hf.logits), vocab, next);
    assert(Math.abs(hf.loss! - expected) <= 1e-5 * expected, `shifted loss ${hf.loss} vs ${expected}`);
    assert(Math.abs(ours.loss! - expected) <= 1e-5 * expected, `next-token loss ${ours.loss} vs ${expected}`);
  });

  Deno.test(`${s.name}: sequence classifier pools the last non-pad token; loss and score gradient`, async () => {
    const gpu = await getGpu();
    const tmp = await tempModelDir(dir, { pad_token_id: 0 });
    const [b, t, labelsN] = [3, 10, 3];
    const ids = Int32Array.from(randomIds(b * t, vocab - 1, 3), (v) => v + 1); // no pad id inside
    ids.fill(0, 17, 20); // row 1: right padding
    ids.fill(0, 20, 22); // row 2: left padding
    const mask = Int32Array.from(ids, (v) => (v === 0 ? 0 : 1));
    const labels = Int32Array.of(1, 0, 2);
    try {
      const model = await loadModel(gpu, tmp, { task: "seq-cls", numLabels: labelsN, seed: 4 });
      assertEquals(model.task, "seq-cls");
      const score = model.parameters.get("score.weight")!;
      assertEquals(score.shape, [labelsN, hiddenSize]);
      score.requiresGrad = true;
      const out = tidy(() => model.forward(tokenBatch(gpu, ids, b, t, { mask, labels })));
      out.loss!.backward();
      const [logits, hidden, loss, w, grad] = await Promise.all([
        out.logits.toArray(),
        out.hidden.toArray(),
        out.loss!.item(),
        score.toArray(),
        score.grad!.toArray(),
      ]);
      model.dispose();
      assertEquals(out.logits.shape, [b, labelsN]);
      const positions = [9, 6, 9];
      const pooled = positions.map((p, r) =>
        hidden.subarray((r * t + p) * hiddenSize, (r * t + p + 1) * hiddenSize)
      );
      const expected = new Float64Array(b * labelsN), expGrad = new Float64Array(labelsN * hiddenSize);
      pooled.forEach((x, r) => {
        for (let l = 0; l < labelsN; l++) {
          expected[r * labelsN + l] = x.reduce((a, v, j) => a + v * w[l * hiddenSize + j], 0);
        }
      });
      assertClose(logits, expected, 1e-5, "pooled logits");
      assertClose([loss], [crossEntropyForward(expected, labelsN, labels)], 1e-5, "loss");
      pooled.forEach((x, r) => {
        const row = expected.subarray(r * labelsN, (r + 1) * labelsN);
        const mx = Math.max(...row), z = row.reduce((a, v) => a + Math.exp(v - mx), 0);
        for (let l = 0; l < labelsN; l++) {
          const d = (Math.exp(row[l] - mx) / z - (l === labels[r] ? 1 : 0)) / b;
          for (let j = 0; j < hiddenSize; j++) expGrad[l * hiddenSize + j] += d * x[j];
        }
      });
      assertClose(grad, expGrad, 1e-4, "score gradient");
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  });

  Deno.test(`${s.name}: the gradient through the backbone matches a central difference`, async () => {
    const gpu = await getGpu();
    const [b, t] = [2, 8];
    const ids = randomIds(b * t, vocab, 21);
    const model = await loadModel(gpu, dir);
    const linear = model.linears.get(s.gradLinear.path)!;
    const p = model.parameters.get(s.gradParam)!;
    p.requiresGrad = true;
    const loss = () => tidy(() => model.forward(tokenBatch(gpu, ids, b, t, { labels: ids })).loss!);
    const l0 = loss();
    l0.backward();
    const [g, values] = [await p.grad!.toArray(), await p.toArray()];
    l0.dispose();
    const norm = Math.sqrt(g.reduce((a, v) => a + v * v, 0));
    assert(norm > 0, "zero gradient");
    const eps = 1e-2;
    const at = async (sign: number) => {
      const moved = Tensor.from(gpu, values.map((v, i) => v + (sign * eps * g[i]) / norm), p.shape);
      linear[s.gradLinear.part] = moved;
      const l = loss();
      const v = await l.item();
      l.dispose();
      moved.dispose();
      return v;
    };
    const slope = ((await at(1)) - (await at(-1))) / (2 * eps);
    linear[s.gradLinear.part] = p;
    model.dispose();
    assert(Math.abs(slope - norm) <= 2e-2 * norm, `directional derivative ${slope} vs gradient norm ${norm}`);
  });

  Deno.test(`${s.name}: eval mode is deterministic; train mode applies seeded dropout`, async () => {
    const gpu = await getGpu();
    const [b, t] = [1, 6];
    const ids = randomIds(b * t, vocab, 2);
    const model = await loadModel(gpu, dir);
    const a = await evalForward(model, tokenBatch(gpu, ids, b, t));
    const a2 = await evalForward(model, tokenBatch(gpu, ids, b, t));
    assertEquals(Array.from(a.logits), Array.from(a2.logits));
    model.train(true);
    const dropped = await evalForward(model, tokenBatch(gpu, ids, b, t));
    model.train(false);
    model.dispose();
    const config = model.config.raw;
    const drops = ["embd_pdrop", "resid_pdrop", "attention_dropout"].some((k) => (config[k] as number) > 0);
    assertEquals(Array.from(dropped.logits).some((v, i) => v !== a.logits[i]), drops);
  });

  Deno.test(`${s.name}: attention-probability dropout (train mode) runs unfused; p → 0 gives eval's output`, async () => {
    const gpu = await getGpu();
    const [b, t] = [2, 7];
    const ids = randomIds(b * t, vocab, 12);
    const mask = new Int32Array(b * t).fill(1).fill(0, 11, 14);
    const run = async (p: number, train: boolean) => {
      const tmp = await tempModelDir(dir, s.attentionDropout(p));
      try {
        const model = await loadModel(gpu, tmp);
        model.train(train);
        const out = await evalForward(model, tokenBatch(gpu, ids, b, t, { mask }));
        model.dispose();
        return keptRows(out.logits, mask, vocab);
      } finally {
        await Deno.remove(tmp, { recursive: true });
      }
    };
    const fused = await run(0, false);
    assertClose(await run(1e-9, true), fused, 1e-6, "unfused attention");
    const dropped = await run(0.5, true);
    assert(dropped.some((v, i) => Math.abs(v - fused[i]) > 1e-3), "dropout p = 0.5 changed nothing");
  });
}
