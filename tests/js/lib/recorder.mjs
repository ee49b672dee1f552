// What a test client received, in arrival order, and waits on it: the one recorder behind the
// Socket.IO clients of lib/clients.mjs (entries keyed by event name) and the chat connections
// of lib/chat.mjs (keyed by packet type). Subclasses feed it with record() and say what they
// got with describe(kind).

const any = () => true;

/** A value for an error message: JSON, cut at 300 characters. */
export const show = (v) => {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 300 ? `${s.slice(0, 300)}…` : s;
};

/** A predicate that throws counts as no match. */
function matches(predicate, payload) {
  try {
    return Boolean(predicate(payload));
  } catch {
    return false;
  }
}

export class Recorder {
  #key;

  /**
   * `key`: the entries' field naming what arrived ('event' or 'type'). `waitMs` and `quietMs`:
   * the default timeouts of waitFor and expectNone.
   */
  constructor(label, { key, waitMs, quietMs }) {
    this.label = label;
    this.seq = 0;
    /** Every recorded entry in arrival order: {[key], payload, seq, at, …}. */
    this.log = [];
    this.waiters = new Set();
    /** Set by end(): nothing more will arrive, and waits fail at once. */
    this.ended = null;
    this.#key = key;
    this.waitMs = waitMs;
    this.quietMs = quietMs;
  }

  /** Records one `kind` (an event name or packet type) with its payload; `extra` joins the entry. */
  record(kind, payload, extra = {}) {
    const entry = { [this.#key]: kind, payload, seq: this.seq++, at: Date.now(), ...extra };
    this.log.push(entry);
    for (const w of [...this.waiters]) w.onEntry?.(entry);
    return entry;
  }

  /** Nothing more will arrive (`why`, e.g. {code, reason}): pending waits reject. */
  end(why) {
    this.ended = why;
    for (const w of [...this.waiters]) w.onEnd?.(why);
  }

  /** A position in the log; pass as `from` to consider only what arrives afterwards. */
  mark() {
    return this.seq;
  }

  /** Payloads of `kind` matching `predicate`, received at or after `from`. */
  all(kind, predicate = any, { from = 0 } = {}) {
    return this.log.filter((e) => this.#is(e, kind, from, predicate)).map((e) => e.payload);
  }

  /** What arrived, for error messages (subclasses say it their way). */
  describe(kind) {
    return `${this.label} received ${this.log.filter((e) => !kind || e[this.#key] === kind).length} ${kind ?? 'entries'}`;
  }

  /**
   * Resolves with the first payload of `kind` matching `predicate` received at or after `from`
   * (default 0: everything so far); rejects after `ms` saying what was received, or once
   * end() was called.
   */
  waitFor(kind, predicate = any, ms = this.waitMs, { from = 0 } = {}) {
    return this.waitForCount(kind, predicate, 1, ms, { from }).then((list) => list[0]);
  }

  /** Resolves with the first `count` payloads of `kind` matching `predicate`. */
  waitForCount(kind, predicate = any, count = 1, ms = this.waitMs, { from = 0 } = {}) {
    const found = this.all(kind, predicate, { from });
    if (found.length >= count) return Promise.resolve(found.slice(0, count));
    const what = () => `'${kind}'${count > 1 ? ` ×${count}` : ''} matching ${
      predicate.name || predicate.toString().slice(0, 200)} (got ${found.length})`;
    if (this.ended) {
      return Promise.reject(new Error(`${this.label}: closed (${show(this.ended)}) while waiting for ${what()}\n${this.describe(kind)}`));
    }
    return this.#wait(ms, (resolve, reject) => ({
      onEntry: (entry) => {
        if (!this.#is(entry, kind, from, predicate)) return;
        found.push(entry.payload);
        if (found.length >= count) resolve(found.slice(0, count));
      },
      onEnd: (why) => reject(new Error(`${this.label}: closed by ${show(why)} while waiting for ${what()}\n${this.describe(kind)}`)),
      onTimeout: () => reject(new Error(`${this.label}: timed out after ${ms} ms waiting for ${what()}\n${this.describe(kind)}`)),
    }));
  }

  /**
   * Resolves after `ms` if no `kind` matching `predicate` arrived at or after `from` (default:
   * now); rejects as soon as one does (or if one is already there).
   */
  expectNone(kind, predicate = any, ms = this.quietMs, { from = this.seq } = {}) {
    const unexpected = (payload) => new Error(`${this.label}: unexpected '${kind}' ${show(payload)}\n${this.describe(kind)}`);
    const already = this.all(kind, predicate, { from });
    if (already.length) return Promise.reject(unexpected(already[0]));
    return this.#wait(ms, (resolve, reject) => ({
      onEntry: (entry) => {
        if (this.#is(entry, kind, from, predicate)) reject(unexpected(entry.payload));
      },
      onTimeout: () => resolve(),
    }));
  }

  /** Resolves with end()'s reason (at once if it was called); rejects after `ms`. */
  waitEnded(ms = this.waitMs, timeoutMessage = `${this.label}: still open after ${ms} ms`) {
    if (this.ended) return Promise.resolve(this.ended);
    return this.#wait(ms, (resolve, reject) => ({
      onEnd: (why) => resolve(why),
      onTimeout: () => reject(new Error(timeoutMessage)),
    }));
  }

  #is(entry, kind, from, predicate) {
    return entry[this.#key] === kind && entry.seq >= from && matches(predicate, entry.payload);
  }

  /** A waiter from `make(resolve, reject)` ({onEntry, onEnd, onTimeout}), removed once settled. */
  #wait(ms, make) {
    return new Promise((resolve, reject) => {
      const settle = (fn) => (value) => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
        fn(value);
      };
      const waiter = make(settle(resolve), settle(reject));
      const timer = setTimeout(() => waiter.onTimeout(), ms);
      this.waiters.add(waiter);
    });
  }
}
