/** emitter.js: Emitter, the on/off events of Client, Subscription and Presence. */

import { report } from "./errors.js";

/** A minimal event emitter: on/off, and listeners that throw don't stop the others. */
export class Emitter {
  constructor() { this._listeners = new Map(); }

  /** Call `fn(arg)` on every `event`. Returns this, to chain. */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return this;
  }

  /** Stop calling `fn` on `event`. */
  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
    return this;
  }

  _emit(event, ...args) {
    for (const fn of [...(this._listeners.get(event) || [])]) {
      try { fn(...args); } catch (error) { report(error); }
    }
  }
}
