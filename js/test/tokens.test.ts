import { describe, expect, it } from "vitest";
import { displayToken, setTokenText } from "../src/lib/tokens";

describe("token display", () => {
  it("makes whitespace and control characters visible", () => {
    expect(displayToken(" the")).toBe("␣the");
    expect(displayToken("\n")).toBe("⏎");
    expect(displayToken("\t x")).toBe("⇥␣x");
    expect(displayToken("a\u0000b")).toBe("a␀b");
    expect(displayToken("")).toBe("∅");
    expect(displayToken("héllo 👋")).toBe("héllo␣👋");
  });

  it("assigns markup as text, never as HTML", () => {
    const span = document.createElement("span");
    setTokenText(span, "<img src=x onerror=alert(1)>");
    expect(span.querySelector("img")).toBeNull();
    expect(span.textContent).toBe("<img␣src=x␣onerror=alert(1)>");
    expect(span.title).toBe("<img src=x onerror=alert(1)>");
  });
});
