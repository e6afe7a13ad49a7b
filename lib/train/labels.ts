/**
 * Class labels: {@link LabelMap} turns the labels data files hold (names, integer ids, a Parquet
 * ClassLabel column's ids) into class ids and checks each against the head's num_labels;
 * {@link checkLabels} and {@link checkLabelLists} check examples made in code, which never went
 * through a file's checks. The readers of lib/train/readers.ts, token_data.ts and image_data.ts
 * map their labels here.
 * @module
 */
import type { Example, ReadOptions } from "./readers.ts";
import { DataError } from "./data_error.ts";

/** A decimal number as text: sign, digits, fraction, exponent (no hex, binary, NaN or Infinity). */
export const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** Options of {@link LabelMap}. */
export interface LabelMapOptions
  extends Pick<ReadOptions, "labels" | "labelsFrom" | "numLabels" | "idsAs" | "onWarning"> {
  /**
   * The names of the data's integer ids, a Parquet column's ClassLabel names: the names of the ids
   * when `labels` is not given, else the way to look each id up there by name.
   */
  classNames?: readonly string[];
}

/**
 * Class labels as data files hold them → class ids: names, and integers by their text, looked up
 * among the known ones (see {@link ReadOptions.labels}; a name no known one matches exactly is
 * matched ignoring case, as run_glue.py matches config.json's label2id, and told once to
 * {@link ReadOptions.onWarning});
 * other names numbered in first-seen order; integer ids (numbers, or strings of digits) that name
 * no class kept as they are, or looked up by their class name ({@link LabelMapOptions.classNames});
 * each id checked against the head's num_labels.
 */
export class LabelMap {
  private readonly given: Map<string, number> | null;
  /** The known names by their lower case, when that keeps them apart. */
  private readonly folded: Map<string, number> | null;
  private saidFolded = false;
  private readonly onWarning?: (message: string) => void;
  /** The names of the data's ids, when they differ from the known labels' (looked up by name). */
  private readonly classNames: readonly string[] | null;
  /** The data's integers are a ClassLabel column's ids, not names. */
  private readonly columnIds: boolean;
  /** Some known name is a number other than its id: an integer that names no class is ambiguous. */
  private readonly numberNames: boolean;
  private readonly idsAs: string | null;
  /** The known labels as errors name them: their list, and where they come from. */
  private readonly known: string;
  private readonly seen = new Map<string, number>();
  private sawInteger = false;
  private readonly limit: number | null;

  /** `whose` names the known labels in errors, e.g. "the training data's". */
  constructor(opts: LabelMapOptions, whose = "the labels") {
    const known = opts.labels ?? opts.classNames;
    this.given = known ? new Map(known.map((name, id) => [name, id])) : null;
    const lower = known?.map((name) => name.toLowerCase());
    this.folded = lower && new Set(lower).size === lower.length
      ? new Map(lower.map((name, id) => [name, id]))
      : null;
    this.classNames = opts.labels && opts.classNames ? opts.classNames : null;
    this.columnIds = opts.classNames !== undefined;
    this.numberNames = !this.columnIds &&
      (opts.labels ?? []).some((name, id) => /^\d+$/.test(name) && Number(name) !== id);
    this.idsAs = opts.idsAs ?? null;
    this.known = `${whose} ${JSON.stringify(known ?? [])}${opts.labelsFrom ? ` (${opts.labelsFrom})` : ""}`;
    if (opts.numLabels !== undefined && !(Number.isInteger(opts.numLabels) && opts.numLabels >= 1)) {
      throw new RangeError(`numLabels must be an integer ≥ 1, got ${opts.numLabels}`);
    }
    this.limit = opts.numLabels ?? known?.length ?? null;
    this.onWarning = opts.onWarning;
  }

  /** The id of label `value`, found at `where` (a file and line, for errors). */
  id(value: unknown, where: string): number {
    const id = this.lookUp(value, where);
    if (this.sawInteger && this.seen.size > 0) {
      throw new DataError(
        `${where}: the labels mix integer ids and names (${JSON.stringify(value)}); give one kind`,
      );
    }
    if (this.limit !== null && id >= this.limit) {
      throw new DataError(
        `${where}: label ${JSON.stringify(value)} (id ${id}) does not fit the head's ${this.limit} labels ` +
          `(ids 0..${this.limit - 1})`,
      );
    }
    return id;
  }

