// Number formatting for tooltips and the colour bar: short enough to read at a
// glance, exponent only when fixed notation would hide the magnitude.

export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return Number.isNaN(v) ? "—" : v > 0 ? "∞" : "-∞";
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}

export function formatPercent(p: number): string {
  if (!Number.isFinite(p)) return "—";
  const pct = p * 100;
  return `${pct >= 10 ? pct.toFixed(1) : pct >= 0.1 ? pct.toFixed(2) : pct.toExponential(1)}%`;
}

/** A fixed-decimals number that always shows its sign (+6.12, −5.49), for logit differences. */
export function formatSigned(v: number, digits = 2): string {
  if (!Number.isFinite(v)) return formatNumber(v);
  const s = Math.abs(v).toFixed(digits);
  if (Number(s) === 0) return s; // no "+0.00" / "−0.00"
  return `${v > 0 ? "+" : "−"}${s}`; // U+2212: a real minus lines up with "+"
}

/** A trait that should be a float: anything else (null, as NaN may arrive over JSON) is NaN. */
export function asNumber(v: unknown): number {
  return typeof v === "number" ? v : NaN;
}
