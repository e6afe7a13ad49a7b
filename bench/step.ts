/**
 * A full training step (forward, backward, AdamW) at the shapes of PyTorch's anchors
 * (../shared/device/torch_anchor.py, anchor2.py): RoBERTa-base with batch 32 × 128 and adapters
 * on query/value, and one LLaMA-7B decoder layer with batch 4 × 512 and adapters on
 * q_proj/v_proj (and the demo's model); per method, through the library code `train` runs
 * (prepareMethod, batchLoss, AdamW).
 *
 * Reported per step: wall-clock milliseconds in steady state (steps submitted back to back, one
 * sync at the end: what a training run sees; the time of 2N steps less that of N), GPU milliseconds between timestamps with steps
 * back to back in one submit (the GPU's own time), the CPU time to record a step and to submit
 * it (wall ≈ GPU ms says the GPU is the bound; wall ≈ record + submit, the CPU), dispatches, buffer copies
 * and clears, compute passes (a copy or clear ends one), and the peak of pooled GPU memory. `--profile` adds each
 * kernel's share of one step's GPU time.
 *
 *     deno task bench-step                             # GPU: roberta-base, llama7b-layer
 *     deno task bench-step --models=demo --methods=ssh --profile
 *     deno task bench-step --methods=ssh --wide-tile=64x128x8_8x16_2   # try another `wide` tile
 *     deno task bench-step --methods=ssh --wide-tile=128x96x8_8x12_2 --fill=0.5   # split K less
 *     deno task bench-step --methods=ssh --presets=big,wide   # without the `tall` tile
 *     deno task bench-step --methods=ssh --no-fuse=qkv,ffn,head   # what fusions are worth (lib/nn/fusions.ts)
 *     deno task bench-step --methods=ssh --coef-grad=fused      # SSH's ∂c with its FHTs in one kernel
 *     deno task bench-step --methods=ssh --attention=fused   # attention never storing its probabilities
 *     deno task bench-step --methods=ssh --checkpointing   # recompute layers in backward: peak memory
 *     deno task bench-step --models=roberta-base --count   # one step's commands by kernel, recorded, not run
 * @module
 */
import { benchArgs } from "./args.ts";
import { getGpu, type Gpu, GpuTimer, type KernelTime } from "../lib/gpu/mod.ts";
import type { Model } from "../lib/models/model.ts";
import type { WeightDtype } from "../lib/nn/load.ts";
import { DEFAULT_LR, type Method, type PreparedMethod, prepareMethod } from "../lib/cli/method.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { add, ATTENTION_PATH, keep, noGrad, Tensor, tidy } from "../lib/tensor/mod.ts";
import type { TrainBatch } from "../lib/train/batches.ts";
import { AdamW } from "../lib/train/optim.ts";
import { batchLoss } from "../lib/train/tasks.ts";
import type { MatmulTile } from "../lib/linalg/matmul.ts";
import { MATMUL_HEURISTICS, MATMUL_TILES } from "../lib/linalg/matmul_plan.ts";
import { parseTileName } from "../kernels/matmul.ts";
import { FUSIONS } from "../lib/nn/fusions.ts";
import { COEF_GRAD_HEURISTICS } from "../lib/spectral/coef_grad.ts";
import { BENCH_MODELS, type BenchModel, loadBenchModel } from "./models.ts";
import { median, table, warmUp } from "./stats.ts";

/** The methods timed: the three adapters and full fine-tuning. */
export type StepMethod = Exclude<Method, "head">;

/**
 * Attach `method` to `model` exactly as `train` does (lib/cli/method.ts), with its default
 * learning rates. Only the timing matters here, so SSH starts from zero coefficients and LoRA
 * has no dropout; α is the anchors' (SSH 300, FourierFT scaling 150).
 */
