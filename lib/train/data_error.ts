/** The error of data that cannot be used, shared by the readers, datasets and batches. */
/** A data file that cannot be used: missing, malformed, a missing field, a bad label, no examples. */
export class DataError extends Error {
  /** Always "DataError". */
  override name = "DataError";
}
