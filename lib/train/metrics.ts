/**
 * The evaluation metrics of GLUE-style benchmarks, in float64 on the CPU, defined as scikit-learn
 * and SciPy compute them (what transformers' run_glue reports): Matthews correlation (CoLA),
 * F1 of class 1 (MRPC, QQP), Pearson and Spearman correlation (STS-B).
 * @module
 */

/** Matthews correlation of predicted and true class ids (any number of classes; 0 when undefined). */
export function matthews(pred: ArrayLike<number>, truth: ArrayLike<number>): number {
  checkPaired(pred, truth);
  let classes = 1;
  for (let i = 0; i < pred.length; i++) classes = Math.max(classes, pred[i] + 1, truth[i] + 1);
  const t = new Float64Array(classes), p = new Float64Array(classes);
  let correct = 0;
  const n = pred.length;
  for (let i = 0; i < n; i++) {
    t[truth[i]]++;
    p[pred[i]]++;
    if (pred[i] === truth[i]) correct++;
  }
  let tp = 0, pp = 0, tt = 0;
  for (let k = 0; k < classes; k++) {
    tp += t[k] * p[k];
    pp += p[k] * p[k];
    tt += t[k] * t[k];
  }
  const denom = Math.sqrt((n * n - pp) * (n * n - tt));
  return denom === 0 ? 0 : (correct * n - tp) / denom;
}

/** F1 score of class 1 against the rest (0 when there is no true or predicted 1). */
export function f1(pred: ArrayLike<number>, truth: ArrayLike<number>): number {
  checkPaired(pred, truth);
  let tp = 0, fp = 0, fn = 0;
  for (let i = 0; i < pred.length; i++) {
    if (pred[i] === 1 && truth[i] === 1) tp++;
    else if (pred[i] === 1) fp++;
    else if (truth[i] === 1) fn++;
  }
  return tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
}

/** Pearson correlation (NaN when either side is constant), within [−1, 1] as SciPy clips it. */
export function pearson(x: ArrayLike<number>, y: ArrayLike<number>): number {
  checkPaired(x, y);
  // a constant side's mean need not equal its values in floating point: its deviations are not 0
  if (constant(x) || constant(y)) return NaN;
  const n = x.length;
  let mx = 0, my = 0;
  for (let i = 0; i < n; i++) {
    mx += x[i];
    my += y[i];
  }
  mx /= n;
  my /= n;
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i] - mx, dy = y[i] - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  return Math.max(-1, Math.min(1, sxy / Math.sqrt(sxx * syy)));
}

function constant(v: ArrayLike<number>): boolean {
  for (let i = 1; i < v.length; i++) if (v[i] !== v[0]) return false;
  return true;
}

/**
 * Spearman correlation: Pearson of the ranks, tied values sharing their mean rank (as SciPy); NaN
 * when a value is NaN (SciPy's default, as {@link pearson} gives), not a rank sorted anywhere.
 */
export function spearman(x: ArrayLike<number>, y: ArrayLike<number>): number {
  checkPaired(x, y);
  if (Array.prototype.some.call(x, Number.isNaN) || Array.prototype.some.call(y, Number.isNaN)) return NaN;
  return pearson(ranks(x), ranks(y));
}

/** 1-based ranks, ties given the mean of the ranks they span. */
function ranks(v: ArrayLike<number>): Float64Array {
  const order = Array.from({ length: v.length }, (_, i) => i).sort((a, b) => v[a] - v[b]);
  const out = new Float64Array(v.length);
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && v[order[j + 1]] === v[order[i]]) j++;
    for (let k = i; k <= j; k++) out[order[k]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return out;
}

function checkPaired(a: ArrayLike<number>, b: ArrayLike<number>): void {
  if (a.length !== b.length || a.length === 0) {
    throw new RangeError(`metrics: need two equal, non-empty lists, got ${a.length} and ${b.length} values`);
  }
}

/**
 * Multi-label scores of predicted and true 0/1 entries, row-major [examples, labels]: the share
 * of examples with every label right (sklearn's accuracy_score on label sets), micro F1 over
 * every entry, and macro F1 (the mean over labels, 0 for a label never true nor predicted).
 */
export function multiLabelScores(
  pred: ArrayLike<number>,
  truth: ArrayLike<number>,
  labels: number,
): { accuracy: number; f1: number; f1Macro: number } {
  checkPaired(pred, truth);
  const rows = pred.length / labels;
  if (!(Number.isInteger(labels) && labels >= 1 && Number.isInteger(rows))) {
    throw new RangeError(`multiLabelScores: ${pred.length} entries are not rows of ${labels} labels`);
  }
  let exact = 0;
  for (let r = 0; r < rows; r++) {
    let same = true;
    for (let j = 0; j < labels; j++) same &&= pred[r * labels + j] === truth[r * labels + j];
    if (same) exact++;
  }
  let macro = 0;
  for (let j = 0; j < labels; j++) {
    const column = (a: ArrayLike<number>) => Array.from({ length: rows }, (_, r) => a[r * labels + j]);
    macro += f1(column(pred), column(truth));
  }
  return { accuracy: rows > 0 ? exact / rows : NaN, f1: f1(pred, truth), f1Macro: macro / labels };
}