function attach(model: Model, m: BenchModel, method: StepMethod): Promise<PreparedMethod> {
  return prepareMethod(model, {
    method,
    task: m.task,
    n: method === "fourierft" ? m.fourierftN : m.sshN,
    energyRatio: 0.7,
    alpha: method === "fourierft" ? 150 : 300,
    transform: "dht",
    selection: "layer",
    init: "zeros",
    r: 8,
    loraAlpha: 16,
    loraDropout: 0,
    targetModules: m.targets,
    seed: 0,
    lr: DEFAULT_LR[method],
    headLr: 1e-3,
    weightDecay: 0,
    modelDir: "",
  });
}

/** One method's step timing at one model. */
export interface StepTiming {
  model: string;
  method: StepMethod;
  trainable: number;
  /** Steady-state wall-clock ms per step. */
  wallMs: number;
  /** Median GPU ms per step (timestamps, steps back to back in one submit), or NaN without timestamp-query. */
  gpuMs: number;
  /** CPU ms to record one step's commands (ops, autograd, optimiser). */
  recordMs: number;
  /** CPU ms of the step's submit (finishing the command buffer; on a software adapter, running it). */
  submitMs: number;
  dispatches: number;
  /** Buffer copies, uploads and clears a step (each ends a compute pass). */
  transfers: number;
  /** Compute passes a step (dispatches between copies and clears share one). */
  passes: number;
  /** Peak pooled GPU memory while this method ran, bytes. */
  peak: number;
  /** Mean loss of the timed steps (a finite number says the step computed something sane). */
  loss: number;
  /** Seconds to load the model and attach the method, and to compile and warm up the step. */
  setupS: number;
  warmS: number;
  /** Per-kernel GPU time of one step (with `profile`). */
  kernels?: KernelTime[];
  /** One recorded step's dispatches by kernel, copies and clears (with `count`). */
  census?: [string, number][];
}

/** A random batch of `m`'s shape (every token real; labels of the task). */
function randomBatch(m: BenchModel, vocab: number): TrainBatch {
  const rng = new Prng(7);
  const n = m.batch * m.seq;
  const ids = Int32Array.from({ length: n }, () => 3 + rng.below(vocab - 3));
  const from = Math.round(m.seq * (1 - (m.learnt ?? 1))); // the first learnt position of a row
  const labels = m.task === "seq-cls"
    ? Int32Array.from({ length: m.batch }, () => rng.below(2))
    : Int32Array.from(ids, (id, i) => (i % m.seq >= from ? id : -100));
  return {
    ids,
    attentionMask: new Int32Array(n).fill(1),
    labels,
    shape: [m.batch, m.seq],
    rows: Int32Array.from({ length: m.batch }, (_, i) => i),
  };
}

/** Options of {@link benchStep}. */
export interface BenchStepOptions {
  /** Timed steps (default 10). */
  steps?: number;
  /** Storage of the frozen weights when the model is loaded here (full fine-tuning: always f32). */
  dtype?: WeightDtype;
  /** Add a per-kernel profile of one step. */
  profile?: boolean;
  /** A model of `m` loaded by the caller, left loaded (not for `full`, which trains every weight). */
  model?: Model;
  /** Recompute each layer in backward (`Model.gradientCheckpointing`). */
  checkpointing?: boolean;
  /**
   * Only record two steps and count the second's commands, without running them (`census`; the
   * times are NaN): a RoBERTa-base step takes minutes on a software adapter.
   */
  count?: boolean;
}

