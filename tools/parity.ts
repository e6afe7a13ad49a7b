/**
 * Parity check against float64 references on the GPU.
 *
 *   deno run -A tools/parity.ts FILE.safetensors [--tol 1e-5]
 *
 * FILE is a spectral reference file (`x_MxN` inputs with `dht_`, `dht2d_`, `dft_`,
 * `dht_rows_` references, e.g. tests/fixtures/dht_reference.safetensors). Prints a table and
 * exits 1 when any rel-L2 error is above the tolerance.
 * @module
 */
import { parseArgs } from "node:util";
import { spectralParity } from "./parity_spectral.ts";

const USAGE = `usage: deno run -A tools/parity.ts FILE.safetensors [--tol 1e-5]

Compares the GPU transforms with the float64 references stored in FILE (a safetensors file
with x_MxN inputs and dht_MxN, dht2d_MxN, dft_MxN, dht_rows_MxN references).

  --tol X     largest rel-L2 error accepted (default 1e-5)
  -h, --help  this help`;

/** Entry point; returns the process exit code. */
export async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { tol: { type: "string", default: "1e-5" }, help: { type: "boolean", short: "h" } },
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
  const tol = Number(values.tol);
  if (positionals.length !== 1 || !(tol > 0)) {
    console.error(
      positionals.length !== 1
        ? `expected one FILE, got ${positionals.length}\n\n${USAGE}`
        : `bad --tol '${values.tol}'`,
    );
    return 2;
  }
  return await spectralParity(positionals[0], tol) ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
