/**
 * The hartley command line. Run `deno run -A cli.ts --help`.
 * @module
 */
import { parseArgs } from "node:util";
import denoJson from "./deno.json" with { type: "json" };
import { evalCommand } from "./lib/cli/eval.ts";
import { predictCommand } from "./lib/cli/predict.ts";
import { chatCommand } from "./lib/cli/chat.ts";
import { ArgsError, nearestName } from "./lib/cli/args.ts";
import { applyEnvironment } from "./lib/cli/environment.ts";
import { infoCommand } from "./lib/cli/info.ts";
import { inspectCommand } from "./lib/cli/inspect.ts";
import { mergeCommand } from "./lib/cli/merge.ts";
import { Progress } from "./lib/train/progress.ts";
import { pretrainCommand } from "./lib/cli/pretrain.ts";
import { trainCommand } from "./lib/cli/train.ts";

interface Command {
  summary: string;
  run: (args: string[]) => Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  info: { summary: "show the WebGPU adapter, its features and limits", run: infoCommand },
  train: {
    summary: "fine-tune a model (SSH, LoRA, FourierFT, full); no options: the demo",
    run: trainCommand,
  },
  eval: { summary: "evaluate a model (and adapter): loss, perplexity, accuracy", run: evalCommand },
  predict: {
    summary: "label texts with a classifier, or continue prompts with a causal LM",
    run: predictCommand,
  },
  chat: {
    summary: "talk with a chat model (and adapter) through its chat template",
    run: (args) => chatCommand(args),
  },
  merge: {
    summary: "merge an adapter into its base model, write a Hugging Face directory",
    run: mergeCommand,
  },
  inspect: {
    summary: "model/adapter summary; SVG of a layer's Hartley energy or a loss curve",
    run: inspectCommand,
  },
  pretrain: { summary: "train a model from random init as a causal LM on a text file", run: pretrainCommand },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return [
    `hartley ${denoJson.version} — SSH (sparse spectrum adaptation via the discrete Hartley transform) on WebGPU`,
    "",
    "usage: deno run -A cli.ts <command> [options]",
    "",
    "commands:",
    ...lines,
    "",
    "Run `deno run -A cli.ts <command> --help` for a command's options.",
    "HARTLEY_MAX_BINDING=128MiB plans for storage bindings of at most that size, as a small GPU has.",
  ].join("\n");
}

/** Run the CLI with `argv` (without the program name); resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    options: { help: { type: "boolean", short: "h" }, version: { type: "boolean" } },
    allowPositionals: true,
    strict: false,
  });
  const name = positionals[0];
  if (values.version) {
    console.log(denoJson.version);
    return 0;
  }
  if (!name) {
    // --help asked for the usage: stdout; a missing command is a mistake: stderr
    if (values.help) console.log(usage());
    else console.error(usage());
    return values.help ? 0 : 2;
  }
  // `cli.ts help [command]`, as git and cargo read it
  if (name === "help") {
    const of = positionals[1];
    if (of !== undefined && of in COMMANDS) return await main([of, "--help"]);
    console.log(usage());
    return of === undefined ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    // `cli.ts --model x train`: parseArgs took the option's value for the command
    const later = positionals.find((p) => p in COMMANDS);
    const near = nearestName(name, Object.keys(COMMANDS));
    const hint = later
      ? ` (options come after the command: deno run -A cli.ts ${later} [options])`
      : argv[0]?.startsWith("-")
      ? " (options come after the command)"
      : near
      ? ` (did you mean ${near}?)`
      : "";
    console.error(`hartley: unknown command '${name}'${hint}\n\n${usage()}`);
    return 2;
  }
  // the command takes every argument but its name (`cli.ts --help train` shows train's help)
  const at = argv.indexOf(name);
  let restore = () => {};
  try {
    restore = applyEnvironment();
    return await command.run([...argv.slice(0, at), ...argv.slice(at + 1)]);
  } catch (e) {
    // stdout's reader is gone (`predict … | head -1`): it took what it wanted. End quietly with 0, as
    // the output printed whole (console.log drops what a closed pipe refuses) does, not 141 as a
    // SIGPIPE would: `set -o pipefail` scripts would fail on a pipeline that did its work.
    if (e instanceof Deno.errors.BrokenPipe) return 0;
    Progress.endLines(); // a bar the error stopped keeps its line
    console.error(`hartley ${name}: ${e instanceof Error ? e.message : e}`);
    // a usage mistake outside a command's flags (the environment's variables) exits as the flags' do
    return e instanceof ArgsError ? 2 : 1;
  } finally {
    restore();
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
