/**
 * Dependency-free SVG figures: a heatmap of a matrix (log colour scale, downsampled by block
 * maxima to at most a few hundred cells a side, optional marked cells — the Hartley energy
 * T(W)² of a layer with SSH's chosen positions, like the paper's Figure 3) and a line plot
 * (loss curves from a run log). Output is a complete SVG document as a string.
 * @module
 */

/** Options of {@link heatmapSvg}. */
export interface HeatmapOptions {
  title?: string;
  /** Axis names, e.g. "in (column)" and "out (row)". */
  xLabel?: string;
  yLabel?: string;
  /** Colour by log10 of the value (default true; values ≤ 0 get the lowest colour). */
  log?: boolean;
  /** Most cells per side; larger matrices are reduced by block maxima (default 256). */
  maxCells?: number;
  /** Cells (row, col) in matrix coordinates to outline (e.g. the chosen positions). */
  marks?: readonly (readonly [number, number])[];
  /** Legend text of the marks. */
  marksLabel?: string;
}

/** A matrix reduced to at most `maxCells` a side by block maxima: values and block sizes. */
export function downsampleMax(
  values: ArrayLike<number>,
  rows: number,
  cols: number,
  maxCells: number,
): { data: Float64Array; rows: number; cols: number; by: [number, number] } {
  if (values.length !== rows * cols) {
    throw new RangeError(`downsampleMax: ${values.length} values for a ${rows}×${cols} matrix`);
  }
  const br = Math.max(1, Math.ceil(rows / maxCells)), bc = Math.max(1, Math.ceil(cols / maxCells));
  const r = Math.ceil(rows / br), c = Math.ceil(cols / bc);
  const data = new Float64Array(r * c).fill(-Infinity);
  for (let i = 0; i < rows; i++) {
    const oi = Math.floor(i / br) * c;
    for (let j = 0; j < cols; j++) {
      const k = oi + Math.floor(j / bc);
      const v = values[i * cols + j];
      if (v > data[k]) data[k] = v;
    }
  }
  return { data, rows: r, cols: c, by: [br, bc] };
}

/** The viridis colour map at t ∈ [0, 1] (a few anchor colours, linearly interpolated). */
export function viridis(t: number): string {
  const stops = [
    [68, 1, 84],
    [72, 40, 120],
    [62, 74, 137],
    [49, 104, 142],
    [38, 130, 142],
    [31, 158, 137],
    [53, 183, 121],
    [109, 205, 89],
    [180, 222, 44],
    [253, 231, 37],
  ];
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x)), f = x - i;
  const c = stops[i].map((a, k) => Math.round(a + (stops[i + 1][k] - a) * f));
  return `#${c.map((v) => v.toString(16).padStart(2, "0")).join("")}`;
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function fmtNum(x: number): string {
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 1e4 || a < 1e-3) return x.toExponential(1);
  return Number(x.toPrecision(3)).toString();
}

/** A heatmap of the `rows`×`cols` row-major matrix `values` (see {@link HeatmapOptions}). */
export function heatmapSvg(
  values: ArrayLike<number>,
  rows: number,
  cols: number,
  opts: HeatmapOptions = {},
): string {
  const log = opts.log ?? true;
  const ds = downsampleMax(values, rows, cols, opts.maxCells ?? 256);
  const shown = Array.from(ds.data, (v) => (log ? (v > 0 ? Math.log10(v) : -Infinity) : v));
  // colour range: the largest value down to the 1st percentile (a few near-zero entries would
  // otherwise stretch the log scale and flatten the picture)
  const finite = shown.filter(Number.isFinite).sort((a, b) => a - b);
  const lo = finite.length ? finite[Math.floor(0.01 * (finite.length - 1))] : 0;
  const hi = finite.length ? finite[finite.length - 1] : 1;
  const span = hi > lo ? hi - lo : 1;
  const cell = Math.max(1, Math.min(24, Math.floor(560 / Math.max(ds.rows, ds.cols))));
  const left = 70, top = opts.title ? 40 : 16, w = ds.cols * cell, h = ds.rows * cell;
  const legendX = left + w + 20, height = top + h + 50;
  const legendText = opts.marks && opts.marks.length > 0 ? (opts.marksLabel ?? "marked").length * 7 + 30 : 70;
  const width = Math.max(legendX + Math.max(90, legendText), left + (opts.title ?? "").length * 7.5);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
    `font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
  ];
  if (opts.title) out.push(`<text x="${left}" y="22" font-size="14">${esc(opts.title)}</text>`);
  out.push(`<g transform="translate(${left},${top})" shape-rendering="crispEdges">`);
  for (let i = 0; i < ds.rows; i++) {
    for (let j = 0; j < ds.cols; j++) {
      const v = shown[i * ds.cols + j];
      const t = Number.isFinite(v) ? Math.max(0, (v - lo) / span) : 0;
      out.push(
        `<rect x="${j * cell}" y="${i * cell}" width="${cell}" height="${cell}" fill="${viridis(t)}"/>`,
      );
    }
  }
  if (opts.marks && opts.marks.length > 0) {
    const seen = new Set<number>();
    for (const [r, c] of opts.marks) {
      const i = Math.floor(r / ds.by[0]), j = Math.floor(c / ds.by[1]);
      const k = i * ds.cols + j;
      if (seen.has(k)) continue;
      seen.add(k);
      const s = Math.max(cell, 3);
      out.push(
        `<rect x="${j * cell + (cell - s) / 2}" y="${
          i * cell + (cell - s) / 2
        }" width="${s}" height="${s}" ` +
          `fill="none" stroke="#e8002a" stroke-width="${cell >= 4 ? 1 : 0.6}"/>`,
      );
    }
  }
  out.push(`<rect width="${w}" height="${h}" fill="none" stroke="#333"/>`, `</g>`);
  out.push(
    `<text x="${left + w / 2}" y="${top + h + 20}" text-anchor="middle">${esc(opts.xLabel ?? "column")}` +
      ` (0..${cols - 1}${ds.by[1] > 1 ? `, ${ds.by[1]} per cell` : ""})</text>`,
    `<text transform="translate(${left - 14},${top + h / 2}) rotate(-90)" text-anchor="middle">` +
      `${esc(opts.yLabel ?? "row")} (0..${rows - 1}${ds.by[0] > 1 ? `, ${ds.by[0]} per cell` : ""})</text>`,
  );
  // colour legend
  const steps = 40, lh = Math.min(h, 240);
  for (let k = 0; k < steps; k++) {
    const t = 1 - k / (steps - 1);
    out.push(
      `<rect x="${legendX}" y="${top + (k * lh) / steps}" width="14" height="${lh / steps + 0.5}" fill="${
        viridis(t)
      }"/>`,
    );
  }
  const label = (v: number) => (log ? `1e${v.toFixed(1)}` : fmtNum(v));
  out.push(
    `<text x="${legendX + 18}" y="${top + 10}">${label(hi)}</text>`,
    `<text x="${legendX + 18}" y="${top + lh}">${label(lo)}</text>`,
  );
  if (opts.marks && opts.marks.length > 0) {
    out.push(
      `<rect x="${legendX}" y="${top + lh + 16}" width="10" height="10" fill="none" stroke="#e8002a"/>`,
      `<text x="${legendX + 14}" y="${top + lh + 25}">${esc(opts.marksLabel ?? "marked")}</text>`,
    );
  }
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

