/**
 * Row bands: how a kernel over a [rows, row] tensor larger than one storage binding (an LM
 * head's logits: 4096 tokens × 151,936 classes are 2.49 GB, over the H100's 2 GiB) runs as
 * several dispatches, each binding a window of the buffer. A window starts at an offset the
 * device can bind (a multiple of `minStorageBufferOffsetAlignment`); the kernel adds `base`
 * elements to reach the band's first row.
 * @module
 */
import type { Gpu } from "./device.ts";

/**
 * A storage-binding limit below the device's, for tests: banded dispatches then run on small
 * tensors. 0 keeps the device's limit.
 */
export const BINDING_LIMIT = { bytes: 0 };

/** The largest storage binding the banded kernels plan for. */
export function bindingLimit(gpu: Gpu): number {
  return bindableBytes(gpu.limits.maxStorageBufferBindingSize);
}

/** A device's storage-binding limit, lowered to {@link BINDING_LIMIT} when that is set. */
export function bindableBytes(deviceLimit: number): number {
  return BINDING_LIMIT.bytes > 0 ? Math.min(deviceLimit, BINDING_LIMIT.bytes) : deviceLimit;
}

/** One band of rows and the window of the buffer that holds it. */
export interface RowBand {
  /** First row of the band. */
  first: number;
  /** Rows in the band. */
  rows: number;
  /** Byte offset of the binding (aligned for the device). */
  start: number;
  /** Bytes the binding covers. */
  size: number;
  /** Elements (of `elementBytes`) from the binding's start to the band's first row. */
  base: number;
}

/**
 * The bands of a tensor of `rows` rows of `rowElements` elements stored from element `offset`
 * of its buffer: one band (from the buffer's start, `size` covering the rows) when the whole
 * extent fits one binding, else as many rows per band as fit beside the alignment slack.
 * Throws, naming `what`, when one row alone is over the limit.
 */
export function rowBands(
  gpu: Gpu,
  rows: number,
  rowElements: number,
  what: string,
  { offset = 0, elementBytes = 4 }: { offset?: number; elementBytes?: number } = {},
): RowBand[] {
  const rowBytes = rowElements * elementBytes;
  const bytesOf = (elements: number) => Math.ceil((elements * elementBytes) / 4) * 4;
  if (bytesOf(offset + rows * rowElements) <= bindingLimit(gpu)) {
    return [{ first: 0, rows, start: 0, size: bytesOf(offset + rows * rowElements), base: offset }];
  }
  const perBand = rowsPerBand(gpu, rowBytes, what);
  const bands: RowBand[] = [];
  for (let first = 0; first < rows; first += perBand) {
    bands.push(rowWindow(gpu, first, Math.min(perBand, rows - first), rowElements, { offset, elementBytes }));
  }
  return bands;
}

/**
 * Bands of `rows` rows of `rowElements` elements (of `elementBytes`) for kernels that pair rows
 * (the FHT's complex lines, the coefficient gradient's trips): as many rows a band as one binding
 * holds beside its window's alignment slack, an even number, so that each row is paired as in one
 * band and comes out bit for bit the same. Bands are cut so even where all rows would fit one
 * binding (callers decide that for their own tensors); each tensor's window of a band is its own
 * (`rowWindow(gpu, band.first, band.rows, …)`).
 * @throws Error naming `what` when one row is over the binding limit.
 */
export function pairedRowBands(
  gpu: Gpu,
  rows: number,
  rowElements: number,
  what: string,
  elementBytes = 4,
): Pick<RowBand, "first" | "rows">[] {
  const fit = rowsPerBand(gpu, rowElements * elementBytes, what);
  const per = fit > 1 ? fit - (fit % 2) : 1;
  const bands = [];
  for (let first = 0; first < rows; first += per) bands.push({ first, rows: Math.min(per, rows - first) });
  return bands;
}

