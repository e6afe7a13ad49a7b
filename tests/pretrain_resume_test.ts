/**
 * `hartley pretrain --resume`: init/ records the options the run was started with, so that
 * `--resume --out DIR` alone continues it with them (its model, its training, its --export), with
 * the options of one session (--stop-at, -q) beside; an option given again with another value is
 * refused naming the flag.
 */
import { join } from "node:path";
import { shellLine } from "../lib/cli/run_dir.ts";
import { pathExists } from "../lib/io/paths.ts";
import { loadCheckpoint } from "../lib/train/checkpoint.ts";
import { assert, assertEquals } from "./assert.ts";
import { cliProcess, runCli, withTempDir } from "./train_helpers.ts";

const BPE = "tests/fixtures/tokenizers/bytelevel_bpe.json";

/** A tiny run's options, none of them pretrain's defaults, on `text` into `out`, exported to `exported`. */
function recipe(text: string, out: string, exported: string): string[] {
  return [
    "pretrain",
    ...["--layers", "1", "--hidden", "16", "--heads", "2", "--positions", "32", "--tokenizer", BPE],
    ...["--data", text, "--seq-len", "16", "--batch-size", "2", "--steps", "3", "--max-eval", "2"],
    ...["--lr", "0.01", "--seed", "3", "--out", out, "--export", exported],
  ];
}

Deno.test("pretrain --resume --out DIR alone continues the run with the options it was started with", async () => {
  await withTempDir("hartley-pretrain-resume-", async (dir) => {
    const text = join(dir, "lm.txt");
    await Deno.writeTextFile(text, "the cat sat on a mat and the dog ran far away from home ".repeat(40));
    const out = join(dir, "run"), exported = join(dir, "export");
    const started = await runCli([...recipe(text, out, exported), "--stop-at", "1", "-q"]);
    assertEquals(started.code, 0, started.err);

    // an option given again is held to the run's value: the same one passes, another is refused
    const cases: [string[], string][] = [
      [["--lr", "0.02"], "differences: --lr: 0.01 → 0.02)"],
      [["--hidden", "32"], "differences: --hidden: 16 → 32; --intermediate: 64 → 128)"],
      [["--steps", "5", "--seed", "0"], "differences: --seed: 3 → 0; --steps: 3 → 5)"],
      [["--epochs", "2"], "differences: --steps: 3 → unset)"],
    ];
    for (const [change, message] of cases) {
      const r = await runCli(["pretrain", "--out", out, "--resume", "-q", ...change]);
      assertEquals(r.code, 2, `${change}: ${r.err}`);
      assert(r.err.includes(`--resume: the run in ${out} was started with other options`), r.err);
      assert(r.err.includes(message), r.err);
    }

    // the options of one session go with the recorded ones, and the recorded paths (the tokenizer's
    // relative to this checkout) are read from the folder the run started in, from any other
    const again = await cliProcess([
      "pretrain",
      "--out",
      "run",
      "--resume",
      "--stop-at",
      "2",
      "--lr",
      "0.01",
      "-q",
    ], {
      cwd: dir,
    });
    assertEquals(again.code, 0, again.err);
    assertEquals((await loadCheckpoint(out)).state.step, 2);
    assert(!await pathExists(exported), "a stopped run exports nothing");

    const finished = await runCli(["pretrain", "--out", out, "--resume", "-q"]);
    assertEquals(finished.code, 0, finished.err);
    assertEquals(
      JSON.parse(await Deno.readTextFile(join(exported, "config.json"))).n_embd,
      16,
      "the run's model, exported where it was started to be",
    );
    // the record of the options stays with the run: not in the model it saves, nor in the export
    for (const folder of [join(out, "model"), exported]) {
      const names = [];
      for await (const e of Deno.readDir(folder)) names.push(e.name);
      assert(
        !names.some((n) => n.startsWith("recipe") || n.startsWith("pretrain_args")),
        `${folder}: ${names}`,
      );
    }
    const record = JSON.parse(await Deno.readTextFile(join(exported, "pretraining.json")));
    assertEquals(record.command, `deno run -A cli.ts ${shellLine(recipe(text, out, exported))}`);
    assertEquals(record.steps, 3);
  });
});
