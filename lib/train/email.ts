/**
 * Raw e-mail (RFC 5322 headers + MIME body) → the plain text a classifier reads:
 * the decoded Subject, a line break, then the readable body.
 *
 * - Headers are dropped (they carry routing data and, in spam corpora, tell-tale filter
 *   headers); only Subject is kept, with RFC 2047 encoded words (`=?charset?B|Q?…?=`) decoded.
 * - The body is decoded by its Content-Transfer-Encoding (quoted-printable, base64) and charset.
 *   Multipart messages are walked: a multipart/alternative contributes its text/plain part
 *   (else its last text part); other multiparts contribute every text part in order;
 *   attachments and other non-text parts are dropped.
 * - HTML becomes text: comments and `<style>`/`<script>` elements are removed, tags are
 *   removed (block-level ones leave a space), and entities are decoded.
 * - Every run of whitespace in the body becomes one space; the result is cut to `maxChars`
 *   UTF-16 units (never inside a surrogate pair).
 * @module
 */

/** Options of {@link emailToText}. */
export interface EmailTextOptions {
  /** Longest result in UTF-16 code units (default 2000). */
  maxChars?: number;
}

/** The classifier text of the raw message `raw` (see the module doc). */
export function emailToText(raw: string, { maxChars = 2000 }: EmailTextOptions = {}): string {
  if (!(Number.isInteger(maxChars) && maxChars >= 1)) {
    throw new RangeError(`emailToText: maxChars must be an integer ≥ 1, got ${maxChars}`);
  }
  const message = parseEntity(raw.replace(/\r\n?/g, "\n"));
  const subject = decodeWords(message.headers.get("subject") ?? "").replace(/\s+/g, " ").trim();
  const body = entityText(message, 0).replace(/\s+/g, " ").trim();
  return cut(`${subject}\n${body}`, maxChars);
}

interface Entity {
  /** Lower-cased header names → the first value (unfolded). */
  headers: Map<string, string>;
  body: string;
}

/** Split headers from body at the first empty line and unfold the headers. */
function parseEntity(text: string): Entity {
  const end = text.startsWith("\n") ? 0 : text.indexOf("\n\n");
  const head = end < 0 ? text : text.slice(0, end);
  const body = end < 0 ? "" : text.slice(end + (end === 0 ? 1 : 2));
  const headers = new Map<string, string>();
  let name: string | null = null;
  for (const line of head.split("\n")) {
    if (/^[ \t]/.test(line)) {
      if (name !== null) headers.set(name, headers.get(name)! + " " + line.trim());
      continue;
    }
    const m = /^([!-9;-~]+):\s*(.*)$/.exec(line);
    if (!m) {
      name = null; // e.g. an mbox "From " line
      continue;
    }
    const key = m[1].toLowerCase();
    // Keep the first occurrence; continuation lines of later repeats are ignored.
    name = headers.has(key) ? null : key;
    if (name !== null) headers.set(name, m[2]);
  }
  return { headers, body };
}

/** Maximum multipart nesting followed (deeper parts are dropped). */
const MAX_DEPTH = 8;

/** The readable text of an entity: decoded text parts, HTML turned into text. */
function entityText(entity: Entity, depth: number): string {
  const { type, params } = contentType(entity.headers.get("content-type"));
  if (type.startsWith("multipart/")) {
    const boundary = params.get("boundary");
    if (!boundary || depth >= MAX_DEPTH) return "";
    const parts = splitMultipart(entity.body, boundary).map(parseEntity);
    if (type === "multipart/alternative") {
      const types = parts.map((p) => contentType(p.headers.get("content-type")).type);
      const plain = types.indexOf("text/plain");
      const pick = plain >= 0
        ? plain
        : types.findLastIndex((t) => t.startsWith("text/") || t.startsWith("multipart/"));
      return pick >= 0 ? entityText(parts[pick], depth + 1) : "";
    }
    return parts.map((p) => entityText(p, depth + 1)).filter((t) => t.length > 0).join("\n");
  }
  if (!type.startsWith("text/")) return "";
  const disposition = (entity.headers.get("content-disposition") ?? "").toLowerCase();
  if (depth > 0 && disposition.startsWith("attachment")) return "";
  const encoding = (entity.headers.get("content-transfer-encoding") ?? "").trim().toLowerCase();
  const charset = params.get("charset");
  let text = entity.body;
  if (encoding === "quoted-printable") text = decodeBytes(quotedPrintableBytes(text, false), charset);
  else if (encoding === "base64") text = decodeBytes(base64Bytes(text), charset);
  return type === "text/html" ? htmlToText(text) : text;
}

/** A Content-Type value → lower-cased type (text/plain when absent) and parameters. */
function contentType(value: string | undefined): { type: string; params: Map<string, string> } {
  const params = new Map<string, string>();
  if (!value) return { type: "text/plain", params };
  const [first, ...rest] = value.split(";");
  for (const p of rest) {
    const m = /^\s*([^=\s]+)\s*=\s*(?:"([^"]*)"|([^\s;]*))/.exec(p);
    if (m) params.set(m[1].toLowerCase(), m[2] ?? m[3]);
  }
  const type = first.trim().toLowerCase();
  return { type: /^[a-z0-9.+-]+\/[a-z0-9.+-]+$/.test(type) ? type : "text/plain", params };
}

