/**
 * PNG and JPEG files decoded ({@link decodeImage}) and resized ({@link resizeBilinear}) on a pool
 * of module Workers (lib/io/image_worker.ts), so that tens of thousands of images (20–30 ms each
 * on one core) keep every core busy instead of one.
 *
 * The workers start on the first job, as many as jobs wait (at most {@link imageWorkerCount}), and
 * are all terminated once no job has been pending for {@link IDLE_MS}: a live Worker keeps a Deno
 * process from exiting (and `deno test` does not look for one), so none outlives its work by more.
 * Each takes one job at a time; the others wait here, in the order given.
 * Errors come back as this thread would have thrown them: an {@link ImageFileError} or an
 * {@link ImageError} by its class, with its message. Where no Worker can start (no read permission
 * for the worker's module, or it fails to load), the jobs are decoded in this thread instead.
 * @module
 */
import { fileURLToPath } from "node:url";
import { ImageError, resizeBilinear, type RgbImage } from "./image.ts";
import { decodeImage, ImageFileError } from "./image_files.ts";

/** One encoded image to decode, and the size to resize it to (none: as decoded). */
export interface DecodeJob {
  /** The PNG or JPEG file's bytes. */
  bytes: Uint8Array;
  /** Names the image in errors. */
  source: string;
  /** The size it is resized to; null to keep the decoded size. */
  resizeTo: { width: number; height: number } | null;
}

/** What a worker posts back: that it has loaded, or a job's image or error. */
export type WorkerReply =
  | { ready: true }
  | { image: RgbImage }
  | { error: { name: string; message: string } };

/**
 * How long the workers wait without a job before they are terminated. A worker takes 0.1–0.3 s to
 * start (its modules, the JPEG decoder's WebAssembly): this spares that between batches decoded one
 * after another, and keeps a process that has finished from exiting for no longer.
 */
export const IDLE_MS = 500;

/**
 * The workers of the pool: one core is left to this thread (it reads the files, feeds the workers
 * and the GPU), and at most 8, past which the workers' own memory (each loads the decoders and
 * their WebAssembly) buys little: the file reads and this thread's share become the limit.
 */
export function imageWorkerCount(): number {
  return Math.min(8, Math.max(1, navigator.hardwareConcurrency - 1));
}

/**
 * `job`'s image decoded and resized, 8-bit, on the pool. With `transfer`, the bytes' buffer is moved
 * to the worker (the caller's array is emptied); else (the caller keeps them) they are copied.
 */
export function decodeResized(job: DecodeJob, opts: { transfer: boolean }): Promise<RgbImage> {
  return (pool ??= new ImagePool(imageWorkerCount())).run(job, opts.transfer);
}

/** The workers started now, loaded or loading: none before the first job, nor once idle. */
export function liveImageWorkers(): number {
  return pool?.live ?? 0;
}

/** `job` decoded and resized in this thread: what each worker does, and the fallback without them. */
export async function decodeResizedHere(job: DecodeJob): Promise<RgbImage> {
  const image = await decodeImage(job.bytes, job.source);
  return job.resizeTo ? resizeBilinear(image, job.resizeTo.width, job.resizeTo.height) : image;
}

/** An error posted by a worker, as the class this thread would have thrown. */
function errorFromWorker(error: { name: string; message: string }): Error {
  if (error.name === "ImageFileError") return new ImageFileError(error.message);
  if (error.name === "ImageError") return new ImageError(error.message);
  return Object.assign(new Error(error.message), { name: error.name });
}

/** The worker's module, resolved from this one. */
const WORKER_URL = new URL("./image_worker.ts", import.meta.url);

let pool: ImagePool | null = null;

/** A job waiting for a worker, with the promise it settles. */
interface Pending {
  job: DecodeJob;
  transfer: boolean;
  resolve: (image: RgbImage) => void;
  reject: (error: Error) => void;
}

