// backoff.js on its own: the reconnect delays, exponential, capped, with jitter.
import { test } from "node:test";
import assert from "node:assert/strict";

import { backoffDelay, DEFAULT_BACKOFF } from "../../src/tidings/static/tidings/backoff.js";

test("the default backoff is the documented one", () => {
  assert.deepEqual({ ...DEFAULT_BACKOFF }, { initial: 500, max: 15000, factor: 2, jitter: 0.5 });
  assert.ok(Object.isFrozen(DEFAULT_BACKOFF));
});

test("without jitter the delays double from initial up to max", () => {
  const backoff = { ...DEFAULT_BACKOFF, jitter: 0 };
  const delays = [0, 1, 2, 3, 4, 5, 6, 40].map((attempt) => backoffDelay(backoff, attempt));
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
});

test("random() = 0 gives the capped exponential delay, random() near 1 shortens it by jitter", () => {
  for (let attempt = 0; attempt < 10; attempt += 1) {
    const cap = Math.min(15000, 500 * 2 ** attempt);
    assert.equal(backoffDelay(DEFAULT_BACKOFF, attempt, () => 0), cap);
    assert.equal(backoffDelay(DEFAULT_BACKOFF, attempt, () => 0.5), cap * 0.75);
    const shortest = backoffDelay(DEFAULT_BACKOFF, attempt, () => 1 - Number.EPSILON);
    assert.ok(shortest > cap * 0.5 && shortest < cap * 0.5 + 1e-9, `${shortest} for ${cap}`);
  }
});

test("with Math.random every delay is within [(1 - jitter) * cap, cap]", () => {
  for (const backoff of [DEFAULT_BACKOFF, { initial: 1, max: 4, factor: 3, jitter: 1 }, { initial: 100, max: 100, factor: 2, jitter: 0.1 }]) {
    for (let attempt = 0; attempt < 30; attempt += 1) {
      const cap = Math.min(backoff.max, backoff.initial * backoff.factor ** attempt);
      for (let i = 0; i < 50; i += 1) {
        const delay = backoffDelay(backoff, attempt);
        assert.ok(delay >= (1 - backoff.jitter) * cap && delay <= cap, `${delay} outside [${(1 - backoff.jitter) * cap}, ${cap}]`);
      }
    }
  }
});
