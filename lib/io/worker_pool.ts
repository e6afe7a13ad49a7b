/**
 * A pool of module Workers that each run one job at a time, for CPU work that would hold one core
 * (images decoded, examples tokenized) while the others idle. {@link serveJobs} is the worker side.
 *
 * The workers start on the first job, as many as jobs wait (at most the pool's size), and are all
 * terminated once no job has been pending for {@link IDLE_MS}: a live Worker keeps a Deno process
 * from exiting (and `deno test` does not look for one), so none outlives its work by more. The
 * jobs wait here in the order given. Errors come back as this thread would have thrown them (the
 * pool's `error` rebuilds their classes). Where no Worker can start (no read permission for the
 * worker's module, or it fails to load), the jobs run in this thread instead.
 * @module
 */
import { fileURLToPath } from "node:url";

/**
 * How long the workers wait without a job before they are terminated. A worker takes 0.1–0.3 s to
 * start (its modules, a decoder's WebAssembly, a tokenizer's vocabulary): this spares that between
 * batches run one after another, and keeps a process that has finished from exiting for no longer.
 */
export const IDLE_MS = 500;

/** What a worker posts back: that it has loaded, or a job's result or error. */
export type WorkerReply<Result> =
  | { ready: true }
  | { result: Result }
  | { error: { name: string; message: string } };

/** What a pool runs, and how. */
export interface PoolKind<Job, Result> {
  /** What the workers do, for errors: "image decoding". */
  name: string;
  /** The worker's module, which calls {@link serveJobs}. */
  url: URL;
  /** The job run in this thread: what each worker does, and the fallback without them. */
  here(job: Job): Promise<Result>;
  /** The job as posted, and the buffers moved with it; with `give`, the caller's own may be moved. */
  message(job: Job, give: boolean): { message: unknown; transfer: Transferable[] };
  /** An error a worker posted, as the class this thread would have thrown. */
  error(posted: { name: string; message: string }): Error;
  /** Names a job in the error when its worker crashes. */
  describe(job: Job): string;
}

/** A job waiting for a worker, with the promise it settles. */
interface Pending<Job, Result> {
  job: Job;
  give: boolean;
  resolve: (result: Result) => void;
  reject: (error: Error) => void;
}

/** A started worker: ready once its module has loaded; its job while it has one. */
interface Member<Job, Result> {
  worker: Worker;
  ready: boolean;
  job: Pending<Job, Result> | null;
}

/** Up to `size` workers of one kind, started on demand and terminated once idle. */
export class WorkerPool<Job, Result> {
  #members: Member<Job, Result>[] = [];
  #queue: Pending<Job, Result>[] = [];
  #inThread: boolean;
  #idle: ReturnType<typeof setTimeout> | undefined;

  /** A pool of at most `size` workers running `kind`'s module. */
  constructor(private readonly kind: PoolKind<Job, Result>, readonly size: number) {
    this.#inThread = !canLoad(kind.url);
  }

  /** The workers started now, loaded or loading: none before the first job, nor once idle. */
  get live(): number {
    return this.#members.length;
  }

