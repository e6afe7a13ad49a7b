/**
 * Labelled images for ViT classifiers, preprocessed as the model's image processor does
 * (lib/io/image.ts), from:
 * - an ImageFolder directory: one subdirectory per class (class ids in sorted name order, as
 *   torchvision's ImageFolder and `datasets`' imagefolder number them), PNG and JPEG files at
 *   any depth below it, links followed as torchvision follows them, other files skipped (how
 *   many is told to `onWarning` in one line);
 * - a `datasets` split (a Parquet or Arrow file, or a save_to_disk folder: lib/io/data_table.ts)
 *   as `datasets` stores images: a column of {bytes, path} structs (its Image feature, whatever its
 *   name: cifar10's `img`; of several, the one named `image` or `img`), the bytes or, where they are
 *   null (Dataset.to_parquet of images loaded from files), the file at the path (a relative one
 *   from the file's folder, or the save_to_disk folder); and a label column: the one named
 *   (`labelField`), else `label`, else the one ClassLabel column, else `labels` (ClassLabel names
 *   name the ids);
 * - a JSONL file, one object per line with a label (`label` unless named) and either
 *   `pixel_values` (3·S·S floats, already preprocessed) or `image` (H·W·3 RGB values 0–255,
 *   row-major) with `width` and `height`.
 *   Integer values are resized in 8 bits, exactly as Pillow resizes a decoded image (transformers
 *   turns such an array into an 8-bit PIL image to resize it); others are resized in float64.
 * Files are decoded and resized once, when read, on the worker pool of lib/io/image_workers.ts
 * (several at a time: every core but one busy); each batch then rescales and normalises its
 * images from the resized 8-bit pixels (3·S·S bytes an image in memory). {@link listImageData}
 * lists the images and their labels without decoding any, so that a run decodes only the rows it
 * keeps ({@link decodeImageList}).
 * @module
 */
import { join, relative, resolve } from "node:path";
import { type ImageProcessorConfig, preprocessImage, type RgbImage } from "../io/image.ts";
import { IMAGE_FILE, ImageFileError } from "../io/image_files.ts";
import { type DecodeJob, decodeResized, imageWorkerCount } from "../io/image_workers.ts";
import { type DataTable, readTable, TableError, tableFolder, tableFormatOf } from "../io/data_table.ts";
import { readRecords } from "./readers.ts";
import { DataError } from "./data_error.ts";
import { LabelMap } from "./labels.ts";
import type { ImageExample } from "./tasks.ts";

/** Images read by {@link readImageData}. */
export interface ImageData {
  /** The examples, in file (or sorted path) order. */
  examples: ImageExample[];
  /** Names of the class ids (folder names, ClassLabel names or string labels); null when unnamed. */
  labelNames: string[] | null;
  /**
   * The shape of each example's pixels, channels first: [3, height, width] of the image processor
   * (what `ImageBatches` of lib/train/tasks.ts takes as its `imageShape`).
   */
  imageShape: [number, number, number];
}

/** Options of {@link readImageData}. */
export interface ImageDataOptions {
  /**
   * Class names by id, e.g. the training split's: a folder or string label, or a split's label id
   * by its ClassLabel name, is looked up here (an unknown one is an error) instead of being
   * numbered by itself.
   */
  labels?: readonly string[];
  /** Whose those names are, for errors; default "the training data's". */
  whose?: string;
  /** The label field of a `datasets` split or JSONL file (--label-field); see the module doc. */
  labelField?: string;
  /**
   * Called after each image of a folder or `datasets` split is decoded (tens of thousands take
   * minutes), with the images decoded and those there are.
   */
  onProgress?: (done: number, total: number) => void;
  /**
   * Told, in one line each, what was read but may be a mistake (files of an image folder skipped
   * for not being PNG or JPEG; a label matched to a name of `labels` only ignoring case); without
   * it nothing is said (the CLI prints each on stderr).
   */
  onWarning?: (message: string) => void;
}

/**
 * Read the labelled images at `path` (a directory of class folders, a .parquet or .arrow split or a
 * save_to_disk folder, or .jsonl; see the module doc).
 */
export async function readImageData(
  path: string,
  processor: ImageProcessorConfig,
  opts: ImageDataOptions = {},
): Promise<ImageData> {
  const list = await listImageData(path, processor, opts);
  const examples = await decodeImageList(list, list.images, opts.onProgress);
  return { examples, labelNames: list.labelNames, imageShape: list.imageShape };
}

