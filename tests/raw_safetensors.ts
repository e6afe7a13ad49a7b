/**
 * A safetensors file written byte by byte for the readers' tests: a header (an object, or text as
 * given), its length field (the header's, or any other), and `dataBytes` zero bytes of data.
 */
export async function writeRawSafetensors(
  path: string,
  header: unknown,
  dataBytes: number,
  headerLength?: number | bigint,
): Promise<void> {
  const json = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength ?? json.length), true);
  out.set(json, 8);
  await Deno.writeFile(path, out);
}
