/**
 * Parity checks against references computed in PyTorch / float64.
 *
 *   deno run -A tools/parity.ts PATH... [--tol X] [--dtype f32|f16]
 *
 * A directory PATH is a model directory in the fixtures' layout (config.json,
 * model.safetensors, reference.safetensors with `input.*`, `logits`, `loss`, `hidden_last`):
 * the model is loaded (any registered family), run in eval mode on the inputs, and max-abs
 * and rel-L2 errors of logits, loss and the last hidden state are printed (default tolerance
 * 1e-4). A `.safetensors` FILE is a spectral reference file (`x_MxN` inputs with `dht_`,
 * `dht2d_`, `dft_`, `dht_rows_` references, e.g. tests/fixtures/dht_reference.safetensors;
 * default tolerance 1e-5). A model directory with SSH references (reference.json `targets`) also
 * gets the SSH adapter checks of tools/adapter_parity.ts; an adapter directory (one holding
 * adapter_config.json) is followed by its base model directory: `ADAPTER_DIR BASE_MODEL_DIR`.
 * Exits 1 when any rel-L2 error is above the tolerance.
 * @module
 */
import { parseArgs } from "node:util";
import { getGpu } from "../lib/gpu/mod.ts";
import { formatModelParity, modelParity } from "../lib/models/parity.ts";
import { hasSshReferences, isAdapterDir, reportAdapterParity } from "./adapter_parity.ts";
import { spectralParity } from "./parity_spectral.ts";

const USAGE = `usage: deno run -A tools/parity.ts PATH... [--tol X] [--dtype f32|f16]

Compares our GPU results with references computed in PyTorch / float64.

  PATH is a model directory (config.json, model.safetensors, reference.safetensors): runs the
       reference inputs through the model and compares logits, loss and hidden_last;
       or a .safetensors file of spectral references (x_MxN with dht_/dht2d_/dft_/dht_rows_MxN).
       A model directory with SSH references also checks the SSH adapters (tools/adapter_parity.ts).
  ADAPTER_DIR BASE_MODEL_DIR: an adapter made by PEFT (with reference.safetensors) on its base
       model: logits and delta weights.

  --tol X     largest rel-L2 error accepted (default 1e-4 for models, 1e-5 for spectral files)
  --dtype D   storage of the model's frozen matrices: f32 (default) or f16
  -h, --help  this help`;

/** Entry point; returns the process exit code. */
export async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        tol: { type: "string" },
        dtype: { type: "string", default: "f32" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const tol = values.tol === undefined ? undefined : Number(values.tol);
  const dtype = values.dtype;
  if (positionals.length === 0 || (tol !== undefined && !(tol > 0)) || (dtype !== "f32" && dtype !== "f16")) {
    console.error(
      positionals.length === 0
        ? `expected a model directory or a .safetensors file\n\n${USAGE}`
        : tol !== undefined && !(tol > 0)
        ? `bad --tol '${values.tol}'`
        : `bad --dtype '${dtype}' (f32 or f16)`,
    );
    return 2;
  }
  let ok = true;
  for (let i = 0; i < positionals.length; i++) {
    const path = positionals[i];
    let isDir: boolean;
    try {
      isDir = (await Deno.stat(path)).isDirectory;
    } catch {
      console.error(`${path}: not found`);
      return 2;
    }
    if (isDir && await isAdapterDir(path)) {
      const base = positionals[++i];
      if (base === undefined) {
        console.error(`${path} is an adapter directory: give its base model directory after it\n\n${USAGE}`);
        return 2;
      }
      ok = await reportAdapterParity([path, base], tol ?? 1e-4) && ok;
      continue;
    }
    ok = (isDir ? await checkModel(path, tol ?? 1e-4, dtype) : await spectralParity(path, tol ?? 1e-5)) && ok;
    if (isDir && await hasSshReferences(path)) ok = await reportAdapterParity([path], tol ?? 1e-4) && ok;
  }
  return ok ? 0 : 1;
}

/** Model parity of one directory: print its table; true when every rel-L2 is within `tol`. */
async function checkModel(dir: string, tol: number, dtype: "f32" | "f16"): Promise<boolean> {
  const result = await modelParity(await getGpu(), dir, { dtype });
  console.log(`${dir}: ${result.family} (${result.task}, ${dtype} weights)`);
  console.log(formatModelParity(result.rows, tol));
  const bad = result.rows.filter((r) => !(r.relL2 <= tol)).length;
  const t = tol.toExponential();
  console.log(
    bad === 0
      ? `all ${result.rows.length} outputs within ${t}`
      : `${bad} of ${result.rows.length} above ${t}`,
  );
  return bad === 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