/** One line of a {@link linePlotSvg}. */
export interface Series {
  name: string;
  points: readonly (readonly [number, number])[];
  /** CSS colour (default from a palette). */
  color?: string;
  /** Draw dots at the points (default: only when there are few). */
  dots?: boolean;
}

/** Options of {@link linePlotSvg}. */
export interface LinePlotOptions {
  title?: string;
  xLabel?: string;
  yLabel?: string;
  width?: number;
  height?: number;
}

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

/** "Nice" tick values covering [lo, hi]. */
export function ticks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Number(v.toPrecision(12)));
  }
  return out;
}

/** A line plot of `series` (e.g. training and eval loss against steps). */
export function linePlotSvg(series: readonly Series[], opts: LinePlotOptions = {}): string {
  const width = opts.width ?? 640, height = opts.height ?? 400;
  const left = 64, right = 20, top = opts.title ? 40 : 20, bottom = 50;
  const pw = width - left - right, ph = height - top - bottom;
  const all = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const x0 = xs.length ? xs.reduce((a, b) => Math.min(a, b)) : 0;
  let x1 = xs.length ? xs.reduce((a, b) => Math.max(a, b)) : 1;
  let y0 = ys.length ? ys.reduce((a, b) => Math.min(a, b)) : 0;
  let y1 = ys.length ? ys.reduce((a, b) => Math.max(a, b)) : 1;
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  const sx = (x: number) => left + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => top + ph - ((y - y0) / (y1 - y0)) * ph;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
    `font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
  ];
  if (opts.title) out.push(`<text x="${left}" y="24" font-size="14">${esc(opts.title)}</text>`);
  for (const t of ticks(x0, x1)) {
    out.push(
      `<line x1="${sx(t)}" y1="${top}" x2="${sx(t)}" y2="${top + ph}" stroke="#eee"/>`,
      `<text x="${sx(t)}" y="${top + ph + 16}" text-anchor="middle">${fmtNum(t)}</text>`,
    );
  }
  for (const t of ticks(y0, y1)) {
    const y = sy(t);
    out.push(
      `<line x1="${left}" y1="${y}" x2="${left + pw}" y2="${y}" stroke="#eee"/>`,
      `<text x="${left - 6}" y="${y + 4}" text-anchor="end">${fmtNum(t)}</text>`,
    );
  }
  out.push(`<rect x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  series.forEach((s, k) => {
    const color = s.color ?? PALETTE[k % PALETTE.length];
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (pts.length > 1) {
      const d = pts.map(([x, y], i) => `${i ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join("");
      out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.5"/>`);
    }
    if (s.dots ?? pts.length <= 30) {
      for (const [x, y] of pts) {
        out.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3" fill="${color}"/>`);
      }
    }
    const ly = top + 14 + k * 16;
    out.push(
      `<line x1="${left + pw - 130}" y1="${ly - 4}" x2="${left + pw - 110}" y2="${
        ly - 4
      }" stroke="${color}" stroke-width="2"/>`,
      `<text x="${left + pw - 104}" y="${ly}">${esc(s.name)}</text>`,
    );
  });
  out.push(
    `<text x="${left + pw / 2}" y="${height - 10}" text-anchor="middle">${esc(opts.xLabel ?? "x")}</text>`,
    `<text transform="translate(16,${top + ph / 2}) rotate(-90)" text-anchor="middle">${
      esc(opts.yLabel ?? "y")
    }</text>`,
    `</svg>`,
  );
  return out.join("\n") + "\n";
}
