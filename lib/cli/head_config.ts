/**
 * The config.json of a model directory hartley writes (a merged model, a fully fine-tuned one)
 * names the head it was trained with, so `transformers` and `loadModel` rebuild that head.
 * @module
 */
import { join } from "node:path";
import { writeFileAtomic } from "../io/atomic.ts";
import "../models/families.ts";
import { getFamily } from "../models/registry.ts";
import type { TaskName } from "../train/tasks.ts";

/**
 * Make a written model directory's config.json describe its head: `architectures` for the
 * task and, for classification, `id2label`/`label2id` (so the directory loads with the
 * right head); GPT-2/LLaMA classifiers also get a `pad_token_id` when they had none.
 */
export async function describeHead(
  dir: string,
  task: TaskName,
  labelNames: string[] | undefined,
  numLabels: number | undefined,
  padId?: number,
): Promise<void> {
  const path = join(dir, "config.json");
  const json = JSON.parse(await Deno.readTextFile(path));
  const arch = getFamily(json.model_type)?.architectures[task];
  if (arch) json.architectures = [arch];
  if (task !== "causal-lm" && numLabels !== undefined) {
    const names = Array.from({ length: numLabels }, (_, i) => labelNames?.[i] ?? `LABEL_${i}`);
    json.id2label = Object.fromEntries(names.map((n, i) => [String(i), n]));
    json.label2id = Object.fromEntries(names.map((n, i) => [n, i]));
    if (
      json.pad_token_id == null && padId !== undefined &&
      (json.model_type === "gpt2" || json.model_type === "llama")
    ) {
      json.pad_token_id = padId;
    }
  }
  await writeFileAtomic(path, JSON.stringify(json, null, 2) + "\n");
}
