import { resolve } from "node:path";
import { openSafetensors } from "../lib/io/safetensors.ts";
import { type TensorData, writeSafetensors } from "../lib/io/safetensors_write.ts";
import { clearOutDir } from "../lib/cli/run_dir.ts";
import { findCheckpoint } from "../lib/train/checkpoint.ts";
import { readRunLog } from "../lib/train/log.ts";
import { assert, assertEquals } from "./assert.ts";
import { GPT2, runCli, tinyRun, withTempDir, writeToyData } from "./train_helpers.ts";

// LoRA with dropout: its masks are keyed by the model step, which a resumed run restores
const LORA = ["--method", "lora", "--lora-dropout", "0.3", "--lr", "0.01"];
const CASES: [string, string[]][] = [
  ["SSH", []],
  ["LoRA with dropout", LORA],
  ["LoRA with dropout, 2 batches a step", [...LORA, "--grad-accum", "2"]],
];
for (const [name, method] of CASES) {
  Deno.test(`${name}: a run stopped at step K and resumed to N logs the same losses and saves the same adapter`, async () => {
    await withTempDir("hartley_resume_", async (dir) => {
      const data = await writeToyData(dir, 40);
      // stopped at 3, between logging steps: the open interval is carried in the checkpoint
      const opts = ["--steps", "6", "--log-every", "2", "--save-every", "0", "--seed", "3", ...method];
      const full = await runCli(tinyRun(data, `${dir}/full`, opts));
      assertEquals(full.code, 0, full.err);
      const stopped = await runCli(tinyRun(data, `${dir}/parts`, [...opts, "--stop-at", "3"]));
      assertEquals(stopped.code, 0, stopped.err); // a planned stop, not an interrupt
      assert(stopped.err.includes("--resume"), stopped.err);
      // `--resume --out DIR` alone continues with the options the run was started with
      const resumed = await runCli(["train", "--resume", "--out", `${dir}/parts`, "--quiet"]);
      assertEquals(resumed.code, 0, resumed.err);

      const losses = async (run: string) =>
        (await readRunLog(`${dir}/${run}/log.jsonl`)).filter((r) => r.type === "train").map((
          r,
        ) => [r.step, r.loss]);
      const a = await losses("full"), b = await losses("parts");
      assertEquals(a.length, 3);
      assertEquals(b, a, "losses of the resumed run");
      const ends = (await readRunLog(`${dir}/parts/log.jsonl`)).filter((r) => r.type === "end");
      assertEquals(ends.map((r) => r.step), [6], "the stop's end record gives way to the resumed run");
      const evalOf = async (run: string) =>
        (await readRunLog(`${dir}/${run}/log.jsonl`)).filter((r) => r.type === "eval").map((r) => r.loss);
      assertEquals(await evalOf("parts"), await evalOf("full"), "held-out loss");
      const weights = (run: string) => Deno.readFile(`${dir}/${run}/adapter/adapter_model.safetensors`);
      assertEquals(Array.from(await weights("parts")), Array.from(await weights("full")), "adapter bytes");
    });
  });
}

Deno.test("--resume refuses other settings, a directory without a checkpoint and a finished run; finishes a run killed before its output", async () => {
  await withTempDir("hartley_resume_", async (dir) => {
    const data = await writeToyData(dir, 24);
    const none = await runCli(tinyRun(data, `${dir}/empty`, ["--steps", "2", "--resume"]));
    assertEquals(none.code, 2);
    assert(none.err.includes("no checkpoint"), none.err);
    const first = await runCli(tinyRun(data, `${dir}/run`, ["--steps", "4", "--stop-at", "1"]));
    assertEquals(first.code, 0, first.err);
    const other = await runCli(tinyRun(data, `${dir}/run`, ["--steps", "4", "--resume", "--lr", "0.2"]));
    assertEquals(other.code, 2);
    assert(other.err.includes("lr: 0.1 → 0.2"), other.err);
    // a field of the adapter config is named, not the whole config
    const otherN = await runCli(tinyRun(data, `${dir}/run`, ["--steps", "4", "--resume", "--n", "5"]));
    assertEquals(otherN.code, 2);
    assert(otherN.err.includes("adapter.n: 24 → 5"), otherN.err);
    // the same --model spelled otherwise (absolute here) resumes: the adapter keeps it as typed
    const absolute = tinyRun(data, `${dir}/run`, ["--steps", "4", "--resume", "--stop-at", "2"])
      .map((a) => a === GPT2 ? resolve(GPT2) : a);
    const moved = await runCli(absolute);
    assertEquals(moved.code, 0, moved.err);
    const again = await runCli(tinyRun(data, `${dir}/run`, ["--steps", "4"]));
    assertEquals(again.code, 2);
    assert(again.err.includes("already holds a run"), again.err);
    // the data's shaping is part of the settings too
    const grouped = await runCli(
      tinyRun(data, `${dir}/run`, ["--steps", "4", "--resume", "--group-by-length"]),
    );
    assertEquals(grouped.code, 2);
    assert(grouped.err.includes("groupByLength: unset → true"), grouped.err);
    // a finished run is over
    assertEquals((await runCli(tinyRun(data, `${dir}/run`, ["--steps", "4", "--resume"]))).code, 0);
    const finished = await runCli(tinyRun(data, `${dir}/run`, ["--steps", "4", "--resume"]));
    assertEquals(finished.code, 2);
    assert(finished.err.includes("is finished (step 4 of 4)"), finished.err);
    // killed after its last checkpoint, before its adapter was written: --resume writes it, the same
    const adapter = await Deno.readFile(`${dir}/run/adapter/adapter_model.safetensors`);
    await Deno.remove(`${dir}/run/adapter`, { recursive: true });
    const log = (await Deno.readTextFile(`${dir}/run/log.jsonl`)).trim().split("\n");
    await Deno.writeTextFile(
      `${dir}/run/log.jsonl`,
      log.filter((l) => !l.includes('"end"')).join("\n") + "\n",
    );
    const evals = (await readRunLog(`${dir}/run/log.jsonl`)).filter((r) => r.type === "eval").length;
    const rescued = await runCli(tinyRun(data, `${dir}/run`, ["--steps", "4", "--resume"]));
    assertEquals(rescued.code, 0, rescued.err);
    assertEquals(await Deno.readFile(`${dir}/run/adapter/adapter_model.safetensors`), adapter);
    const records = await readRunLog(`${dir}/run/log.jsonl`);
    assertEquals([records.filter((r) => r.type === "eval").length, records.at(-1)?.type], [evals, "end"]);
    // a log alone (a run that failed before its first checkpoint) holds nothing to keep
    await Deno.mkdir(`${dir}/failed`);
    await Deno.writeTextFile(`${dir}/failed/log.jsonl`, '{"type":"start","step":0}\n');
    const retry = await runCli(tinyRun(data, `${dir}/failed`, ["--steps", "1"]));
    assertEquals(retry.code, 0, retry.err);
  });
});