  /** The id of `value` before the checks every id gets. */
  private lookUp(value: unknown, where: string): number {
    let number = value;
    const shown = typeof value === "number" ? String(value) : JSON.stringify(value);
    if (typeof value === "string") {
      const named = this.knownId(value, where);
      if (named !== undefined) return named;
      if (value.trim() === "") throw new DataError(`${where}: the label is empty`);
      // a number written as text (CSV, TSV) is taken as the same JSON number
      if (!DECIMAL.test(value.trim())) return this.byName(value, where);
      number = Number(value.trim());
    }
    if (typeof number !== "number") {
      throw new DataError(`${where}: label ${JSON.stringify(value)} is neither an integer nor a string`);
    }
    if (number === -1) {
      // ClassLabel.encode_example takes -1 for "no label"; a ClassLabel column is never a regression target
      throw new DataError(
        `${where}: label ${shown} is not a class id: in Hugging Face datasets -1 means "no label" (a test ` +
          `split's labels, or unlabelled rows such as SNLI's): leave those rows out, or give an unlabelled ` +
          `split to predict` +
          (this.columnIds
            ? ""
            : `; if the labels are real values, train a regressor: --regression (the regression option)`),
      );
    }
    if (!Number.isSafeInteger(number) || number < 0) {
      throw new DataError(
        `${where}: label ${shown} is not a class id (an integer ≥ 0); real-valued labels train a ` +
          `regressor: --regression (the regression option)`,
      );
    }
    this.sawInteger = true;
    if (this.columnIds) return this.classNames ? this.byClassName(number, where) : number;
    const named = this.given?.get(String(number));
    if (named !== undefined) return named;
    if (this.numberNames) {
      const why = "these names are numbers, so integer labels are looked up by name, not taken as ids";
      throw new DataError(`${where}: label ${shown} is not one of ${this.known}; ${why}`);
    }
    return number;
  }

  /** The id of a name: a known one, else the next free id (first-seen order). */
  private byName(value: string, where: string): number {
    if (this.given) {
      throw new DataError(
        `${where}: label ${JSON.stringify(value)} is not one of ${this.known}`,
      );
    }
    if (this.idsAs) {
      throw new DataError(
        `${where}: label ${JSON.stringify(value)} is a name, but the labels of ${this.idsAs} are integer ids`,
      );
    }
    const id = this.seen.get(value) ?? this.seen.size;
    this.seen.set(value, id);
    return id;
  }

  /** The known id of the data's id `value`, through its class name. */
  private byClassName(value: number, where: string): number {
    const names = this.classNames!, name = names[value];
    if (name === undefined) {
      throw new DataError(
        `${where}: label ${value} is not one of the column's ${names.length} class ids (0..${
          names.length - 1
        }: ${JSON.stringify(names)})`,
      );
    }
    const id = this.knownId(name, where);
    if (id === undefined) {
      throw new DataError(
        `${where}: label ${value} (class ${JSON.stringify(name)}) is not one of ${this.known}`,
      );
    }
    return id;
  }

  /** The id of the known name `name`: exactly, else ignoring case (told to onWarning the first time). */
  private knownId(name: string, where: string): number | undefined {
    const id = this.given?.get(name);
    if (id !== undefined || !this.folded) return id;
    const folded = this.folded.get(name.toLowerCase());
    if (folded !== undefined && !this.saidFolded) {
      this.saidFolded = true;
      const as = [...this.given!.keys()][folded];
      this.onWarning?.(
        `${where}: label ${JSON.stringify(name)} is taken as ${JSON.stringify(as)} of ${this.known}, ` +
          `ignoring case as run_glue.py does; so is any other label that differs from one of them only in case`,
      );
    }
    return folded;
  }

  /** The class names by id: the known ones, or those seen; null when the labels were ids. */
  names(): string[] | null {
    if (this.given) return [...this.given.keys()];
    return this.seen.size > 0 ? [...this.seen.keys()] : null;
  }
}

/** Example `ex` (number `index`) in errors: by its file and line, else by `source` and its index. */
export function exampleName(ex: Example, index: number, source?: string): string {
  if (ex.source !== undefined) return `${ex.source}: the example`;
  return `${source === undefined ? "" : `${source}: `}example ${index}`;
}

/**
 * Throw unless every example has a list of label ids below `numLabels` (multi-label data made in
 * code, too). `source` names them.
 */
export function checkLabelLists(examples: readonly Example[], numLabels: number, source: string): void {
  examples.forEach((ex, i) => {
    const bad = ex.labels?.find((id) => !(Number.isInteger(id) && id >= 0 && id < numLabels));
    if (!ex.labels || bad !== undefined) {
      throw new DataError(
        `${exampleName(ex, i, source)} ${
          ex.labels ? `has label ${bad}, which does not fit` : "has no label list for"
        } ` +
          `the head's ${numLabels} labels (ids 0..${numLabels - 1})`,
      );
    }
  });
}

/**
 * Throw unless every example's label is an id below `numLabels` (examples made in code, e.g.
 * from a packaged dataset, never went through a file's checks). `source` names them.
 */
export function checkLabels(examples: readonly Example[], numLabels: number, source: string): void {
  examples.forEach((ex, i) => {
    if (!(Number.isInteger(ex.label) && ex.label >= 0 && ex.label < numLabels)) {
      throw new DataError(
        `${
          exampleName(ex, i, source)
        } has label ${ex.label}, which does not fit the head's ${numLabels} labels ` +
          `(ids 0..${numLabels - 1})`,
      );
    }
  });
}
