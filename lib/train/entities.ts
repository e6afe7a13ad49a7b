/**
 * Entity-level scores of tagged sequences, as `seqeval` computes them in its default mode (what
 * transformers' run_ner reports): entities are read from IOB1, IOB2, IOE or IOBES tags with
 * conlleval's chunk rules, and precision, recall and F1 count the entities found with the right
 * type and span, over every sequence at once (micro).
 * @module
 */

/** One entity: its type and its first and last word (inclusive). */
export interface Entity {
  /** The type after the prefix, e.g. "PER" of "B-PER" ("_" when the tag has none). */
  type: string;
  /** Index of its first word. */
  start: number;
  /** Index of its last word. */
  end: number;
}

/** A tag's prefix letter and type, as seqeval splits "B-PER" into "B" and "PER". */
function split(tag: string): [string, string] {
  const rest = tag.slice(1), hyphen = rest.indexOf("-");
  return [tag[0] ?? "O", (hyphen < 0 ? rest : rest.slice(hyphen + 1)) || "_"];
}

/** The entities of one tag sequence (conlleval's rules: a type change or O ends a chunk). */
export function entities(tags: readonly string[]): Entity[] {
  const out: Entity[] = [];
  let prevTag = "O", prevType = "", begin = 0;
  const ends = (p: string, t: string, pType: string, type: string) =>
    p === "E" || p === "S" ||
    ((p === "B" || p === "I") && (t === "B" || t === "S" || t === "O")) ||
    (p !== "O" && p !== "." && pType !== type);
  const starts = (p: string, t: string, pType: string, type: string) =>
    t === "B" || t === "S" ||
    ((p === "E" || p === "S" || p === "O") && (t === "I" || t === "E")) ||
    (t !== "O" && t !== "." && pType !== type);
  for (let i = 0; i <= tags.length; i++) {
    const [tag, type] = i < tags.length ? split(tags[i]) : ["O", "_"];
    if (ends(prevTag, tag, prevType, type)) out.push({ type: prevType, start: begin, end: i - 1 });
    if (starts(prevTag, tag, prevType, type)) begin = i;
    prevTag = tag;
    prevType = type;
  }
  return out;
}

/** One entity type's scores (seqeval's classification_report row). */
export interface TypeScores {
  /** Entities of the type predicted right, over those predicted. */
  precision: number;
  /** Entities of the type predicted right, over the true ones. */
  recall: number;
  /** Their harmonic mean. */
  f1: number;
  /** True entities of the type. */
  support: number;
}

/** What {@link entityScores} measures. */
export interface EntityScores {
  /** Entities predicted with the right type and span, over entities predicted (0 when none). */
  precision: number;
  /** Entities predicted with the right type and span, over true entities (0 when none). */
  recall: number;
  /** The harmonic mean of precision and recall (0 when both are 0). */
  f1: number;
  /** Tags predicted right, over all tags. */
  accuracy: number;
  /** The same by entity type, types in alphabetical order (true or predicted ones). */
  byType: Record<string, TypeScores>;
}

/**
 * seqeval's precision, recall, F1 (micro over entities) and accuracy (over tags) of `pred`
 * against `truth`: one tag sequence per example, each pair the same length.
 */
export function entityScores(pred: readonly string[][], truth: readonly string[][]): EntityScores {
  if (pred.length !== truth.length) {
    throw new RangeError(`entityScores: ${pred.length} predicted sequences for ${truth.length} true ones`);
  }
  let found = 0, real = 0, right = 0, tags = 0, rightTags = 0;
  const counts = new Map<string, { found: number; real: number; right: number }>();
  const count = (type: string) => {
    let c = counts.get(type);
    if (!c) counts.set(type, c = { found: 0, real: 0, right: 0 });
    return c;
  };
  pred.forEach((p, i) => {
    const t = truth[i];
    if (p.length !== t.length) {
      throw new RangeError(
        `entityScores: sequence ${i} has ${p.length} predicted tags for ${t.length} true ones`,
      );
    }
    tags += t.length;
    for (let k = 0; k < t.length; k++) if (p[k] === t[k]) rightTags++;
    const key = (e: Entity) => `${e.type}\u0000${e.start}\u0000${e.end}`;
    const trueOnes = entities(t), truthKeys = new Set(trueOnes.map(key));
    const predicted = entities(p);
    found += predicted.length;
    real += truthKeys.size;
    for (const e of trueOnes) count(e.type).real++;
    for (const e of predicted) {
      count(e.type).found++;
      if (truthKeys.has(key(e))) {
        right++;
        count(e.type).right++;
      }
    }
  });
  const byType: Record<string, TypeScores> = {};
  for (const type of [...counts.keys()].sort()) {
    const c = counts.get(type)!;
    byType[type] = { ...prf(c.right, c.found, c.real), support: c.real };
  }
  return { ...prf(right, found, real), accuracy: tags === 0 ? NaN : rightTags / tags, byType };
}

/** Precision, recall and F1 of `right` hits among `found` predictions of `real` true ones (0 when undefined). */
function prf(right: number, found: number, real: number): { precision: number; recall: number; f1: number } {
  const precision = found === 0 ? 0 : right / found, recall = real === 0 ? 0 : right / real;
  return {
    precision,
    recall,
    f1: precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall),
  };
}

/** True for a tag seqeval reads without a warning: O, B, I, E or S, alone or with a hyphen and a type. */
export function isEntityTag(name: string): boolean {
  return /^([OBIES]|[BIES]-.*)$/s.test(name);
}

/**
 * True when `names` are entity tags: some are B, I, E or S, a hyphen and a type ("B-PER"). Others
 * are read as seqeval reads them, warning that such a tag "seems not to be NE tag": "domain=en" is
 * a chunk of type "omain=en". A tag set without any (part-of-speech tags) names no entities.
 */
export function isEntityTagSet(names: readonly string[]): boolean {
  return names.some((n) => /^[BIES]-./s.test(n));
}
