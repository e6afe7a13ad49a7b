/**
 * The CLI as a subprocess, for what the in-process runCli cannot see: Ctrl-C during `train` (the
 * run stops after the step it is in, however far the next --log-every step, with a checkpoint and
 * exit status 130) and progress displays written straight to stderr.
 */
import { findCheckpoint, loadCheckpoint } from "../lib/train/checkpoint.ts";
import { assert, assertEquals } from "./assert.ts";
import { GPT2, tinyRun, withTempDir, writeToyData } from "./train_helpers.ts";

Deno.test("train: Ctrl-C between log steps stops after the current step with a checkpoint, exit 130", async () => {
  await withTempDir("hartley_sigint_", async (dir) => {
    const data = await writeToyData(dir, 40);
    const out = `${dir}/run`;
    const steps = 400;
    const child = new Deno.Command(Deno.execPath(), {
      // tinyRun's options, but with the progress display the test waits for
      args: [
        "run",
        "-A",
        "cli.ts",
        ...tinyRun(data, out, ["--steps", String(steps), "--log-every", "1000", "--save-every", "0"]).filter((
          a,
        ) => a !== "--quiet"),
      ],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    // the progress display's first line comes as the steps start: from there no step awaits a
    // loss readback before step 1000
    let err = "";
    const decoder = new TextDecoder();
    const reader = child.stderr.getReader();
    while (!new RegExp(`ssh +0/${steps}`).test(err)) {
      const { value, done } = await reader.read();
      if (done) break;
      err += decoder.decode(value);
    }
    child.kill("SIGINT");
    for (let r = await reader.read(); !r.done; r = await reader.read()) err += decoder.decode(r.value);
    const { code } = await child.status;
    assertEquals(code, 130, err);
    const stopped = Number(err.match(/stopped at step (\d+)/)?.[1]);
    assert(stopped >= 1 && stopped < steps / 4, `stopped at step ${stopped} of ${steps}:\n${err}`);
    assert(await findCheckpoint(out), "a checkpoint");
    assertEquals((await loadCheckpoint(out)).state.step, stopped);
  });
});

/** `deno run -A cli.ts ARGS`: its exit code, stdout and stderr. */
async function cliProcess(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", "cli.ts", ...args] }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: r.code, out: text(r.stdout), err: text(r.stderr) };
}

Deno.test("eval: a progress display on stderr for many batches, none with --quiet", async () => {
  // 21 windows of 3 tokens, one a batch
  const args = ["eval", "--model", GPT2, "--data", "tests/fixtures/data/tiny.txt", "--seq-len", "2"];
  const shown = await cliProcess([...args, "--batch-size", "1"]);
  assertEquals(shown.code, 0, shown.err);
  assert(shown.err.includes("eval batches 21/21"), shown.err);
  assert(shown.out.startsWith("causal-lm on tests/fixtures/data/tiny.txt: loss"), shown.out);
  const quiet = await cliProcess([...args, "--batch-size", "1", "--quiet"]);
  assertEquals([quiet.code, quiet.err, quiet.out], [0, "", shown.out]);
});

Deno.test("cli: with no command the usage goes to stderr (exit 2); --help prints it on stdout (exit 0)", async () => {
  const none = await cliProcess([]);
  assertEquals([none.code, none.out], [2, ""]);
  assert(none.err.includes("usage: deno run -A cli.ts <command> [options]"), none.err);
  const help = await cliProcess(["--help"]);
  assertEquals([help.code, help.err], [0, ""]);
  assert(help.out.includes("usage: deno run -A cli.ts <command> [options]"), help.out);
});
