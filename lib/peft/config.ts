/**
 * Adapter configurations — SSH, LoRA and FourierFT — parsed from and written to PEFT's
 * `adapter_config.json` with PEFT's snake_case field names (`peft_type` "SSH", "LORA",
 * "FOURIERFT"). In TypeScript the fields are camelCase (`energy_ratio` ↔ `energyRatio`).
 *
 * Validation errors name the source, the field, the value and what was expected. Fields that
 * change what the adapter computes but are not implemented here (DoRA, rank/alpha patterns,
 * LoRA biases, …) are rejected when set, rather than silently ignored; PEFT's bookkeeping
 * fields of LoRA and FourierFT configs (`auto_mapping`, `peft_version`, …) are kept in
 * `extra` and written back unchanged. An SSH config is this project's own: an unknown field
 * there is an error (most likely a typo).
 * @module
 */
import type { ModelTask } from "../models/model.ts";
import { type Transform, TRANSFORMS } from "../spectral/transforms.ts";
import { AdapterConfigError, Fields, show } from "./config_fields.ts";

/** An adapter_config.json (or options) that is malformed, unsupported or out of range. */
export { AdapterConfigError };

/** The adapter types supported, as PEFT's `peft_type` spells them. */
export const SUPPORTED_PEFT_TYPES = ["SSH", "LORA", "FOURIERFT"] as const;

/** A supported `peft_type`. */
export type PeftType = typeof SUPPORTED_PEFT_TYPES[number];

/** PEFT's task types (`task_type`). */
export const TASK_TYPES = [
  "SEQ_CLS",
  "SEQ_2_SEQ_LM",
  "CAUSAL_LM",
  "TOKEN_CLS",
  "QUESTION_ANS",
  "FEATURE_EXTRACTION",
] as const;

/** A PEFT `task_type`. */
export type TaskType = typeof TASK_TYPES[number];

/** A task with a head (lib/train/tasks.ts's TaskName). */
type HeadTask = Exclude<ModelTask, "base">;

/**
 * The `task_type` written for each task. PEFT has none for image classification (its image
 * classification guide leaves task_type out and lists the head, "classifier", in modules_to_save).
 */
const PEFT_TASK_TYPES: Readonly<Record<HeadTask, TaskType | null>> = {
  "causal-lm": "CAUSAL_LM",
  "seq-cls": "SEQ_CLS",
  "token-cls": "TOKEN_CLS",
  "image-cls": null,
};

/** The PEFT `task_type` of an adapter trained for `task` (null for image classification). */
export function peftTaskType(task: HeadTask): TaskType | null {
  return PEFT_TASK_TYPES[task];
}

/**
 * The task an adapter was trained for, from its `task_type` and `modules_to_save` on a model of
 * `modelType` (config.json's model_type), the inverse of {@link peftTaskType}: a ViT's SEQ_CLS
 * (a sequence classifier's type, as some PEFT users set it) or a ViT adapter without a task_type
 * that saves its "classifier" is image classification. Null: the adapter does not say.
 */
export function taskOfPeftType(
  a: Pick<CommonAdapterConfig, "taskType" | "modulesToSave">,
  modelType: string,
): HeadTask | null {
  const vit = modelType === "vit";
  if (a.taskType === "SEQ_CLS" && vit) return "image-cls";
  if (a.taskType === null) return vit && a.modulesToSave?.includes("classifier") ? "image-cls" : null;
  const task = (Object.keys(PEFT_TASK_TYPES) as HeadTask[]).find((t) => PEFT_TASK_TYPES[t] === a.taskType);
  return task ?? null;
}

/**
 * Which linear layers to adapt, as PEFT allows: a list of names (a module matches when its
 * path equals a name or ends with "." + name), or one string that is a regular expression
 * matched against the whole module path, or the shorthand "all-linear" (see lib/peft/targets.ts).
 */
export type TargetModules = string[] | string;

/** How SSH chooses each layer's positions (SPEC §1.4). */
export type Selection = "layer" | "global";

/** How SSH initialises the coefficients. */
export type Init = "normal" | "zeros";

