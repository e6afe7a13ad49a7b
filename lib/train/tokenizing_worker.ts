/**
 * The module of each worker of lib/train/tokenizing_pool.ts: it runs one tokenizing job a message,
 * posting its tokens (their buffers moved). The tokenizer and template are made from the job's
 * recipe, and kept while the next jobs bring the same one.
 * @module
 */
import type { ChatTemplate } from "../io/chat_template.ts";
import type { Tokenizer } from "../io/tokenizer.ts";
import { serveJobs } from "../io/worker_pool.ts";
import { fromRecipe, resultBuffers, runTokenizingJob, type TokenizingJob } from "./tokenizing_pool.ts";

let kept: { key: string; made: Promise<{ tokenizer: Tokenizer; template: ChatTemplate | null }> } | null =
  null;

serveJobs(async (job: TokenizingJob) => {
  const key = JSON.stringify(job.recipe);
  if (kept?.key !== key) kept = { key, made: fromRecipe(job.recipe) };
  const { tokenizer, template } = await kept.made;
  const result = runTokenizingJob(job, tokenizer, template);
  return { result, transfer: resultBuffers(result) };
});
