/** backoff.js: the delays between reconnects, exponential with jitter. */

/** Reconnect delays in ms: min(max, initial * factor ** n) * (1 - jitter * random). */
export const DEFAULT_BACKOFF = Object.freeze({ initial: 500, max: 15000, factor: 2, jitter: 0.5 });

/**
 * The delay in ms before a reconnect: `attempt` is the number of reconnects since the
 * last successful round trip (0 for the first), `backoff` as DEFAULT_BACKOFF. It is
 * min(max, initial * factor ** attempt) * (1 - jitter * random()): between (1 - jitter)
 * times and once that capped exponential delay, so that clients dropped together do
 * not all come back at once.
 * @param {{initial: number, max: number, factor: number, jitter: number}} backoff
 * @param {number} attempt @param {() => number} [random] in [0, 1), default Math.random
 * @returns {number}
 */
export function backoffDelay({ initial, max, factor, jitter }, attempt, random = Math.random) {
  return Math.min(max, initial * factor ** attempt) * (1 - jitter * random());
}