/** A labelled image listed by {@link listImageData}: its label known, its pixels not yet decoded. */
export interface ListedImage {
  /** The file, the split and row, or the JSONL file and line. */
  source: string;
  /** The class id. */
  label: number;
  /**
   * Its pixels: the file (or the split's bytes) decoded and resized now, on the worker pool (call it for
   * several images at once to keep the workers busy); a JSONL line's, read with the list.
   */
  load: () => Promise<ImageExample["pixels"]>;
}

/** The labelled images at a path, listed by {@link listImageData}; {@link decodeImageList} decodes them. */
export interface ImageList {
  /** In file (or sorted path) order. */
  images: ListedImage[];
  /** As {@link ImageData.labelNames}. */
  labelNames: string[] | null;
  /** As {@link ImageData.imageShape}. */
  imageShape: [number, number, number];
  /** Loading decodes files (a folder, a `datasets` split; progress is told); a JSONL file's pixels are read. */
  encoded: boolean;
}

/**
 * List the labelled images at `path` as {@link readImageData} reads them (the same labels, names,
 * warnings and errors of the listing), decoding none: files are listed and labels read, so that a
 * caller that keeps some rows (a split, a cut to a few) decodes those alone ({@link decodeImageList}).
 */
export async function listImageData(
  path: string,
  processor: ImageProcessorConfig,
  opts: Omit<ImageDataOptions, "onProgress"> = {},
): Promise<ImageList> {
  const stat = await statOf(path);
  // a save_to_disk folder is a split, not a folder of class folders
  if (tableFormatOf(path)) return await asDataError(() => tableImages(path, processor, opts));
  if (stat.isDirectory) return await asDataError(() => folderImages(path, processor, opts));
  if (/\.(jsonl|ndjson)$/i.test(path)) return await jsonlImages(path, processor, opts);
  throw new DataError(
    `${path}: image data must be a folder of class folders (PNG/JPEG files), a \`datasets\` split with ` +
      `image and label columns (.parquet, .arrow or a folder that save_to_disk wrote), or a .jsonl file of ` +
      `pixel arrays`,
  );
}

/**
 * The examples of `images` (rows of `list`), in their order: each decoded and resized once, on the
 * image workers, {@link LOADS_PER_WORKER} a worker under way at a time. `onProgress` is called as
 * each is decoded (in whatever order they finish), with those decoded and all of `images`, as
 * {@link ImageDataOptions.onProgress} is (not for a JSONL file's, which are read already). The
 * first image that fails stops the decoding, and the error thrown is that of the first in
 * `images`' order (the one a decoding one by one would meet), once those under way have finished.
 */
export async function decodeImageList(
  list: ImageList,
  images: readonly ListedImage[] = list.images,
  onProgress?: (done: number, total: number) => void,
): Promise<ImageExample[]> {
  const progress = list.encoded ? onProgress : undefined;
  const pixels = await asDataError(() => loadInOrder(images.map((image) => image.load), progress));
  return images.map((image, i) => ({ pixels: pixels[i], label: image.label }));
}

/** Loads kept under way per image worker: enough that each has the next image when it finishes one. */
export const LOADS_PER_WORKER = 3;

/**
 * The results of `loads`, in their order, with {@link LOADS_PER_WORKER} an image worker under way
 * at a time; `onProgress` is told each one done. After a load fails none is started; those under
 * way finish, and the error of the first failed in `loads`' order is thrown.
 */
export async function loadInOrder<T>(
  loads: readonly (() => Promise<T>)[],
  onProgress?: (done: number, total: number) => void,
): Promise<T[]> {
  const out = new Array<T>(loads.length);
  let next = 0, done = 0, firstFailed = Infinity, error: unknown;
  // each lane loads the next image not yet started, until none is left or one has failed
  const lane = async () => {
    while (next < loads.length && firstFailed === Infinity) {
      const at = next++;
      try {
        out[at] = await loads[at]();
      } catch (e) {
        if (at < firstFailed) [firstFailed, error] = [at, e];
        continue;
      }
      if (firstFailed === Infinity) onProgress?.(++done, loads.length);
    }
  };
  const lanes = Math.min(loads.length, LOADS_PER_WORKER * imageWorkerCount());
  await Promise.all(Array.from({ length: lanes }, lane));
  if (firstFailed < Infinity) throw error;
  return out;
}

