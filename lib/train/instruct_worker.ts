/**
 * The module of each worker of lib/train/instruct_workers.ts: it tokenizes one chunk of
 * instructions a message, posting their tokens (their buffers moved). The tokenizer and template
 * are made from the job's recipe, and kept while the next jobs bring the same one.
 * @module
 */
import type { ChatTemplate } from "../io/chat_template.ts";
import type { Tokenizer } from "../io/tokenizer.ts";
import { serveJobs } from "../io/worker_pool.ts";
import { fromRecipe, type TokenizeJob, tokenizeJob } from "./instruct_workers.ts";

let kept: { key: string; made: Promise<{ tokenizer: Tokenizer; template: ChatTemplate | null }> } | null =
  null;

serveJobs(async (job: TokenizeJob) => {
  const key = JSON.stringify(job.recipe);
  if (kept?.key !== key) kept = { key, made: fromRecipe(job.recipe) };
  const { tokenizer, template } = await kept.made;
  const result = tokenizeJob(job, tokenizer, template);
  return {
    result,
    transfer: result.flatMap((t) => [t.ids.buffer as ArrayBuffer, t.trained.buffer as ArrayBuffer]),
  };
});
