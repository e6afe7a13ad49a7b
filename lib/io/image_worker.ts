/**
 * The module of each worker of lib/io/image_workers.ts: it decodes and resizes one
 * {@link DecodeJob} a message, posting the image (its buffer moved).
 * @module
 */
import { type DecodeJob, decodeResizedHere, movable } from "./image_workers.ts";
import { serveJobs } from "./worker_pool.ts";

serveJobs(async (job: DecodeJob) => {
  const image = await decodeResizedHere(job);
  const { data, buffer } = movable(image.data);
  return { result: { ...image, data }, transfer: [buffer] };
});
