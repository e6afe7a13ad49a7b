/**
 * The CLI as a subprocess, for what the in-process runCli cannot see: Ctrl-C or SIGTERM during
 * `train` (the run stops after the step it is in, however far the next --log-every step, with a
 * checkpoint and exit status 130 or 143; a second signal exits at once) and progress displays
 * written straight to stderr.
 */
import { findCheckpoint, loadCheckpoint } from "../lib/train/checkpoint.ts";
import { assert, assertEquals } from "./assert.ts";
import { CLI, cliProcess, GPT2, runCli, tinyRun, withTempDir, writeToyData } from "./train_helpers.ts";

/** `train ARGS` as a subprocess; `until` reads its stderr until a pattern shows, `end` to its exit. */
function spawnTrain(args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.getReader();
  const decoder = new TextDecoder();
  let err = "";
  return {
    child,
    async until(pattern: RegExp): Promise<void> {
      while (!pattern.test(err)) {
        const { value, done } = await reader.read();
        if (done) break;
        err += decoder.decode(value);
      }
    },
    async end(): Promise<{ code: number; err: string }> {
      for (let r = await reader.read(); !r.done; r = await reader.read()) err += decoder.decode(r.value);
      return { code: (await child.status).code, err };
    },
  };
}

// a terminal's Ctrl-C, and a scheduler's or `timeout`'s SIGTERM (Windows has no SIGTERM to listen for)
for (const [signal, status] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
  Deno.test({
    name: `train: ${signal} between log steps stops after the current step with a checkpoint, exit ${status}`,
    ignore: signal === "SIGTERM" && Deno.build.os === "windows",
    fn: async () => {
      await withTempDir("hartley_signal_", async (dir) => {
        const data = await writeToyData(dir, 40);
        const out = `${dir}/run`;
        const steps = 400;
        // tinyRun's options, but with the progress display the test waits for
        const run = spawnTrain(
          tinyRun(data, out, ["--steps", String(steps), "--log-every", "1000", "--save-every", "0"]).filter((
            a,
          ) => a !== "--quiet"),
        );
        // the progress display's first line comes as the steps start: from there no step awaits a
        // loss readback before step 1000
        await run.until(new RegExp(`ssh +0/${steps}`));
        run.child.kill(signal);
        const { code, err } = await run.end();
        assertEquals(code, status, err);
        const stopped = Number(err.match(/stopped at step (\d+)/)?.[1]);
        assert(stopped >= 1 && stopped < steps / 4, `stopped at step ${stopped} of ${steps}:\n${err}`);
        assert(await findCheckpoint(out), "a checkpoint");
        assertEquals((await loadCheckpoint(out)).state.step, stopped);
      });
    },
  });
}

Deno.test("train: a second Ctrl-C exits at once, saying whether a checkpoint is kept", async () => {
  await withTempDir("hartley_sigint_twice_", async (dir) => {
    // an evaluation of 1000 examples after every step: the first Ctrl-C's checkpoint is that far off
    const data = await writeToyData(dir, 2000);
    const out = `${dir}/run`;
    const args = tinyRun(data, out, ["--steps", "400", "--eval-fraction", "0.5", "--eval-every", "1"]);
    const interruptTwice = async (args: string[], from: number) => {
      const run = spawnTrain(args);
      await run.until(new RegExp(`ssh +${from}/400`));
      run.child.kill("SIGINT");
      await run.until(/Ctrl-C: stopping after this step/);
      run.child.kill("SIGINT");
      return await run.end();
    };
    const first = await interruptTwice(args.filter((a) => a !== "--quiet"), 0);
    assertEquals(first.code, 130, first.err);
    assert(first.err.includes("no checkpoint was written yet"), first.err);
    assertEquals(await findCheckpoint(out), null);
    const stopped = await runCli([...args, "--stop-at", "1"]);
    assertEquals(stopped.code, 0, stopped.err);
    const resumed = await interruptTwice(["train", "--resume", "--out", out], 1);
    assertEquals(resumed.code, 130, resumed.err);
    assert(resumed.err.includes("the last one is kept"), resumed.err);
    assertEquals((await loadCheckpoint(out)).state.step, 1);
  });
});

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
