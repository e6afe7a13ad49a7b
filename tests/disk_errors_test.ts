// Outputs when the disk fills up or a path cannot be written: the error names the file a reader
// would look for and says why in words, what was there before is kept whole, no temporary file is
// left, and a training run stopped by a failed checkpoint resumes from the one before. The failures
// are injected where Deno's file calls are (a disk with so many bytes of room, a read-only folder);
// the last test fills a real 2 MiB tmpfs where this runs as root.
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { writeDirAtomic, WriteError, writeFileAtomic } from "../lib/io/atomic.ts";
import { writeSafetensors } from "../lib/io/safetensors_write.ts";
import { loadAdapter, saveAdapter } from "../lib/peft/files.ts";
import { loadCheckpoint, saveCheckpoint, type TrainerState } from "../lib/train/checkpoint.ts";
import { readRunLog, RunLog } from "../lib/train/log.ts";
import { ArgsError } from "../lib/cli/args.ts";
import { checkOutputDir, checkOutputFolder } from "../lib/cli/output.ts";
import { folderNames, GPT2, runCli, withTempDir, writeToyData } from "./train_helpers.ts";

/** An error as Deno reports the system's: its code, and the system's message without a path. */
function osError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}
const diskFull = () => osError("ENOSPC", "No space left on device (os error 28)");
const readOnly = () => osError("EROFS", "Read-only file system (os error 30)");

/**
 * Run `fn` as on a disk with `room` bytes free: a write to a file past them writes what fits, then
 * the next fails with ENOSPC, as Deno's do; a copy that does not fit fails whole.
 */
async function withDiskRoom<T>(room: number, fn: () => Promise<T>): Promise<T> {
  const write = Deno.FsFile.prototype.write;
  const deno = Deno as { copyFile: typeof Deno.copyFile };
  const copyFile = deno.copyFile;
  let left = room;
  Deno.FsFile.prototype.write = function (this: Deno.FsFile, bytes: Uint8Array) {
    if (left <= 0 && bytes.length > 0) return Promise.reject(diskFull());
    const n = Math.min(left, bytes.length);
    left -= n;
    return write.call(this, bytes.subarray(0, n));
  };
  deno.copyFile = async (from, to) => {
    const size = (await Deno.stat(from)).size;
    if (size > left) throw diskFull();
    left -= size;
    await copyFile(from, to);
  };
  try {
    return await fn();
  } finally {
    Deno.FsFile.prototype.write = write;
    deno.copyFile = copyFile;
  }
}

/**
 * Run `fn` with the folders in `readOnly` taking no new entry: making a temporary file or folder
 * there fails with EROFS (the probes that check an output before the work; root passes chmod).
 */
async function withReadOnly<T>(folders: string[], fn: () => Promise<T>): Promise<T> {
  const deno = Deno as { makeTempDir: typeof Deno.makeTempDir; makeTempFile: typeof Deno.makeTempFile };
  const { makeTempDir, makeTempFile } = deno;
  const refused = (opts?: Deno.MakeTempOptions) => folders.includes(opts?.dir ?? "");
  deno.makeTempDir = (opts) => refused(opts) ? Promise.reject(readOnly()) : makeTempDir(opts);
  deno.makeTempFile = (opts) => refused(opts) ? Promise.reject(readOnly()) : makeTempFile(opts);
  try {
    return await fn();
  } finally {
    Object.assign(deno, { makeTempDir, makeTempFile });
  }
}

Deno.test("a file write the full disk cuts short: a WriteError naming the file, the old file kept, no temporary file", async () => {
  await withTempDir("hartley_disk_", async (dir) => {
    const text = `${dir}/out.jsonl`, weights = `${dir}/w.safetensors`;
    await writeFileAtomic(text, "old\n");
    await writeSafetensors(weights, { w: { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) } });
    const before = await Deno.readFile(weights);
    const e = await withDiskRoom(
      3,
      () => assertRejects(() => writeFileAtomic(text, "new text\n"), WriteError),
    );
    assertEquals([e.message, e.path], [`cannot write ${text}: the disk is full`, text]);
    const big = { w: { dtype: "F32" as const, shape: [1000], data: new Float32Array(1000) } };
    await withDiskRoom(
      100,
      () =>
        assertRejects(
          () => writeSafetensors(weights, big),
          WriteError,
          `cannot write ${weights}: the disk is full`,
        ),
    );
    assertEquals(await Deno.readTextFile(text), "old\n");
    assertEquals(await Deno.readFile(weights), before);
    assertEquals(await folderNames(dir), ["out.jsonl", "w.safetensors"]);
  });
});