/** One unlabelled image, preprocessed, and where it came from. */
export interface SourcedImage {
  /** The file, or the split and row. */
  source: string;
  /** Makes the [3, height, width] floats (from the image resized once, kept as 8-bit). */
  pixels: () => Float32Array;
}

/**
 * Unlabelled images, preprocessed: a PNG or JPEG file, every such file below a directory (in
 * sorted path order), the image column of a `datasets` split (a .parquet or .arrow file or a
 * save_to_disk folder), or a JSONL file of pixel arrays.
 * `onProgress` and `onWarning` are called as {@link ImageDataOptions}' are.
 */
export async function readImages(
  path: string,
  processor: ImageProcessorConfig,
  opts: Pick<ImageDataOptions, "onProgress" | "onWarning"> = {},
): Promise<SourcedImage[]> {
  return await decodeImages(await listImages(path, processor, opts), opts.onProgress);
}

/**
 * `images` (listed by {@link listImages}) decoded, in their order, as {@link decodeImageList}
 * decodes labelled ones: `onProgress` as each is done, the first failed in their order thrown.
 */
export async function decodeImages(
  images: readonly UnloadedImage[],
  onProgress?: (done: number, total: number) => void,
): Promise<SourcedImage[]> {
  const pixels = await asDataError(() => loadInOrder(images.map((image) => image.load), onProgress));
  return images.map(({ source }, i) => ({ source, pixels: pixels[i] }));
}

/** An unlabelled image listed by {@link listImages}, not yet decoded. */
export interface UnloadedImage {
  /** The file, the split and row, or the JSONL file and line. */
  source: string;
  /** Its pixels: the file (or the split's bytes) decoded and resized now, on the image workers. */
  load: () => Promise<() => Float32Array>;
}

/**
 * The unlabelled images {@link readImages} reads, listed (the same errors and warnings of the
 * listing) and not decoded: a caller with more than it would hold decoded decodes them a batch
 * at a time. A JSONL file's pixels are read with the list.
 */
export async function listImages(
  path: string,
  processor: ImageProcessorConfig,
  opts: Pick<ImageDataOptions, "onWarning"> = {},
): Promise<UnloadedImage[]> {
  const stat = await statOf(path);
  return await asDataError(async () => {
    if (tableFormatOf(path)) return await tableCells(path, processor);
    if (stat.isDirectory) {
      const found = await imageFiles(path);
      if (found.files.length === 0) throw new DataError(`${path}: no PNG or JPEG files`);
      reportSkipped(path, found.skipped, opts.onWarning);
      return found.files.sort().map((file) => ({ source: file, load: () => decodeFile(file, processor) }));
    }
    if (/\.(jsonl|ndjson)$/i.test(path)) {
      return (await jsonlPixels(path, processor)).map(({ at, pixels }) => ({
        source: at,
        load: () => Promise.resolve(() => pixels),
      }));
    }
    return [{ source: path, load: () => decodeFile(path, processor) }];
  });
}

/**
 * Bytes of decoded images a command holds by default (train's --image-memory): a quarter of the
 * machine's memory. More are decoded again for each batch.
 */
export function defaultImageMemory(): number {
  return Math.floor(Deno.systemMemoryInfo().total / 4);
}

/** The images of a split's image column, each named by its row. */
async function tableCells(path: string, processor: ImageProcessorConfig): Promise<UnloadedImage[]> {
  const table = await readTable(path), folder = tableFolder(path);
  const column = imageColumn(table, path);
  return table.rows.map((row, i) => {
    const at = `${path}: row ${i + 1}`;
    return { source: at, load: () => decodeCell(row[column], column, at, folder, processor) };
  });
}

/** The file's or folder's stat; a missing one is a DataError. */
async function statOf(path: string): Promise<Deno.FileInfo> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new DataError(`${path}: not found`);
    throw e;
  }
}

/** `read()`, with the decoders' and the table readers' errors as DataErrors. */
async function asDataError<T>(read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (e) {
    if (e instanceof ImageFileError || e instanceof TableError) throw new DataError(e.message);
    throw e;
  }
}

/** A cell of `datasets`' Image feature: a {bytes, path} struct. */
function isImageStruct(cell: unknown): cell is { bytes: unknown; path: unknown } {
  return typeof cell === "object" && cell !== null && "bytes" in cell && "path" in cell;
}