/** Fields shared by every adapter type. */
export interface CommonAdapterConfig {
  /** Layers to adapt; null takes the model family's default (lib/peft/targets.ts). */
  targetModules: TargetModules | null;
  /** Layers never adapted, matched as `targetModules` (PEFT's `exclude_modules`). */
  excludeModules: TargetModules | null;
  /**
   * Only adapt layers with these indices (PEFT's `layers_to_transform`); null: all. As PEFT, a
   * layer listed in target_modules by its whole path is adapted whatever its index, and this is
   * refused with target_modules as a string (as is `layersPattern`).
   */
  layersToTransform: number[] | null;
  /**
   * Names of the layer list that `layersToTransform` counts in (e.g. "layers", "h"); null: any.
   * Without `layersToTransform` LoRA refuses it, as PEFT's LoraConfig (SSH too), while FourierFT
   * keeps it, inert, as PEFT's FourierFTConfig.
   */
  layersPattern: string[] | null;
  /**
   * Modules trained in full and saved with the adapter (e.g. a classifier head). PEFT matches
   * them by plain suffix of the module path; with task type SEQ_CLS or TOKEN_CLS, PEFT adds "classifier"
   * and "score" (see lib/peft/targets.ts).
   */
  modulesToSave: string[] | null;
  /** PEFT's `base_model_name_or_path`: the model the adapter was made for; null when unset. */
  baseModelNameOrPath: string | null;
  /** PEFT's `task_type` (SEQ_CLS and TOKEN_CLS add the classifier heads to modules_to_save); null when unset. */
  taskType: TaskType | null;
  /** PEFT's `inference_mode` (true in saved adapters). */
  inferenceMode: boolean;
  /** PEFT's `revision` of the base model. */
  revision: string | null;
  /**
   * Fields kept as read and written back unchanged: PEFT bookkeeping (`auto_mapping`,
   * `peft_version`, …) and PEFT options left unset.
   */
  extra: Record<string, unknown>;
}

/**
 * SSH: per adapted M×N layer, n coefficients at chosen positions of a sparse spectrum S, and
 * ΔW = (α/(M·N))·T(S) (SPEC §1.3).
 */
export interface SSHConfig extends CommonAdapterConfig {
  /** `peft_type`: always "SSH". */
  peftType: "SSH";
  /**
   * Coefficients per layer (`n`), an integer ≥ 1 and ≤ M·N; for `dft` ≤ the layer's (M·N + s)/2
   * mirror classes, as (u, v) and (−u, −v) are one basis function there (lib/spectral/select.ts);
   * default 750.
   */
  n: number;
  /** δ ∈ [0, 1] (`energy_ratio`): round(δ·n) positions by energy, the rest at random; default 0.7. */
  energyRatio: number;
  /** The scaling α (`alpha`), finite; default 150. */
  alpha: number;
  /** The spectral transform (`transform`); default "dht". */
  transform: Transform;
  /**
   * `selection`: "layer" (default) gives every target layer n positions; "global" ranks one
   * budget of n·L positions across the L target layers (each layer's energy normalised by its
   * total energy), so a layer may get more or fewer than n.
   */
  selection: Selection;
  /** `init`: coefficients ~ N(0, 1) ("normal", default) or zero ("zeros"). */
  init: Init;
  /** Seed of the position sampling and the init (`seed`), an integer 0 ≤ seed < 2^53; default 0. */
  seed: number;
}

/** LoRA (PEFT `LORA`): ΔW = (lora_alpha / r)·B·A, or lora_alpha/√r with `useRslora`. */
export interface LoraConfig extends CommonAdapterConfig {
  /** `peft_type`: always "LORA". */
  peftType: "LORA";
  /** Rank (`r`), an integer ≥ 1; PEFT's default 8. */
  r: number;
  /** `lora_alpha`, finite; PEFT's default 8. */
  loraAlpha: number;
  /** `lora_dropout` ∈ [0, 1); default 0. */
  loraDropout: number;
  /**
   * `fan_in_fan_out`: the base layers store (in, out), as GPT-2's Conv1D. Set from the adapted
   * layers when the adapter is attached, as PEFT does (so saved GPT-2 adapters say true); a
   * loaded value is not used (the layers' storage decides).
   */
  fanInFanOut: boolean;
  /** `bias`: only "none" is supported. */
  bias: "none";
  /** `use_rslora`: scale by lora_alpha/√r instead of lora_alpha/r. */
  useRslora: boolean;
  /** `init_lora_weights` (true, false, or a PEFT init name); only matters for a new adapter. */
  initLoraWeights: boolean | string;
}