Deno.test("a write the folder's permissions refuse: a WriteError naming the file, not its temporary file", async () => {
  await withTempDir("hartley_disk_", async (dir) => {
    const deno = Deno as { open: typeof Deno.open };
    const open = deno.open;
    deno.open = (path, opts) =>
      opts?.write
        ? Promise.reject(new Deno.errors.PermissionDenied(`Permission denied (os error 13): open '${path}'`))
        : open(path, opts);
    try {
      await assertRejects(
        () => writeFileAtomic(`${dir}/l.svg`, "<svg/>"),
        WriteError,
        `cannot write ${dir}/l.svg: permission denied`,
      );
    } finally {
      deno.open = open;
    }
    assertEquals(await folderNames(dir), []);
  });
});

Deno.test("saveAdapter on a full disk names the file in the adapter folder and keeps the old adapter whole", async () => {
  await withTempDir("hartley_disk_", async (dir) => {
    const adapter = await loadAdapter("tests/fixtures/adapters/gpt2-lora");
    const out = `${dir}/adapter`;
    await saveAdapter(out, adapter);
    const before = await Deno.readFile(`${out}/adapter_model.safetensors`);
    await withDiskRoom(
      500,
      () =>
        assertRejects(
          () => saveAdapter(out, adapter),
          WriteError,
          `cannot write ${out}/adapter_model.safetensors: the disk is full`,
        ),
    );
    assertEquals(await Deno.readFile(`${out}/adapter_model.safetensors`), before);
    assertEquals((await loadAdapter(out)).modules.size, adapter.modules.size);
    assertEquals(await folderNames(dir), ["adapter"], "no temporary folder left");
  });
});

Deno.test("writeDirAtomic: a full disk met by a copy names the folder; a path through a file is named; other errors pass", async () => {
  await withTempDir("hartley_disk_", async (dir) => {
    const out = `${dir}/model`;
    await Deno.writeTextFile(`${dir}/big`, "x".repeat(100));
    await withDiskRoom(10, () =>
      assertRejects(
        () => writeDirAtomic(out, (tmp) => Deno.copyFile(`${dir}/big`, `${tmp}/big`)),
        WriteError,
        `cannot write ${out}: the disk is full`,
      ));
    await assertRejects(
      () => writeDirAtomic(`${dir}/big/model`, (tmp) => Deno.writeTextFile(`${tmp}/a`, "1")),
      WriteError,
      `cannot write ${dir}/big/model: part of its path is a file, not a folder`,
    );
    // reading a source is no write of the folder: its error is left as it is
    const denied = new Deno.errors.PermissionDenied("Permission denied (os error 13): open 'src'");
    const e = await assertRejects(() => writeDirAtomic(out, () => Promise.reject(denied)));
    assert(e === denied, String(e));
    assertEquals(await folderNames(dir), ["big"]);
  });
});

