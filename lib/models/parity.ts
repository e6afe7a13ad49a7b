/**
 * Model parity: run a model directory's reference inputs (`reference.safetensors`: `input.*`,
 * and the PyTorch outputs `logits`, `loss`, `hidden_last` in eval mode) through our engine and
 * compare. Works for any registered family: inputs are mapped by name (input_ids,
 * attention_mask, token_type_ids, pixel_values, labels).
 * @module
 */
import { join } from "node:path";
import type { Gpu } from "../gpu/mod.ts";
import { openSafetensors, type SafetensorsFile } from "../io/safetensors.ts";
import type { WeightDtype } from "../nn/load.ts";
import { compareToReference } from "../spectral/reference.ts";
import { noGrad, Tensor, tidy } from "../tensor/mod.ts";
import { loadModel } from "./load.ts";
import type { Batch } from "./model.ts";

/** The outputs compared, in table order. */
export const PARITY_OUTPUTS = ["logits", "loss", "hidden_last"] as const;

/** One compared output. */
export interface ModelParityRow {
  output: typeof PARITY_OUTPUTS[number];
  shape: number[];
  relL2: number;
  maxAbs: number;
}

/** The result of {@link modelParity}. */
export interface ModelParityResult {
  /** config.json `model_type`. */
  family: string;
  task: string;
  rows: ModelParityRow[];
}

/**
 * Load the model in `dir`, run `dir/reference.safetensors`'s inputs in eval mode (noGrad), and
 * compare every reference output present with ours.
 */
export async function modelParity(
  gpu: Gpu,
  dir: string,
  opts: { dtype?: WeightDtype } = {},
): Promise<ModelParityResult> {
  const ref = await openSafetensors(join(dir, "reference.safetensors"));
  const model = await loadModel(gpu, dir, { dtype: opts.dtype });
  try {
    const batch = await referenceBatch(gpu, ref);
    const outs = noGrad(() =>
      tidy(() => {
        const out = model.forward(batch);
        return { logits: out.logits, loss: out.loss ?? null, hidden_last: out.hidden };
      })
    );
    const pending = PARITY_OUTPUTS.map((k) => outs[k]?.readLater() ?? null);
    gpu.stream.flush();
    const values = await Promise.all(pending);
    const rows: ModelParityRow[] = [];
    for (const [i, name] of PARITY_OUTPUTS.entries()) {
      const ours = values[i], t = outs[name];
      if (!ref.has(name)) continue;
      if (!ours || !t) throw new Error(`${ref.path}: the model gave no ${name} (are the labels there?)`);
      const expected = await ref.readF32(name);
      const refShape = ref.info(name).shape;
      if (expected.length !== ours.length) {
        throw new Error(
          `${ref.path}: ${name} is [${refShape}] but the model gave ${t.describe()}`,
        );
      }
      rows.push({
        output: name,
        shape: t.shape.length ? [...t.shape] : refShape,
        ...compareToReference(ours, expected),
      });
    }
    for (const t of [outs.logits, outs.loss, outs.hidden_last]) t?.dispose();
    for (const t of Object.values(batch)) if (t instanceof Tensor) t.dispose();
    return { family: model.config.modelType, task: model.task, rows };
  } finally {
    model.dispose();
  }
}

/** The `input.*` tensors of a reference file as a {@link Batch}. */
export async function referenceBatch(gpu: Gpu, ref: SafetensorsFile): Promise<Batch> {
  const ints = async (name: string) => Int32Array.from(await ref.readF32(name));
  const batch: Batch = {};
  for (const name of ref.names.filter((n) => n.startsWith("input."))) {
    const key = name.slice("input.".length), shape = ref.info(name).shape;
    const isInt = ref.info(name).dtype.startsWith("I");
    switch (key) {
      case "input_ids":
        batch.inputIdsHost = await ints(name);
        batch.inputIds = Tensor.from(gpu, batch.inputIdsHost, shape);
        break;
      case "attention_mask":
        batch.attentionMask = await ints(name);
        break;
      case "token_type_ids":
        batch.tokenTypeIds = await ints(name);
        break;
      case "pixel_values":
        batch.pixelValues = Tensor.from(gpu, await ref.readF32(name), shape);
        break;
      case "labels":
        batch.labels = isInt
          ? Tensor.from(gpu, await ints(name), shape)
          : Tensor.from(gpu, await ref.readF32(name), shape);
        break;
      default:
        throw new Error(
          `${ref.path}: unknown input "${name}" (expected input_ids, attention_mask, ` +
            `token_type_ids, pixel_values or labels)`,
        );
    }
  }
  return batch;
}

/** The rows as an aligned text table, failures (rel-L2 above `tol`) marked. */
export function formatModelParity(rows: readonly ModelParityRow[], tol: number): string {
  const head = ["output", "shape", "max-abs", "rel-L2", ""];
  const body = rows.map((r) => [
    r.output,
    `[${r.shape.join(", ")}]`,
    r.maxAbs.toExponential(2),
    r.relL2.toExponential(2),
    r.relL2 <= tol ? "ok" : `FAIL (> ${tol.toExponential()})`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  return [head, ...body].map((cols) => cols.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join(
    "\n",
  );
}
