// jsdom has no canvas: give every <canvas> a recording fake 2D context so the
// drawing paths run (and can be inspected) instead of jsdom logging "not implemented".
import { beforeEach } from "vitest";
import { installFakeCanvas } from "./helpers";

beforeEach(() => installFakeCanvas());
