"""The campaign's decision rules, as pure functions of trial rows (no IO, no MLflow): which trial a phase
selects and why.

A row is one complete trial, a :class:`tuning.study.trial_row.TrialRow` (``TrialRow.from_trial``: what the
sweep recorded, its values and searched knob values).
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from engine import EngineError
from tuning.study.ranking import rank_rows, rank_rows_by_second
from tuning.study.trial_row import TrialRow

E_CAMPAIGN = "E3A_TUN_060_CAMPAIGN"
SELECT_RULES = ("best_feasible", "pareto_min_second")   # what eligible() knows how to order


def eligible(rows: Sequence[TrialRow], rule: str, min_j: float | None,
             require_targets: bool = False) -> list[TrialRow]:
    """The trials a rule may select, best first. Eligible: feasible, J above ``min_J`` when one is set, and
    with ``require_targets`` the study's targets holding on every seed. ``best_feasible`` orders them by mean
    J; ``pareto_min_second`` by the second objective (lowest first: the most faithful point of the eligible
    set's own front comes first), ties to the higher J."""
    ok = [r for r in rows if r.feasible and r.J is not None
          and (min_j is None or r.J > min_j) and (r.target_pass or not require_targets)]
    if rule == "best_feasible":
        return rank_rows(ok)
    if rule == "pareto_min_second":
        return rank_rows_by_second([r for r in ok if r.second is not None])
    raise EngineError(E_CAMPAIGN, f"unknown selection rule {rule!r}")


def choose(rows: Sequence[TrialRow], rule: str, min_j: float | None, require_targets: bool = False,
           on_front: set[int] | None = None) -> tuple[TrialRow | None, str]:
    """The selected trial row and why: the first of :func:`eligible`. ``on_front`` (the sweep's whole
    feasible front) is only reported in the reason."""
    floor = "" if min_j is None else f" with J > {min_j:g}"
    what = f"feasible trial{' meeting its targets' if require_targets else ''}{floor}"
    ranked = eligible(rows, rule, min_j, require_targets)
    if not ranked:
        return None, f"no {what}"
    pick = ranked[0]
    if rule == "best_feasible":
        return pick, f"best mean J {pick.J:.6g} (trial {pick.trial}); eligible: {len(ranked)} ({what})"
    where = "" if on_front is None else (" (on the sweep's feasible front)" if pick.trial in on_front
                                         else " (dominated on the sweep's whole front by trials that miss the targets)")
    return pick, (f"trial {pick.trial} (J {pick.J:.6g}, second objective {pick.second:.6g}): the most "
                  f"faithful eligible trial; eligible: {len(ranked)} ({what}){where}")


def validated(ranked: Sequence[TrialRow], scores: dict[int, tuple[float, float, float]],
              rule: str = "best_feasible") -> tuple[TrialRow, str]:
    """Among the validated candidates (trial -> (the share of validation seeds on which the trial is feasible
    and meets its targets, the share on which it reaches the campaign's goal, its steadiness there: how many
    standard deviations its riskiest moving gate stands clear, tuning.campaign.validation.steadiness)), the one with
    the highest share, then (under ``best_feasible``) steadiness, then goal share; ties go to the rule's order. The
    goal share comes last: before the last phase it counts gates a later phase is there to settle (S1's dips at P2),
    where steadiness weighs the gates the candidate holds. Under ``pareto_min_second`` the goal share, then the
    rule's order (the most faithful first) decide: that rule asks for the smallest move from the evidence, and its
    phase's gates (S2's) do not move from seed to seed."""
    order = {r.trial: i for i, r in enumerate(ranked)}
    # (held, goal) under the faithful rule; (held, steadiness, goal) otherwise; then the rule's order
    fields = (0, 1) if rule == "pareto_min_second" else (0, 2, 1)
    pick = max((r for r in ranked if r.trial in scores),
               key=lambda r: (*(scores[r.trial][i] for i in fields), -order[r.trial]))

    def said(t: int) -> str:
        return f"{scores[t][0]:.0%} (B+ {scores[t][1]:.0%}, riskiest gate {scores[t][2]:.1f} sd clear)"

    others = ", ".join(f"trial {t}: {said(t)}" for t in sorted(scores, key=order.get) if t != pick.trial)
    return pick, (f"validated on unseen seeds: trial {pick.trial} holds on {said(pick.trial)}"
                  + (f" (the rule's next candidates: {others})" if others else ""))


# ---------------------------------------------------------------- the frontier: reachability and its region

def faithful_rows(rows: Sequence[TrialRow], target_reasons: set[str]) -> list[TrialRow]:
    """Trials whose only vetoes (if any) are missed targets: faithful and structurally sound."""
    return [r for r in rows if set(r.vetoes) <= target_reasons and r.J is not None]


def reachability(rows: Sequence[TrialRow], targets: dict[str, str]) -> dict:
    """What a frontier sweep proves. ``targets``: veto reason -> label of each target the study states as a
    guardrail. ``meets``: trials feasible on every seed (faithful and every target met); ``per_target``: how
    many faithful trials meet each target alone; ``blocking``: the targets no faithful trial meets together
    with the others (all of them when each is met alone but never jointly), and none when no trial is faithful and
    sound: then no target was measured on one, and ``vetoed_by`` counts the other vetoes that stopped them."""
    faithful = faithful_rows(rows, set(targets))
    meets = [r for r in faithful if not r.vetoes and r.target_pass]
    alone = {label: sum(reason not in r.vetoes for r in faithful)
             for reason, label in targets.items()}
    never = [label for label, n in alone.items() if n == 0]
    blocking = [] if meets or not faithful else (never or list(targets.values()))
    others = Counter(v for r in rows for v in r.vetoes if v not in targets)
    return {"meets": meets, "faithful": len(faithful), "trials": len(rows), "per_target": alone,
            "blocking": blocking, "vetoed_by": dict(sorted(others.items(), key=lambda kv: (-kv[1], kv[0])))}


def region(rows: Sequence[TrialRow], knobs) -> dict[str, dict]:
    """The feasible region of the trials that meet every target: per searched knob, the range (or the
    choices) their values span. ``knobs``: the frontier study's knob spaces."""
    out = {}
    for space in knobs:
        if space.fixed:
            continue
        values = [r.knobs[space.name] for r in rows if space.name in r.knobs]
        if not values:
            continue
        if space.choices is not None:
            out[space.name] = {"choices": sorted(set(values), key=lambda v: list(space.choices).index(v))}
        else:
            out[space.name] = {"low": min(values), "high": max(values)}
    return out


def narrow(spec, found: dict[str, dict], pad: float = 0.15):
    """The study with its knob spaces narrowed to a region the frontier found: each range shared with the
    region becomes the region's range widened by ``pad`` of the study's own width on each side, clipped to
    the study's bounds (integers stay integers); choices become those the region used. Knobs the frontier
    did not search keep their space."""
    import dataclasses

    spaces = []
    for space in spec.knobs:
        got = found.get(space.name)
        if got is None or space.fixed:
            spaces.append(space)
        elif "choices" in got and space.choices is not None:
            keep = tuple(c for c in space.choices if c in got["choices"]) or space.choices
            spaces.append(dataclasses.replace(space, choices=keep) if len(keep) > 1 else
                          dataclasses.replace(space, choices=None, value=keep[0]))
        elif "low" in got and space.low is not None:
            spaces.append(_narrow_range(space, got["low"], got["high"], pad))
        else:
            spaces.append(space)
    if all(s.fixed for s in spaces):
        return spec
    return dataclasses.replace(spec, knobs=tuple(spaces))


def _narrow_range(space, low: float, high: float, pad: float):
    import dataclasses
    import math

    from tuning.study.knobs import KNOBS

    kind = KNOBS[space.name].kind
    width = space.high - space.low
    lo, hi = max(space.low, low - pad * width), min(space.high, high + pad * width)
    if kind == "int":
        lo, hi = math.floor(lo), math.ceil(hi)
    if not lo < hi:   # one value: the knob is fixed there
        return dataclasses.replace(space, low=None, high=None, log=False, step=None,
                                   value=int(lo) if kind == "int" else float(lo))
    step = space.step if space.step is not None and space.step <= hi - lo else None
    return dataclasses.replace(space, low=lo, high=hi, step=step)


def describe_region(found: dict[str, dict]) -> str:
    parts = []
    for name, got in sorted(found.items()):
        if "choices" in got:
            parts.append(f"{name} in {{{', '.join(map(str, got['choices']))}}}")
        else:
            parts.append(f"{name} in [{got['low']:.4g}, {got['high']:.4g}]")
    return "; ".join(parts) or "no searched knob"