Deno.test("saveCheckpoint on a full disk names the file, says which checkpoint is kept, and that one loads", async () => {
  await withTempDir("hartley_disk_", async (dir) => {
    const state = (step: number): TrainerState => ({
      step,
      totalSteps: 4,
      position: { epoch: 0, step },
      rng: { seed: 1, step },
      fingerprint: {},
      elapsed: 0,
      tokens: 0,
    });
    const optimizer = { names: ["w"], m: [new Float32Array(64)], v: [new Float32Array(64)], steps: [1] };
    const weights = (tmp: string) => writeFileAtomic(`${tmp}/weights.bin`, new Uint8Array(64));
    const first = await withDiskRoom(
      10,
      () => assertRejects(() => saveCheckpoint(dir, state(1), optimizer, weights), WriteError),
    );
    assertEquals(
      first.message,
      `cannot write ${dir}/checkpoint/weights.bin: the disk is full. ` +
        `The checkpoint of step 1 was not written, and there is no earlier one to resume from`,
    );
    await saveCheckpoint(dir, state(1), optimizer, weights);
    const second = await withDiskRoom(
      300,
      () => assertRejects(() => saveCheckpoint(dir, state(2), optimizer, weights), WriteError),
    );
    assertEquals(
      second.message,
      `cannot write ${dir}/checkpoint/optimizer.safetensors: the disk is full. The checkpoint of step 2 ` +
        `was not written; the one of step 1 in ${dir}/checkpoint is kept: once the cause is fixed, --resume ` +
        `continues from it`,
    );
    assertEquals((await loadCheckpoint(dir)).state.step, 1);
    assertEquals(await folderNames(dir), ["checkpoint"]);
  });
});

Deno.test("RunLog: a record the disk refuses is a WriteError naming the log, which keeps whole records alone", async () => {
  await withTempDir("hartley_disk_", async (dir) => {
    const path = `${dir}/log.jsonl`;
    const log = await RunLog.open(path);
    try {
      await log.write({ type: "start", step: 0 });
      await withDiskRoom(10, () =>
        assertRejects(
          () => log.write({ type: "train", step: 1, loss: 0.5 }),
          WriteError,
          `cannot write ${path}: the disk is full`,
        ));
      await log.write({ type: "train", step: 2, loss: 0.25 });
    } finally {
      log.close();
    }
    assertEquals(
      await Deno.readTextFile(path),
      `{"type":"start","step":0}\n{"type":"train","step":2,"loss":0.25}\n`,
    );
    assertEquals((await readRunLog(path)).length, 2);
  });
});

Deno.test("an output its folder cannot take is refused before the work: a file's folder, a run's folder, a folder replaced whole", async () => {
  await withTempDir("hartley_disk_", async (dir) => {
    await Deno.mkdir(`${dir}/run`);
    await withReadOnly([dir], async () => {
      await assertRejects(
        () => checkOutputFolder("out", `${dir}/p.jsonl`),
        ArgsError,
        `--out ${dir}/p.jsonl: cannot write in its folder ${dir} (the file system is read-only); write elsewhere`,
      );
      await assertRejects(
        () => checkOutputDir("out", `${dir}/new/run`),
        ArgsError,
        `cannot create a folder in ${dir} (the file system is read-only); give another folder`,
      );
      // a run's folder that exists takes its files inside; a merged model's is written beside it
      await checkOutputDir("out", `${dir}/run`);
      await assertRejects(() => checkOutputDir("out", `${dir}/run`, { whole: true }), ArgsError, dir);
    });
    await withReadOnly([`${dir}/run`], () =>
      assertRejects(
        () => checkOutputDir("out", `${dir}/run`),
        ArgsError,
        `--out ${dir}/run: cannot create a folder in ${dir}/run (the file system is read-only)`,
      ));
    assertEquals(await folderNames(dir), ["run"]);
  });
});

Deno.test("merge --overwrite into a folder whose parent takes no new entry: refused before any loading", async () => {
  await withTempDir("hartley_disk_", async (dir) => {
    await Deno.mkdir(`${dir}/merged`);
    const r = await withReadOnly([dir], () =>
      runCli([
        "merge",
        "--model",
        GPT2,
        "--adapter",
        "tests/fixtures/adapters/gpt2-lora",
        "--out",
        `${dir}/merged`,
        "--overwrite",
      ]));
    assertEquals(r.code, 2, r.err);
    assert(r.err.includes(`cannot create a folder in ${dir} (the file system is read-only)`), r.err);
    assert(!r.err.includes("storage"), "nothing loaded");
  });
});

