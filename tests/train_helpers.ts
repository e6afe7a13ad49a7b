/**
 * Shared by the CLI/trainer tests: a tiny labelled data set written to a temp folder, and
 * running the CLI in-process with its console output captured.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { main } from "../cli.ts";
import { Prng } from "../lib/spectral/prng.ts";

/** The tiny GPT-2 fixture (2 layers, 64 wide, 512-entry byte-level BPE, dropout 0.1). */
export const GPT2 = "tests/fixtures/models/gpt2";

/** Write `rows` two-class examples (fruit words vs metal words) as JSONL; returns the path. */
export async function writeToyData(
  dir: string,
  rows = 40,
  seed = 1,
  labels = ["fruit", "hard"],
): Promise<string> {
  const words = [
    ["apple", "berry", "cherry", "grape", "lemon", "melon"],
    ["stone", "rock", "metal", "iron", "steel", "brick"],
    ["cloud", "rain", "storm", "wind", "snow", "fog"],
  ];
  const rng = new Prng(seed);
  const lines: string[] = [];
  for (let i = 0; i < rows; i++) {
    const k = i % labels.length;
    const text = Array.from({ length: 5 }, () => words[k][rng.below(words[k].length)]).join(" ");
    lines.push(JSON.stringify({ text, label: labels[k] }));
  }
  const path = `${dir}/toy_${rows}_${labels.length}.jsonl`;
  await Deno.writeTextFile(path, lines.join("\n") + "\n");
  return path;
}

/** cli.ts as a path, for subprocesses started in any folder. */
export const CLI = fileURLToPath(new URL("../cli.ts", import.meta.url));

/** Where a {@link cliProcess} runs, and what it adds to the environment. */
export interface CliProcessOptions {
  cwd?: string;
  env?: Record<string, string>;
}

/**
 * `deno run -A cli.ts ARGS` as a subprocess: its exit code, stdout and stderr. For what a test
 * must not change in this process (its working folder, its environment), which `deno test
 * --parallel` shares between test files, and for what the in-process {@link runCli} cannot see.
 */
export async function cliProcess(
  args: string[],
  opts: CliProcessOptions = {},
): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", CLI, ...args], ...opts }).output();
  const text = new TextDecoder();
  return { code: r.code, out: text.decode(r.stdout), err: text.decode(r.stderr) };
}

/** Run `cli.ts` with `args` in this process; the exit code and what it printed. */
export async function runCli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [], err: string[] = [];
  const log = console.log, error = console.error;
  console.log = (...a: unknown[]) => void out.push(a.join(" "));
  console.error = (...a: unknown[]) => void err.push(a.join(" "));
  try {
    const code = await main(args);
    return { code, out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

/**
 * The common options of a tiny SSH run on the toy data (another `--method` in `extra`: without the
 * SSH flags, which train refuses for it).
 */
export function tinyRun(data: string, out: string, extra: string[] = []): string[] {
  const at = extra.lastIndexOf("--method");
  const method = at < 0 ? "ssh" : extra[at + 1];
  return [
    "train",
    "--model",
    GPT2,
    "--data",
    data,
    "--seq-len",
    "12",
    "--batch-size",
    "8",
    ...(method === "ssh" || method === "fourierft" ? ["--n", "24", "--alpha", "20"] : []),
    ...(method === "head" ? [] : ["--lr", "0.1"]),
    "--head-lr",
    "0.01",
    "--eval-fraction",
    "0.2",
    "--out",
    out,
    "--quiet",
    ...extra,
  ];
}

export { withTempDir } from "./temp_dir.ts";

/**
 * `eval --json` of `model` with `adapter` on `data`, then `merge` of the two into `out` and the same
 * evaluation of the merged directory: both results and the merged config.json. Every command must
 * succeed.
 */
export async function evalAdapterAndMerged(
  model: string,
  adapter: string,
  data: string,
  out: string,
): Promise<
  { viaAdapter: Record<string, unknown>; viaMerged: Record<string, unknown>; config: Record<string, unknown> }
> {
  const evalOf = async (args: string[]) => {
    const r = await runCli(["eval", ...args, "--data", data, "--json"]);
    if (r.code !== 0) throw new Error(`eval ${args.join(" ")}: ${r.err}`);
    return JSON.parse(r.out);
  };
  const viaAdapter = await evalOf(["--model", model, "--adapter", adapter]);
  const merged = await runCli(["merge", "--model", model, "--adapter", adapter, "--out", out]);
  if (merged.code !== 0) throw new Error(`merge: ${merged.err}`);
  const config = JSON.parse(await Deno.readTextFile(`${out}/config.json`));
  return { viaAdapter, viaMerged: await evalOf(["--model", out]), config };
}

/** The names of what `dir` holds, sorted. */
export async function folderNames(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

/** Every file under `dir` with its bytes, to compare a folder before and after. */
export async function folderSnapshot(dir: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for await (const e of Deno.readDir(dir)) {
    const path = join(dir, e.name);
    if (e.isDirectory) {
      for (const [k, bytes] of Object.entries(await folderSnapshot(path))) files[join(e.name, k)] = bytes;
    } else files[e.name] = (await Deno.readFile(path)).join(",");
  }
  return files;
}

/** The images of the fixture's class folders (tests/fixtures/images/folder), in the order they are read. */
export const FOLDER_FILES = [
  "cat/cat0.png",
  "cat/cat1.jpg",
  "cat/cat2.png",
  "dog/dog0.png",
  "dog/dog1.jpg",
  "dog/dog2.png",
];