/** FourierFT (PEFT `FOURIERFT`): ΔW = scaling·Re(ifft2(S)) with n_frequency coefficients. */
export interface FourierFTConfig extends CommonAdapterConfig {
  /** `peft_type`: always "FOURIERFT". */
  peftType: "FOURIERFT";
  /**
   * `n_frequency`, an integer ≥ 1; PEFT's default 1000. PEFT's `alpha` (kept in `extra`), when
   * set, replaces it with int(alpha·N·M) per M×N layer (`fourierftFrequencies`).
   */
  nFrequency: number;
  /** `scaling`, finite; PEFT's default 150. */
  scaling: number;
  /** `random_loc_seed`: PEFT draws every layer's positions with torch's RNG from it (as lib/peft/torch_randperm.ts). */
  randomLocSeed: number;
  /** `fan_in_fan_out`: as {@link LoraConfig.fanInFanOut}. */
  fanInFanOut: boolean;
  /** `init_weights`: PEFT's init (true: zeros, false: normal); only matters for a new adapter. */
  initWeights: boolean;
  /** `bias`: only "none" is supported. */
  bias: "none";
}

/** Any supported adapter configuration (discriminated by `peftType`). */
export type AdapterConfig = SSHConfig | LoraConfig | FourierFTConfig;

/** Options of {@link sshConfig}, {@link loraConfig} and {@link fourierftConfig}: any field may be left out. */
export type ConfigOptions<C extends AdapterConfig> = Partial<Omit<C, "peftType">>;

/** Defaults of an SSH config (SPEC §1.4). */
export const SSH_DEFAULTS = {
  n: 750,
  energyRatio: 0.7,
  alpha: 150,
  transform: "dht" as Transform,
  selection: "layer" as Selection,
  init: "normal" as Init,
  seed: 0,
};

/** A validated SSH config: the defaults (SPEC §1.4) with `opts` applied. */
export function sshConfig(opts: ConfigOptions<SSHConfig> = {}): SSHConfig {
  return parseAdapterConfig(
    adapterConfigToJson({ ...commonDefaults(), ...SSH_DEFAULTS, ...opts, peftType: "SSH" }),
    "SSH options",
  ) as SSHConfig;
}

/** Defaults of a LoRA config: PEFT's LoraConfig's. */
export const LORA_DEFAULTS = {
  r: 8,
  loraAlpha: 8,
  loraDropout: 0,
  fanInFanOut: false,
  bias: "none" as const,
  useRslora: false,
  initLoraWeights: true,
};

/** Defaults of a FourierFT config: PEFT's FourierFTConfig's. */
export const FOURIERFT_DEFAULTS = {
  nFrequency: 1000,
  scaling: 150,
  randomLocSeed: 777,
  fanInFanOut: false,
  initWeights: false,
  bias: "none" as const,
};

/** A validated LoRA config: PEFT's defaults (r 8, lora_alpha 8) with `opts` applied. */
export function loraConfig(opts: ConfigOptions<LoraConfig> = {}): LoraConfig {
  return parseAdapterConfig(
    adapterConfigToJson({ ...commonDefaults(), ...LORA_DEFAULTS, ...opts, peftType: "LORA" }),
    "LoRA options",
  ) as LoraConfig;
}

/** A validated FourierFT config: PEFT's defaults (n_frequency 1000, scaling 150) with `opts` applied. */
export function fourierftConfig(opts: ConfigOptions<FourierFTConfig> = {}): FourierFTConfig {
  return parseAdapterConfig(
    adapterConfigToJson({ ...commonDefaults(), ...FOURIERFT_DEFAULTS, ...opts, peftType: "FOURIERFT" }),
    "FourierFT options",
  ) as FourierFTConfig;
}

function commonDefaults(): CommonAdapterConfig {
  return {
    targetModules: null,
    excludeModules: null,
    layersToTransform: null,
    layersPattern: null,
    modulesToSave: null,
    baseModelNameOrPath: null,
    taskType: null,
    inferenceMode: false,
    revision: null,
    extra: {},
  };
}

/** Read and parse `path` (an adapter_config.json, or an adapter folder holding one). */
export async function loadAdapterConfig(path: string): Promise<AdapterConfig> {
  const file = (await Deno.stat(path)).isDirectory ? `${path.replace(/\/+$/, "")}/adapter_config.json` : path;
  let json: unknown;
  try {
    json = JSON.parse(await Deno.readTextFile(file));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw e;
    throw new AdapterConfigError(`${file}: invalid JSON (${(e as Error).message})`);
  }
  return parseAdapterConfig(json, file);
}

/** Field names every adapter type reads (PEFT's spelling). */
const COMMON_FIELDS = [
  "peft_type",
  "target_modules",
  "exclude_modules",
  "layers_to_transform",
  "layers_pattern",
  "modules_to_save",
  "base_model_name_or_path",
  "task_type",
  "inference_mode",
  "revision",
];

