// Colour scales as 256-entry RGB lookup tables built from a few anchor colours.
// A LUT makes colouring 120k cells one index + three byte copies each, and
// interpolating anchors avoids shipping matplotlib's full tables or a dependency.

export type ColormapName = "viridis" | "magma" | "rdbu";
export type Scale = "linear" | "log";

// Evenly spaced stops sampled from matplotlib's tables (d3-scale-chromatic's values).
const ANCHORS: Record<ColormapName, string[]> = {
  viridis: ["#440154", "#482475", "#414487", "#355f8d", "#2a788e", "#21918c", "#22a884", "#44bf70", "#7ad151", "#bddf26", "#fde725"],
  magma: ["#000004", "#140e36", "#3b0f70", "#641a80", "#8c2981", "#b73779", "#de4968", "#f7705c", "#fe9f6d", "#fecf92", "#fcfdbf"],
  // ColorBrewer RdBu reversed, so negative is blue and positive red; #f7f7f7 sits in the middle.
  rdbu: ["#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582", "#d6604d", "#b2182b", "#67001f"],
};

export const LUT_SIZE = 256;

/** RGBA of an empty (NaN) cell: transparent, so the themed background shows through. */
export const NAN_RGBA: readonly [number, number, number, number] = [0, 0, 0, 0];

function hexToRgb(hex: string): [number, number, number] {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

function buildLut(stops: string[]): Uint8ClampedArray {
  const rgb = stops.map(hexToRgb);
  const lut = new Uint8ClampedArray(LUT_SIZE * 3);
  for (let i = 0; i < LUT_SIZE; i++) {
    const pos = (i / (LUT_SIZE - 1)) * (rgb.length - 1);
    const j = Math.min(Math.floor(pos), rgb.length - 2);
    const f = pos - j;
    for (let c = 0; c < 3; c++) lut[i * 3 + c] = Math.round(rgb[j][c] + (rgb[j + 1][c] - rgb[j][c]) * f);
  }
  return lut;
}

const cache = new Map<ColormapName, Uint8ClampedArray>();

export function colormapName(name: string): ColormapName {
  return name in ANCHORS ? (name as ColormapName) : "viridis"; // unknown names fall back rather than draw nothing
}

export function getLut(name: string): Uint8ClampedArray {
  const key = colormapName(name);
  let lut = cache.get(key);
  if (!lut) cache.set(key, (lut = buildLut(ANCHORS[key])));
  return lut;
}

export function isDiverging(name: string): boolean {
  return colormapName(name) === "rdbu";
}

/**
 * Map a value to 0..1 on the scale (NaN stays NaN). Diverging scales are piecewise
 * so that 0 is always the white centre even when vmin and vmax are not symmetric.
 */
export function normalise(name: string, vmin: number, vmax: number, v: number, scale: Scale = "linear"): number {
  if (Number.isNaN(v)) return NaN;
  let t: number;
  if (scale === "log" && vmin > 0 && !isDiverging(name)) {
    // Massive activations span four decades: a log scale keeps the rest readable.
    const span = Math.log(vmax) - Math.log(vmin);
    t = span > 0 ? (Math.log(Math.max(v, vmin)) - Math.log(vmin)) / span : 0.5;
  } else if (isDiverging(name)) {
    if (v < 0) t = vmin < 0 ? 0.5 - 0.5 * (v / vmin) : 0;
    else t = vmax > 0 ? 0.5 + 0.5 * (v / vmax) : 1;
    if (v === 0) t = 0.5;
  } else {
    const span = vmax - vmin;
    t = span > 0 ? (v - vmin) / span : 0.5;
  }
  return t < 0 ? 0 : t > 1 ? 1 : t;
}

/** LUT index 0..255 of a value, or -1 for NaN. */
export function colorIndex(name: string, vmin: number, vmax: number, v: number, scale: Scale = "linear"): number {
  const t = normalise(name, vmin, vmax, v, scale);
  return Number.isNaN(t) ? -1 : Math.round(t * (LUT_SIZE - 1));
}

export function rgba(name: string, vmin: number, vmax: number, v: number, scale: Scale = "linear"): [number, number, number, number] {
  const i = colorIndex(name, vmin, vmax, v, scale);
  if (i < 0) return [...NAN_RGBA];
  const lut = getLut(name);
  return [lut[i * 3], lut[i * 3 + 1], lut[i * 3 + 2], 255];
}

/**
 * Colour `count` cells into an RGBA pixel buffer (one pixel per cell). Values past
 * the end of `values` are drawn empty, so a shape that briefly disagrees with the
 * data (mid-update) draws blanks instead of throwing.
 */
export function paintRGBA(
  values: ArrayLike<number>,
  count: number,
  out: Uint8ClampedArray,
  name: string,
  vmin: number,
  vmax: number,
  scale: Scale = "linear",
): void {
  const lut = getLut(name);
  const n = Math.min(count, out.length >> 2);
  for (let i = 0; i < n; i++) {
    const v = i < values.length ? values[i] : NaN;
    const p = i * 4;
    if (v !== v) {
      out[p] = NAN_RGBA[0];
      out[p + 1] = NAN_RGBA[1];
      out[p + 2] = NAN_RGBA[2];
      out[p + 3] = NAN_RGBA[3];
      continue;
    }
    const k = Math.round(normalise(name, vmin, vmax, v, scale) * (LUT_SIZE - 1)) * 3;
    out[p] = lut[k];
    out[p + 1] = lut[k + 1];
    out[p + 2] = lut[k + 2];
    out[p + 3] = 255;
  }
}

/** Black or white, whichever reads better on top of an RGB colour (for in-cell text). */
export function contrastText(r: number, g: number, b: number): string {
  return 0.299 * r + 0.587 * g + 0.114 * b > 150 ? "#111" : "#fff";
}
