/**
 * What a chat template computes as Python's Jinja2 computes it where @huggingface/jinja 0.5.11 does
 * otherwise: how values print (`{{ x }}`, `~`, `string`, `join`: True/False/None, Python's reprs of
 * lists and dicts, floats as Python writes them), `tojson` as transformers' (Python's json.dumps),
 * and the string methods `strip`/`lstrip`/`rstrip(chars)`, `capitalize`, `title`, `split`, `rsplit`,
 * `count` and `find`. The parsed template is rewritten ({@link pythonSemantics}) so that these
 * operations call {@link pythonCall} under a name no template can write; the library stays as published.
 * @module
 */

/** The variable {@link pythonCall} is given to a render under: not an identifier a template can write. */
export const PYTHON_CALL = "#python";

/** The string methods taken over, as Python's `str` has them. */
const METHODS = new Set([
  "strip",
  "lstrip",
  "rstrip",
  "capitalize",
  "title",
  "split",
  "rsplit",
  "count",
  "find",
]);
/** The filters taken over, as Jinja2 (and transformers' `tojson`) has them. */
const FILTERS = new Set(["trim", "capitalize", "title", "string", "join", "tojson"]);
/** The library's statements: what a body holds besides the expressions it prints. */
const STATEMENTS = new Set([
  "Program",
  "If",
  "For",
  "Break",
  "Continue",
  "Set",
  "Macro",
  "Comment",
  "FilterStatement",
  "CallStatement",
]);
/** The fields of a statement that hold a body of statements. */
const BODIES = ["body", "alternate", "defaultBlock"];

/** A node of the library's syntax tree: the interpreter goes by its `type` alone. */
interface SyntaxNode {
  type: string;
  [field: string]: unknown;
}

function isNode(value: unknown): value is SyntaxNode {
  return typeof value === "object" && value !== null && typeof (value as SyntaxNode).type === "string";
}

/**
 * Rewrite the parsed template `node` (in place; inner nodes first) so that printing, `~`, the
 * filters of {@link FILTERS} and the methods of {@link METHODS} call {@link pythonCall}. The value
 * operated on is passed inside a one-item list, so that it reaches the call as the library's value,
 * its type kept (an integer and a float of the same value are otherwise one JavaScript number).
 */
export function pythonSemantics(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(pythonSemantics);
  if (node instanceof Map) {
    return new Map([...node].map(([k, v]) => [pythonSemantics(k), pythonSemantics(v)]));
  }
  if (!isNode(node)) return node;
  for (const key of Object.keys(node)) node[key] = pythonSemantics(node[key]);
  if (STATEMENTS.has(node.type)) {
    for (const key of BODIES) {
      if (Array.isArray(node[key])) node[key] = (node[key] as unknown[]).map(printed);
    }
    return node;
  }
  const { callee, filter } = node as { callee?: SyntaxNode; filter?: SyntaxNode };
  const method = callee?.type === "MemberExpression" && !callee.computed && isNode(callee.property) &&
    callee.property.type === "Identifier" && callee.property.value as string;
  // s.lstrip('\n') → #python("lstrip", [s], '\n')
  if (node.type === "CallExpression" && method && METHODS.has(method)) {
    return call(method, callee!.object, node.args as unknown[]);
  }
  // a ~ b → #python("~", [a], [b])
  if (node.type === "BinaryExpression" && (node.operator as { value?: string }).value === "~") {
    return call("~", node.left, [list(node.right)]);
  }
  // s | title → #python("|title", [s]); x | tojson(indent=2) → #python("|tojson", [x], indent=2)
  const named = filter?.type === "CallExpression" ? filter.callee as SyntaxNode : filter;
  if (
    node.type === "FilterExpression" && named?.type === "Identifier" && FILTERS.has(named.value as string)
  ) {
    const args = filter!.type === "CallExpression" ? filter!.args as unknown[] : [];
    return call(`|${named.value}`, node.operand, args);
  }
  return node;
}

function call(op: string, subject: unknown, args: unknown[]): SyntaxNode {
  return {
    type: "CallExpression",
    callee: { type: "Identifier", value: PYTHON_CALL },
    args: [{ type: "StringLiteral", value: op }, list(subject), ...args],
  };
}

