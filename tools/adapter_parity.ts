/**
 * Adapter parity against the reference fixtures (made with PyTorch and PEFT in float64), run
 * through `deno task parity MODEL_DIR` or `deno task parity ADAPTER_DIR BASE_MODEL_DIR`:
 *
 * MODEL_DIR (a model with `reference.json` and `reference.safetensors`, tests/fixtures/models/*):
 * for each transform K of dht, dht2d, dft, the SSH adapter of SPEC §1.3 with the stored
 * positions and coefficients on every target: each module's ΔW, the logits, the loss and each
 * module's coefficient gradient (rel-L2), and each module's 8 largest-energy positions
 * (`select.K.<module>.energy_top8`, exactly; for `dft`, whose mirror positions (u, v) and
 * (−u, −v) have equal energies, up to the order within such a tie: the float64 reference
 * orders them by its rounding noise, ours by the smaller flat index as SPEC §1.4 says).
 * ADAPTER_DIR BASE_MODEL_DIR (an adapter written by PEFT, tests/fixtures/adapters/*): the
 * logits of the base model with the adapter loaded, and for FourierFT each module's ΔW (PEFT
 * does not save FourierFT positions: they are redrawn from random_loc_seed as PEFT draws them,
 * and checked against those its reference.safetensors records).
 * {@link reportAdapterParity} prints a table and says whether everything is within tolerance.
 * @module
 */
import { join } from "node:path";
import { getGpu, type Gpu } from "../lib/gpu/mod.ts";
import { openSafetensors, type SafetensorsFile } from "../lib/io/safetensors.ts";
import { loadModel } from "../lib/models/load.ts";
import type { Model } from "../lib/models/model.ts";
import { referenceBatch } from "../lib/models/parity.ts";
import { applyAdapter, loadAdapterInto } from "../lib/peft/apply.ts";
import { sshConfig } from "../lib/peft/config.ts";
import type { SSHModule } from "../lib/peft/files.ts";
import { readDeltaWeight } from "../lib/peft/merge.ts";
import { SpectralLayer } from "../lib/peft/spectral_layer.ts";
import { withF32Weight } from "../lib/peft/ssh.ts";
import { compareToReference } from "../lib/spectral/reference.ts";
import { encodeEnergy, topkEnergy } from "../lib/spectral/select.ts";
import { type Transform, TRANSFORMS } from "../lib/spectral/transforms.ts";
import { noGrad, Tensor, tidy } from "../lib/tensor/mod.ts";

/** One comparison. */
export interface AdapterParityRow {
  /** The transform (SSH fixtures) or the adapter type (PEFT adapters). */
  case: string;
  /** `logits`, `loss`, `delta_w`, `grad` or `energy_top8`. */
  output: string;
  /** The module, or "" for model outputs. */
  module: string;
  /** rel-L2 error (NaN for exact comparisons). */
  relL2: number;
  maxAbs: number;
  /** For exact comparisons (positions): whether they are equal. */
  exact?: boolean;
  /** How an exact comparison matched, when not plainly. */
  note?: string;
}

/** Whether a row passes at tolerance `tol`. */
export function rowPasses(row: AdapterParityRow, tol: number): boolean {
  return row.exact !== undefined ? row.exact : row.relL2 <= tol;
}