/** A tiny full fine-tuning run (a checkpoint every step, ~1.7 MB each) into `out`. */
async function fullRun(dir: string, out: string): Promise<string[]> {
  const data = await writeToyData(dir, 24);
  return ["train", "--model", GPT2, "--data", data, "--seq-len", "8", "--batch-size", "8", "--method", "full"]
    .concat([
      "--lr",
      "0.01",
      "--head-lr",
      "0.01",
      "--steps",
      "3",
      "--save-every",
      "1",
      "--out",
      out,
      "--quiet",
    ]);
}

/** A run stopped by a checkpoint the disk refused: said so, its last checkpoint kept, and resumable. */
async function checkStoppedRun(out: string, stopped: { code: number; err: string }): Promise<void> {
  assertEquals(stopped.code, 1, stopped.err);
  assert(stopped.err.includes(`cannot write ${out}/checkpoint/`), stopped.err);
  assert(
    stopped.err.includes(`the disk is full. The checkpoint of step 2 was not written; the one of step 1`),
    stopped.err,
  );
  assertEquals((await loadCheckpoint(out)).state.step, 1);
  assertEquals(await folderNames(out), ["checkpoint", "log.jsonl"], "no half-written or temporary folder");
}

Deno.test("train: a checkpoint the full disk refuses stops the run, names the file, keeps the one before; --resume finishes", async () => {
  await withTempDir("hartley_disk_", async (dir) => {
    const out = `${dir}/run`;
    const args = await fullRun(dir, out);
    await checkStoppedRun(out, await withDiskRoom(2_500_000, () => runCli(args)));
    const resumed = await runCli(["train", "--resume", "--out", out, "--quiet"]);
    assertEquals(resumed.code, 0, resumed.err);
    assertEquals((await loadCheckpoint(out)).state.step, 3);
    assert((await folderNames(out)).includes("model"), "the final model is written");
  });
});

/** Whether this process may mount a tmpfs (root on Linux, with the right to mount). */
async function canMount(): Promise<boolean> {
  if (Deno.build.os !== "linux" || Deno.uid() !== 0) return false;
  const dir = await Deno.makeTempDir({ prefix: "hartley_mount_" });
  try {
    const mounted = await mount(dir, "1m");
    if (mounted) await new Deno.Command("umount", { args: [dir] }).output();
    return mounted;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function mount(dir: string, size: string): Promise<boolean> {
  const args = ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir];
  return await new Deno.Command("mount", { args, stderr: "null" }).output().then(
    (r) => r.success,
    () => false,
  );
}

Deno.test({
  name: "train on a real 2 MiB tmpfs: checkpoint 2 does not fit (runs as root alone: it mounts one)",
  ignore: !(await canMount()),
  fn: async () => {
    await withTempDir("hartley_disk_", async (dir) => {
      const small = `${dir}/small`;
      await Deno.mkdir(small);
      assert(await mount(small, "2m"), "mount");
      try {
        const out = `${small}/run`;
        await checkStoppedRun(out, await runCli(await fullRun(dir, out)));
      } finally {
        await new Deno.Command("umount", { args: [small] }).output();
      }
    });
  },
});

Deno.test("train: a final model the full disk refuses names the file and says how to continue from the kept checkpoint", async () => {
  await withTempDir("hartley_disk_", async (dir) => {
    const out = `${dir}/run`;
    const args = (await fullRun(dir, out)).map((a) => a === "3" ? "2" : a); // --steps 2: checkpoint 1, then model/
    // two checkpoints (≈ 1.7 MB each) fit, the model (≈ 0.6 MB) after them does not
    const stopped = await withDiskRoom(3_600_000, () => runCli(args));
    assertEquals(stopped.code, 1, stopped.err);
    assert(stopped.err.includes(`cannot write ${out}/model/`), stopped.err);
    assert(
      stopped.err.includes(`the disk is full. The checkpoint in ${out}/checkpoint is kept`),
      stopped.err,
    );
    assert(stopped.err.includes("continue with: deno run -A cli.ts train"), stopped.err);
    const resumed = await runCli(["train", "--resume", "--out", out, "--quiet"]);
    assertEquals(resumed.code, 0, resumed.err);
    assert((await folderNames(out)).includes("model"), "the final model is written");
  });
});
