/**
 * Non-finite values in what a run starts from: SSH on a layer whose weight holds NaN or ±Inf,
 * a loss that is NaN from a fresh run's first step, a run that diverges later (with or without
 * a checkpoint to go back to), and a step with no counted target.
 * @module
 */
import { join } from "node:path";
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { FIXTURES } from "./peft_helpers.ts";
import { withTempDir } from "./temp_dir.ts";
import { getGpu, type Gpu } from "../lib/gpu/mod.ts";
import { loadModel } from "../lib/models/load.ts";
import type { Model } from "../lib/models/model.ts";
import { Linear } from "../lib/nn/linear.ts";
import { attachAdapter } from "../lib/peft/apply.ts";
import { sshConfig } from "../lib/peft/config.ts";
import { createSshLayers } from "../lib/peft/ssh.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { Tensor } from "../lib/tensor/mod.ts";
import { CHECKPOINT_DIR, loadCheckpoint } from "../lib/train/checkpoint.ts";
import { adapterGroups } from "../lib/train/groups.ts";
import type { BatchSource } from "../lib/train/tasks.ts";
import { train, TrainingDivergedError, type TrainOptions } from "../lib/train/trainer.ts";

const V_PROJ = "model.layers.1.self_attn.v_proj";

/** A 9×7 layer at {@link V_PROJ} with random weights, element `at` (storage order) set to `value`. */
function layerWith(gpu: Gpu, value: number, at: number, layout: "out_in" | "in_out", f16: boolean): Linear {
  const data = Float32Array.from(new Prng(3).normals(63));
  data[at] = value;
  const weight = Tensor.from(gpu, data, layout === "out_in" ? [9, 7] : [7, 9], {
    dtype: f16 ? "f16" : "f32",
  });
  return new Linear(V_PROJ, weight, null, layout);
}

Deno.test("SSH on a layer whose weight holds NaN or ±Inf names the layer and the element, both selections", async () => {
  const gpu = await getGpu();
  for (const value of [NaN, Infinity, -Infinity]) {
    for (const [layout, f16] of [["out_in", false], ["in_out", true]] as const) {
      for (const selection of ["layer", "global"] as const) {
        const lin = layerWith(gpu, value, 10, layout, f16);
        try {
          const cols = layout === "out_in" ? 7 : 9;
          await assertRejects(
            () => createSshLayers(gpu, [lin], sshConfig({ n: 6, selection })),
            RangeError,
            `${V_PROJ}: its weight holds non-finite values (NaN or ±Inf; ${value} at [1, ${10 - cols}]): ` +
              "SSH cannot rank its spectrum",
          );
        } finally {
          lin.weight.dispose();
        }
      }
    }
  }
});

Deno.test("SSH 'global' on a finite weight whose spectral energies overflow f32 says so, naming the layer", async () => {
  const gpu = await getGpu();
  const lin = new Linear(V_PROJ, Tensor.from(gpu, new Float32Array(63).fill(1e30), [9, 7]), null);
  try {
    await assertRejects(
      () => createSshLayers(gpu, [lin], sshConfig({ n: 6, selection: "global" })),
      RangeError,
      `${V_PROJ}: its weight is finite, but so large that its spectral energies overflow f32`,
    );
  } finally {
    lin.weight.dispose();
  }
});

/** Batches of 2 rows of 6 tokens of the LLaMA fixture; rows whose step is in `ignored` have every label −100. */
function batches(ignored: number[] = []): BatchSource {
  const b = 2, t = 6;
  return {
    size: 16,
    stepsPerEpoch: 8,
    positionAt: (g) => ({ epoch: Math.floor(g / 8), step: g % 8 }),
    batch: (p) => ({
      ids: Int32Array.from({ length: b * t }, (_, i) => 3 + ((i * 7 + p.step) % 50)),
      attentionMask: new Int32Array(b * t).fill(1),
      labels: Int32Array.from(
        { length: b * t },
        (_, i) => ignored.includes(p.step) ? -100 : 3 + ((i * 7 + p.step + 1) % 50),
      ),
      shape: [b, t],
      rows: Int32Array.of(2 * p.step, 2 * p.step + 1),
    }),
  };
}

/**
 * The LLaMA fixture with an SSH adapter on q_proj, the options of a short run on it, and a
 * `reset` that puts back the trained values and element 0 of a frozen weight (see {@link poison}).
 */
async function llamaRun(): Promise<{ model: Model; opts: TrainOptions; reset: () => void }> {
  const gpu = await getGpu();
  const model = await loadModel(gpu, join(FIXTURES, "models/llama"), { task: "causal-lm" });
  const peft = await attachAdapter(
    model,
    sshConfig({ n: 8, alpha: 20, targetModules: ["q_proj"], taskType: "CAUSAL_LM" }),
  );
  const opts: TrainOptions = {
    model,
    task: "causal-lm",
    data: batches(),
    groups: adapterGroups(peft, { lr: 0.1, headLr: 0 }),
    totalSteps: 4,
    warmupSteps: 0,
    seed: 0,
    logEvery: 1,
    setTraining: () => {},
  };
  const trained = opts.groups.flatMap((g) => g.params.map((p) => p.tensor));
  const initial = await Promise.all(trained.map((t) => t.toArray()));
  const frozen = (await frozenWeight(model).toArray())[0];
  const reset = () => {
    trained.forEach((t, i) => gpu.stream.write(t.buffer, initial[i]));
    poison(model, frozen);
  };
  return { model, opts, reset };
}

