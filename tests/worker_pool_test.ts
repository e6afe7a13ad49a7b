import { type PoolKind, WorkerPool } from "../lib/io/worker_pool.ts";
import { assertEquals, assertRejects } from "./assert.ts";

/** A worker module that echoes each job's `value`; or, as `broken`, one that fails as it loads. */
const ECHO = "data:text/javascript," +
  encodeURIComponent(
    "self.onmessage = (e) => self.postMessage({ result: e.data.value }); self.postMessage({ ready: true });",
  );
const BROKEN = "data:text/javascript," + encodeURIComponent('throw new Error("cannot load");');

type Job = { value: unknown; bad?: boolean };

/** A pool of `url`'s workers whose in-thread fallback throws as it is called for a job marked bad. */
function pool(url: string): WorkerPool<Job, unknown> {
  const kind: PoolKind<Job, unknown> = {
    name: "echo",
    url: new URL(url),
    here(job) {
      if (job.bad) throw new RangeError(`bad job ${job.value}`); // thrown, not a rejected promise
      return Promise.resolve(job.value);
    },
    message: (job) => ({ message: job, transfer: [] }),
    error: ({ message }) => new Error(message),
    describe: (job) => String(job.value),
  };
  return new WorkerPool(kind, 2);
}

Deno.test("WorkerPool: a job that cannot be posted fails alone; the others run", async () => {
  const echo = pool(ECHO);
  const unclonable = echo.run({ value: () => 1 }, false);
  const fine = [1, 2, 3].map((value) => echo.run({ value }, false));
  await assertRejects(() => unclonable, DOMException);
  assertEquals(await Promise.all(fine), [1, 2, 3]);
  await new Promise((r) => setTimeout(r, 600)); // the idle workers terminated
  assertEquals(echo.live, 0);
});

Deno.test("WorkerPool: where the workers fail to load, the jobs run here; one that throws rejects its own promise", async () => {
  const broken = pool(BROKEN);
  const jobs = [{ value: 1 }, { value: 2, bad: true }, { value: 3 }].map((job) => broken.run(job, false));
  await assertRejects(() => jobs[1], RangeError, "bad job 2");
  assertEquals([await jobs[0], await jobs[2]], [1, 3]);
  // and from then on, here at once
  assertEquals(await broken.run({ value: 4 }, false), 4);
  await assertRejects(() => broken.run({ value: 5, bad: true }, false), RangeError);
  await new Promise((r) => setTimeout(r, 600)); // the other worker started failed too, or idled out
  assertEquals(broken.live, 0);
});