/** PEFT bookkeeping that an SSH config may carry (kept in `extra`). */
const SSH_INERT = ["auto_mapping", "peft_version"];

const SSH_FIELDS = ["n", "energy_ratio", "alpha", "transform", "selection", "init", "seed"];
const LORA_FIELDS = [
  "r",
  "lora_alpha",
  "lora_dropout",
  "fan_in_fan_out",
  "bias",
  "use_rslora",
  "init_lora_weights",
];
const FOURIERFT_FIELDS = [
  "n_frequency",
  "scaling",
  "random_loc_seed",
  "fan_in_fan_out",
  "init_weights",
  "bias",
];

/** LoRA options that change the computation and are not implemented: must be unset (null/false/empty). */
const LORA_UNSUPPORTED = [
  "use_dora",
  "rank_pattern",
  "alpha_pattern",
  "lora_bias",
  "layer_replication",
  "target_parameters",
  "trainable_token_indices",
  "alora_invocation_tokens",
  "use_qalora",
  "use_bdlora",
  "arrow_config",
  "kasa_config",
  "monteclora_config",
  "velora_config",
];

/** FourierFT options that change the computation and are not implemented. */
const FOURIERFT_UNSUPPORTED = ["n_frequency_pattern"];

/**
 * Parse adapter_config.json content. `source` names the file (or options) in errors.
 * @throws AdapterConfigError naming the field, the value and what was expected.
 */
export function parseAdapterConfig(json: unknown, source = "adapter_config.json"): AdapterConfig {
  const f = fieldsOf(json, source);
  const type = peftTypeOf(f);
  const common = commonFields(f, type);
  switch (type) {
    case "SSH":
      return sshFields(f, common);
    case "LORA":
      return loraFields(f, common);
    case "FOURIERFT":
      return fourierftFields(f, common);
  }
}

/** The fields every adapter type reads, but `extra` (which depends on the type's fields). */
type CommonFields = Omit<CommonAdapterConfig, "extra">;

/** The fields of `json`, which must be a JSON object. */
function fieldsOf(json: unknown, source: string): Fields {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new AdapterConfigError(`${source}: expected a JSON object, got ${show(json)}`);
  }
  return new Fields(json as Record<string, unknown>, source);
}

/** The config's `peft_type`, which must be given and supported. */
function peftTypeOf(f: Fields): PeftType {
  const supported = SUPPORTED_PEFT_TYPES.join(", ");
  const type = f.raw.peft_type;
  if (type === undefined) {
    throw new AdapterConfigError(`${f.source}: no "peft_type" (supported: ${supported})`);
  }
  if (!SUPPORTED_PEFT_TYPES.includes(type as PeftType)) {
    throw new AdapterConfigError(
      `${f.source}: peft_type ${show(type)} is not supported (supported: ${supported})`,
    );
  }
  return type as PeftType;
}

/** The fields shared by every adapter type, checked to go together as PEFT's configs check them. */
function commonFields(f: Fields, type: PeftType): CommonFields {
  const common = {
    targetModules: f.targets("target_modules"),
    // PEFT reads an empty exclude_modules as excluding nothing
    excludeModules: f.targets("exclude_modules", { emptyIsNull: true }),
    layersToTransform: f.layers(),
    layersPattern: f.layersPattern(),
    modulesToSave: f.names("modules_to_save"),
    baseModelNameOrPath: f.optString("base_model_name_or_path"),
    taskType: taskTypeOf(f),
    inferenceMode: f.bool("inference_mode", false),
    revision: f.optString("revision"),
  };
  const layerKey = common.layersToTransform !== null
    ? "layers_to_transform"
    : common.layersPattern !== null
    ? "layers_pattern"
    : null;
  if (layerKey !== null && typeof common.targetModules === "string") {
    // PEFT's LoraConfig and FourierFTConfig refuse the pair too
    throw new AdapterConfigError(
      `${f.source}: "${layerKey}" cannot be used when "target_modules" is a string (${
        show(common.targetModules)
      }: a regular expression or "all-linear"), as in PEFT: give target_modules as a list of names, ` +
        `or write the layer indices into the regular expression`,
    );
  }
  if (common.layersPattern !== null && common.layersToTransform === null && type !== "FOURIERFT") {
    // PEFT's LoraConfig refuses it (the pattern only locates the indices); its FourierFTConfig
    // does not, and the pattern alone selects nothing there
    throw new AdapterConfigError(
      `${f.source}: "layers_pattern" ${
        show(f.raw.layers_pattern)
      } needs "layers_to_transform" (the layer indices it locates), as in PEFT: give both, or neither`,
    );
  }
  return common;
}

