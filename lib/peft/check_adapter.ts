/**
 * Checks of an adapter in memory ({@link checkAdapter}): its own consistency (layer sizes,
 * coefficient and position counts, positions in range and distinct, modules_to_save tensors that
 * hold their shapes' values) and, given the base model's shapes, that it fits that model. A load
 * and a save (lib/peft/files.ts) and an attach (lib/peft/apply.ts) run them; every error is an
 * {@link AdapterFileError} naming the adapter, module and tensor at fault.
 * @module
 */
import type { ModelShapes } from "../models/shapes.ts";
import { checkPositions } from "../spectral/sparse.ts";
import { numel } from "../tensor/shape.ts";
import { fourierftFrequencies, frequencyFraction } from "./config.ts";
import type { Adapter, FourierFTModule, LoraModule, SSHModule } from "./files.ts";
import {
  addsClassifierHeads,
  CLASSIFIER_HEAD_NAMES,
  resolveModulesToSave,
  resolveTargets,
} from "./targets.ts";

/** An adapter directory or adapter that is malformed, or does not fit its base model. */
export class AdapterFileError extends Error {
  /** Always "AdapterFileError". */
  override name = "AdapterFileError";
}

/**
 * Check an adapter's internal consistency (sizes, counts, index ranges, distinct positions,
 * modules_to_save names) and, with `shapes`, that it fits that base model: every module is a
 * linear layer of the same size selected by target_modules, every selected layer has weights,
 * and the modules_to_save tensors are exactly the saved modules' parameters.
 * @param source names the adapter in errors.
 * @throws AdapterFileError
 */
export function checkAdapter(adapter: Adapter, source: string, shapes?: ModelShapes): void {
  const fail = (msg: string): never => {
    throw new AdapterFileError(`${source}: ${msg}`);
  };
  const { config, modules } = adapter;
  if (modules.size === 0) {
    const keys = [...adapter.saved.keys()].slice(0, 3);
    fail(
      "the adapter has no modules" +
        (keys.length > 0
          ? `: its tensors (${
            keys.join(", ")
          }, …) are not in PEFT's layout, "<module>.lora_A.weight" and the ` +
            `like without the adapter's name (as save_pretrained writes them)`
          : ""),
    );
  }
  let total = 0;
  for (const [m, mod] of modules) {
    const { outFeatures: out, inFeatures: inF } = mod;
    if (!Number.isSafeInteger(out) || !Number.isSafeInteger(inF) || out < 1 || inF < 1) {
      fail(`module "${m}": layer size ${out}×${inF} must be positive integers (out×in)`);
    }
    switch (config.peftType) {
      case "SSH": {
        const s = mod as SSHModule;
        const n = s.spectrum.length;
        if (s.indices.length !== 2 * n) {
          fail(`module "${m}": ${n} coefficients but ${s.indices.length / 2} positions`);
        }
        if (config.selection === "layer" && n !== config.n) {
          fail(`module "${m}" has ${n} coefficients, expected n = ${config.n} (selection "layer")`);
        }
        checkModulePositions(s.indices, out, inF, `${source}: module "${m}"`);
        total += n;
        break;
      }
      case "FOURIERFT": {
        const f = mod as FourierFTModule;
        const n = f.spectrum.length, want = fourierftFrequencies(config, out, inF);
        if (n !== want) {
          const alpha = frequencyFraction(config);
          fail(
            `module "${m}" has ${n} coefficients, expected ${
              alpha === null
                ? `n_frequency = ${want}`
                : `int(alpha·N·M) = int(${alpha}·${inF}·${out}) = ${want}`
            }`,
          );
        }
        if (f.indices) {
          if (f.indices.length !== 2 * n) {
            fail(`module "${m}": ${n} coefficients but ${f.indices.length / 2} positions`);
          }
          checkModulePositions(f.indices, out, inF, `${source}: module "${m}"`);
        }
        break;
      }
      case "LORA": {
        const l = mod as LoraModule;
        if (l.r !== config.r) fail(`module "${m}" has rank ${l.r}, expected r = ${config.r}`);
        if (l.a.length !== l.r * inF) {
          fail(`module "${m}": lora_A holds ${l.a.length} values, expected [${l.r}, ${inF}]`);
        }
        if (l.b.length !== out * l.r) {
          fail(`module "${m}": lora_B holds ${l.b.length} values, expected [${out}, ${l.r}]`);
        }
        break;
      }
    }
  }
  if (config.peftType === "SSH" && config.selection === "global" && total !== config.n * modules.size) {
    fail(`${total} coefficients in all, expected n·L = ${config.n}·${modules.size} (selection "global")`);
  }
  for (const [key, t] of adapter.saved) {
    if (t.data.length !== numel(t.shape)) {
      fail(`saved tensor "${key}" [${t.shape}] holds ${t.data.length} values`);
    }
  }
  if (shapes) checkAgainstModel(adapter, shapes, fail);
  else checkSavedNames(adapter, fail);
}

