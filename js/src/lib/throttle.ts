// Rate-limit a call to once per `ms`, leading and trailing: the first call runs at
// once (the model reacts while the user is still moving), later ones within the
// window collapse into one run at its end with the LATEST arguments, so the final
// value is always the one that gets through.

export interface Throttled<A extends unknown[]> {
  (...args: A): void;
  /** Run a pending call now (e.g. on "change": the drag is over, no need to wait). */
  flush(): void;
  /** Drop a pending call (cleanup: a dead view must not write to the model). */
  cancel(): void;
}

export function throttle<A extends unknown[]>(fn: (...args: A) => void, ms: number): Throttled<A> {
  let last = -Infinity; // when fn last ran
  let timer: ReturnType<typeof setTimeout> | undefined;
  let pending: A | null = null;
  const run = () => {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (pending === null) return;
    const args = pending;
    pending = null;
    last = Date.now();
    fn(...args);
  };
  const call = ((...args: A) => {
    pending = args; // a later call replaces the earlier: only the newest value matters
    if (timer !== undefined) return;
    const wait = last + ms - Date.now();
    if (wait <= 0) run();
    else timer = setTimeout(run, wait);
  }) as Throttled<A>;
  call.flush = run;
  call.cancel = () => {
    pending = null;
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  };
  return call;
}