/** Time `method` on `m`: `steps` timed steps after a warm-up. */
export async function benchStep(
  gpu: Gpu,
  m: BenchModel,
  method: StepMethod,
  opts: BenchStepOptions = {},
): Promise<StepTiming> {
  if (opts.model && method === "full") {
    throw new Error("benchStep: full fine-tuning needs a model of its own");
  }
  gpu.pool.trim();
  gpu.pool.resetPeak();
  const loadStart = performance.now();
  const { model, prepared, opt } = await setUpTraining(gpu, m, method, opts);
  const runner = stepRunner(gpu, model, opt, randomBatch(m, m.config.vocab_size as number), m.task);
  try {
    await gpu.sync();
    const run = { model: m.name, method, trainable: prepared.trainable };
    return opts.count
      ? countStep(gpu, runner, run, loadStart)
      : await timeSteps(gpu, runner, run, loadStart, opts);
  } finally {
    runner.dispose();
    opt.dispose();
    prepared.peft?.detach();
    if (!opts.model) model.dispose();
    await gpu.sync();
  }
}

/** What a benchmarked step trains: the model, the method attached to it and its optimiser. */
interface Training {
  model: Model;
  prepared: PreparedMethod;
  opt: AdamW;
}

/** Load `m` (unless `opts.model` is given), attach `method` and make its optimiser. */
async function setUpTraining(
  gpu: Gpu,
  m: BenchModel,
  method: StepMethod,
  opts: BenchStepOptions,
): Promise<Training> {
  const model = opts.model ?? await loadBenchModel(gpu, m, method === "full" ? "f32" : opts.dtype ?? "f32");
  model.gradientCheckpointing = opts.checkpointing ?? false;
  const prepared = await attach(model, m, method);
  for (const g of prepared.groups) for (const p of g.params) p.tensor.requiresGrad = true;
  const opt = new AdamW(
    gpu,
    prepared.groups.map((g) => ({
      params: g.params.map((p) => p.tensor),
      lr: g.lr,
      weightDecay: g.weightDecay,
    })),
    { lr: DEFAULT_LR[method] },
  );
  return { model, prepared, opt };
}

/** Training steps on one batch, their losses summed on the GPU. */
interface StepRunner {
  /**
   * Record one step. `record` collects the CPU time to record its commands and `submit` that of
   * its submit (on a software adapter the submit runs the work); `submit: false` leaves it
   * unsubmitted.
   */
  step(record?: number[], submit?: number[] | false): void;
  /** The mean loss of the steps so far. */
  meanLoss(): Promise<number>;
  dispose(): void;
}

/** Steps of `model` with `opt` on `batch`. */
function stepRunner(
  gpu: Gpu,
  model: Model,
  opt: AdamW,
  batch: TrainBatch,
  task: BenchModel["task"],
): StepRunner {
  let lossSum = keep(Tensor.zeros(gpu, []));
  let stepsRun = 0;
  return {
    step(record, submit) {
      stepsRun++;
      const r0 = performance.now();
      tidy(() => {
        model.train(true);
        const loss = batchLoss(model, batch, task);
        loss.backward();
        opt.step(1);
        opt.zeroGrad();
        const next = keep(noGrad(() => add(lossSum, loss)));
        lossSum.dispose();
        lossSum = next;
      });
      const r1 = performance.now();
      record?.push(r1 - r0);
      if (submit === false) return;
      gpu.stream.flush();
      submit?.push(performance.now() - r1);
    },
    meanLoss: async () => (await lossSum.item()) / stepsRun,
    dispose: () => lossSum.dispose(),
  };
}

/** What a timing reports of the run it times. */
type RunInfo = Pick<StepTiming, "model" | "method" | "trainable">;

/** Dispatches, transfers and compute passes on the stream. */
interface Commands {
  dispatches: number;
  transfers: number;
  passes: number;
}

/** The stream's command counts so far. */
function commandsSoFar(gpu: Gpu): Commands {
  return { dispatches: gpu.stream.dispatches, transfers: gpu.stream.transfers, passes: gpu.stream.passes };
}

/** The commands since `from` per step, over `steps` steps. */
function commandsSince(gpu: Gpu, from: Commands, steps: number): Commands {
  const now = commandsSoFar(gpu);
  return {
    dispatches: (now.dispatches - from.dispatches) / steps,
    transfers: (now.transfers - from.transfers) / steps,
    passes: (now.passes - from.passes) / steps,
  };
}