/** The SSH rows of a fixture model directory (see the module doc). */
export async function sshFixtureParity(gpu: Gpu, dir: string): Promise<AdapterParityRow[]> {
  const info = JSON.parse(await Deno.readTextFile(join(dir, "reference.json")));
  const targets: string[] = info.targets;
  if (!Array.isArray(targets) || typeof info.alpha !== "number" || typeof info.n !== "number") {
    throw new Error(`${dir}/reference.json: expected "targets" (a list), "alpha" and "n"`);
  }
  const ref = await openSafetensors(join(dir, "reference.safetensors"));
  const rows: AdapterParityRow[] = [];
  for (const K of TRANSFORMS) {
    if (!ref.has(`${K}.logits`)) continue;
    const model = await loadModel(gpu, dir);
    try {
      rows.push(...await topEnergyRows(gpu, model, ref, K, targets));
      const modules = new Map<string, SSHModule>();
      for (const t of targets) {
        const lin = model.linears.get(t);
        if (!lin) throw new Error(`${dir}: reference target "${t}" is not a linear layer of the model`);
        modules.set(t, {
          outFeatures: lin.outFeatures,
          inFeatures: lin.inFeatures,
          spectrum: await ref.readF32(`ssh.${t}.coef`),
          indices: Int32Array.from(await ref.readF32(`ssh.${t}.indices`)),
        });
      }
      const config = sshConfig({ n: info.n, alpha: info.alpha, transform: K, targetModules: targets });
      const peft = applyAdapter(model, { config, modules, saved: new Map() });
      for (const t of targets) {
        rows.push(
          await compareRow(
            K,
            "delta_w",
            t,
            await readDeltaWeight(gpu, peft.layers.get(t)!),
            ref,
            `${K}.${t}.delta_w`,
          ),
        );
      }
      const { logits, loss } = await forwardReference(gpu, model, ref, true);
      rows.push(await compareRow(K, "logits", "", logits, ref, `${K}.logits`));
      rows.push(await compareRow(K, "loss", "", loss!, ref, `${K}.loss`));
      for (const t of targets) {
        const g = peft.layers.get(t)!.parameters()[0].grad;
        if (!g) throw new Error(`${t}: no coefficient gradient after backward`);
        rows.push(await compareRow(K, "grad", t, await g.toArray(), ref, `${K}.${t}.grad`));
      }
      peft.detach();
    } finally {
      model.dispose();
    }
  }
  return rows;
}

/** The rows of a PEFT-made adapter on its base model (see the module doc). */
export async function peftAdapterParity(
  gpu: Gpu,
  adapterDir: string,
  baseDir: string,
): Promise<AdapterParityRow[]> {
  const refPath = join(adapterDir, "reference.safetensors");
  const ref = await openSafetensors(refPath);
  const model = await loadModel(gpu, baseDir);
  try {
    const peft = await loadAdapterInto(model, adapterDir);
    const kind = peft.config.peftType.toLowerCase();
    const rows: AdapterParityRow[] = [];
    for (const [path, layer] of peft.layers) {
      const positions = `base_model.model.${path}.indices`;
      if (ref.has(positions) && layer instanceof SpectralLayer) {
        rows.push(await positionsRow(kind, path, layer.positions, ref, positions));
      }
      const key = `base_model.model.${path}.delta_w`;
      if (ref.has(key)) {
        rows.push(await compareRow(kind, "delta_w", path, await readDeltaWeight(gpu, layer), ref, key));
      }
    }
    const { logits } = await forwardReference(gpu, model, ref, false);
    rows.push(await compareRow(kind, "logits", "", logits, ref, "logits"));
    peft.detach();
    return rows;
  } finally {
    model.dispose();
  }
}

/** Run the reference inputs; with `backward`, also backpropagate the loss (gradients stay on the leaves). */
async function forwardReference(
  gpu: Gpu,
  model: Model,
  ref: SafetensorsFile,
  backward: boolean,
): Promise<{ logits: Float32Array; loss: Float32Array | null }> {
  const batch = await referenceBatch(gpu, ref);
  if (!backward) delete batch.labels;
  const run = () =>
    tidy(() => {
      const out = model.forward(batch);
      return { logits: out.logits, loss: out.loss ?? null };
    });
  const out = backward ? run() : noGrad(run);
  if (backward) {
    if (!out.loss) throw new Error(`${ref.path}: the model gave no loss (no input.labels?)`);
    out.loss.backward();
  }
  const logits = await out.logits.toArray();
  const loss = out.loss ? await out.loss.toArray() : null;
  out.logits.dispose();
  out.loss?.dispose();
  for (const t of Object.values(batch)) if (t instanceof Tensor) t.dispose();
  return { logits: Float32Array.from(logits), loss: loss && Float32Array.from(loss) };
}

/** One rel-L2 row against reference tensor `key`. */
async function compareRow(
  c: string,
  output: string,
  module: string,
  actual: Float32Array,
  ref: SafetensorsFile,
  key: string,
): Promise<AdapterParityRow> {
  return { case: c, output, module, ...compareToReference(actual, await ref.readF32(key)) };
}

/** Whether a layer's (row, col) pairs are the reference's [2, n] rows and columns, exactly. */
async function positionsRow(
  c: string,
  module: string,
  pairs: Int32Array,
  ref: SafetensorsFile,
  key: string,
): Promise<AdapterParityRow> {
  const want = await ref.read(key) as Int32Array, n = want.length / 2;
  const exact = pairs.length === want.length &&
    Array.from({ length: n }, (_, k) => pairs[2 * k] === want[k] && pairs[2 * k + 1] === want[n + k])
      .every((x) => x);
  return { case: c, output: "positions", module, relL2: NaN, maxAbs: NaN, exact };
}

