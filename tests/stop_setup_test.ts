/**
 * A stop asked for while the trainer sets up, after the CLI's last look at its stop signal and
 * before the first step: nothing is trained and no checkpoint written, as a Ctrl-C while the
 * model loads (tests/train_out_test.ts).
 */
import { join } from "node:path";
import {
  adapterGroups,
  attachAdapter,
  BatchIterator,
  ClassificationDataset,
  getGpu,
  loadCheckpoint,
  loadModel,
  loadModelTokenizer,
  sshConfig,
  train,
  type TrainResult,
} from "../mod.ts";
import { findCheckpoint } from "../lib/train/checkpoint.ts";
import { readRunLog, RunLog } from "../lib/train/log.ts";
import { assert, assertEquals } from "./assert.ts";
import { folderSnapshot, GPT2, runCli, tinyRun, withTempDir, writeToyData } from "./train_helpers.ts";

/** What a {@link scripted} session did besides its result. */
interface Session {
  result: TrainResult;
  /** The steps `shouldStop` was asked at. */
  asked: number[];
  /** Folders weights were written to, and evaluations run. */
  writes: string[];
  evals: number;
  /** Whether the SSH coefficients are as they were before the session. */
  unchanged: boolean;
}

/**
 * Train GPT-2 with SSH as a 2-class classifier for up to 4 steps into `out`, with its log; a
 * `stopAt` step stops it there, `stopNow` asks for a stop as a signal comes in: at a later turn
 * of the event loop than the call to train(), which sets up without one.
 */
async function scripted(out: string, opts: { stopAt?: number; stopNow?: boolean; resume?: boolean }) {
  const gpu = await getGpu();
  const model = await loadModel(gpu, GPT2, { task: "seq-cls", numLabels: 2 });
  const tokenizer = await loadModelTokenizer(model.config);
  model.config.padTokenId ??= tokenizer.padId;
  const peft = await attachAdapter(model, sshConfig({ n: 8, taskType: "SEQ_CLS" }));
  const examples = Array.from({ length: 16 }, (_, i) => ({ text: `row ${i}`, label: i % 2 }));
  const data = new BatchIterator(new ClassificationDataset(examples, tokenizer, { maxLength: 8 }), {
    batchSize: 4,
  });
  const resumeFrom = opts.resume ? await loadCheckpoint(out) : undefined;
  const log = await RunLog.open(join(out, "log.jsonl"), { resumeAt: resumeFrom?.state.step });
  const groups = adapterGroups(peft, { lr: 0.01, headLr: 0.01 });
  const coefficients = groups[0].params[0].tensor;
  const before = await coefficients.toArray();
  const asked: number[] = [], writes: string[] = [];
  let evals = 0, stopAsked = false;
  try {
    if (opts.stopNow) queueMicrotask(() => stopAsked = true);
    const result = await train({
      model,
      task: "seq-cls",
      data,
      groups,
      totalSteps: 4,
      warmupSteps: 0,
      seed: 0,
      evaluate: () => (evals++, Promise.resolve({ loss: 1, accuracy: 0.5, examples: 16, targets: 16 })),
      outDir: out,
      writeWeights: async (dir) => {
        writes.push(dir);
        await peft.save(join(dir, "adapter"));
      },
      resumeFrom,
      log,
      shouldStop: (done) => (asked.push(done), stopAsked || done === opts.stopAt),
    });
    const after = await coefficients.toArray();
    return { result, asked, writes, evals, unchanged: after.every((v, i) => v === before[i]) } as Session;
  } finally {
    log.close();
    peft.detach();
    model.dispose();
  }
}

Deno.test("trainer: a stop asked for as the run sets up trains, evaluates and writes nothing", async () => {
  await withTempDir("hartley_stop_setup_", async (out) => {
    const s = await scripted(out, { stopNow: true });
    assertEquals([s.result.status, s.result.steps, s.result.tokens], ["stopped", 0, 0]);
    assertEquals(s.result.losses, []);
    assertEquals(s.asked, [0], "asked once, before the first step");
    assertEquals([s.writes, s.evals], [[], 0]);
    assert(s.unchanged, "no update");
    assertEquals(await findCheckpoint(out), null);
    assertEquals(await readRunLog(join(out, "log.jsonl")), []);
  });
});

