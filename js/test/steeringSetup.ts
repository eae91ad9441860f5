// The steering widget under test: a mock model with a typical finished run's state
// (one steered token is markup, to prove tokens reach the DOM only as text), shared by
// steering.test.ts (controls) and steeringOutput.test.ts (continuations, KL, curves).
import { vi } from "vitest";
import type { SteeringModel } from "../src/lib/types";
import steering from "../src/steering";
import { EMPTY, f32, mockModel } from "./helpers";

export const XSS = "<img src=x onerror=alert(1)>";

export function steeringState(over: Partial<SteeringModel> = {}): SteeringModel {
  return {
    prompt: "I think that",
    status: "done",
    progress: 1,
    error: "",
    remote_status: "",
    strength: 0.5,
    strength_min: -2,
    strength_max: 2,
    strength_step: 0.05,
    gamma_max: 1,
    calibrated: NaN,
    calibration_note: "",
    kl_budget: 0.05,
    unsteered_tokens: [" the", " cat", "\n", " sat"],
    steered_tokens: [" the", " dog", "\n", XSS],
    kl_per_token: f32([0.01, 0.2, 0.05, 0.1]),
    entropy_unsteered: f32([2, 3, 1, 2.5]),
    entropy_steered: f32([2.1, 1.5, 1, 2]),
    measured_kl: 0.0123,
    method: "asc",
    operation: "add",
    curve_beta: EMPTY,
    curve_entropy_beta: EMPTY,
    curve_temperature: EMPTY,
    curve_entropy_temperature: EMPTY,
    ...over,
  };
}

export function setup(over: Partial<SteeringModel> = {}) {
  const model = mockModel(steeringState(over));
  model.send = vi.fn();
  const el = document.createElement("div");
  document.body.append(el);
  const cleanup = steering.render({ model, el });
  const q = <E extends Element>(sel: string) => el.querySelector<E>(sel)!;
  const qa = <E extends Element>(sel: string) => [...el.querySelectorAll<E>(sel)];
  return { model, el, cleanup, q, qa };
}