/** `opts.count`: record two steps and count the second's commands, running neither. */
function countStep(gpu: Gpu, runner: StepRunner, run: RunInfo, loadStart: number): StepTiming {
  // a first step fills what later steps keep (the stacked q/k/v weights): the second is counted
  runner.step(undefined, false);
  gpu.stream.startCensus();
  const from = commandsSoFar(gpu);
  const record: number[] = [];
  runner.step(record, false);
  const census = gpu.stream.stopCensus();
  const counts = commandsSince(gpu, from, 1);
  gpu.stream.discard();
  return {
    ...run,
    wallMs: NaN,
    gpuMs: NaN,
    recordMs: record[0],
    submitMs: NaN,
    dispatches: counts.dispatches,
    transfers: counts.transfers,
    passes: counts.passes,
    peak: gpu.pool.stats().peak,
    loss: NaN,
    setupS: (performance.now() - loadStart) / 1000,
    warmS: 0,
    census,
  };
}

/** Warm up, then time steps: wall clock, GPU timestamps and (with `opts.profile`) kernels. */
async function timeSteps(
  gpu: Gpu,
  runner: StepRunner,
  run: RunInfo,
  loadStart: number,
  opts: BenchStepOptions,
): Promise<StepTiming> {
  const steps = opts.steps ?? 10;
  const warmStart = performance.now();
  await warmUp(gpu, () => runner.step());
  const warmEnd = performance.now();
  const steady = await steadyState(gpu, runner, steps);
  const gpuMs = gpu.timestamps ? await gpuStepMs(gpu, runner, steps) : NaN;
  const kernels = opts.profile && gpu.timestamps ? await profileStep(gpu, runner) : undefined;
  const loss = await runner.meanLoss();
  return {
    ...run,
    wallMs: steady.wallMs,
    setupS: (warmStart - loadStart) / 1000,
    warmS: (warmEnd - warmStart) / 1000,
    gpuMs,
    recordMs: steady.recordMs,
    submitMs: steady.submitMs,
    dispatches: steady.commands.dispatches,
    transfers: steady.commands.transfers,
    passes: steady.commands.passes,
    peak: gpu.pool.stats().peak,
    loss,
    kernels,
  };
}

/** Steady-state times of a step, and its commands. */
interface SteadyState {
  /** Wall-clock ms per step. */
  wallMs: number;
  /** Median CPU ms to record a step, and to submit it. */
  recordMs: number;
  submitMs: number;
  commands: Commands;
}

/** `steps` steps and then `2 × steps` more, each run submitted back to back and synced at its end. */
async function steadyState(gpu: Gpu, runner: StepRunner, steps: number): Promise<SteadyState> {
  const from = commandsSoFar(gpu);
  const record: number[] = [];
  const submit: number[] = [];
  const timed = async (count: number) => {
    const t0 = performance.now();
    for (let i = 0; i < count; i++) runner.step(record, submit);
    await gpu.sync();
    return performance.now() - t0;
  };
  // steady state: 2N steps less N, so that the first step's recording (before the GPU has
  // work) and the closing sync's readback (≈ 11 ms in Deno) cancel; over 10 steps they had
  // added 1–3 ms to each (bench/RESULTS.md, session 11)
  const once = await timed(steps);
  const wallMs = (await timed(2 * steps) - once) / steps;
  return {
    wallMs,
    recordMs: median(record),
    submitMs: median(submit),
    commands: commandsSince(gpu, from, 3 * steps),
  };
}

/** The median GPU ms of `steps` steps between timestamps (needs timestamp-query). */
async function gpuStepMs(gpu: Gpu, runner: StepRunner, steps: number): Promise<number> {
  // all steps in one submit, so that the GPU never waits for the CPU between them
  const timer = new GpuTimer(gpu, steps + 1);
  await timer.mark();
  for (let i = 0; i < steps; i++) {
    runner.step(undefined, false);
    await timer.mark();
  }
  return median(await timer.read());
}