/** A started worker: ready once its module has loaded; its job while it has one. */
interface Member {
  worker: Worker;
  ready: boolean;
  job: Pending | null;
}

class ImagePool {
  #members: Member[] = [];
  #queue: Pending[] = [];
  #inThread = !canStartWorkers();
  #idle: ReturnType<typeof setTimeout> | undefined;

  constructor(readonly size: number) {}

  get live(): number {
    return this.#members.length;
  }

  run(job: DecodeJob, transfer: boolean): Promise<RgbImage> {
    if (this.#inThread) return decodeResizedHere(job);
    return new Promise((resolve, reject) => {
      this.#queue.push({ job, transfer, resolve, reject });
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
    // no worker can start (none will reply to call this again): the jobs waiting are decoded here
    if (this.#inThread) this.#drainHere();
    // after a failed start too: the workers busy then are terminated once done
    if (this.#queue.length === 0 && this.#members.every((m) => !m.job)) {
      this.#idle = setTimeout(() => this.#close(), IDLE_MS);
    }
  }

  #start(): void {
    let worker: Worker;
    try {
      worker = new Worker(WORKER_URL.href, { type: "module" });
    } catch {
      this.#inThread = true; // the queue is decoded here (see #dispatch)
      return;
    }
    const member: Member = { worker, ready: false, job: null };
    member.worker.onmessage = (e: MessageEvent<WorkerReply>) => this.#reply(member, e.data);
    member.worker.onerror = (e: ErrorEvent) => {
      e.preventDefault(); // handled here: not an uncaught error of this thread
      this.#failed(member, e.message);
    };
    this.#members.push(member);
  }

  #give(member: Member, pending: Pending): void {
    member.job = pending;
    const { job, transfer } = pending;
    const { data: bytes, buffer } = movable(transfer ? job.bytes : job.bytes.slice());
    member.worker.postMessage({ ...job, bytes }, [buffer]);
  }

  #reply(member: Member, reply: WorkerReply): void {
    const pending = member.job;
    member.job = null;
    member.ready = true;
    if ("image" in reply) pending?.resolve(reply.image);
    if ("error" in reply) pending?.reject(errorFromWorker(reply.error));
    this.#dispatch();
  }

  /**
   * A worker that failed: before it loaded, workers cannot start here (the jobs are decoded in this
   * thread from now on); in a job (its errors are posted, so this is its crash), that job fails.
   */
  #failed(member: Member, message: string): void {
    const at = this.#members.indexOf(member);
    if (at < 0) return; // terminated already
    member.worker.terminate();
    this.#members.splice(at, 1);
    if (!member.ready) this.#inThread = true;
    const pending = member.job;
    pending?.reject(new Error(`${pending.job.source}: the image decoding worker failed: ${message}`));
    this.#dispatch();
  }

  #drainHere(): void {
    for (const { job, resolve, reject } of this.#queue.splice(0)) {
      decodeResizedHere(job).then(resolve, reject);
    }
  }

  #close(): void {
    for (const member of this.#members) member.worker.terminate();
    this.#members = [];
  }
}

/**
 * Whether this process may load the worker's module: Deno checks read permission for a local one
 * (a denied worker would print its failure on stderr before it is handled).
 */
function canStartWorkers(): boolean {
  if (typeof Worker !== "function") return false;
  if (WORKER_URL.protocol !== "file:") return true;
  return Deno.permissions.querySync({ name: "read", path: fileURLToPath(WORKER_URL) }).state === "granted";
}

/** `data`, or a copy where it shares its buffer, and the buffer to move to another thread with it. */
export function movable<T extends RgbImage["data"]>(data: T): { data: T; buffer: ArrayBuffer } {
  const whole = data.buffer instanceof ArrayBuffer && data.byteOffset === 0 &&
    data.byteLength === data.buffer.byteLength;
  const own = whole ? data : data.slice() as T;
  return { data: own, buffer: own.buffer as ArrayBuffer };
}
