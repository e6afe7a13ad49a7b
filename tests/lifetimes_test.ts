/**
 * GPU memory across whole runs: what a `train` command leaves in the pool, and how much the pool
 * keeps allocated while the batch shapes vary from step to step.
 */
import { loadSplits } from "../lib/cli/setup.ts";
import { ensurePadToken, readModelConfig } from "../lib/cli/task.ts";
import { getGpu, type PoolStats } from "../lib/gpu/mod.ts";
import { BufferPool } from "../lib/gpu/pool.ts";
import { loadModel, loadModelTokenizer } from "../lib/models/load.ts";
import { attachAdapter } from "../lib/peft/apply.ts";
import { loraConfig } from "../lib/peft/config.ts";
import { Prng } from "../lib/spectral/prng.ts";
import { scale, Tensor } from "../lib/tensor/mod.ts";
import { adapterGroups } from "../lib/train/groups.ts";
import type { BatchSource } from "../lib/train/tasks.ts";
import { train } from "../lib/train/trainer.ts";
import { assert, assertEquals } from "./assert.ts";
import { GPT2, runCli, tinyRun, withTempDir, writeToyData } from "./train_helpers.ts";

Deno.test("pool: releaseIdle destroys the free buffers unused once the last 8 rounds peaked lower; the stream forgets their bind groups", async () => {
  const gpu = await getGpu();
  gpu.stream.flush();
  gpu.pool.trim();
  const empty = gpu.pool.stats().allocated;
  const x = Tensor.from(gpu, new Float32Array(1000), [1000]);
  const y = scale(x, 2);
  const groups = gpu.stream.bindGroupsCached;
  x.dispose();
  y.dispose();
  gpu.stream.flush();
  gpu.pool.releaseIdle();
  assertEquals(gpu.pool.stats().allocated, empty + 2 * 4096, "released in this round: kept");
  for (let i = 1; i < 8; i++) gpu.pool.releaseIdle();
  // the budget is the highest peak of the last 8 rounds, this one's included
  assertEquals(gpu.pool.stats().allocated, empty + 2 * 4096, "unused for 7 rounds: kept");
  gpu.pool.releaseIdle();
  assertEquals(gpu.pool.stats().allocated, empty, "unused for 8 rounds: destroyed");
  assertEquals(gpu.stream.bindGroupsCached, groups - 1, "the scale's bind group is dropped");
});

Deno.test("pool: a cycle of steps of varying sizes stops creating buffers after its first cycle, and memory goes back", async () => {
  const gpu = await getGpu();
  const pool = new BufferPool(gpu.device);
  const size = 65536;
  // one step: `n` buffers in use at once, all given back and their work submitted
  const step = (n: number) => {
    const held = Array.from({ length: n }, () => pool.acquire(size));
    for (const b of held) pool.release(b);
    pool.submitted(pool.nextSubmit);
    pool.releaseIdle();
    return pool.stats();
  };
  // a long batch, then shorter ones (--group-by-length): the short ones must not evict the long one's buffers
  const cycle = () => [4, 2, 1, 1].map(step);
  cycle();
  const created = pool.stats().created;
  for (let i = 0; i < 2; i++) {
    for (const s of cycle()) assertEquals(s.allocated, 4 * size, "bytes allocated: the longest step's");
  }
  assertEquals(pool.stats().created, created, "buffers created after the first cycle");
  // no long step for a while: the pool shrinks to what the short ones use
  for (let i = 0; i < 8; i++) step(1);
  assertEquals(pool.stats().allocated, size, "bytes allocated after 8 short steps");
  pool.trim();
});

Deno.test("train in-process: each run gives back all it took from the pool (adapter detached)", async () => {
  const gpu = await getGpu();
  await withTempDir("hartley_lifetimes_", async (dir) => {
    const data = await writeToyData(dir, 24);
    for (const method of [[], ["--method", "lora"]]) {
      const after: number[] = [];
      for (let i = 0; i < 2; i++) {
        const r = await runCli(tinyRun(data, `${dir}/run`, ["--steps", "1", "--overwrite", ...method]));
        assertEquals(r.code, 0, r.err);
        after.push(gpu.pool.stats().inUse);
      }
      // the first run may fill caches (an SSH transform's tables); the next one must add nothing
      assertEquals(after[1], after[0], `${method.join(" ") || "ssh"}: bytes in use after each run`);
    }
  });
});

