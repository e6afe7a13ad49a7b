/**
 * A CSV reader following RFC 4180: fields separated by a delimiter (a comma by default),
 * records ended by CRLF (a bare LF or CR is accepted too), fields optionally enclosed in
 * double quotes, where a doubled quote `""` stands for one quote and delimiters and line breaks
 * are kept as they are. A field that does not start with a quote is taken literally up to the
 * next delimiter or line end (a quote inside it is an ordinary character). Empty lines between
 * records are skipped. A leading byte-order mark is the caller's to remove.
 *
 * TSV files are written both ways: pandas quotes a field that holds a tab or a quote, GLUE's files
 * quote nothing (a sentence may start with a quote that closes mid-sentence or lines later). With
 * `quotes: "line"` a field is quoted only when its closing quote ends it on the same line; any
 * other field is literal, quotes included, so no record ever swallows the lines after it.
 * @module
 */

/** One record: its fields and the (1-based) line it starts on. */
export interface CsvRecord {
  line: number;
  fields: string[];
}

/** A CSV text that breaks RFC 4180 (an unclosed quote, text after a closing quote). */
export class CsvError extends Error {
  /** Always "CsvError". */
  override name = "CsvError";
}

/** Which quoted fields {@link parseCsv} takes: all (RFC 4180), or those that close on their line. */
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
  const n = text.length;
  let line = 1;
  let i = 0;
  while (i < n) {
    // Skip empty lines between records.
    if (text[i] === "\n" || text[i] === "\r") {
      i += text[i] === "\r" && text[i + 1] === "\n" ? 2 : 1;
      line++;
      continue;
    }
    const start = line;
    const fields: string[] = [];
    for (;;) {
      let field: string;
      if (text[i] === '"' && (quotes === "rfc4180" || closesOnLine(text, i + 1, delimiter))) {
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
        const c = text[i];
        if (i < n && c !== delimiter && c !== "\n" && c !== "\r") {
          throw new CsvError(
            `${source}:${line}: unexpected ${JSON.stringify(c)} after a closing quote ` +
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
      fields.push(field);
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
    records.push({ line: start, fields });
  }
  return records;
}

/** Whether the quoted field opened before `from` closes on its line, right before a delimiter or a line end. */
function closesOnLine(text: string, from: number, delimiter: string): boolean {
  for (let j = from; j < text.length; j++) {
    const c = text[j];
    if (c === "\n" || c === "\r") return false;
    if (c !== '"') continue;
    if (text[j + 1] === '"') {
      j++;
      continue;
    }
    const next = text[j + 1];
    return next === undefined || next === delimiter || next === "\n" || next === "\r";
  }
  return false;
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
