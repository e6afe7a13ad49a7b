/**
 * The bench scripts' flags: `node:util`'s parseArgs with `--help`, which prints the usage lines
 * of the script's own module comment (the one place they are written), and a flag mistake said
 * in one line with those lines (exit status 2) rather than as a stack trace.
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { fileURLToPath } from "node:url";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** The flags of the script at `scriptUrl` (its `import.meta.url`), parsed by `options`. */
export function benchArgs<const O extends Options>(scriptUrl: string, options: O) {
  if (Deno.args.includes("--help") || Deno.args.includes("-h")) {
    console.log(usage(scriptUrl));
    Deno.exit(0);
  }
  try {
    return parseArgs({ options, args: Deno.args });
  } catch (e) {
    console.error(`${(e as Error).message}\n${usage(scriptUrl)}`);
    Deno.exit(2);
  }
}

/** The module comment's command lines (`deno run …`, `deno task …`), or where to read about it. */
function usage(scriptUrl: string): string {
  const path = fileURLToPath(scriptUrl);
  const lines = Deno.readTextFileSync(path).split("\n").filter((l) => /^ \*\s+deno (run|task) /.test(l));
  return lines.length > 0
    ? `usage:\n${lines.map((l) => `  ${l.replace(/^ \*\s+/, "")}`).join("\n")}`
    : `usage: see the comment at the top of ${path}`;
}