Deno.test("--overwrite clears what a crash mid-save left beside the old run, so --resume cannot continue that run", async () => {
  await withTempDir("hartley_resume_overwrite_", async (dir) => {
    const data = await writeToyData(dir, 24);
    const out = `${dir}/run`;
    const first = await runCli(tinyRun(data, out, ["--steps", "4", "--stop-at", "1"]));
    assertEquals(first.code, 0, first.err);
    // a crash between the two renames of the next save: the checkpoint lies aside, the new one half written
    await Deno.rename(`${out}/checkpoint`, `${out}/.checkpoint.0123abcd.old`);
    await Deno.mkdir(`${out}/.checkpoint.4567cdef.tmp`);
    await Deno.mkdir(`${out}/.adapter.89abcdef.old`);
    await Deno.writeTextFile(`${out}/.log.jsonl.0a1b2c3d.tmp`, "");
    await Deno.writeTextFile(`${out}/notes.txt`, "not the run's");
    assert(await findCheckpoint(out), "the checkpoint aside is found");
    await clearOutDir(out);
    assertEquals(await findCheckpoint(out), null, "no checkpoint after clearing");
    const left = [];
    for await (const e of Deno.readDir(out)) left.push(e.name);
    assertEquals(left, ["notes.txt"]);
    const resumed = await runCli(tinyRun(data, out, ["--steps", "4", "--resume"]));
    assertEquals(resumed.code, 2, resumed.err);
    assert(resumed.err.includes("holds no checkpoint"), resumed.err);
  });
});

Deno.test("--resume with --save-best or --early-stop refuses another --max-eval or --eval-every; a checkpoint from before they were kept accepts them", async () => {
  await withTempDir("hartley_resume_eval_", async (dir) => {
    const data = await writeToyData(dir, 40);
    const out = `${dir}/run`;
    const opts = ["--steps", "4", "--eval-every", "2", "--max-eval", "6", "--save-best"];
    const first = await runCli(tinyRun(data, out, [...opts, "--stop-at", "2"]));
    assertEquals(first.code, 0, first.err);
    const changes: [string[], string][] = [
      [["--max-eval", "4"], "maxEval: 6 → 4"],
      [["--eval-every", "1"], "evalEvery: 2 → 1"],
    ];
    for (const [flags, change] of changes) {
      const other = await runCli(["train", "--resume", "--out", out, "--quiet", ...flags]);
      assertEquals(other.code, 2, other.err);
      assert(other.err.includes("was started with other settings") && other.err.includes(change), other.err);
    }
    // a checkpoint written before the two were part of the settings: resumed as it is asked
    const file = `${out}/checkpoint/trainer_state.json`;
    const state = JSON.parse(await Deno.readTextFile(file));
    delete state.fingerprint.maxEval;
    delete state.fingerprint.evalEvery;
    await Deno.writeTextFile(file, JSON.stringify(state));
    const old = await runCli(["train", "--resume", "--out", out, "--quiet", "--max-eval", "4"]);
    assertEquals(old.code, 0, old.err);
  });
});

