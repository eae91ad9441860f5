// A hover tooltip for canvases drawn outside gridView.ts (which has its own): lines of
// text, the first one bold, set with textContent only (token text is untrusted), placed
// beside the pointer and flipped left of / above it near the edges of `wrap`, because
// notebook output areas clip what overflows a widget.
import { createElement } from "./shell";

/** A hidden `div.aw-tooltip` appended to `wrap` (which must be position: relative). */
export function createTooltip(wrap: HTMLElement): HTMLDivElement {
  const tip = createElement("div", "aw-tooltip");
  tip.hidden = true;
  wrap.append(tip);
  return tip;
}

export function showTooltip(tip: HTMLElement, wrap: HTMLElement, ev: MouseEvent, lines: readonly string[]): void {
  tip.replaceChildren(
    ...lines.map((line, i) => {
      const div = createElement("div", i === 0 ? "aw-tip-head" : "aw-tip-line");
      div.textContent = line;
      return div;
    }),
  );
  tip.hidden = false;
  const box = wrap.getBoundingClientRect();
  const x = ev.clientX - box.left;
  const y = ev.clientY - box.top;
  const w = tip.offsetWidth;
  const h = tip.offsetHeight;
  const left = x + 14 + w > wrap.clientWidth && x - 14 - w >= 0 ? x - 14 - w : x + 14;
  const top = y + 14 + h > wrap.clientHeight ? Math.max(0, y - 14 - h) : y + 14;
  tip.style.left = `${left}px`;
  tip.style.top = `${top}px`;
}

export function hideTooltip(tip: HTMLElement): void {
  tip.hidden = true;
}