  /** `job`'s result from a worker (or this thread); with `give`, its buffers may be moved there. */
  run(job: Job, give: boolean): Promise<Result> {
    if (this.#inThread) return this.#here(job);
    return new Promise((resolve, reject) => {
      this.#queue.push({ job, give, resolve, reject });
      this.#dispatch();
    });
  }

  /** Jobs to free workers, workers started for jobs that wait; the idle timer when nothing is left. */
  #dispatch(): void {
    clearTimeout(this.#idle);
    for (const member of this.#members) {
      if (this.#queue.length === 0) break;
      if (member.ready && !member.job) this.#give(member, this.#queue.shift()!);
    }
    const starting = this.#members.filter((m) => !m.ready).length;
    for (
      let n = this.#queue.length - starting;
      n > 0 && this.#members.length < this.size && !this.#inThread;
      n--
    ) {
      this.#start();
    }
    // no worker can start (none will reply to call this again): the jobs waiting run here
    if (this.#inThread) this.#drainHere();
    // after a failed start too: the workers busy then are terminated once done
    if (this.#queue.length === 0 && this.#members.every((m) => !m.job)) {
      this.#idle = setTimeout(() => this.#close(), IDLE_MS);
    }
  }

  #start(): void {
    let worker: Worker;
    try {
      worker = new Worker(this.kind.url.href, { type: "module" });
    } catch {
      this.#inThread = true; // the queue runs here (see #dispatch)
      return;
    }
    const member: Member<Job, Result> = { worker, ready: false, job: null };
    member.worker.onmessage = (e: MessageEvent<WorkerReply<Result>>) => this.#reply(member, e.data);
    member.worker.onerror = (e: ErrorEvent) => {
      e.preventDefault(); // handled here: not an uncaught error of this thread
      this.#failed(member, e.message);
    };
    this.#members.push(member);
  }

  #give(member: Member<Job, Result>, pending: Pending<Job, Result>): void {
    try {
      const { message, transfer } = this.kind.message(pending.job, pending.give);
      member.worker.postMessage(message, transfer);
      member.job = pending;
    } catch (e) {
      pending.reject(e as Error); // a job that cannot be posted (a value no structured clone copies)
    }
  }

  #reply(member: Member<Job, Result>, reply: WorkerReply<Result>): void {
    const pending = member.job;
    member.job = null;
    member.ready = true;
    if ("result" in reply) pending?.resolve(reply.result);
    if ("error" in reply) pending?.reject(this.kind.error(reply.error));
    this.#dispatch();
  }

  /**
   * A worker that failed: before it loaded, workers cannot start here (the jobs run in this
   * thread from now on); in a job (its errors are posted, so this is its crash), that job fails.
   */
  #failed(member: Member<Job, Result>, message: string): void {
    const at = this.#members.indexOf(member);
    if (at < 0) return; // terminated already
    member.worker.terminate();
    this.#members.splice(at, 1);
    if (!member.ready) this.#inThread = true;
    const pending = member.job;
    pending?.reject(
      new Error(`${this.kind.describe(pending.job)}: the ${this.kind.name} worker failed: ${message}`),
    );
    this.#dispatch();
  }

  #drainHere(): void {
    for (const { job, resolve, reject } of this.#queue.splice(0)) this.#here(job).then(resolve, reject);
  }

  /** `job` run in this thread, what it throws as the promise's rejection. */
  #here(job: Job): Promise<Result> {
    return new Promise((resolve) => resolve(this.kind.here(job)));
  }

  #close(): void {
    for (const member of this.#members) member.worker.terminate();
    this.#members = [];
  }
}

/**
 * Whether this process may load a worker's module: Deno checks read permission for a local one
 * (a denied worker would print its failure on stderr before it is handled).
 */
function canLoad(url: URL): boolean {
  if (typeof Worker !== "function") return false;
  if (url.protocol !== "file:") return true;
  return Deno.permissions.querySync({ name: "read", path: fileURLToPath(url) }).state === "granted";
}

/** The worker's global scope, as far as it is used here (the project is typed for the main thread). */
interface WorkerScope {
  postMessage(reply: WorkerReply<unknown>, transfer: Transferable[]): void;
  onmessage: (e: MessageEvent) => void;
}

/**
 * The worker side of a pool: says it has loaded, then runs `run` on each message, posting its
 * result (with the buffers `run` names moved) or the error's class name and message.
 */
export function serveJobs<Job, Result>(
  run: (job: Job) => Promise<{ result: Result; transfer?: Transferable[] }>,
): void {
  const scope = self as unknown as WorkerScope;
  scope.onmessage = async (e: MessageEvent<Job>) => {
    try {
      const { result, transfer = [] } = await run(e.data);
      scope.postMessage({ result }, transfer);
    } catch (error) {
      const { name, message } = error instanceof Error ? error : new Error(String(error));
      scope.postMessage({ error: { name, message } }, []);
    }
  };
  scope.postMessage({ ready: true }, []);
}
