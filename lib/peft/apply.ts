/**
 * Adapters on a loaded model: attach a new adapter from a config (SSH, LoRA or FourierFT), or
 * a saved one (an adapter directory in PEFT's layout, or an {@link Adapter} in memory), then
 * train, save, merge and unmerge it through the {@link PeftModel} handle.
 *
 * ```ts
 * import { getGpu } from "../gpu/mod.ts";
 * import { loadModel } from "../models/load.ts";
 * import { sshConfig } from "./config.ts";
 * import { tidy } from "../tensor/mod.ts";
 * import type { BatchIterator } from "../train/batches.ts";
 * import { AdamW } from "../train/optim.ts";
 * import { toModelBatch } from "../train/tasks.ts";
 * declare const batches: BatchIterator; // over a ClassificationDataset, say
 * const gpu = await getGpu();
 * const model = await loadModel(gpu, "models/roberta-base", { task: "seq-cls", numLabels: 2 });
 * const peft = await attachAdapter(model, sshConfig({ n: 750, alpha: 150, taskType: "SEQ_CLS" }));
 * const opt = new AdamW(gpu, [
 *   { params: peft.adapterParameters(), lr: 0.05 },
 *   { params: peft.savedParameters(), lr: 1e-3 },
 * ], { lr: 0.05 });
 * peft.train(true);
 * for (let step = 0; step < batches.stepsPerEpoch; step++) {
 *   const rows = batches.batch({ epoch: 0, step });
 *   tidy(() => model.forward(toModelBatch(model, rows, "seq-cls")).loss!.backward());
 *   opt.step();
 *   opt.zeroGrad();
 * }
 * peft.train(false);
 * await peft.save("out/adapter");              // adapter_config.json + adapter_model.safetensors
 * await peft.saveMerged("out/merged");         // a Hugging Face model directory
 * peft.dispose();                              // the model, and the adapter with it
 * ```
 *
 * Attaching freezes every parameter of the model (requiresGrad false) except those of the
 * modules_to_save, which become trainable in place (they must be f32: heads always are). A
 * saved adapter's modules_to_save values are written into the model's parameters.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import type { Model } from "../models/model.ts";
import type { LinearShape } from "../models/shapes.ts";
import type { Linear } from "../nn/linear.ts";
import type { Tensor } from "../tensor/mod.ts";
import { type AdapterConfig, AdapterConfigError, peftTaskType } from "./config.ts";
import { checkAdapter } from "./check_adapter.ts";
import {
  type Adapter,
  type FourierFTModule,
  loadAdapter,
  type LoraModule,
  saveAdapter,
  type SavedTensor,
  type SSHModule,
} from "./files.ts";
import { fourierftLayer, initFourierftModule } from "./fourierft.ts";
import type { PeftLayer } from "./layer.ts";
import { type DropoutState, initLoraModule, loraLayer } from "./lora.ts";
import {
  checkMergeable,
  checkUntied,
  encodeMerge,
  writeMergedModel,
  type WriteMergedOptions,
} from "./merge.ts";
import { shapesOfModel } from "./model_shapes.ts";
import { createSshLayers, sshLayer } from "./ssh.ts";
import { resolveModulesToSave, type ResolveOptions, resolveTargets, savedDefaultTargets } from "./targets.ts";

/** Options of {@link attachAdapter}, {@link applyAdapter} and {@link loadAdapterInto}. */
export interface AttachOptions {
  /** Seed of a new LoRA adapter's initialisation (default 0); SSH and FourierFT use their config's. */
  seed?: number;
  /** Seed of LoRA's dropout masks (default 0). */
  dropoutSeed?: number;
}

/** Options of {@link loadAdapterInto}. */
export interface LoadIntoOptions extends AttachOptions {
  /**
   * A safetensors file with FourierFT positions (default: the adapter's side file, else the
   * positions PEFT redraws from random_loc_seed).
   */
  fourierftIndices?: string;
}

/**
 * LoRA's dropout state, keyed by the model's step (BaseModel.dropoutStep) where it has one. Its
 * mode is the model's: `model.train(false)` stops LoRA's dropout too, as PyTorch's `model.eval()`
 * stops PEFT's (evaluate, classify and generate switch the model alone).
 */
