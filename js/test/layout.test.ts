import { describe, expect, it } from "vitest";
import {
  cellAt,
  fitCellWidth,
  type GridLayout,
  labelWidthFor,
  rowHeightFor,
  scrollAfterZoom,
  tokenStride,
  visibleRange,
  zoomedWidth,
} from "../src/lib/layout";

const base: GridLayout = { rows: 30, cols: 4096, cellWidth: 4, cellHeight: 16, labelWidth: 40, scrollLeft: 0, viewWidth: 840 };

describe("visibleRange", () => {
  it("covers only the columns in the window", () => {
    expect(visibleRange(base)).toEqual({ first: 0, last: 200 });
    expect(visibleRange({ ...base, scrollLeft: 402 })).toEqual({ first: 100, last: 301 });
  });
  it("clamps at the end and for tiny grids", () => {
    expect(visibleRange({ ...base, scrollLeft: 4096 * 4 - 800 })).toEqual({ first: 3896, last: 4096 });
    expect(visibleRange({ ...base, cols: 3 })).toEqual({ first: 0, last: 3 });
    expect(visibleRange({ ...base, cols: 0 })).toEqual({ first: 0, last: 0 });
  });
});

describe("cellAt", () => {
  it("maps a point to its cell, accounting for gutter and scroll", () => {
    expect(cellAt(base, 40, 0)).toEqual({ row: 0, col: 0 });
    expect(cellAt(base, 47, 17)).toEqual({ row: 1, col: 1 });
    expect(cellAt({ ...base, scrollLeft: 400 }, 41, 16 * 29 + 1)).toEqual({ row: 29, col: 100 });
  });
  it("returns null over the row labels and outside the data", () => {
    expect(cellAt(base, 10, 10)).toBeNull();
    expect(cellAt(base, 100, 16 * 30)).toBeNull();
    expect(cellAt(base, 900, 10)).toBeNull();
    expect(cellAt({ ...base, cols: 2 }, 60, 10)).toBeNull();
    expect(cellAt(base, 100, -1)).toBeNull();
  });
});

describe("cell sizes", () => {
  it("fits the container, capped, never below the readable minimum", () => {
    expect(fitCellWidth(800, 10, 28)).toBe(28);
    expect(fitCellWidth(800, 100, 28)).toBe(8);
    expect(fitCellWidth(800, 4096, 28)).toBe(4);
    expect(fitCellWidth(0, 10, 28)).toBe(28);
  });
  it("zooms in steps and stays within 1..max", () => {
    expect(zoomedWidth(4, 1, 48)).toBe(6);
    expect(zoomedWidth(40, 1, 48)).toBe(48);
    expect(zoomedWidth(1, -1, 48)).toBe(1);
    expect(zoomedWidth(2, -1, 48)).toBe(1);
    expect(zoomedWidth(30, -1, 48)).toBe(20);
  });
  it("keeps the anchored column in place when zooming", () => {
    // column under anchor at data-x 100+300=400 with width 4 is column 100; after zoom to 8 it is at 800.
    expect(scrollAfterZoom(100, 300, 4, 8)).toBe(500);
    expect(scrollAfterZoom(0, 300, 8, 4)).toBe(0);
  });
  it("shrinks rows for deep models and widens the gutter for long labels", () => {
    expect(rowHeightFor(30, 18)).toBe(18);
    expect(rowHeightFor(80, 18)).toBe(8);
    expect(labelWidthFor(["emb", "0", "31"])).toBe(31);
    expect(labelWidthFor([])).toBe(28);
  });
  it("thins token labels when columns are narrow", () => {
    expect(tokenStride(28)).toBe(1);
    expect(tokenStride(4)).toBe(4);
    expect(tokenStride(1)).toBe(14);
  });
});
