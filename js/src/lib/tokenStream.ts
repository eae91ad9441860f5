// A continuation drawn as running text, one `span.aw-tok` per generated token.
// Tokens stream in (the list grows by one or a few per update), so update() keeps
// every span whose text is unchanged, rewrites only changed ones in place and
// appends the new tail: a 500-token continuation does not rebuild 500 spans per step.
// Text goes in raw via textContent; `white-space: pre-wrap` keeps spaces and lets a
// "\n" token break the line, as the model would print it.
import { createElement } from "./shell";

export class TokenStream {
  readonly el: HTMLDivElement;
  private readonly spans: HTMLSpanElement[] = [];
  private readonly texts: string[] = [];

  constructor(className: string) {
    this.el = createElement("div", className);
  }

  get length(): number {
    return this.texts.length;
  }

  span(i: number): HTMLSpanElement | undefined {
    return this.spans[i];
  }

  text(i: number): string | undefined {
    return this.texts[i];
  }

  /** Show `tokens`; returns the first index whose text changed (length when none did). */
  update(tokens: readonly unknown[]): number {
    const next = tokens.map((t) => (t == null ? "" : String(t)));
    const common = Math.min(next.length, this.texts.length);
    let first = 0;
    while (first < common && next[first] === this.texts[first]) first++;
    for (let i = first; i < common; i++) {
      if (next[i] !== this.texts[i]) this.spans[i].textContent = this.texts[i] = next[i];
    }
    if (next.length > this.texts.length) {
      const frag = document.createDocumentFragment(); // one reflow for the whole tail
      for (let i = this.texts.length; i < next.length; i++) {
        const span = createElement("span", "aw-tok");
        span.textContent = next[i];
        this.spans.push(span);
        this.texts.push(next[i]);
        frag.append(span);
      }
      this.el.append(frag);
    } else if (next.length < this.texts.length) {
      // A new run started: drop the old tail.
      for (const span of this.spans.splice(next.length)) span.remove();
      this.texts.length = next.length;
    }
    return Math.min(first, next.length);
  }
}
