/**
 * positions.js: how positions ("<epoch>:<offset>", docs/protocol.md) compare, for
 * the client's de-duplication.
 */

/**
 * Split a position "<epoch>:<offset>" (the epoch may itself contain ":").
 * Returns null for anything else: such positions are compared as opaque strings.
 */
export function parsePosition(position) {
  const match = typeof position === "string" && /^(.*):(\d+)$/.exec(position);
  return match ? { epoch: match[1], offset: BigInt(match[2]) } : null;
}

/** Whether `position` comes after `last`. A new epoch starts a new history: always new. */
export function isNewer(position, last) {
  if (last == null) return true;
  const p = parsePosition(position);
  const l = parsePosition(last);
  if (!p || !l) return position !== last;
  return p.epoch !== l.epoch || p.offset > l.offset;
}

/** Where a topic that has never had a message stands (docs/protocol.md). */
export const EMPTY = "0:0";
