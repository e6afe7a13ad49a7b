import { assert, assertEquals } from "./assert.ts";
import { FIXTURES, loadableFamilies } from "./peft_helpers.ts";
import { getGpu } from "../lib/gpu/mod.ts";
import {
  type AdapterParityRow,
  formatAdapterParity,
  rowPasses,
  sshFixtureParity,
} from "../tools/adapter_parity.ts";
import { main } from "../tools/parity.ts";

const TOL = 1e-4;

for (const family of loadableFamilies()) {
  Deno.test(`SSH fixture parity on ${family}: ΔW, logits, loss, gradients, energy positions`, async () => {
    const gpu = await getGpu();
    const rows = await sshFixtureParity(gpu, `${FIXTURES}models/${family}`);
    const targets = JSON.parse(await Deno.readTextFile(`${FIXTURES}models/${family}/reference.json`)).targets;
    for (const K of ["dht", "dht2d", "dft"]) {
      const of = (output: string) => rows.filter((r) => r.case === K && r.output === output).length;
      assertEquals(
        [of("delta_w"), of("grad"), of("energy_top8"), of("logits"), of("loss")],
        [targets.length, targets.length, targets.length, 1, 1],
        `${family} ${K}: rows`,
      );
    }
    const bad = rows.filter((r) => !rowPasses(r, TOL));
    assert(bad.length === 0, `${family}: above tolerance\n${formatAdapterParity(bad, TOL)}`);
  });
}

Deno.test("adapter parity table marks failures; the CLI checks its arguments", async () => {
  const rows: AdapterParityRow[] = [
    { case: "dht", output: "logits", module: "", relL2: 2e-7, maxAbs: 1e-7 },
    { case: "dht", output: "grad", module: "m", relL2: 3e-3, maxAbs: 1e-2 },
    { case: "dft", output: "energy_top8", module: "m", relL2: NaN, maxAbs: NaN, exact: false },
  ];
  const table = formatAdapterParity(rows, TOL).split("\n");
  assertEquals(table.length, 4);
  assert(
    table[1].endsWith("ok") && table[2].includes("FAIL") && table[3].includes("positions differ"),
    table.join("\n"),
  );
  const error = console.error;
  console.error = () => {};
  try {
    assertEquals(await main(["--tol", "x", "a"]), 2);
    assertEquals(await main([]), 2);
    assertEquals(await main(["a", "b", "c"]), 2);
  } finally {
    console.error = error;
  }
});

if (loadableFamilies().includes("gpt2")) {
  Deno.test("adapter parity CLI: a PEFT adapter on its base model passes", async () => {
    const log = console.log;
    console.log = () => {};
    try {
      assertEquals(await main([`${FIXTURES}adapters/gpt2-lora`, `${FIXTURES}models/gpt2`]), 0);
      assertEquals(
        await main([`${FIXTURES}adapters/gpt2-lora`, `${FIXTURES}models/gpt2`, "--tol", "1e-12"]),
        1,
      );
    } finally {
      console.log = log;
    }
  });
}
