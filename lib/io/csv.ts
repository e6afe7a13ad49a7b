/**
 * A CSV reader following RFC 4180: fields separated by a delimiter (a comma by default),
 * records ended by CRLF (a bare LF or CR is accepted too), fields optionally enclosed in
 * double quotes, where a doubled quote `""` stands for one quote and delimiters and line breaks
 * are kept as they are. A field that does not start with a quote is taken literally up to the
 * next delimiter or line end (a quote inside it is an ordinary character). Empty lines between
 * records are skipped. A leading byte-order mark is the caller's to remove.
 *
 * TSV files are written both ways: pandas quotes a field that holds a tab, a quote or a line break,
 * GLUE's files quote nothing (a sentence may start with a quote that closes mid-sentence or lines
 * later). With `quotes: "line"` a field is quoted only when its closing quote ends it: on the same
 * line, or on a later one when the record then has as many fields as the first record (the
 * header), as pandas reads a field it wrote across lines; any other field is literal, quotes
 * included, so no record of another width swallows the lines after it.
 * @module
 */

/** One record: its fields and the (1-based) line it starts on. */
export interface CsvRecord {
  line: number;
  fields: string[];
  /**
   * With `quotes: "line"`: the line of a field that opens a quote which does not close on that
   * line, read as a character (a record of the wrong width may have been split there).
   */
  unclosedQuote?: number;
}

/** A CSV text that breaks RFC 4180 (an unclosed quote, text after a closing quote). */
export class CsvError extends Error {
  /** Always "CsvError". */
  override name = "CsvError";
}

/** Which quoted fields {@link parseCsv} takes: all (RFC 4180), or those their closing quote ends (see the module). */
export type CsvQuotes = "rfc4180" | "line";

/**
 * The records of `text`, in order. `source` (usually the file path) prefixes error messages,
 * which also give the line number.
 */
export function parseCsv(
  text: string,
  source: string,
  delimiter = ",",
  quotes: CsvQuotes = "rfc4180",
): CsvRecord[] {
  if (delimiter.length !== 1 || delimiter === '"' || delimiter === "\n" || delimiter === "\r") {
    throw new RangeError(`parseCsv: the delimiter must be one character other than a quote or a line break`);
  }
  const records: CsvRecord[] = [];
  let at: Position = { i: 0, line: 1 };
  while (at.i < text.length) {
    // Skip empty lines between records.
    if (text[at.i] === "\n" || text[at.i] === "\r") {
      at = { i: at.i + (text[at.i] === "\r" && text[at.i + 1] === "\n" ? 2 : 1), line: at.line + 1 };
      continue;
    }
    let read = readRecord(text, at, source, delimiter, quotes === "rfc4180" ? "all" : "closing");
    // a field quoted across lines counts only in a record as wide as the header
    if (read.spans && (records.length === 0 || read.record.fields.length !== records[0].fields.length)) {
      read = readRecord(text, at, source, delimiter, "line");
    }
    records.push(read.record);
    at = read.next;
  }
  return records;
}

/** A place in the text: an offset and its (1-based) line. */
interface Position {
  i: number;
  line: number;
}

/**
 * Which fields that start with a quote are quoted: all (RFC 4180), those whose closing quote ends
 * them, or only those closed so on their own line.
 */
type Quoting = "all" | "closing" | "line";

/**
 * The record starting at `start`; `spans` when a quoted field in it spans lines ("closing" quoting
 * only).
 */
function readRecord(
  text: string,
  start: Position,
  source: string,
  delimiter: string,
  quoting: Quoting,
): { record: CsvRecord; next: Position; spans: boolean } {
  const n = text.length;
  const record: CsvRecord = { line: start.line, fields: [] };
  let { i, line } = start, spans = false;
  for (;;) {
    let quoted = text[i] === '"';
    if (quoted && quoting !== "all") {
      const close = closingQuote(text, i + 1);
      const onLine = close >= 0 && close < lineEnd(text, i);
      quoted = close >= 0 && endsField(text, close + 1, delimiter) && (onLine || quoting === "closing");
      spans ||= quoted && !onLine;
      if (!quoted && !onLine) record.unclosedQuote ??= line;
    }
    let field: string;
    if (quoted) {
      const open = line;
      let out = "";
      let j = i + 1;
      for (;;) {
        const q = text.indexOf('"', j);
        if (q < 0) {
          throw new CsvError(`${source}:${open}: a quoted field is never closed (no closing '"')`);
        }
        const chunk = text.slice(j, q);
        line += countLineBreaks(chunk);
        out += chunk;
        if (text[q + 1] === '"') {
          out += '"';
          j = q + 2;
        } else {
          i = q + 1;
          break;
        }
      }
      field = out;
      if (!endsField(text, i, delimiter)) {
        throw new CsvError(
          `${source}:${line}: unexpected ${JSON.stringify(text[i])} after a closing quote ` +
            `(expected ${
              JSON.stringify(delimiter)
            } or a line end; write a quote inside a quoted field as "")`,
        );
      }
    } else {
      let j = i;
      while (j < n && text[j] !== delimiter && text[j] !== "\n" && text[j] !== "\r") j++;
      field = text.slice(i, j);
      i = j;
    }
    record.fields.push(field);
    if (i < n && text[i] === delimiter) {
      i++;
      continue;
    }
    // A line end or the end of the text closes the record.
    if (i < n) {
      i += text[i] === "\r" && text[i + 1] === "\n" ? 2 : 1;
      line++;
    }
    break;
  }
  return { record, next: { i, line }, spans };
}

/** The offset of the quote that closes a quoted field whose text starts at `from` (a doubled one does not), or -1. */
function closingQuote(text: string, from: number): number {
  for (let q = text.indexOf('"', from); q >= 0; q = text.indexOf('"', q + 2)) {
    if (text[q + 1] !== '"') return q;
  }
  return -1;
}

/** The offset of the first line break at or after `from`, or the text's length. */
function lineEnd(text: string, from: number): number {
  let j = from;
  while (j < text.length && text[j] !== "\n" && text[j] !== "\r") j++;
  return j;
}

/** Whether offset `i` ends a field: the end of the text, a delimiter or a line break. */
function endsField(text: string, i: number, delimiter: string): boolean {
  return i >= text.length || text[i] === delimiter || text[i] === "\n" || text[i] === "\r";
}

/** Line breaks in `s`, counting CRLF once. */
function countLineBreaks(s: string): number {
  let count = 0;
  for (let k = 0; k < s.length; k++) {
    if (s[k] === "\n") count++;
    else if (s[k] === "\r" && s[k + 1] !== "\n") count++;
  }
  return count;
}