/**
 * The image column of a split: the one column of {bytes, path} structs (as `datasets` stores an
 * Image feature, whatever its metadata), else `image`, else `img`.
 */
function imageColumn(table: DataTable, path: string): string {
  const structs = table.columns.filter((c) => isImageStruct(table.rows.find((row) => row[c] != null)?.[c]));
  const column = structs.length === 1 ? structs[0] : ["image", "img"].find((c) => table.columns.includes(c));
  if (column) return column;
  throw new DataError(
    structs.length > 1
      ? `${path}: ${structs.length} image columns (${structs.join(", ")}), none named "image" or "img"`
      : `${path}: no image column (a column of {bytes, path} image structs, or one named "image" or ` +
        `"img"); the columns are ${table.columns.join(", ")}`,
  );
}

/**
 * The encoded image of an Image struct in `column` of a split: its bytes, else the file at its path
 * (a relative one from `folder`: {@link tableFolder}), which `datasets` decodes when the bytes are null.
 */
async function imageBytes(cell: unknown, column: string, at: string, folder: string): Promise<Uint8Array> {
  if (!isImageStruct(cell)) {
    const kind = cell == null
      ? "null"
      : Array.isArray(cell)
      ? "a list"
      : cell instanceof Uint8Array
      ? "bare bytes"
      : `a ${typeof cell === "object" ? "struct" : typeof cell}`;
    throw new DataError(`${at}: "${column}" holds ${kind}, not an image struct ({bytes, path})`);
  }
  if (cell.bytes instanceof Uint8Array) return cell.bytes;
  if (typeof cell.path !== "string" || cell.path === "") {
    throw new DataError(`${at}: "${column}" has neither bytes nor a path`);
  }
  const image = resolve(folder, cell.path);
  if (!(await statOrNull(image))?.isFile) {
    const resolved = image === cell.path ? "" : ` (${image})`;
    throw new DataError(
      `${at}: "${column}" has no bytes, and its path ${JSON.stringify(cell.path)}${resolved} is not a file`,
    );
  }
  return await Deno.readFile(image);
}

/**
 * The image of `cell`, an Image struct in `column` of a split ({@link imageBytes}: a path relative to
 * `folder`), decoded and resized once, on the worker pool; messages name it by `at`, its row.
 */
async function decodeCell(
  cell: unknown,
  column: string,
  at: string,
  folder: string,
  processor: ImageProcessorConfig,
): Promise<() => Float32Array> {
  const bytes = await imageBytes(cell, column, at, folder);
  // the table keeps its cells' bytes: those are copied to the worker, a file read for a path is moved
  const kept = isImageStruct(cell) && bytes === cell.bytes;
  const job = decodeJob(bytes, at, processor);
  return pixelsOf(await asDataError(() => decodeResized(job, { transfer: !kept })), processor, at);
}

/** The file's or folder's stat; null when there is none. */
async function statOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return null;
    throw e;
  }
}

/** Decoding `bytes` (named by `source`) for `processor`: resized to its size, if it resizes. */
function decodeJob(bytes: Uint8Array, source: string, processor: ImageProcessorConfig): DecodeJob {
  const { width, height } = processor;
  return { bytes, source, resizeTo: processor.doResize ? { width, height } : null };
}

/**
 * A function that rescales and normalises the image, decoded and resized once (8-bit, as Pillow),
 * when a batch needs the floats. Without resizing, a wrongly sized image is refused here, by name.
 */
function pixelsOf(stored: RgbImage, processor: ImageProcessorConfig, source: string): () => Float32Array {
  if (stored.width !== processor.width || stored.height !== processor.height) {
    throw new DataError(
      `${source}: the image is ${stored.width}×${stored.height}; the model takes ` +
        `${processor.width}×${processor.height} and its preprocessor_config.json turns resizing off`,
    );
  }
  return () => preprocessImage(stored, processor);
}