/** A frozen weight that the forward pass reads on every token. */
function frozenWeight(model: Model): Tensor {
  return model.linears.get("model.layers.1.mlp.down_proj")!.weight;
}

/** Set element 0 of {@link frozenWeight}. */
function poison(model: Model, value: number): void {
  model.gpu.stream.write(frozenWeight(model).buffer, Float32Array.of(value));
}

/** A checkpoint's weights: a marker file is all the trainer needs. */
async function writeWeights(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(join(dir, "weights"), "");
}

Deno.test("trainer: a NaN loss blames the frozen model when no update came before, and names only a checkpoint that exists", async () => {
  const { model, opts, reset } = await llamaRun();
  try {
    await withTempDir("hartley_nonfinite_", async (dir) => {
      const fail = (o: Partial<TrainOptions>) =>
        assertRejects(() => train({ ...opts, ...o }), TrainingDivergedError);
      const out = join(dir, "run");
      // a NaN in a frozen weight: the loss of step 1, before any update, is already NaN
      poison(model, NaN);
      let e = await fail({ outDir: out, writeWeights });
      assert(e.message.includes("the training loss became NaN in the steps up to 1"), e.message);
      assert(e.message.includes("It came before any update: check the frozen model or the data"), e.message);
      assert(e.message.includes("the learning rate is not the cause"), e.message);
      assert(!e.message.includes("last good checkpoint"), `no checkpoint was written: ${e.message}`);
      // the first logged interval of several steps: the model first, then the learning rate
      e = await fail({ outDir: out, writeWeights, logEvery: 4 });
      assert(e.message.includes("in the steps up to 4"), e.message);
      assert(e.message.includes("It came in the run's first steps: check the frozen model"), e.message);
      const clip = "a gradient norm limit (--max-grad-norm, or maxGradNorm)";
      assert(
        e.message.includes(`else lower the learning rate (--lr, or the groups' lr) or set ${clip}`),
        e.message,
      );
      reset();

      // diverging after an update with no checkpoint written: the learning rate, and no checkpoint named
      const after = (step: number) => (done: number) => {
        if (done === step) poison(model, NaN);
        return false;
      };
      e = await fail({ outDir: out, writeWeights, shouldStop: after(1) });
      assert(e.message.includes("up to 2; training stopped. Lower the learning rate"), e.message);
      assert(e.message.includes(`(--lr, or the groups' lr), set ${clip}, or check the data`), e.message);
      assert(!e.message.includes("last good checkpoint"), `no checkpoint was written: ${e.message}`);
      reset();

      // checkpoints at steps 1 and 2 (each checks the open interval's loss), then divergence in the
      // first interval: after updates, so the learning rate; the last checkpoint is named, with its folder
      e = await fail({ outDir: out, writeWeights, logEvery: 4, saveEvery: 1, shouldStop: after(2) });
      const kept = `the last good checkpoint (step 2) is kept in ${join(out, CHECKPOINT_DIR)}`;
      assert(e.message.includes("up to 3; training stopped. Lower the learning rate"), e.message);
      assert(e.message.includes(kept), e.message);
      // resumed from it (with its open interval of steps 1–2): the checkpoint resumed is named
      const resumed = join(dir, "resumed");
      e = await fail({ outDir: resumed, writeWeights, logEvery: 4, resumeFrom: await loadCheckpoint(out) });
      assert(e.message.includes("up to 4; training stopped. Lower the learning rate"), e.message);
      assert(e.message.includes(kept), e.message);
    });
  } finally {
    model.dispose();
  }
});

Deno.test("trainer: a step with no counted target logs loss 0 and AdamW still moves the parameters (documented)", async () => {
  const { model, opts } = await llamaRun();
  try {
    const trained = opts.groups[0].params[0].tensor;
    // step 1 on a real batch builds up momentum; step 2's batch has only −100 labels
    let before: Promise<Float32Array> | undefined;
    const shouldStop = (done: number) => {
      if (done === 1) before = trained.toArray();
      return false;
    };
    const r = await train({ ...opts, data: batches([1]), totalSteps: 2, maxGradNorm: 1, shouldStop });
    const after = await trained.toArray(), moved = await before!;
    assertEquals(r.losses[1], { step: 2, loss: 0 });
    assert(after.some((v, i) => v !== moved[i]), "the momentum of step 1 moved the coefficients at step 2");
  } finally {
    model.dispose();
  }
});