/** The exact top-8 energy rows of transform K. */
async function topEnergyRows(
  gpu: Gpu,
  model: Model,
  ref: SafetensorsFile,
  K: Transform,
  targets: string[],
): Promise<AdapterParityRow[]> {
  const rows: AdapterParityRow[] = [];
  for (const t of targets) {
    const key = `select.${K}.${t}.energy_top8`;
    if (!ref.has(key)) continue;
    const lin = model.linears.get(t)!;
    const expected = Array.from(await ref.readF32(key));
    const m = lin.outFeatures, n = lin.inFeatures;
    const got = await withF32Weight(lin, async (w) => {
      const energy = encodeEnergy(gpu, K, w, m, n, { transposed: lin.layout === "in_out" });
      try {
        return Array.from(await topkEnergy(gpu, energy, m * n, expected.length));
      } finally {
        gpu.pool.release(energy);
      }
    });
    // dft energies of mirror positions (u, v), (−u, −v) are equal in exact arithmetic: ours are
    // bit-identical (ties to the smaller index), a float64 reference's differ by rounding only.
    const mirror = (f: number) => {
      const u = Math.floor(f / n), v = f % n;
      return Math.min(f, ((m - u) % m) * n + ((n - v) % n));
    };
    const canon = (list: number[]) => K === "dft" ? list.map(mirror) : list;
    const equal = (a: number[], b: number[]) => a.length === b.length && a.every((v, i) => v === b[i]);
    const same = equal(got, expected);
    const tied = !same && equal(canon(got), canon(expected));
    rows.push({
      case: K,
      output: "energy_top8",
      module: t,
      relL2: NaN,
      maxAbs: NaN,
      exact: same || tied,
      ...(tied ? { note: "equal up to mirror ties" } : {}),
    });
  }
  return rows;
}

/** The rows as an aligned table; failures marked. */
export function formatAdapterParity(rows: readonly AdapterParityRow[], tol: number): string {
  const head = ["case", "output", "module", "max-abs", "rel-L2", ""];
  const body = rows.map((r) => [
    r.case,
    r.output,
    r.module || "-",
    r.exact !== undefined ? "-" : r.maxAbs.toExponential(2),
    r.exact !== undefined ? (r.exact ? r.note ?? "equal" : "differ") : r.relL2.toExponential(2),
    rowPasses(r, tol)
      ? "ok"
      : r.exact !== undefined
      ? "FAIL (positions differ)"
      : `FAIL (> ${tol.toExponential()})`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  return [head, ...body].map((cells) => cells.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join(
    "\n",
  );
}

/** True when `dir` is an adapter directory (it holds adapter_config.json). */
export async function isAdapterDir(dir: string): Promise<boolean> {
  return await Deno.stat(join(dir, "adapter_config.json")).then((s) => s.isFile, () => false);
}

/** True when the model directory `dir` carries SSH references (reference.json targets, `dht.logits`). */
export async function hasSshReferences(dir: string): Promise<boolean> {
  try {
    const info = JSON.parse(await Deno.readTextFile(join(dir, "reference.json")));
    return Array.isArray(info.targets) &&
      (await openSafetensors(join(dir, "reference.safetensors"))).has("dht.logits");
  } catch {
    return false;
  }
}

/**
 * Run the SSH fixture checks of a MODEL_DIR (`[dir]`) or the checks of a PEFT adapter
 * (`[adapterDir, baseDir]`), print a heading and the table; true when every row passes.
 */
export async function reportAdapterParity(dirs: [string] | [string, string], tol: number): Promise<boolean> {
  const gpu = await getGpu();
  const rows = dirs.length === 1
    ? await sshFixtureParity(gpu, dirs[0])
    : await peftAdapterParity(gpu, dirs[0], dirs[1]);
  console.log(dirs.length === 1 ? `${dirs[0]}: SSH adapters (f32 weights)` : `${dirs[0]} on ${dirs[1]}`);
  console.log(formatAdapterParity(rows, tol));
  const bad = rows.filter((r) => !rowPasses(r, tol)).length;
  console.log(bad === 0 ? `all ${rows.length} checks pass` : `${bad} of ${rows.length} checks fail`);
  return bad === 0;
}