async function folderImages(
  dir: string,
  processor: ImageProcessorConfig,
  opts: ImageDataOptions,
): Promise<ImageList> {
  if (opts.labelField !== undefined) {
    throw new DataError(
      `${dir}: --label-field (labelField) does not apply to an image folder: its class folders are the labels`,
    );
  }
  const classes: string[] = [];
  // hidden folders (.git, .ipynb_checkpoints, …) are no classes; links to folders are (as in torchvision)
  for await (const e of Deno.readDir(dir)) {
    if (!e.name.startsWith(".") && (await followed(e, join(dir, e.name))).isDirectory) classes.push(e.name);
  }
  classes.sort();
  if (classes.length === 0) {
    throw new DataError(`${dir}: no class folders (an image folder holds one folder of images per class)`);
  }
  const ids = new LabelMap(
    { labels: opts.labels ?? classes, onWarning: opts.onWarning },
    opts.labels ? opts.whose ?? "the training data's" : `${dir}'s`,
  );
  // every class listed before any image is decoded: a folder without any is refused at once
  const images: ListedImage[] = [];
  let skipped: string[] = [];
  for (const cls of classes) {
    const found = await imageFiles(join(dir, cls), [await Deno.realPath(dir)]);
    const files = found.files.sort();
    skipped = skipped.concat(found.skipped); // not a spread: a folder may hold more files than arguments go
    if (files.length === 0) throw new DataError(`${join(dir, cls)}: no PNG or JPEG files`);
    const label = ids.id(cls, join(dir, cls));
    for (const file of files) images.push({ source: file, label, load: () => decodeFile(file, processor) });
  }
  reportSkipped(dir, skipped, opts.onWarning);
  return {
    images,
    labelNames: opts.labels ? [...opts.labels] : classes,
    imageShape: imageShapeOf(processor),
    encoded: true,
  };
}

/** The image `file` decoded and resized once, on the workers; messages name it from the working folder. */
async function decodeFile(file: string, processor: ImageProcessorConfig): Promise<() => Float32Array> {
  return await asDataError(async () => {
    const job = decodeJob(await Deno.readFile(file), relative(Deno.cwd(), file) || file, processor);
    return pixelsOf(await decodeResized(job, { transfer: true }), processor, file);
  });
}

/** The PNG and JPEG files at any depth below a folder, and the other files there (skipped). */
interface FoundFiles {
  files: string[];
  skipped: string[];
}

/**
 * Image files at any depth below `dir`, hidden ones aside. Links are followed, as torchvision's
 * ImageFolder follows them; a link back to a folder on the way down (`above`: their real paths) is not.
 */
async function imageFiles(dir: string, above: string[] = [], found?: FoundFiles): Promise<FoundFiles> {
  found ??= { files: [], skipped: [] };
  const chain = [...above, await Deno.realPath(dir)];
  for await (const e of Deno.readDir(dir)) {
    const path = join(dir, e.name);
    if (e.name.startsWith(".")) continue;
    const kind = await followed(e, path);
    if (kind.isDirectory) {
      if (!chain.includes(await Deno.realPath(path))) await imageFiles(path, chain, found);
    } else if (kind.isFile) (IMAGE_FILE.test(e.name) ? found.files : found.skipped).push(path);
  }
  return found;
}

