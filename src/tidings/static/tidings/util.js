/** util.js: small helpers on JSON values, shared by the modules. */

/** JSON.parse, or undefined. */
export function parseJson(text) {
  try { return JSON.parse(text); } catch { return undefined; }
}

/** Whether `value` is a plain object: not null, not an array. */
export function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** Whether `a` and `b` are the same, or the same as JSON. */
export function sameJson(a, b) {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

/** `object[key]` if it is its own property (a member key may well be "__proto__"). */
export function own(object, key) {
  return Object.hasOwn(object, key) ? object[key] : undefined;
}

/** `object[key] = value`, as a plain property whatever the key. */
export function put(object, key, value) {
  Object.defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true });
}