/** `task_type`: null or one of PEFT's task types. */
function taskTypeOf(f: Fields): TaskType | null {
  const v = f.raw.task_type ?? null;
  if (v !== null && !TASK_TYPES.includes(v as TaskType)) {
    f.fail("task_type", `null or one of ${TASK_TYPES.join(", ")}`);
  }
  return v as TaskType | null;
}

/** An SSH config: this project's own, so an unknown field is refused (most likely a typo). */
function sshFields(f: Fields, common: CommonFields): SSHConfig {
  const unknown = Object.keys(f.raw).filter((k) =>
    !COMMON_FIELDS.includes(k) && !SSH_FIELDS.includes(k) && !SSH_INERT.includes(k)
  );
  if (unknown.length > 0) {
    throw new AdapterConfigError(
      `${f.source}: unknown field${unknown.length > 1 ? "s" : ""} ${
        unknown.map(show).join(", ")
      } in an SSH ` +
        `config (known: ${[...SSH_FIELDS, ...COMMON_FIELDS].join(", ")})`,
    );
  }
  return {
    peftType: "SSH",
    ...common,
    n: f.int("n", SSH_DEFAULTS.n, 1),
    energyRatio: f.ratio("energy_ratio", SSH_DEFAULTS.energyRatio),
    alpha: f.finite("alpha", SSH_DEFAULTS.alpha),
    transform: f.oneOf("transform", SSH_DEFAULTS.transform, TRANSFORMS),
    selection: f.oneOf("selection", SSH_DEFAULTS.selection, ["layer", "global"] as const),
    init: f.oneOf("init", SSH_DEFAULTS.init, ["normal", "zeros"] as const),
    seed: f.int("seed", SSH_DEFAULTS.seed, 0),
    extra: f.extra([...COMMON_FIELDS, ...SSH_FIELDS]),
  };
}

/** A LoRA config (PEFT's LoraConfig), refusing the options that change the update and are not implemented. */
function loraFields(f: Fields, common: CommonFields): LoraConfig {
  f.unsupported(LORA_UNSUPPORTED, "LoRA");
  const loraDropout = f.finite("lora_dropout", LORA_DEFAULTS.loraDropout);
  if (loraDropout < 0 || loraDropout >= 1) {
    throw new AdapterConfigError(`${f.source}: "lora_dropout" must be in [0, 1), got ${loraDropout}`);
  }
  const init = f.raw.init_lora_weights ?? LORA_DEFAULTS.initLoraWeights;
  if (typeof init !== "boolean" && typeof init !== "string") {
    throw new AdapterConfigError(
      `${f.source}: "init_lora_weights" must be true, false or an init name, got ${show(init)}`,
    );
  }
  // these inits train against a base rewritten as W − s·B₀A₀, which PEFT rebuilds at load
  if (typeof init === "string" && /^(pissa|olora|corda|loftq|lora_ga)/.test(init)) {
    throw new AdapterConfigError(
      `${f.source}: "init_lora_weights" "${init}" trains against a base weight rewritten from W (W − s·B₀A₀), ` +
        `which only PEFT rebuilds: convert the adapter with PEFT's save_pretrained(…, ` +
        `path_initial_model_for_weight_conversion=…), or, when the model given is that rewritten (residual) ` +
        `base, set "init_lora_weights" to true`,
    );
  }
  return {
    peftType: "LORA",
    ...common,
    r: f.int("r", LORA_DEFAULTS.r, 1),
    loraAlpha: f.finite("lora_alpha", LORA_DEFAULTS.loraAlpha),
    loraDropout,
    fanInFanOut: f.bool("fan_in_fan_out", LORA_DEFAULTS.fanInFanOut),
    bias: f.bias(),
    useRslora: f.bool("use_rslora", LORA_DEFAULTS.useRslora),
    initLoraWeights: init,
    extra: f.extra([...COMMON_FIELDS, ...LORA_FIELDS]),
  };
}

