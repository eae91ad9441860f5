// The per-token KL strip: one bar per unsteered token, its height the KL between the
// unsteered and steered next-token distributions there, scaled to the largest, so the
// few positions where steering bites stand out. Hover names the token and its numbers.
// Bars are reused across updates: they only grow in number while a run streams.
import type { Disposer } from "./dispose";
import { formatNumber } from "./format";
import { createElement } from "./shell";
import { quoteToken } from "./tokens";

export interface KlStripData {
  tokens: readonly string[];
  kl: Float32Array;
  entropyUnsteered: Float32Array;
  entropySteered: Float32Array;
}

const at = (a: Float32Array, i: number) => (i < a.length ? a[i] : NaN);

export class KlStrip {
  readonly el: HTMLDivElement;
  private readonly bars: HTMLDivElement[] = [];

  /** onHover(i): the pointer is over bar i (null: left the strip), to highlight token i. */
  constructor(d: Disposer, onHover: (i: number | null) => void) {
    this.el = createElement("div", "aw-kl-strip");
    this.el.setAttribute("aria-label", "KL per token");
    // One listener on the strip, not one per bar.
    d.listen(this.el, "mouseover", (ev) => {
      const i = this.bars.indexOf(ev.target as HTMLDivElement);
      onHover(i >= 0 ? i : null);
    });
    d.listen(this.el, "mouseleave", () => onHover(null));
  }

  update(data: KlStripData): void {
    const n = data.tokens.length;
    while (this.bars.length < n) {
      const bar = createElement("div", "aw-kl-bar");
      this.bars.push(bar);
      this.el.append(bar);
    }
    for (const bar of this.bars.splice(n)) bar.remove();
    let max = 0;
    for (let i = 0; i < n; i++) {
      const v = at(data.kl, i);
      if (Number.isFinite(v) && v > max) max = v;
    }
    this.el.hidden = n === 0;
    for (let i = 0; i < n; i++) {
      const kl = at(data.kl, i);
      const bar = this.bars[i];
      const known = Number.isFinite(kl);
      bar.classList.toggle("aw-missing", !known); // not scored yet (streaming)
      // At least 1px when known, so a zero-KL token still shows a baseline tick.
      bar.style.height = known && max > 0 ? `${Math.max(0, (kl / max) * 100).toFixed(1)}%` : "0%";
      bar.title = [
        quoteToken(data.tokens[i]),
        `KL ${formatNumber(kl)} nats`,
        `entropy unsteered ${formatNumber(at(data.entropyUnsteered, i))} · steered ${formatNumber(at(data.entropySteered, i))}`,
      ].join("\n");
    }
  }
}