function list(item: unknown): SyntaxNode {
  return { type: "ArrayLiteral", value: [item] };
}

/** A statement of a body: an expression it prints is printed as Python's str() of it. */
function printed(statement: unknown): unknown {
  if (!isNode(statement) || STATEMENTS.has(statement.type) || statement.type === "StringLiteral") {
    return statement;
  }
  return call("print", statement, []);
}

/** A value of the library's interpreter, as a function given to a render receives it. */
export interface Value {
  /** The library's name of its kind: "StringValue", "IntegerValue", "ObjectValue", … */
  type: string;
  /** Its JavaScript value: a Map of values for a mapping, an array of values for a list. */
  value: unknown;
}

/** Keyword arguments, as the library passes them last to a function: a Map of their values. */
type Keywords = Map<string, Value>;

/**
 * Python's semantics of `op` on the value `[subject]` (a one-item list of the library's value,
 * see {@link pythonSemantics}) with the call's `args` (the library's values unwrapped, keyword
 * arguments last as a Map): "print", "~", a filter ("|title", …) or a method ("strip", …).
 */
export function pythonCall(op: string, [subject]: Value[], ...args: unknown[]): unknown {
  const keywords = args.at(-1) instanceof Map ? args.pop() as Keywords : new Map() as Keywords;
  switch (op) {
    case "print":
    case "|string":
      return pyStr(subject);
    case "~":
      return pyStr(subject) + pyStr((args[0] as Value[])[0]);
    case "|join":
      return joined(subject, args, keywords);
    case "|tojson":
      return toJson(subject, args, keywords);
  }
  const what = op.startsWith("|") ? `the filter ${op.slice(1)}` : `${op}()`;
  if (subject.type !== "StringValue") throw new Error(`${what} of ${kind(subject)}: expected a text`);
  const text = subject.value as string;
  if (op === "split" || op === "rsplit") return split(text, op, args, keywords);
  if (keywords.size > 0) throw new Error(`${what}: takes no keyword arguments`);
  if (op === "count" || op === "find") return search(text, op, args);
  return caseOrStrip(text, op, args);
}

/** What a template gave an operation instead of a text, for errors. */
function kind(value: Value): string {
  const names: Record<string, string> = {
    NullValue: "none",
    UndefinedValue: "an undefined value",
    ArrayValue: "a list",
    TupleValue: "a tuple",
    ObjectValue: "a mapping",
    IntegerValue: "an integer",
    FloatValue: "a float",
    BooleanValue: "a boolean",
  };
  return names[value.type] ?? `a ${value.type}`;
}

/** Python's str() of a value, as Jinja2 prints it: an undefined value prints nothing. */
function pyStr(v: Value): string {
  if (v.type === "StringValue") return v.value as string;
  return v.type === "UndefinedValue" ? "" : pyRepr(v);
}

/** Python's repr() of a value (Jinja2's Undefined as "Undefined", a namespace as Jinja2 writes it). */
function pyRepr(v: Value): string {
  const items = (xs: Value[]) => xs.map(pyRepr).join(", ");
  const entries = (m: Map<string, Value>) =>
    [...m].map(([k, x]) => `${pyRepr(str(k))}: ${pyRepr(x)}`).join(", ");
  switch (v.type) {
    case "StringValue":
      return quoted(v.value as string);
    case "IntegerValue":
      return Number.isSafeInteger(v.value)
        ? BigInt(v.value as number).toString()
        : pyFloat(v.value as number);
    case "FloatValue":
      return pyFloat(v.value as number);
    case "BooleanValue":
      return v.value ? "True" : "False";
    case "NullValue":
      return "None";
    case "UndefinedValue":
      return "Undefined";
    case "ArrayValue":
      return `[${items(v.value as Value[])}]`;
    case "TupleValue":
      // the library parses no tuple of one item, which Python writes (x,)
      return `(${items(v.value as Value[])})`;
    case "ObjectValue":
      return `{${entries(v.value as Map<string, Value>)}}`;
    case "NamespaceValue":
      return `<Namespace {${entries(v.value as Map<string, Value>)}}>`;
  }
  throw new Error(`cannot print ${kind(v)}`);
}