/** A FourierFT config (PEFT's FourierFTConfig); PEFT's `alpha`, checked here, is kept in `extra`. */
function fourierftFields(f: Fields, common: CommonFields): FourierFTConfig {
  f.unsupported(FOURIERFT_UNSUPPORTED, "FourierFT");
  // PEFT counts int(alpha·N·M) coefficients per layer when alpha is truthy; 0 and null leave n_frequency
  const alpha = f.raw.alpha ?? 0;
  if (typeof alpha !== "number" || !(alpha >= 0 && alpha <= 1)) {
    f.fail("alpha", "null, or a number in [0, 1] (the share of each layer's M·N positions)");
  }
  return {
    peftType: "FOURIERFT",
    ...common,
    nFrequency: f.int("n_frequency", FOURIERFT_DEFAULTS.nFrequency, 1),
    scaling: f.finite("scaling", FOURIERFT_DEFAULTS.scaling),
    randomLocSeed: f.int("random_loc_seed", FOURIERFT_DEFAULTS.randomLocSeed, 0),
    fanInFanOut: f.bool("fan_in_fan_out", FOURIERFT_DEFAULTS.fanInFanOut),
    initWeights: f.bool("init_weights", FOURIERFT_DEFAULTS.initWeights),
    bias: f.bias(),
    extra: f.extra([...COMMON_FIELDS, ...FOURIERFT_FIELDS]),
  };
}

/**
 * The adapter_config.json object of `config`, with PEFT's field names and keys sorted (as
 * PEFT writes them). Fields in `extra` are written back as they were read.
 */
export function adapterConfigToJson(config: AdapterConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {
    ...config.extra,
    peft_type: config.peftType,
    target_modules: copy(config.targetModules),
    exclude_modules: copy(config.excludeModules),
    layers_to_transform: copy(config.layersToTransform),
    layers_pattern: copy(config.layersPattern),
    modules_to_save: copy(config.modulesToSave),
    base_model_name_or_path: config.baseModelNameOrPath,
    task_type: config.taskType,
    inference_mode: config.inferenceMode,
    revision: config.revision,
  };
  switch (config.peftType) {
    case "SSH":
      Object.assign(out, {
        n: config.n,
        energy_ratio: config.energyRatio,
        alpha: config.alpha,
        transform: config.transform,
        selection: config.selection,
        init: config.init,
        seed: config.seed,
      });
      break;
    case "LORA":
      Object.assign(out, {
        r: config.r,
        lora_alpha: config.loraAlpha,
        lora_dropout: config.loraDropout,
        fan_in_fan_out: config.fanInFanOut,
        bias: config.bias,
        use_rslora: config.useRslora,
        init_lora_weights: config.initLoraWeights,
        use_dora: false,
        rank_pattern: {},
        alpha_pattern: {},
      });
      break;
    case "FOURIERFT":
      Object.assign(out, {
        n_frequency: config.nFrequency,
        scaling: config.scaling,
        random_loc_seed: config.randomLocSeed,
        fan_in_fan_out: config.fanInFanOut,
        init_weights: config.initWeights,
        bias: config.bias,
        n_frequency_pattern: {},
      });
      break;
  }
  return Object.fromEntries(Object.keys(out).sort().map((k) => [k, out[k]]));
}

/** The adapter_config.json text of `config` (2-space indent, sorted keys, final newline). */
export function adapterConfigToText(config: AdapterConfig): string {
  return JSON.stringify(adapterConfigToJson(config), null, 2) + "\n";
}

/** PEFT's FourierFT `alpha` (kept in `extra`): the share of a layer's M·N positions; null when unset (0 or null). */
export function frequencyFraction(config: FourierFTConfig): number | null {
  const alpha = config.extra.alpha;
  return typeof alpha === "number" && alpha !== 0 ? alpha : null;
}

/**
 * The coefficients of a FourierFT layer of `outFeatures` × `inFeatures`, as PEFT's update_layer
 * counts them: `int(alpha * in_features * out_features)` (in that order, in doubles) when alpha is
 * set, else n_frequency.
 */
export function fourierftFrequencies(
  config: FourierFTConfig,
  outFeatures: number,
  inFeatures: number,
): number {
  const alpha = frequencyFraction(config);
  return alpha === null ? config.nFrequency : Math.trunc(alpha * inFeatures * outFeatures);
}

/**
 * The scaling that multiplies an adapter's update: SSH α, LoRA lora_alpha/r (or /√r with
 * rsLoRA), FourierFT scaling.
 */
export function adapterScaling(config: AdapterConfig): number {
  switch (config.peftType) {
    case "SSH":
      return config.alpha;
    case "LORA":
      return config.loraAlpha / (config.useRslora ? Math.sqrt(config.r) : config.r);
    case "FOURIERFT":
      return config.scaling;
  }
}

function copy<T>(v: T): T {
  return Array.isArray(v) ? [...v] as T : v;
}