Deno.test("--resume with a --stop-at at or before the checkpoint's step is refused", async () => {
  await withTempDir("hartley_resume_stop_", async (dir) => {
    const data = await writeToyData(dir, 24);
    const out = `${dir}/run`;
    const first = await runCli(tinyRun(data, out, ["--steps", "4", "--stop-at", "2"]));
    assertEquals(first.code, 0, first.err);
    for (const stop of ["1", "2"]) {
      const r = await runCli(["train", "--resume", "--out", out, "--quiet", "--stop-at", stop]);
      assertEquals(r.code, 2, r.err);
      assert(r.err.includes(`--stop-at ${stop}`) && r.err.includes("step 2"), r.err);
    }
    const on = await runCli(["train", "--resume", "--out", out, "--quiet", "--stop-at", "3"]);
    assertEquals(on.code, 0, on.err);
    assert(on.err.includes("stopped at step 3"), on.err);
  });
});

Deno.test("stopped at a --save-every step between logging steps: the resumed run logs what the uninterrupted run logs", async () => {
  await withTempDir("hartley_resume_save_", async (dir) => {
    const data = await writeToyData(dir, 40);
    // the checkpoint of step 3 keeps the open interval (steps 1-3): both runs log steps 1-4 at step 4
    const opts = ["--steps", "6", "--log-every", "4", "--save-every", "3", "--seed", "3"];
    const full = await runCli(tinyRun(data, `${dir}/full`, opts));
    assertEquals(full.code, 0, full.err);
    const stopped = await runCli(tinyRun(data, `${dir}/parts`, [...opts, "--stop-at", "3"]));
    assertEquals(stopped.code, 0, stopped.err);
    const resumed = await runCli(["train", "--resume", "--out", `${dir}/parts`, "--quiet"]);
    assertEquals(resumed.code, 0, resumed.err);
    const losses = async (run: string) =>
      (await readRunLog(`${dir}/${run}/log.jsonl`)).filter((r) => r.type === "train").map((
        r,
      ) => [r.step, r.loss]);
    const a = await losses("full");
    assertEquals(a.map(([step]) => step), [4, 6]);
    assertEquals(await losses("parts"), a, "train log of the resumed run");
    const weights = (run: string) => Deno.readFile(`${dir}/${run}/adapter/adapter_model.safetensors`);
    assertEquals(Array.from(await weights("parts")), Array.from(await weights("full")), "adapter bytes");
  });
});

/** A copy of the GPT-2 fixture with every F32 tensor stored as `dtype`. */
async function storedAs(dtype: "BF16" | "F16", dir: string): Promise<string> {
  await Deno.mkdir(dir);
  for (const name of ["config.json", "generation_config.json", "tokenizer.json"]) {
    await Deno.copyFile(`${GPT2}/${name}`, `${dir}/${name}`);
  }
  const source = await openSafetensors(`${GPT2}/model.safetensors`);
  const tensors: Record<string, TensorData> = {};
  for (const name of source.names) {
    const info = source.info(name);
    tensors[name] = info.dtype === "F32"
      ? { dtype, shape: info.shape, data: await source.readF32(name) }
      : { dtype: info.dtype, shape: info.shape, data: await source.read(name) };
  }
  await writeSafetensors(`${dir}/model.safetensors`, tensors, source.metadata);
  return dir;
}

Deno.test("--method full on a BF16 model: the checkpoint keeps F32 weights, so a resumed run logs the same losses; its outputs keep BF16", async () => {
  await withTempDir("hartley_resume_bf16_", async (dir) => {
    const model = await storedAs("BF16", `${dir}/bf16`);
    const data = await writeToyData(dir, 40);
    const run = (out: string, extra: string[] = []) =>
      runCli([
        ...tinyRun(data, out, ["--method", "full", "--lr", "1e-3", "--steps", "4", "--log-every", "1"]),
        ...["--eval-every", "2", "--save-best"],
        ...extra,
      ].map((a) => a === GPT2 ? model : a));
    const full = await run(`${dir}/full`);
    assertEquals(full.code, 0, full.err);
    const stopped = await run(`${dir}/parts`, ["--stop-at", "2"]);
    assertEquals(stopped.code, 0, stopped.err);
    const ckpt = await openSafetensors(`${dir}/parts/checkpoint/model/model.safetensors`);
    assertEquals([...new Set(ckpt.names.map((n) => ckpt.info(n).dtype))], ["F32"], "checkpoint dtypes");
    const resumed = await runCli(["train", "--resume", "--out", `${dir}/parts`, "--quiet"]);
    assertEquals(resumed.code, 0, resumed.err);
    const losses = async (run: string) =>
      (await readRunLog(`${dir}/${run}/log.jsonl`)).filter((r) => r.type === "train").map((
        r,
      ) => [r.step, r.loss]);
    assertEquals(await losses("parts"), await losses("full"), "train log of the resumed run");
    // the exported model, and the best evaluation's, keep the source's dtype
    for (const out of ["model", "best/model"]) {
      const file = await openSafetensors(`${dir}/parts/${out}/model.safetensors`);
      assertEquals([...new Set(file.names.map((n) => file.info(n).dtype))], ["BF16"], out);
    }
  });
});