/** Write `rows` two-class examples of 1 to `longest` words each; returns the path. */
async function writeVariedData(dir: string, rows: number, longest: number): Promise<string> {
  const rng = new Prng(5);
  const words = ["apple", "berry", "stone", "metal", "cloud", "rain"];
  const lines = Array.from({ length: rows }, (_, i) => {
    const text = Array.from({ length: 1 + rng.below(longest) }, () => words[rng.below(words.length)]);
    return JSON.stringify({ text: text.join(" "), label: i % 2 });
  });
  const path = `${dir}/varied_${rows}.jsonl`;
  await Deno.writeTextFile(path, lines.join("\n") + "\n");
  return path;
}

/** The pool's counts after each of `steps` LoRA steps of the tiny GPT-2 on `data(splits)`. */
async function poolAfterSteps(
  path: string,
  steps: number,
  data: (train: BatchSource) => BatchSource,
): Promise<PoolStats[]> {
  const gpu = await getGpu();
  const config = await readModelConfig(GPT2);
  const tokenizer = await loadModelTokenizer(config);
  const spec = { task: "seq-cls" as const, data: path, evalFraction: 0, seqLen: 64, batchSize: 4, seed: 0 };
  const splits = await loadSplits({ ...spec, groupByLength: true }, config, tokenizer, GPT2);
  const model = await loadModel(gpu, GPT2, { task: "seq-cls", numLabels: splits.numLabels, seed: 0 });
  ensurePadToken(model.config, "seq-cls", tokenizer);
  const peft = await attachAdapter(
    model,
    loraConfig({ r: 4, targetModules: ["c_attn"], taskType: "SEQ_CLS" }),
    {
      seed: 0,
    },
  );
  const stats: PoolStats[] = [];
  try {
    await train({
      model,
      task: "seq-cls",
      data: data(splits.train),
      groups: adapterGroups(peft, { lr: 0.01, headLr: 0.01 }),
      totalSteps: steps + 1, // asked before the first step and after every step but the last
      warmupSteps: 0,
      seed: 0,
      logEvery: 3,
      setTraining: (on) => peft.train(on),
      shouldStop: () => {
        stats.push(gpu.pool.stats());
        return false;
      },
    });
  } finally {
    peft.detach();
    model.dispose();
  }
  return stats;
}

Deno.test("train: a step of the same shapes as the last reuses its buffers, creating none", async () => {
  await withTempDir("hartley_pool_", async (dir) => {
    const path = await writeVariedData(dir, 40, 40);
    // the first batch, every step (grouped by length: the longest)
    const stats = await poolAfterSteps(path, 8, (train) => {
      const batch = train.batch(train.positionAt(0));
      return { ...train, positionAt: (s) => train.positionAt(s), batch: () => batch };
    });
    const steady = stats.slice(2); // from the end of step 1 on
    assertEquals(steady.map((s) => s.created), steady.map(() => steady[0].created), "buffers created");
    assertEquals(steady.map((s) => s.allocated), steady.map(() => steady[0].allocated), "bytes allocated");
  });
});

Deno.test("train: batches of varying length keep about what the longest needs allocated, not every shape seen", async () => {
  await withTempDir("hartley_pool_", async (dir) => {
    const path = await writeVariedData(dir, 120, 60);
    const longest = await poolAfterSteps(path, 4, (train) => {
      const batch = train.batch(train.positionAt(0));
      return { ...train, positionAt: (s) => train.positionAt(s), batch: () => batch };
    });
    const varying = await poolAfterSteps(path, 24, (train) => train);
    const most = Math.max(...varying.map((s) => s.allocated)), bound = longest.at(-1)!.allocated;
    assert(most <= 1.25 * bound, `${most} bytes allocated, the longest batch's steps ${bound}`);
  });
});