function checkAgainstModel(adapter: Adapter, shapes: ModelShapes, fail: (msg: string) => never): void {
  const arch = shapes.architecture;
  const linears = new Map(shapes.linears.map((l) => [l.path, l]));
  for (const [m, mod] of adapter.modules) {
    const base = linears.get(m);
    if (!base) fail(notALinear(m, shapes));
    if (base.outFeatures !== mod.outFeatures || base.inFeatures !== mod.inFeatures) {
      fail(
        `module "${m}": the adapter was made for a ${mod.outFeatures}×${mod.inFeatures} layer (out×in), ` +
          `the base model's (${arch}) is ${base.outFeatures}×${base.inFeatures}`,
      );
    }
  }
  // target names that match nothing are skipped, as PEFT loads them: the modules decide
  const selected = resolveTargets(shapes, adapter.config, { saved: true }).map((l) => l.path);
  const targets = JSON.stringify(adapter.config.targetModules);
  for (const m of adapter.modules.keys()) {
    if (!selected.includes(m)) {
      fail(`module "${m}" has weights but target_modules ${targets} does not select it`);
    }
  }
  for (const m of selected) {
    if (!adapter.modules.has(m)) {
      fail(`no weights for module "${m}", which target_modules ${targets} selects`);
    }
  }
  const expected = new Map(
    resolveModulesToSave(shapes, adapter.config, { saved: true }).flatMap((s) =>
      s.params.map((p) => [p.key, p.shape] as const)
    ),
  );
  for (const [key, t] of adapter.saved) {
    const want = expected.get(key);
    if (!want) fail(`saved tensor "${key}" is not a parameter of a module to save in ${arch}`);
    if (want.join() !== t.shape.join()) fail(`saved tensor "${key}" is [${t.shape}], ${arch} has [${want}]`);
  }
  for (const key of expected.keys()) {
    if (!adapter.saved.has(key)) fail(`no saved tensor for "${key}" (a parameter of a module to save)`);
  }
}

/** Why `module` is not one of the model's linear layers, naming its layers of that name. */
export function notALinear(module: string, shapes: ModelShapes): string {
  const leaf = module.slice(module.lastIndexOf(".") + 1);
  const alike = shapes.linears.filter((l) => l.path.endsWith("." + leaf)).slice(0, 3).map((l) => l.path);
  return `module "${module}" is not a linear layer of ${shapes.architecture}${
    alike.length > 0 ? ` (its "${leaf}" layers are e.g. ${alike.join(", ")})` : ""
  }: an adapter made for another model?`;
}

/** Without a model: every saved tensor must lie under a module that modules_to_save names. */
function checkSavedNames(adapter: Adapter, fail: (msg: string) => never): void {
  const names = [...(adapter.config.modulesToSave ?? [])];
  if (addsClassifierHeads(adapter.config.taskType)) names.push(...CLASSIFIER_HEAD_NAMES);
  for (const key of adapter.saved.keys()) {
    const parts = key.split(".");
    const under = parts.some((_, i) => i > 0 && names.some((n) => parts.slice(0, i).join(".").endsWith(n)));
    if (!under) {
      fail(`saved tensor "${key}" is not under any module of modules_to_save ${JSON.stringify(names)}`);
    }
  }
}

/**
 * [n, 2] positions of an out×in layer's spectrum: in range, distinct (sparse.ts's check, named by
 * file). None is allowed: SSH's global selection may give a target no position.
 */
function checkModulePositions(indices: Int32Array, out: number, inF: number, where: string): void {
  if (indices.length === 0) return;
  try {
    checkPositions(indices, out, inF);
  } catch (e) {
    throw e instanceof RangeError ? new AdapterFileError(`${where}: ${e.message}`) : e;
  }
}