function str(value: string): Value {
  return { type: "StringValue", value };
}

/**
 * Python's repr() of a text: in single quotes unless it holds a single quote and no double one;
 * backslashes, the quote, \t \n \r and unprintable characters (Unicode's "Other" and "Separator"
 * ones but the space) escaped as \xNN, \uNNNN or \UNNNNNNNN.
 */
function quoted(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const c of s) {
    if (c === quote || c === "\\") out += "\\" + c;
    else if (c === "\t") out += "\\t";
    else if (c === "\n") out += "\\n";
    else if (c === "\r") out += "\\r";
    else if (c !== " " && /[\p{C}\p{Z}]/u.test(c)) {
      const code = c.codePointAt(0)!, hex = code.toString(16);
      out += code < 0x100
        ? `\\x${hex.padStart(2, "0")}`
        : code < 0x10000
        ? `\\u${hex.padStart(4, "0")}`
        : `\\U${hex.padStart(8, "0")}`;
    } else out += c;
  }
  return out + quote;
}

/**
 * Python's repr() of a float: the shortest digits that read back as it, positional for exponents
 * from −4 to 15 (with ".0" when whole), else as 1e-05 or 1.5e+16; inf, -inf, nan.
 */
export function pyFloat(x: number): string {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mantissa, exp] = Math.abs(x).toExponential().split("e");
  const e = Number(exp), digits = mantissa.replace(".", ""), sign = x < 0 ? "-" : "";
  if (e < -4 || e >= 16) {
    return `${sign}${mantissa}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
  }
  if (e < 0) return `${sign}0.${"0".repeat(-e - 1)}${digits}`;
  if (e >= digits.length - 1) return `${sign}${digits}${"0".repeat(e - digits.length + 1)}.0`;
  return `${sign}${digits.slice(0, e + 1)}.${digits.slice(e + 1)}`;
}

/**
 * Jinja2's `join(d='', attribute=None)`: the str() of each item (a text's characters, a mapping's
 * keys), or of each item's `attribute` (a dotted path; an integer part indexes a list), joined by `d`.
 */
function joined(subject: Value, args: unknown[], keywords: Keywords): string {
  const [d = keywords.get("d")?.value ?? "", attribute = keywords.get("attribute")?.value ?? null] = args;
  const known = [...keywords.keys()].every((k) => k === "d" || k === "attribute");
  if (
    !known || args.length > 2 || typeof d !== "string" ||
    !(attribute === null || typeof attribute === "string")
  ) {
    throw new Error("the filter join: expected a text to join with and an attribute's name");
  }
  let items: Value[];
  if (subject.type === "ArrayValue" || subject.type === "TupleValue") items = subject.value as Value[];
  else if (subject.type === "StringValue") items = [...subject.value as string].map(str);
  else if (subject.type === "ObjectValue") items = [...(subject.value as Map<string, Value>).keys()].map(str);
  else throw new Error(`the filter join of ${kind(subject)}: expected a list`);
  if (attribute !== null) items = items.map((item) => attribute.split(".").reduce(member, item));
  return items.map(pyStr).join(d);
}

/** `v[part]`: a mapping's key, or a list's index when `part` is an integer; else undefined. */
function member(v: Value, part: string): Value {
  const undefinedValue = { type: "UndefinedValue", value: undefined };
  if (v.type === "ObjectValue") return (v.value as Map<string, Value>).get(part) ?? undefinedValue;
  if ((v.type === "ArrayValue" || v.type === "TupleValue") && /^-?\d+$/.test(part)) {
    return (v.value as Value[]).at(Number(part)) ?? undefinedValue;
  }
  return undefinedValue;
}

/**
 * transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`, which
 * is Python's json.dumps: ", " and ": " between items and keys, "," and ": " when indented (an indent
 * of 0 still breaks lines), keys sorted by code point, floats as Python writes them, non-ASCII kept
 * unless `ensure_ascii`; an undefined value or a namespace is refused, as json.dumps refuses them.
 */
