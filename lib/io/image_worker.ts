/**
 * The module of each worker of lib/io/image_workers.ts: it says it has loaded, then decodes and
 * resizes one {@link DecodeJob} a message, posting the image (its buffer moved) or the error's
 * class name and message.
 * @module
 */
import { type DecodeJob, decodeResizedHere, movable, type WorkerReply } from "./image_workers.ts";

/** The worker's global scope, as far as it is used here (the project is typed for the main thread). */
const scope = self as unknown as {
  postMessage(reply: WorkerReply, transfer: Transferable[]): void;
  onmessage: (e: MessageEvent<DecodeJob>) => void;
};

function post(reply: WorkerReply, transfer: Transferable[] = []): void {
  scope.postMessage(reply, transfer);
}

scope.onmessage = async (e) => {
  try {
    const image = await decodeResizedHere(e.data);
    const { data, buffer } = movable(image.data);
    post({ image: { ...image, data } }, [buffer]);
  } catch (error) {
    const { name, message } = error instanceof Error ? error : new Error(String(error));
    post({ error: { name, message } });
  }
};

post({ ready: true });