function modelDropoutState(model: Model, opts: AttachOptions): DropoutState {
  const stepped = model as Partial<{ dropoutStep: number }>;
  return {
    get training() {
      return model.training;
    },
    set training(on: boolean) {
      model.train(on);
    },
    seed: opts.dropoutSeed ?? 0,
    step: () => stepped.dropoutStep ?? 0,
  };
}

/** A model with an adapter attached to its target layers. */
export class PeftModel {
  #merged = false;
  #detached = false;
  /**
   * Names of the classification head's ids, when known: saved with the adapter, read back from
   * a saved one, and written into a merged model's config.json.
   */
  labelNames: string[] | undefined;

  /**
   * The handle over `model` and its adapter layers. It attaches nothing: use {@link attachAdapter},
   * {@link applyAdapter} or {@link loadAdapterInto}, which attach the layers and build it.
   */
  constructor(
    readonly model: Model,
    readonly config: AdapterConfig,
    /** The adapter of each adapted layer, by linear path. */
    readonly layers: Map<string, PeftLayer>,
    /**
     * Target layers without an adapter: SSH selection "global" gave them no position. They are
     * saved as modules with zero coefficients. Path → [out, in].
     */
    readonly emptyLayers: Map<string, [number, number]>,
    /** The modules_to_save parameters (trainable), by model key. */
    readonly saved: Map<string, Tensor>,
    readonly dropoutState: DropoutState,
  ) {}

  /** The model's device. */
  get gpu(): Gpu {
    return this.model.gpu;
  }

  /** True while ΔW is merged into the weights (the layers then run without their adapters). */
  get merged(): boolean {
    return this.#merged;
  }

  /** Train mode (dropout on, in the model and in LoRA) or eval mode. */
  train(on: boolean): void {
    this.model.train(on);
  }

  /** The adapters' trainable tensors (coefficients, or LoRA's A and B). */
  adapterParameters(): Tensor[] {
    return [...this.layers.values()].flatMap((l) => l.parameters());
  }

  /** The trainable parameters of the modules_to_save (e.g. a classifier head). */
  savedParameters(): Tensor[] {
    return [...this.saved.values()];
  }

  /** Every trainable tensor: the adapters' and the modules_to_save's. */
  parameters(): Tensor[] {
    return [...this.adapterParameters(), ...this.savedParameters()];
  }

  /** Number of trainable values. */
  trainableCount(): number {
    return this.parameters().reduce((s, t) => s + t.size, 0);
  }

  /** The adapter's current weights in memory (reads back; not inside a training step). */
  async toAdapter(): Promise<Adapter> {
    this.#live();
    const modules = new Map<string, SSHModule | FourierFTModule | LoraModule>();
    for (const path of this.#targetOrder()) {
      const layer = this.layers.get(path);
      if (layer) {
        modules.set(path, await layer.toModule());
      } else {
        const [outFeatures, inFeatures] = this.emptyLayers.get(path)!;
        modules.set(path, {
          outFeatures,
          inFeatures,
          spectrum: new Float32Array(0),
          indices: new Int32Array(0),
        });
      }
    }
    const saved = new Map<string, SavedTensor>();
    for (const [key, t] of this.saved) {
      saved.set(key, { shape: [...t.shape], data: Float32Array.from(await t.toArray()) });
    }
    const adapter = { config: this.config, modules, saved } as Adapter;
    if (this.labelNames) adapter.labels = [...this.labelNames];
    // any problem type: a new head's replaces the base config's (--new-head on a regression config)
    const problem = this.model.config.problemType;
    if (problem) adapter.problemType = problem;
    return adapter;
  }

  /**
   * Save the adapter in PEFT's layout into the directory `dir` (replaced as a whole); as PEFT,
   * the saved config says `inference_mode: true`. Default targets are written out by name.
   */
  async save(dir: string): Promise<void> {
    const adapter = await this.toAdapter();
    const targetModules = adapter.config.targetModules ?? savedDefaultTargets(this.model.config.modelType);
    adapter.config = { ...adapter.config, targetModules, inferenceMode: true };
    await saveAdapter(dir, adapter, { shapes: shapesOfModel(this.model) });
  }