/** What a folder entry is, a link's target for a link; a broken link is neither file nor folder. */
async function followed(e: Deno.DirEntry, path: string): Promise<{ isDirectory: boolean; isFile: boolean }> {
  if (!e.isSymlink) return e;
  try {
    return await Deno.stat(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    if (IMAGE_FILE.test(path)) throw new DataError(`${path}: a broken link (its target does not exist)`);
    return { isDirectory: false, isFile: false };
  }
}

/** Tell `onWarning`, in one line, how many files below `dir` were skipped for not being PNG or JPEG. */
function reportSkipped(dir: string, skipped: string[], onWarning?: (message: string) => void): void {
  if (skipped.length === 0 || !onWarning) return;
  const n = skipped.length, first = relative(dir, skipped[0]);
  onWarning(
    `${dir}: skipped ${n} file${n === 1 ? "" : "s"} not PNG or JPEG (${n === 1 ? first : `e.g. ${first}`})`,
  );
}

async function tableImages(
  path: string,
  processor: ImageProcessorConfig,
  opts: ImageDataOptions,
): Promise<ImageList> {
  const table = await readTable(path), folder = tableFolder(path);
  const image = imageColumn(table, path), label = labelColumn(table, path, opts.labelField);
  const classNames = table.classLabels.get(label);
  const ids = new LabelMap(
    { labels: opts.labels, classNames, onWarning: opts.onWarning },
    opts.labels ? opts.whose ?? "the training data's" : `${path}'s`,
  );
  const images = table.rows.map((row, i): ListedImage => {
    const at = `${path}: row ${i + 1}`;
    const load = () => decodeCell(row[image], image, at, folder, processor);
    return { source: at, label: ids.id(row[label], at), load };
  });
  if (images.length === 0) throw new DataError(`${path}: no images (the table has no rows)`);
  // string labels without ClassLabel names are named in first-seen order, as the eval split must know
  return { images, labelNames: ids.names(), imageShape: imageShapeOf(processor), encoded: true };
}

/**
 * The label column of an image split: `named` (--label-field), else `label`, else the one
 * ClassLabel column (cifar100 has two: one must be named), else `labels` (beans).
 */
function labelColumn(table: DataTable, path: string, named: string | undefined): string {
  const columns = table.columns.join(", ");
  if (named !== undefined) {
    if (table.columns.includes(named)) return named;
    throw new DataError(`${path}: no "${named}" column (the columns are ${columns})`);
  }
  if (table.columns.includes("label")) return "label";
  const classLabels = table.columns.filter((c) => table.classLabels.has(c));
  if (classLabels.length === 1) return classLabels[0];
  if (classLabels.length > 1) {
    const several = `${classLabels.length} ClassLabel columns (${classLabels.join(", ")})`;
    throw new DataError(
      `${path}: no "label" column, and ${several}: name one (--label-field, or labelField)`,
    );
  }
  if (table.columns.includes("labels")) return "labels";
  throw new DataError(
    `${path}: no label column ("label", a ClassLabel column or "labels"; or name it: --label-field, or ` +
      `labelField); the columns are ${columns}`,
  );
}

/** One line of a JSONL image file: its place, its pixels and its fields. */
interface PixelLine {
  at: string;
  pixels: Float32Array;
  fields: Record<string, unknown>;
}

/** The lines of a JSONL file of pixel arrays (`pixel_values`, or `image` with `width` and `height`). */
async function jsonlPixels(path: string, processor: ImageProcessorConfig): Promise<PixelLine[]> {
  const shape = imageShapeOf(processor);
  return (await readRecords(path, "jsonl")).map(({ line, fields: o }) => {
    const at = `${path}:${line}`;
    let pixels: Float32Array;
    if (Array.isArray(o.pixel_values)) {
      pixels = Float32Array.from(o.pixel_values.flat(3) as number[]);
      if (pixels.length !== shape[0] * shape[1] * shape[2]) {
        throw new DataError(
          `${at}: "pixel_values" has ${pixels.length} values, the model takes 3×${shape[1]}×${shape[2]}`,
        );
      }
    } else if (Array.isArray(o.image) && Number.isInteger(o.width) && Number.isInteger(o.height)) {
      const values = o.image.flat(2) as number[];
      const bytes = values.every((x) => Number.isInteger(x) && x >= 0 && x <= 255);
      const data = bytes ? Uint8Array.from(values) : Float32Array.from(values);
      const [w, h] = [o.width as number, o.height as number];
      if (data.length !== w * h * 3) {
        throw new DataError(`${at}: "image" has ${data.length} values, expected ${w}×${h}×3`);
      }
      pixels = preprocessImage({ width: w, height: h, data }, processor);
    } else {
      throw new DataError(`${at}: expected "pixel_values", or "image" with "width" and "height"`);
    }
    if (!pixels.every(Number.isFinite)) throw new DataError(`${at}: the pixels hold NaN or infinity`);
    return { at, pixels, fields: o };
  });
}

async function jsonlImages(
  path: string,
  processor: ImageProcessorConfig,
  opts: ImageDataOptions,
): Promise<ImageList> {
  const ids = new LabelMap(
    { labels: opts.labels, onWarning: opts.onWarning },
    opts.whose ?? "the training data's",
  );
  const field = opts.labelField ?? "label";
  const images = (await jsonlPixels(path, processor)).map(({ at, pixels, fields }): ListedImage => {
    if (!(field in fields)) {
      throw new DataError(
        `${at}: missing field "${field}"` +
          (opts.labelField === undefined ? " (or name the label field: --label-field, or labelField)" : "") +
          `; the fields are ${Object.keys(fields).join(", ")}`,
      );
    }
    return { source: at, label: ids.id(fields[field], at), load: () => Promise.resolve(pixels) };
  });
  return { images, labelNames: ids.names(), imageShape: imageShapeOf(processor), encoded: false };
}

/** The shape of the pixels `processor` makes: [3, height, width], channels first. */
function imageShapeOf(processor: ImageProcessorConfig): [number, number, number] {
  return [3, processor.height, processor.width];
}
