/**
 * What `train` does to its --out before training: it never replaces or removes what the run reads
 * (a second-stage run's `--model OUT/model`), counts a folder as holding a run only beside a run's
 * log or checkpoint, and a Ctrl-C before the first step leaves --out as it was.
 */
import { join } from "node:path";
import { RunLog } from "../lib/train/log.ts";
import { findCheckpoint } from "../lib/train/checkpoint.ts";
import { assert, assertEquals } from "./assert.ts";
import { folderSnapshot, GPT2, runCli, tinyRun, withTempDir, writeToyData } from "./train_helpers.ts";

/** Copy the folder `from` (files and folders alone) to `to`. */
async function copy(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    if (e.isDirectory) await copy(join(from, e.name), join(to, e.name));
    else await Deno.copyFile(join(from, e.name), join(to, e.name));
  }
}

/** A finished run in `out` (its log and adapter), as a full run's `model/` copy of GPT2 where `full`. */
async function finishedRun(out: string, full: boolean): Promise<void> {
  await Deno.mkdir(out, { recursive: true });
  if (full) await copy(GPT2, join(out, "model"));
  else {
    await Deno.mkdir(join(out, "adapter"));
    await Deno.writeTextFile(join(out, "adapter", "adapter_config.json"), "{}\n");
  }
  await Deno.writeTextFile(join(out, "log.jsonl"), `{"type":"start","step":0}\n`);
}

Deno.test("train: --model or --data inside what the run in --out replaces is refused, --overwrite or not", async () => {
  await withTempDir("hartley_train_out_", async (dir) => {
    const data = await writeToyData(dir, 40);
    const out = join(dir, "st");
    await finishedRun(out, true);
    const model = join(out, "model");
    const before = await folderSnapshot(out);
    for (const extra of [[], ["--overwrite"]]) {
      const r = await runCli([...tinyRun(data, out, ["--steps", "1", ...extra]), "--model", model]);
      assertEquals(r.code, 2, r.err);
      assert(
        r.err.includes(`--model ${model} lies in ${model}, which a run in --out ${out} replaces`),
        r.err,
      );
    }
    const inAdapter = join(out, "adapter", "cls.jsonl");
    await Deno.mkdir(join(out, "adapter"));
    await Deno.copyFile(data, inAdapter);
    const r = await runCli(tinyRun(inAdapter, out, ["--steps", "1", "--overwrite"]));
    assertEquals(r.code, 2, r.err);
    assert(r.err.includes(`--data ${inAdapter} lies in ${join(out, "adapter")}`), r.err);
    await Deno.remove(join(out, "adapter"), { recursive: true });
    assertEquals(await folderSnapshot(out), before);
  });
});

Deno.test("train: a model/ in --out without a run log or checkpoint is no run, and --overwrite does not remove it", async () => {
  await withTempDir("hartley_train_out_", async (dir) => {
    const data = await writeToyData(dir, 40);
    await copy(GPT2, join(dir, "model"));
    const before = await folderSnapshot(dir);
    for (const extra of [[], ["--overwrite"]]) {
      const r = await runCli(tinyRun(data, dir, ["--steps", "1", ...extra]));
      assertEquals(r.code, 2, r.err);
      assert(!r.err.includes("already holds a run"), r.err);
      assert(r.err.includes(`--out ${dir} holds ${join(dir, "model")} but no run`), r.err);
    }
    assertEquals(await folderSnapshot(dir), before);
  });
});

Deno.test("train: Ctrl-C while the model loads exits 130 before --overwrite clears --out, training nothing", async () => {
  await withTempDir("hartley_train_out_", async (dir) => {
    const data = await writeToyData(dir, 40);
    const out = join(dir, "run");
    await finishedRun(out, false);
    const before = await folderSnapshot(out);
    // the Ctrl-C comes as the run starts listening for it, before the model loads
    const add = Deno.addSignalListener;
    Deno.addSignalListener = (signal, handler) => {
      add(signal, handler);
      if (signal === "SIGINT") handler();
    };
    let r;
    try {
      r = await runCli(tinyRun(data, out, ["--steps", "2", "--overwrite"]));
    } finally {
      Deno.addSignalListener = add;
    }
    assertEquals(r.code, 130, r.err);
    // said as it comes: no step is under way to finish, nor a checkpoint to save
    assert(r.err.includes("Ctrl-C: stopping before the first step, once the setup in progress ends"), r.err);
    assert(
      r.err.includes(`stopped before the first step: nothing was trained and --out ${out} is as it was`),
      r.err,
    );
    assertEquals(await folderSnapshot(out), before);
  });
});

Deno.test("train: Ctrl-C while the trainer sets up says it stops before the first step, not after one", async () => {
  await withTempDir("hartley_train_out_", async (dir) => {
    const data = await writeToyData(dir, 40);
    let ctrlC: (() => void) | undefined;
    const add = Deno.addSignalListener, write = RunLog.prototype.write;
    Deno.addSignalListener = (signal, handler) => {
      add(signal, handler);
      if (signal === "SIGINT") ctrlC = handler;
    };
    // the Ctrl-C comes once the start record is written, as the trainer sets up (its listener runs
    // at the trainer's last look before the first step)
    RunLog.prototype.write = function (record) {
      const written = write.call(this, record);
      if (record.type === "start") {
        written.then(() => {
          // a message, as a signal comes: delivered at the trainer's turn of the event loop (lib/train/trainer.ts nextTurn)
          const { port1, port2 } = new MessageChannel();
          port1.onmessage = () => {
            port1.close();
            port2.close();
            ctrlC?.();
          };
          port2.postMessage(null);
        });
      }
      return written;
    };
    let r;
    try {
      r = await runCli(tinyRun(data, join(dir, "run"), ["--steps", "2"]));
    } finally {
      Deno.addSignalListener = add;
      RunLog.prototype.write = write;
    }
    assertEquals(r.code, 130, r.err);
    assert(r.err.includes("Ctrl-C: stopping before the first step"), r.err);
    assert(!r.err.includes("stopping after this step"), r.err);
    assert(r.err.includes("stopped before the first step: nothing was trained"), r.err);
  });
});

Deno.test("train: Ctrl-C as the run log opens exits 130 with no step trained and no checkpoint", async () => {
  await withTempDir("hartley_train_out_", async (dir) => {
    const data = await writeToyData(dir, 40);
    const out = join(dir, "run");
    // the Ctrl-C comes once --out is cleared, as the run opens its log
    let ctrlC: (() => void) | undefined;
    const add = Deno.addSignalListener, open = Deno.open;
    Deno.addSignalListener = (signal, handler) => {
      add(signal, handler);
      if (signal === "SIGINT") ctrlC = handler;
    };
    Deno.open = (path, options) => {
      if (String(path).endsWith("log.jsonl")) ctrlC?.();
      return open(path, options);
    };
    let r;
    try {
      r = await runCli(tinyRun(data, out, ["--steps", "2", "--overwrite"]));
    } finally {
      Deno.addSignalListener = add;
      Deno.open = open;
    }
    assertEquals(r.code, 130, r.err);
    assert(r.err.includes("stopped before the first step: nothing was trained"), r.err);
    assert(!r.err.includes("is as it was"), r.err);
    assertEquals(await findCheckpoint(out), null);
    const log = (await Deno.readTextFile(join(out, "log.jsonl"))).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    assertEquals(log.map((r) => [r.type, r.step]), [["start", 0], ["end", 0]]);
  });
});
