// How a token's text is shown. Tokens are untrusted model output: they may hold
// markup, whitespace or control bytes, so every path here ends in textContent and
// invisible characters get a visible stand-in (a lone " " token must not vanish).

const CONTROL_PICTURES_BASE = 0x2400; // U+2400.. are the "control pictures" block

/** The visible form of a token: whitespace and control characters made explicit. */
export function displayToken(text: string | null | undefined): string {
  if (text == null || text === "") return "∅";
  let out = "";
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    if (ch === " ") out += "␣";
    else if (ch === "\n") out += "⏎";
    else if (ch === "\t") out += "⇥";
    else if (ch === "\r") out += "↵";
    else if (c < 0x20) out += String.fromCodePoint(CONTROL_PICTURES_BASE + c);
    else if (c === 0x7f) out += "␡";
    else out += ch;
  }
  return out;
}

/** Put a token into an element: visible form as text, the raw text as the hover title. */
export function setTokenText(el: HTMLElement, text: string | null | undefined): void {
  el.textContent = displayToken(text);
  el.title = text ?? "";
}

/** Quote a token for a tooltip line, so leading/trailing markers read as part of it. */
export function quoteToken(text: string | null | undefined): string {
  return `“${displayToken(text)}”`;
}
