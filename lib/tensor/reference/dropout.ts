/**
 * The CPU twin of the dropout mask, which the ops also use to draw masks at given positions.
 * @module
 */
export { dropoutMask } from "../ops/dropout.ts";