function toJson(subject: Value, args: unknown[], keywords: Keywords): string {
  const names = ["ensure_ascii", "indent", "separators", "sort_keys"];
  const opts = new Map(args.map((a, i) => [names[i], a]));
  for (const [k, v] of keywords) {
    if (!names.includes(k)) {
      throw new Error(`the filter tojson: no argument ${k} (expected ${names.join(", ")})`);
    }
    opts.set(k, v.type === "NullValue" ? null : v.value);
  }
  const indentOpt = opts.get("indent") ?? null;
  const indent = indentOpt === null
    ? null
    : typeof indentOpt === "number"
    ? " ".repeat(Math.max(0, indentOpt))
    : String(indentOpt);
  const seps = opts.get("separators") as Value[] | null | undefined;
  const [item, key] = seps ? seps.map((s) => s.value as string) : [indent === null ? ", " : ",", ": "];
  const ascii = Boolean(opts.get("ensure_ascii")), sortKeys = Boolean(opts.get("sort_keys"));
  const dump = (v: Value, depth: number): string => {
    const open = indent === null ? "" : "\n" + indent.repeat(depth + 1);
    const close = indent === null ? "" : "\n" + indent.repeat(depth);
    const wrap = (parts: string[], l: string, r: string) =>
      parts.length === 0 ? l + r : l + open + parts.join(item + open) + close + r;
    switch (v.type) {
      case "StringValue":
        return jsonString(v.value as string, ascii);
      case "IntegerValue":
      case "FloatValue": {
        const n = v.value as number;
        if (!Number.isFinite(n)) return Number.isNaN(n) ? "NaN" : n > 0 ? "Infinity" : "-Infinity";
        return v.type === "IntegerValue" && Number.isSafeInteger(n) ? BigInt(n).toString() : pyFloat(n);
      }
      case "BooleanValue":
        return v.value ? "true" : "false";
      case "NullValue":
        return "null";
      case "ArrayValue":
      case "TupleValue":
        return wrap((v.value as Value[]).map((x) => dump(x, depth + 1)), "[", "]");
      case "ObjectValue": {
        const pairs = [...v.value as Map<string, Value>];
        if (sortKeys) pairs.sort(([a], [b]) => byCodePoint(a, b));
        return wrap(pairs.map(([k, x]) => jsonString(k, ascii) + key + dump(x, depth + 1)), "{", "}");
      }
    }
    throw new Error(`the filter tojson: ${kind(v)} is not JSON serializable`);
  };
  return dump(subject, 0);
}

/** Python's order of texts: by code point (JavaScript's `<` compares UTF-16 units). */
function byCodePoint(a: string, b: string): number {
  const x = [...a], y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0)! - y[i].codePointAt(0)!;
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

/** A JSON string as Python's json.dumps writes it: with `ascii`, every unit outside ' '…'~' escaped. */
function jsonString(s: string, ascii: boolean): string {
  const short: Record<string, string> = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
  };
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s[i], code = s.charCodeAt(i);
    if (short[c]) out += short[c];
    else if (code < 0x20 || (ascii && code > 0x7e)) out += `\\u${code.toString(16).padStart(4, "0")}`;
    else out += c;
  }
  return out + '"';
}

/** The characters Python's str.isspace() takes for whitespace, which strip() and split() go by. */
const PYTHON_SPACE = new Set(
  "\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007" +
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000",
);

/**
 * Python's `str.strip/lstrip/rstrip(chars=None)`, `str.capitalize()` and `str.title()`, or Jinja's
 * `trim`, `capitalize` or `title` filter (`op` "|trim", …), of `text`.
 */
