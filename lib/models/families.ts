/**
 * The built-in model families, registered with loadModel's registry on import. A new family
 * module adds its `registerFamily` line here (see the contract at the top of load.ts).
 * @module
 */
import { bertFamily, distilbertFamily, robertaFamily } from "./bert.ts";
import { gpt2Family } from "./gpt2.ts";
import { llamaFamily } from "./llama.ts";
import { registerFamily } from "./registry.ts";
import { vitFamily } from "./vit.ts";

registerFamily("bert", bertFamily);
registerFamily("distilbert", distilbertFamily);
registerFamily("gpt2", gpt2Family);
registerFamily("llama", llamaFamily("llama"));
registerFamily("mistral", llamaFamily("mistral"));
registerFamily("qwen2", llamaFamily("qwen2"));
registerFamily("qwen3", llamaFamily("qwen3"));
registerFamily("phi3", llamaFamily("phi3"));
registerFamily("roberta", robertaFamily);
registerFamily("vit", vitFamily);