/** The parts of a multipart body: text between `--boundary` lines, up to `--boundary--`. */
function splitMultipart(body: string, boundary: string): string[] {
  const parts: string[] = [];
  let current: string[] | null = null;
  for (const line of body.split("\n")) {
    const trimmed = line.trimEnd();
    if (trimmed === `--${boundary}` || trimmed === `--${boundary}--`) {
      if (current !== null) parts.push(current.join("\n"));
      if (trimmed.endsWith("--") && trimmed !== `--${boundary}`) return parts;
      current = [];
    } else if (current !== null) {
      current.push(line);
    }
  }
  if (current !== null && current.length > 0) parts.push(current.join("\n"));
  return parts;
}

/** Quoted-printable → bytes (`underscore` turns `_` into a space, as RFC 2047's Q encoding). */
function quotedPrintableBytes(s: string, underscore: boolean): Uint8Array {
  const text = s.replace(/=[ \t]*\n/g, ""); // soft line breaks
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "=" && /^[0-9A-Fa-f]{2}$/.test(text.slice(i + 1, i + 3))) {
      out.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (c === "_" && underscore) {
      out.push(0x20);
    } else {
      pushChar(out, text.charCodeAt(i));
    }
  }
  return new Uint8Array(out);
}

/** A character of already-decoded text as bytes: Latin-1 as one byte, others as UTF-8. */
function pushChar(out: number[], code: number): void {
  if (code < 0x100) out.push(code);
  else out.push(...new TextEncoder().encode(String.fromCharCode(code)));
}

/** Base64 → bytes, ignoring characters outside the alphabet and stopping at padding. */
function base64Bytes(s: string): Uint8Array {
  const clean = s.replace(/[^A-Za-z0-9+/]/g, "");
  const usable = clean.slice(0, clean.length - (clean.length % 4 === 1 ? 1 : 0));
  const padded = usable + "=".repeat((4 - (usable.length % 4)) % 4);
  try {
    const bin = atob(padded);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  } catch {
    return new Uint8Array(0);
  }
}

/** Bytes in `charset` (UTF-8 when unknown or unsupported; invalid sequences become U+FFFD). */
function decodeBytes(bytes: Uint8Array, charset: string | undefined): string {
  const labels = charset ? [charset.trim().toLowerCase(), "utf-8"] : ["utf-8"];
  for (const label of labels) {
    try {
      return new TextDecoder(label).decode(bytes);
    } catch {
      // not a label TextDecoder knows: try the next
    }
  }
  return new TextDecoder().decode(bytes);
}

/** Decode RFC 2047 encoded words; whitespace between two adjacent encoded words is dropped. */
function decodeWords(s: string): string {
  const word = /=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=/g;
  return s.replace(/(=\?[^?\s]+\?[BbQq]\?[^?\s]*\?=)\s+(?==\?[^?\s]+\?[BbQq]\?[^?\s]*\?=)/g, "$1")
    .replace(word, (_, charset: string, enc: string, data: string) => {
      const bytes = enc.toUpperCase() === "B" ? base64Bytes(data) : quotedPrintableBytes(data, true);
      return decodeBytes(bytes, charset.split("*")[0]);
    });
}

/** Named entities decoded besides numeric ones (others are left as written). */
const ENTITIES: Record<string, string> = {
  nbsp: " ",
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
  copy: "©",
  reg: "®",
  trade: "™",
  middot: "·",
  bull: "•",
  hellip: "…",
  mdash: "—",
  ndash: "–",
  lsquo: "‘",
  rsquo: "’",
  ldquo: "“",
  rdquo: "”",
  pound: "£",
  euro: "€",
  yen: "¥",
  cent: "¢",
};

/** HTML → text (see the module doc). */
function htmlToText(html: string): string {
  const text = html
    .replace(/<!--[\s\S]*?-->/g, " ")
    .replace(/<(style|script)\b[^>]*>[\s\S]*?<\/\1\s*>/gi, " ")
    .replace(/<\/?(?:br|p|div|tr|td|th|li|ul|ol|table|h[1-6]|hr|blockquote|title|center)\b[^>]*>/gi, " ")
    .replace(/<[^>]*>/g, "");
  return text.replace(/&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z]+);/g, (m, e: string) => {
    if (e[0] !== "#") return ENTITIES[e.toLowerCase()] ?? m;
    const code = e[1] === "x" || e[1] === "X" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
    return code > 0 && code <= 0x10ffff && !(code >= 0xd800 && code <= 0xdfff)
      ? String.fromCodePoint(code)
      : m;
  });
}

/** `s` cut to at most `n` UTF-16 units, not inside a surrogate pair. */
function cut(s: string, n: number): string {
  if (s.length <= n) return s;
  const c = s.charCodeAt(n - 1);
  return s.slice(0, c >= 0xd800 && c <= 0xdbff ? n - 1 : n);
}