/** Each kernel's GPU time in one step (needs timestamp-query). */
async function profileStep(gpu: Gpu, runner: StepRunner): Promise<KernelTime[]> {
  gpu.stream.startProfile();
  runner.step();
  return await gpu.stream.stopProfile();
}

/** The step table, one row per (model, method). */
export function formatSteps(rows: StepTiming[]): string {
  return table(
    [
      "model",
      "method",
      "trainable",
      "wall ms",
      "GPU ms",
      "record ms",
      "submit ms",
      "dispatches",
      "copies",
      "passes",
      "peak MiB",
      "loss",
    ],
    rows.map((r) => [
      r.model,
      r.method,
      `${r.trainable}`,
      ms(r.wallMs),
      ms(r.gpuMs),
      ms(r.recordMs),
      ms(r.submitMs),
      `${Math.round(r.dispatches)}`,
      `${Math.round(r.transfers)}`,
      `${Math.round(r.passes)}`,
      (r.peak / 2 ** 20).toFixed(1),
      Number.isNaN(r.loss) ? "—" : r.loss.toFixed(4),
    ]),
  );
}

/** Milliseconds for a table, "—" for none. */
function ms(x: number): string {
  return Number.isNaN(x) ? "—" : x.toFixed(2);
}

/** A profile as a table: the `top` slowest kernels and their share. */
export function formatProfile(kernels: KernelTime[], top = 30): string {
  const total = kernels.reduce((s, k) => s + k.ms, 0);
  const rows = kernels.slice(0, top).map((k) => [
    k.name,
    `${k.count}`,
    k.ms.toFixed(3),
    `${(100 * k.ms / total).toFixed(1)}%`,
  ]);
  rows.push(["(all kernels)", `${kernels.reduce((s, k) => s + k.count, 0)}`, total.toFixed(3), "100%"]);
  return table(["kernel", "dispatches", "GPU ms", "share"], rows);
}