  /**
   * Add every layer's ΔW into its weight; the layers then run without their adapters, and take no
   * other adapter until unmerged (or detached with `keepMerged`).
   * @throws Error, before any weight changes, when an adapted weight is tied to another
   *   parameter (GPT-2's lm_head) or cannot hold W + ΔW (see lib/peft/merge.ts).
   */
  merge(): void {
    this.#live();
    if (this.#merged) return;
    // every layer is checked before the first changes: a refusal halfway would leave some merged
    checkUntied(this.model, this.layers.keys());
    for (const [path, layer] of this.layers) checkMergeable(this.#linear(path), layer);
    for (const [path, layer] of this.layers) {
      const lin = this.#linear(path);
      encodeMerge(lin, layer, 1);
      lin.adapter = null;
      lin.merged.push(layer);
    }
    this.#merged = true;
  }

  /** Subtract every layer's ΔW from its weight again and re-attach the adapters. */
  unmerge(): void {
    this.#live();
    if (!this.#merged) return;
    for (const [path, layer] of this.layers) {
      const lin = this.#linear(path);
      encodeMerge(lin, layer, -1);
      forget(lin, layer);
      lin.adapter = layer;
    }
    this.#merged = false;
  }

  /**
   * Write the merged model as a Hugging Face directory (lib/peft/merge.ts): the source
   * checkpoint with W + ΔW in each adapted weight and the trained modules_to_save.
   */
  async saveMerged(dir: string, opts: WriteMergedOptions = {}): Promise<void> {
    this.#live();
    await writeMergedModel({ model: this.model, layers: this.layers, saved: this.saved }, dir, {
      ...opts,
      labelNames: opts.labelNames ?? this.labelNames,
    });
  }

  /**
   * Remove the adapters from the model and release them. With `keepMerged`, merged weights
   * stay merged (PEFT's merge_and_unload); otherwise they are unmerged first (PEFT's unload).
   * After the model's dispose (which freed the adapters) it only marks the handle detached.
   */
  detach(opts: { keepMerged?: boolean } = {}): void {
    if (this.#detached) return;
    if (this.#merged && !opts.keepMerged && !this.#modelDisposed()) this.unmerge();
    const kept = this.#merged && !!opts.keepMerged;
    for (const [path, layer] of this.layers) {
      const lin = this.model.linears.get(path);
      if (lin) {
        forget(lin, layer);
        if (kept) lin.keptMerges++;
      }
      layer.dispose();
    }
    this.#detached = true;
  }

  /** Release the model and its adapter (`model.dispose()`); the handle is then detached. */
  dispose(): void {
    this.model.dispose();
    this.detach();
  }

  #targetOrder(): string[] {
    const all = new Set([...this.layers.keys(), ...this.emptyLayers.keys()]);
    return [...this.model.linears.keys()].filter((p) => all.has(p));
  }

  #linear(path: string): Linear {
    const lin = this.model.linears.get(path);
    if (!lin) throw new Error(`the model has no linear layer "${path}" any more`);
    return lin;
  }

  #live(): void {
    if (this.#detached) throw new Error("the adapter was detached from its model");
    if (this.#modelDisposed()) throw new Error("the adapter's model was disposed (with the adapter)");
  }

  /** Whether the model was disposed: its linear layers, the adapted ones among them, are gone. */
  #modelDisposed(): boolean {
    return [...this.layers.keys()].some((path) => !this.model.linears.has(path));
  }
}

/** Take `layer` off `lin`, attached or merged (the weight keeps whatever is merged into it). */
function forget(lin: Linear, layer: PeftLayer): void {
  if (lin.adapter === layer) lin.adapter = null;
  const at = lin.merged.indexOf(layer);
  if (at >= 0) lin.merged.splice(at, 1);
}

/**
 * Attach a new adapter of `config` to `model`: SSH positions from the frozen weights and
 * coefficients initialised per the config; LoRA and FourierFT initialised as PEFT does
 * (lib/peft/lora.ts, lib/peft/fourierft.ts).
 * @throws TargetError / Error naming what does not fit (no such module, tied weight, n > M·N, a
 *   layer with an adapter attached or merged into its weight, …); AdapterConfigError for a head new
 *   to the checkpoint that the config leaves frozen (no SEQ_CLS or TOKEN_CLS task type).
 */
export async function attachAdapter(
  model: Model,
  config: AdapterConfig,
  opts: AttachOptions = {},
): Promise<PeftModel> {
  const { targets, saved } = prepare(model, config, { saved: false });
  const untrained = model.initialised.filter((key) => model.parameters.has(key) && !saved.has(key));
  if (untrained.length > 0 && model.task === "causal-lm") {
    // no head to train: the checkpoint lacks its output layer, and config.json says it is not tied
    throw new Error(
      `"${untrained[0]}" is not in the checkpoint and config.json's tie_word_embeddings is false, so the ` +
        `output layer would be random: set "tie_word_embeddings": true if the model shares its embeddings, ` +
        `or give a checkpoint that has it`,
    );
  }
  if (untrained.length > 0) {
    const module = untrained[0].slice(0, untrained[0].lastIndexOf("."));
    // PEFT trains the head of a task type it knows; an image classifier's has none
    const taskType = model.task === "base" ? null : peftTaskType(model.task);
    const pooler = module.endsWith("pooler.dense");
    throw new AdapterConfigError(
      `"${untrained[0]}" is new (initialised by loadModel: the checkpoint ${
        pooler ? "lacks it" : `has no ${model.task} head`
      }), but the adapter config does not train it: ${
        pooler
          ? `list "${module.slice(0, -".dense".length)}" in modulesToSave`
          : taskType
          ? `set taskType "${taskType}" (PEFT then trains the head) or list the head in modulesToSave`
          : `list the head in modulesToSave`
      }`,
    );
  }
  const linears = targets.map((t) => model.linears.get(t.path)!);
  const dropoutState = modelDropoutState(model, opts);
  const layers = new Map<string, PeftLayer>(), empty = new Map<string, [number, number]>();
  try {
    switch (config.peftType) {
      case "SSH": {
        for (const [path, layer] of await createSshLayers(model.gpu, linears, config)) {
          if (layer) layers.set(path, layer);
          else empty.set(path, [model.linears.get(path)!.outFeatures, model.linears.get(path)!.inFeatures]);
        }
        break;
      }
      case "LORA":
        linears.forEach((lin, i) => {
          const module = initLoraModule(config, lin.outFeatures, lin.inFeatures, opts.seed ?? 0, i);
          layers.set(lin.path, loraLayer(model.gpu, lin, module, config, { dropoutState, site: i }));
        });
        break;
      case "FOURIERFT":
        linears.forEach((lin, i) => {
          layers.set(lin.path, fourierftLayer(model.gpu, lin, initFourierftModule(config, lin, i), config));
        });
        break;
    }
  } catch (e) {
    for (const l of layers.values()) l.dispose();
    throw e;
  }
  return finish(model, config, layers, empty, saved, dropoutState);
}

/**
 * Attach a saved adapter (in memory) to `model`; its modules_to_save values are written into
 * the model's parameters. As PEFT, target_modules and modules_to_save names that match nothing
 * in the model are skipped (its modules decide which layers it adapts).
 * @throws AdapterFileError when the adapter does not fit the model (module missing, shape mismatch);
 *   Error when one of its layers has an adapter attached or merged into its weight.
 */
export function applyAdapter(model: Model, adapter: Adapter, opts: AttachOptions = {}): PeftModel {
  const { config } = adapter;
  checkAdapter(adapter, "adapter", shapesOfModel(model));
  const { targets, saved } = prepare(model, config, { saved: true });
  const dropoutState = modelDropoutState(model, opts);
  const layers = new Map<string, PeftLayer>(), empty = new Map<string, [number, number]>();
  try {
    targets.forEach((t, i) => {
      const lin = model.linears.get(t.path)!;
      const module = adapter.modules.get(t.path)!;
      switch (config.peftType) {
        case "SSH": {
          const m = module as SSHModule;
          if (m.spectrum.length === 0) empty.set(t.path, [m.outFeatures, m.inFeatures]);
          else layers.set(t.path, sshLayer(model.gpu, lin, m, config));
          break;
        }
        case "LORA":
          layers.set(
            t.path,
            loraLayer(model.gpu, lin, module as LoraModule, config, { dropoutState, site: i }),
          );
          break;
        case "FOURIERFT":
          layers.set(t.path, fourierftLayer(model.gpu, lin, module as FourierFTModule, config));
          break;
      }
    });
  } catch (e) {
    for (const l of layers.values()) l.dispose();
    throw e;
  }
  for (const [key, t] of adapter.saved) {
    const p = saved.get(key)!;
    model.gpu.stream.write(p.buffer, t.data);
    p.touch();
  }
  const peft = finish(model, config, layers, empty, saved, dropoutState);
  peft.labelNames = adapter.labels;
  if (adapter.problemType) model.config.problemType = adapter.problemType;
  return peft;
}

/**
 * Load the adapter directory `dir` (PEFT layout) onto `model` (see {@link applyAdapter}).
 * FourierFT positions come from `fourierftIndices`, else the directory's side file, else PEFT's
 * draw from random_loc_seed.
 */
export async function loadAdapterInto(
  model: Model,
  dir: string,
  opts: LoadIntoOptions = {},
): Promise<PeftModel> {
  const adapter = await loadAdapter(dir, {
    shapes: shapesOfModel(model),
    fourierftIndices: opts.fourierftIndices,
  });
  return applyAdapter(model, adapter, opts);
}

/**
 * The target layers and the modules_to_save parameters, checked (names that match nothing are
 * errors for a new adapter, skipped for a saved one).
 */
function prepare(
  model: Model,
  config: AdapterConfig,
  opts: ResolveOptions,
): { targets: LinearShape[]; saved: Map<string, Tensor> } {
  const shapes = shapesOfModel(model);
  const targets = resolveTargets(shapes, config, opts);
  for (const t of targets) {
    const lin = model.linears.get(t.path);
    if (!lin) throw new Error(`target "${t.path}" is not a linear layer of the loaded model`);
    // a tied weight (GPT-2's lm_head) is adapted as any other: ΔW adds on that layer's output alone;
    // only merging it would change the weight it shares (merge refuses that)
    if (lin.adapter) {
      throw new Error(`"${t.path}" already has a ${lin.adapter.kind} adapter (detach it first)`);
    }
    // the merged adapter's unmerge re-attaches it to the layer, which would drop one attached meanwhile
    if (lin.merged.length > 0) {
      throw new Error(
        `"${t.path}" has a ${lin.merged[0].kind} adapter merged into its weight (unmerge it first, or ` +
          `detach it with keepMerged, as PEFT's merge_and_unload, to keep its ΔW in the weight)`,
      );
    }
  }
  const params = resolveModulesToSave(shapes, config, opts).flatMap((m) =>
    m.params.map((p) => ({ ...p, module: m.path }))
  );
  const saved = new Map<string, Tensor>();
  for (const { key, tiedTo, module } of params) {
    if (tiedTo) {
      throw new Error(
        `modules_to_save "${module}": its ${key} is tied to ${tiedTo}, so training it would train that ` +
          `too: leave "${module}" out of modules_to_save`,
      );
    }
    const p = model.parameters.get(key);
    if (!p) continue;
    if (p.dtype !== "f32") {
      throw new Error(
        `modules_to_save parameter "${key}" is stored as ${p.dtype} (frozen storage): load the model with ` +
          `dtype "f32" to train it`,
      );
    }
    saved.set(key, p);
  }
  return { targets, saved };
}

/**
 * Freeze everything but the saved modules, attach the layers, and wrap up. As PEFT, the config's
 * fan_in_fan_out says whether the adapted layers store (in, out) (GPT-2's Conv1D).
 */
function finish(
  model: Model,
  config: AdapterConfig,
  layers: Map<string, PeftLayer>,
  empty: Map<string, [number, number]>,
  saved: Map<string, Tensor>,
  dropoutState: DropoutState,
): PeftModel {
  const trained = new Set(saved.values());
  for (const p of model.parameters.values()) {
    if (p.dtype === "f32") p.requiresGrad = trained.has(p);
  }
  for (const [path, layer] of layers) model.linears.get(path)!.adapter = layer;
  if (config.peftType !== "SSH") {
    const fanInFanOut = [...layers.keys()].some((p) => model.linears.get(p)!.layout === "in_out");
    config = { ...config, fanInFanOut };
  }
  return new PeftModel(model, config, layers, empty, saved, dropoutState);
}