function caseOrStrip(text: string, op: string, args: unknown[]): string {
  const what = op.startsWith("|") ? `the filter ${op.slice(1)}` : `${op}()`;
  const chars = args[0] ?? null, strips = /strip|trim/.test(op);
  if (args.length > (strips ? 1 : 0) || !(chars === null || typeof chars === "string")) {
    throw new Error(`${what}: expected ${strips ? "at most a text of characters" : "no argument"}`);
  }
  const cs = [...text];
  const word = (w: string[]) => (w[0] ?? "").toUpperCase() + w.slice(1).join("").toLowerCase();
  switch (op) {
    case "capitalize":
    case "|capitalize":
      return word(cs);
    case "title": {
      // a character after a cased letter is lowered, any other raised ("1st" → "1St", as Python)
      let cased = false, out = "";
      for (const c of cs) {
        out += cased ? c.toLowerCase() : c.toUpperCase();
        cased = /\p{Cased}/u.test(c);
      }
      return out;
    }
    case "|title":
      // Jinja's words begin after spaces, hyphens and opening brackets
      return text.split(/([-\s({\[<]+)/).map((w) => word([...w])).join("");
  }
  const strip = chars === null ? PYTHON_SPACE : new Set(chars);
  let from = 0, to = cs.length;
  if (op !== "rstrip") { while (from < to && strip.has(cs[from])) from++; }
  if (op !== "lstrip") { while (to > from && strip.has(cs[to - 1])) to--; }
  return cs.slice(from, to).join("");
}

/**
 * Python's `str.split(sep=None, maxsplit=-1)` or `str.rsplit(…)` of `text`: without `sep`, on runs
 * of Python's whitespace, no empty parts; at most `maxsplit` splits, from the left or the right.
 */
function split(text: string, op: string, args: unknown[], keywords: Keywords): string[] {
  const given = [...args];
  for (const [k, v] of keywords) {
    const at = ["sep", "maxsplit"].indexOf(k);
    if (at < 0 || given[at] !== undefined) throw new Error(`${op}(): unexpected argument ${k}`);
    given[at] = v.type === "NullValue" ? null : v.value;
  }
  const [sep = null, maxsplit = -1] = given;
  if (given.length > 2 || !(sep === null || typeof sep === "string") || !Number.isInteger(maxsplit)) {
    throw new Error(`${op}(): expected a separator (text or none) and a maximum number of splits`);
  }
  if (sep === "") throw new Error(`${op}(): empty separator`);
  const limit = (maxsplit as number) < 0 ? Infinity : maxsplit as number, right = op === "rsplit";
  if (sep !== null) {
    const parts = text.split(sep as string);
    if (parts.length - 1 <= limit) return parts;
    return right
      ? [parts.slice(0, parts.length - limit).join(sep as string), ...parts.slice(parts.length - limit)]
      : [...parts.slice(0, limit), parts.slice(limit).join(sep as string)];
  }
  // on whitespace: split the reversed characters for rsplit, then reverse back
  const cs = right ? [...text].reverse() : [...text], out: string[] = [];
  let i = 0;
  while (true) {
    while (i < cs.length && PYTHON_SPACE.has(cs[i])) i++;
    if (i === cs.length) break;
    if (out.length === limit) {
      out.push(cs.slice(i).join(""));
      break;
    }
    const start = i;
    while (i < cs.length && !PYTHON_SPACE.has(cs[i])) i++;
    out.push(cs.slice(start, i).join(""));
  }
  return right ? out.map((w) => [...w].reverse().join("")).reverse() : out;
}

/**
 * Python's `str.count(sub[, start[, end]])` (non-overlapping; an empty `sub` between every two
 * characters) or `str.find(…)` (−1 when absent), indexed by code points as Python indexes.
 */
function search(text: string, op: string, args: unknown[]): number {
  const [sub, start = null, end = null] = args;
  const bound = (x: unknown) => x === null || Number.isInteger(x);
  if (args.length > 3 || typeof sub !== "string" || !bound(start) || !bound(end)) {
    throw new Error(`${op}(): expected a text, and optionally a start and an end index`);
  }
  const cs = [...text], n = cs.length;
  const index = (x: number | null, otherwise: number) =>
    x === null ? otherwise : x < 0 ? Math.max(0, x + n) : x;
  const from = index(start as number | null, 0), to = Math.min(n, index(end as number | null, n));
  if (from > to) return op === "count" ? 0 : -1;
  const hay = cs.slice(from, to).join("");
  if (op === "count") return sub === "" ? to - from + 1 : hay.split(sub).length - 1;
  const at = hay.indexOf(sub);
  return at < 0 ? -1 : from + [...hay.slice(0, at)].length;
}
