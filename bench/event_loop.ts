/**
 * What a turn of the event loop costs, as the training loop takes one each step (so that a
 * Ctrl-C listener runs): a 0 ms `setTimeout` against a `MessageChannel` message (the trainer's
 * `nextTurn`). CPU only.
 *
 *     deno run bench/event_loop.ts
 * @module
 */
import { table } from "./stats.ts";

const TURNS = 500;

async function perTurn(turn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < TURNS; i++) await turn();
  return (performance.now() - t0) / TURNS;
}

const timer = () => new Promise((resolve) => setTimeout(resolve, 0));
const message = () => {
  const { port1, port2 } = new MessageChannel();
  return new Promise((resolve) => {
    port1.onmessage = () => {
      port1.close();
      port2.close();
      resolve(null);
    };
    port2.postMessage(null);
  });
};
const [t, m] = [await perTurn(timer), await perTurn(message)];
console.log(`a turn of the event loop, ${TURNS} in a row; ${new Date().toISOString()}`);
console.log(table(["turn", "ms"], [["setTimeout(0)", t.toFixed(3)], ["MessageChannel", m.toFixed(3)]]));