Deno.test("trainer: a resumed run stopped as it sets up keeps its checkpoint as it was", async () => {
  await withTempDir("hartley_stop_setup_resume_", async (out) => {
    const first = await scripted(out, { stopAt: 1 });
    assertEquals([first.result.status, first.result.steps], ["stopped", 1]);
    const kept = await folderSnapshot(join(out, "checkpoint"));
    const s = await scripted(out, { stopNow: true, resume: true });
    assertEquals([s.result.status, s.result.steps, s.result.tokens], ["stopped", 1, 0]);
    assertEquals([s.asked, s.writes, s.evals], [[1], [], 0]);
    assert(s.unchanged, "no update");
    assertEquals(await folderSnapshot(join(out, "checkpoint")), kept);
  });
});

/**
 * Run the CLI with a Ctrl-C that comes as the trainer sets up: after the run log is open and
 * its first records written (the CLI's last look at the signal), at the progress display's
 * look at stderr, which the trainer's setup makes before the first step.
 */
async function ctrlCAsTrainerSetsUp(args: string[]): Promise<{ code: number; err: string; sent: number }> {
  let ctrlC: (() => void) | undefined;
  let logOpen = false, sent = 0;
  const add = Deno.addSignalListener, open = Deno.open, isTerminal = Deno.stderr.isTerminal;
  Deno.addSignalListener = (signal, handler) => {
    add(signal, handler);
    if (signal === "SIGINT") ctrlC = handler;
  };
  Deno.open = (path, options) => {
    if (String(path).endsWith("log.jsonl")) logOpen = true;
    return open(path, options);
  };
  Deno.stderr.isTerminal = () => {
    if (logOpen && ctrlC && sent === 0) {
      sent++;
      ctrlC();
    }
    return isTerminal.call(Deno.stderr);
  };
  try {
    return { ...await runCli(args), sent };
  } finally {
    Deno.addSignalListener = add;
    Deno.open = open;
    Deno.stderr.isTerminal = isTerminal;
  }
}

Deno.test("train: Ctrl-C as the trainer sets up exits 130 with no step trained and no checkpoint", async () => {
  await withTempDir("hartley_stop_setup_cli_", async (dir) => {
    const data = await writeToyData(dir, 40);
    const out = join(dir, "run");
    const r = await ctrlCAsTrainerSetsUp(tinyRun(data, out, ["--steps", "2"]));
    assertEquals(r.sent, 1, "the Ctrl-C came");
    assertEquals(r.code, 130, r.err);
    assert(r.err.includes("stopped before the first step: nothing was trained"), r.err);
    assert(!r.err.includes("is as it was") && !r.err.includes("Continue with"), r.err);
    assertEquals(await findCheckpoint(out), null);
    const log = await readRunLog(join(out, "log.jsonl"));
    assertEquals(log.map((r) => [r.type, r.step, r.status]), [["start", 0, undefined], [
      "end",
      0,
      "stopped",
    ]]);
  });
});

Deno.test("train --resume: Ctrl-C as the trainer sets up exits 130 and keeps the checkpoint as it was", async () => {
  await withTempDir("hartley_stop_setup_cli_resume_", async (dir) => {
    const data = await writeToyData(dir, 40);
    const out = join(dir, "run");
    const first = await runCli(tinyRun(data, out, ["--steps", "3", "--stop-at", "1"]));
    assertEquals(first.code, 0, first.err);
    const kept = await folderSnapshot(join(out, "checkpoint"));
    const r = await ctrlCAsTrainerSetsUp(["train", "--resume", "--out", out, "--quiet"]);
    assertEquals(r.sent, 1, "the Ctrl-C came");
    assertEquals(r.code, 130, r.err);
    assert(
      r.err.includes(
        "stopped before the first step: nothing was trained; the checkpoint is kept. Continue with:",
      ),
      r.err,
    );
    assertEquals(await folderSnapshot(join(out, "checkpoint")), kept);
    const log = await readRunLog(join(out, "log.jsonl"));
    assertEquals(log.slice(-2).map((r) => [r.type, r.step]), [["resume", 1], ["end", 1]]);
    assertEquals(log.filter((r) => r.type === "train" && r.step > 1), []);
  });
});