if (import.meta.main) {
  const { values } = benchArgs(import.meta.url, {
    models: { type: "string" },
    methods: { type: "string" },
    steps: { type: "string" },
    dtype: { type: "string" },
    profile: { type: "boolean" },
    count: { type: "boolean" },
    "wide-tile": { type: "string" },
    fill: { type: "string" },
    presets: { type: "string" },
    "no-fuse": { type: "string" },
    "coef-grad": { type: "string" },
    attention: { type: "string" },
    checkpointing: { type: "boolean" },
  });
  const attention = values.attention;
  if (attention) {
    // the attention path for every call (see ATTENTION_PATH)
    if (attention !== "auto" && attention !== "fused" && attention !== "materialized") {
      throw new Error(`--attention: expected auto, fused or materialized, got "${attention}"`);
    }
    ATTENTION_PATH.path = attention;
  }
  for (const name of values["no-fuse"]?.split(",") ?? []) {
    // ablation: one fused path off (see lib/nn/fusions.ts)
    if (!Object.hasOwn(FUSIONS, name)) {
      throw new Error(`--no-fuse: unknown fusion "${name}" (known: ${Object.keys(FUSIONS).join(", ")})`);
    }
    FUSIONS[name as keyof typeof FUSIONS] = false;
  }
  const coefGrad = values["coef-grad"];
  if (coefGrad) {
    // the square spectral layers' coefficient gradient: fused with its FHTs or not (see
    // COEF_GRAD_HEURISTICS; separate by default)
    const choice = ({ fused: true, separate: false } as const)[coefGrad];
    if (choice === undefined) {
      throw new Error(`--coef-grad: expected fused or separate, got "${coefGrad}"`);
    }
    COEF_GRAD_HEURISTICS.fused = choice;
  }
  if (values.fill) {
    // tuning: how full a GPU counts as filled before a product gets a smaller tile or a K split
    const fill = Number(values.fill);
    if (!(fill > 0 && fill <= 1)) {
      throw new Error(`--fill: expected a fraction in (0, 1], got "${values.fill}"`);
    }
    MATMUL_HEURISTICS.fill = fill;
  }
  if (values.presets) {
    // tuning: the GPU presets that compete for each product (see chooseTile)
    const known = ["big", "tall", "wide"];
    const presets = values.presets.split(",");
    const bad = presets.find((p) => !known.includes(p));
    if (bad !== undefined) throw new Error(`--presets: unknown preset "${bad}" (known: ${known.join(", ")})`);
    MATMUL_HEURISTICS.gpuPresets = presets as typeof MATMUL_HEURISTICS.gpuPresets;
  }
  if (values["wide-tile"]) {
    // tuning: the `wide` preset (the 768-wide products of RoBERTa-base) replaced for this run
    const tile = parseTileName(values["wide-tile"]);
    if (!tile) {
      throw new Error(`--wide-tile: "${values["wide-tile"]}" is not a tile name like 64x128x8_8x8_2`);
    }
    (MATMUL_TILES as Record<string, MatmulTile>).wide = tile;
  }
  const gpu = await getGpu();
  const software = gpu.software;
  const names = (values.models ?? (software ? "roberta-small,llama-small" : "roberta-base,llama7b-layer"))
    .split(",");
  // full fine-tuning last: it changes the weights that the others share
  const methods = (values.methods ?? "ssh,lora,fourierft,full").split(",")
    .sort((a, b) => Number(a === "full") - Number(b === "full")) as StepMethod[];
  const dtype = (values.dtype ?? "f32") as WeightDtype;
  console.log(`hartley training steps on ${gpu.description}; weights ${dtype}; ${new Date().toISOString()}`);
  const rows: StepTiming[] = [];
  for (const name of names) {
    if (!BENCH_MODELS[name]) {
      throw new Error(`--models: unknown model "${name}" (known: ${Object.keys(BENCH_MODELS).join(", ")})`);
    }
  }
  // model by model, loaded once for the methods that keep its weights frozen
  for (const m of names.map((n) => BENCH_MODELS[n])) {
    let shared: Model | undefined;
    try {
      for (const method of methods) {
        // full fine-tuning of a 7B layer's 32000-word embedding is not what the anchor measures
        if (method === "full" && m.task === "causal-lm") continue;
        let r: StepTiming;
        try {
          if (!shared && method !== "full") {
            const t0 = performance.now();
            shared = await loadBenchModel(gpu, m, dtype);
            console.log(`${m.name}: loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
          }
          r = await benchStep(gpu, m, method, {
            steps: Number(values.steps ?? (software ? 2 : 10)),
            dtype,
            profile: values.profile,
            model: method === "full" ? undefined : shared,
            checkpointing: values.checkpointing,
            count: values.count,
          });
        } catch (e) {
          // one failing method must not hide the others' numbers
          console.error(`${m.name} ${method}: FAILED: ${e instanceof Error ? e.stack : e}`);
          continue;
        }
        rows.push(r);
        if (r.census) {
          console.log(`${m.name} ${method}: one step recorded in ${ms(r.recordMs)} ms, not run`);
          console.log(table(["command", "per step"], r.census.map(([k, n]) => [k, `${n}`])));
          continue;
        }
        console.log(
          `${m.name} ${method}: ${r.wallMs.toFixed(2)} ms/step (GPU ${r.gpuMs.toFixed(2)} ms); ` +
            `${method === "full" ? "load and attach" : "attach"} ${r.setupS.toFixed(1)} s, ` +
            `compile and warm-up ${r.warmS.toFixed(1)} s`,
        );
        if (r.kernels) console.log(formatProfile(r.kernels));
      }
    } finally {
      shared?.dispose();
    }
  }
  console.log("\ntraining step\n" + formatSteps(rows));
}
