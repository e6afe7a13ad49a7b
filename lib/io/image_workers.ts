/**
 * PNG and JPEG files decoded ({@link decodeImage}) and resized ({@link resizeBilinear}) on a pool
 * of module Workers (lib/io/image_worker.ts; the pool's rules in lib/io/worker_pool.ts), so that
 * tens of thousands of images (20–30 ms each on one core) keep every core busy instead of one.
 * Errors come back as this thread would have thrown them: an {@link ImageFileError} or an
 * {@link ImageError} by its class, with its message.
 * @module
 */
import { ImageError, resizeBilinear, type RgbImage } from "./image.ts";
import { decodeImage, ImageFileError } from "./image_files.ts";
import { type PoolKind, WorkerPool } from "./worker_pool.ts";

export { IDLE_MS } from "./worker_pool.ts";

/** One encoded image to decode, and the size to resize it to (none: as decoded). */
export interface DecodeJob {
  /** The PNG or JPEG file's bytes. */
  bytes: Uint8Array;
  /** Names the image in errors. */
  source: string;
  /** The size it is resized to; null to keep the decoded size. */
  resizeTo: { width: number; height: number } | null;
}

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
  return (pool ??= new WorkerPool(IMAGE_DECODING, imageWorkerCount())).run(job, opts.transfer);
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

const IMAGE_DECODING: PoolKind<DecodeJob, RgbImage> = {
  name: "image decoding",
  url: new URL("./image_worker.ts", import.meta.url),
  here: decodeResizedHere,
  message(job, give) {
    const { data: bytes, buffer } = movable(give ? job.bytes : job.bytes.slice());
    return { message: { ...job, bytes }, transfer: [buffer] };
  },
  error: errorFromWorker,
  describe: (job) => job.source,
};

let pool: WorkerPool<DecodeJob, RgbImage> | null = null;

/** `data`, or a copy where it shares its buffer, and the buffer to move to another thread with it. */
export function movable<T extends RgbImage["data"]>(data: T): { data: T; buffer: ArrayBuffer } {
  const whole = data.buffer instanceof ArrayBuffer && data.byteOffset === 0 &&
    data.byteLength === data.buffer.byteLength;
  const own = whole ? data : data.slice() as T;
  return { data: own, buffer: own.buffer as ArrayBuffer };
}
