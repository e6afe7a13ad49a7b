/**
 * inspect's SVG files, given with --svg or by default (energy.svg, loss.svg), replace an existing
 * file only with --overwrite (checked before the model loads), and never the --log file they plot.
 */
import { join, resolve } from "node:path";
import { assert, assertEquals } from "./assert.ts";
import { cliProcess, GPT2, runCli, withTempDir } from "./train_helpers.ts";

const OLD = "an earlier file";

/** A run log of two training steps in `dir`. */
async function writeLog(dir: string): Promise<string> {
  const log = join(dir, "log.jsonl");
  const records = [{ type: "train", step: 1, loss: 2 }, { type: "train", step: 2, loss: 1.5 }];
  await Deno.writeTextFile(log, records.map((r) => JSON.stringify(r)).join("\n") + "\n");
  return log;
}

Deno.test("inspect --log: an existing --svg is refused without --overwrite, replaced with it", async () => {
  await withTempDir("hartley-inspect-svg-", async (dir) => {
    const log = await writeLog(dir), svg = join(dir, "loss.svg");
    await Deno.writeTextFile(svg, OLD);
    const refused = await runCli(["inspect", "--log", log, "--svg", svg]);
    assertEquals(refused.code, 2, refused.err);
    assert(refused.err.includes(`--svg ${svg} already exists: pass --overwrite to replace it`), refused.err);
    assertEquals(await Deno.readTextFile(svg), OLD);
    const replaced = await runCli(["inspect", "--log", log, "--svg", svg, "--overwrite"]);
    assertEquals(replaced.code, 0, replaced.err);
    assert((await Deno.readTextFile(svg)).startsWith("<svg"), "the loss curve replaced it");
    // no temporary file is left beside it
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assertEquals(names, ["log.jsonl", "loss.svg"]);
  });
});

Deno.test("inspect: the default loss.svg and energy.svg are not replaced without --overwrite", async () => {
  await withTempDir("hartley-inspect-svg-", async (dir) => {
    const log = await writeLog(dir), model = resolve(GPT2);
    await Deno.writeTextFile(join(dir, "loss.svg"), OLD);
    await Deno.writeTextFile(join(dir, "energy.svg"), OLD);
    // started in dir, where the default files go (a subprocess: `deno test --parallel` shares this
    // process's working folder between test files)
    const inDir = (args: string[]) => cliProcess(args, { cwd: dir });
    const loss = await inDir(["inspect", "--log", log]);
    assertEquals(loss.code, 2, loss.err);
    assert(loss.err.includes("loss.svg (written without --svg) already exists: pass --overwrite"), loss.err);
    const energy = await inDir(["inspect", "--model", model, "--layer", "h.0.attn.c_attn"]);
    assertEquals(energy.code, 2, energy.err);
    assert(energy.err.includes("energy.svg (written without --svg) already exists"), energy.err);
    assertEquals(energy.out, "", "no summary printed: nothing was loaded");
    const replaced = await inDir(["inspect", "--log", log, "--overwrite"]);
    assertEquals(replaced.code, 0, replaced.err);
    assert((await Deno.readTextFile(join(dir, "loss.svg"))).startsWith("<svg"), "replaced");
    assertEquals(await Deno.readTextFile(join(dir, "energy.svg")), OLD);
  });
});

Deno.test("inspect --layer: an existing --svg is refused before the model loads; --overwrite replaces it", async () => {
  await withTempDir("hartley-inspect-svg-", async (dir) => {
    const svg = join(dir, "energy.svg");
    await Deno.writeTextFile(svg, OLD);
    const args = ["inspect", "--model", GPT2, "--layer", "h.0.attn.c_attn", "--n", "8", "--max-cells", "8"];
    const refused = await runCli([...args, "--svg", svg]);
    assertEquals(refused.code, 2, refused.err);
    assert(refused.err.includes(`--svg ${svg} already exists: pass --overwrite to replace it`), refused.err);
    assertEquals(refused.out, "", "no summary printed: nothing was loaded");
    const replaced = await runCli([...args, "--svg", svg, "--overwrite"]);
    assertEquals(replaced.code, 0, replaced.err);
    assert((await Deno.readTextFile(svg)).includes("transformer.h.0.attn.c_attn: dht energy"), "the heatmap");
  });
});

Deno.test("inspect --overwrite: refused without an SVG to write, and never over the --log file", async () => {
  await withTempDir("hartley-inspect-svg-", async (dir) => {
    const log = await writeLog(dir);
    const alone = await runCli(["inspect", "--model", GPT2, "--overwrite"]);
    assertEquals(alone.code, 2, alone.err);
    assert(alone.err.includes("--overwrite does not apply without --layer or --log"), alone.err);
    const before = await Deno.readTextFile(log);
    for (const named of [log, dir]) {
      const r = await runCli(["inspect", "--log", named, "--svg", log, "--overwrite"]);
      assertEquals(r.code, 2, r.err);
      assert(r.err.includes(`--svg ${log} is the --log file: the SVG would replace it`), r.err);
    }
    assertEquals(await Deno.readTextFile(log), before);
  });
});