/** Rows of `rowBytes` that one binding holds beside a window's alignment slack; throws, naming `what`, when none. */
function rowsPerBand(gpu: Gpu, rowBytes: number, what: string): number {
  const limit = bindingLimit(gpu);
  const rows = Math.floor((limit - gpu.limits.minStorageBufferOffsetAlignment) / rowBytes);
  if (rows < 1) {
    throw new Error(
      `${what}: one row of ${rowBytes} bytes is over this device's largest storage binding (${limit} bytes)`,
    );
  }
  return rows;
}

/**
 * Rows [first, first + rows) of a tensor laid out as {@link rowBands}' (rows of `rowElements`
 * from element `offset`), as a band whose window starts at the bindable offset at or before the
 * first row: the part of a second tensor that one of another's bands reads or writes (an
 * embedding's ids for a band of its output rows).
 */
export function rowWindow(
  gpu: Gpu,
  first: number,
  rows: number,
  rowElements: number,
  { offset = 0, elementBytes = 4 }: { offset?: number; elementBytes?: number } = {},
): RowBand {
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  const from = (offset + first * rowElements) * elementBytes;
  const start = Math.floor(from / align) * align;
  return {
    first,
    rows,
    start,
    size: Math.ceil((from - start + rows * rowElements * elementBytes) / 4) * 4,
    base: (from - start) / elementBytes,
  };
}

/** The binding of `buffer` for `band`: the whole buffer when one binding may hold it, else the band's window. */
export function bandBinding(gpu: Gpu, buffer: GPUBuffer, band: RowBand): GPUBuffer | {
  buffer: GPUBuffer;
  offset: number;
  size: number;
} {
  return band.start === 0 && buffer.size <= bindingLimit(gpu)
    ? buffer
    : { buffer, offset: band.start, size: band.size };
}

/**
 * `buffer`'s binding for `band` ({@link bandBinding}), the window cut at the buffer's end: rows
 * `ld` apart end with a row of n ≤ ld, so the last band's window may reach past it.
 */
export function clampedBinding(gpu: Gpu, buffer: GPUBuffer, band: RowBand): GPUBuffer | {
  buffer: GPUBuffer;
  offset: number;
  size: number;
} {
  const b = bandBinding(gpu, buffer, band);
  return b instanceof GPUBuffer ? b : { ...b, size: Math.min(b.size, buffer.size - b.offset) };
}

/** A band of a flat extent: units [first, first + count). */
export interface UnitBand {
  first: number;
  count: number;
}

/**
 * Bands of `units` units that a kernel indexes alike in buffers holding a power of two of bytes a
 * unit each (4 for f32, 16 for vec4 units, 128 for a group of 32 f32): one band when each buffer fits one
 * binding; else as many units a band as the widest buffer's window may hold, in multiples that
 * start every window at an offset the device can bind. Throws when not even one such multiple fits.
 */
export function unitBands(gpu: Gpu, units: number, buffers: readonly [GPUBuffer, number][]): UnitBand[] {
  const limit = bindingLimit(gpu);
  if (buffers.every(([b]) => b.size <= limit)) return [{ first: 0, count: units }];
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  const step = Math.max(1, ...buffers.map(([, bytes]) => Math.ceil(align / bytes)));
  const widest = Math.max(...buffers.map(([, bytes]) => bytes));
  const per = Math.floor(limit / widest / step) * step;
  if (per < 1) {
    throw new Error(
      `a band of ${step} units of ${widest} bytes (the least that starts at a bindable offset) is over the ` +
        `largest storage binding (${limit} bytes)`,
    );
  }
  const bands: UnitBand[] = [];
  for (let first = 0; first < units; first += per) bands.push({ first, count: Math.min(per, units - first) });
  return bands;
}

/** The binding of `buffer` (`unitBytes` a unit) for one of {@link unitBands}' bands. */
export function unitBinding(
  gpu: Gpu,
  buffer: GPUBuffer,
  unitBytes: number,
  band: UnitBand,
): GPUBuffer | { buffer: GPUBuffer; offset: number; size: number } {
  return band.first === 0 && buffer.size <= bindingLimit(gpu) ? buffer : {
    buffer,
    offset: band.first * unitBytes,
    size: Math.min(buffer.size - band.first * unitBytes, Math.ceil((band.count * unitBytes) / 4) * 4),
  };
}
