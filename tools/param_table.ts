/**
 * Print the trainable-parameter comparison (SSH, LoRA r=8, FourierFT n=1000, full
 * fine-tuning) on RoBERTa-base/large, GPT-2 medium and LLaMA-3.1-8B as a markdown table.
 *
 *     deno run -A tools/param_table.ts
 * @module
 */
import { paramTable } from "../lib/peft/param_count.ts";

console.log(paramTable());
