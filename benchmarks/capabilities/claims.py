"""The published claims the suite checks, and the rule that turns figures into verdicts.

A cell *solves* a task when its test metric lies at least ``SOLVED`` of the way
from chance to perfect (for the adding problem, chance is the MSE of
predicting 1 on the test set itself), and *fails* it below ``FAILED``; in
between it is *partial*. A claim is reproduced when every cell it names that
was run behaves as it says. The thresholds are the same for every task and cell.
"""

from __future__ import annotations

import dataclasses

SOLVED, FAILED = 0.9, 0.5

#: The cells whose state is a vector of at most a few hidden sizes (no matrix memory).
VECTOR_STATE = ("rnn", "lstm", "gru", "mgu", "mingru", "minlstm", "slstm", "rglru", "hawk", "lru")


@dataclasses.dataclass(frozen=True)
class Claim:
    """A published result.

    Attributes:
        text: the claim, with its source.
        task: the task's name.
        solves: cells claimed to solve it.
        fails: cells claimed to fail it.
        beats: ``(cell, others)``: ``cell``'s metric claimed better than each of ``others``'.
        note: what limits the verdict, printed after it.
    """

    text: str
    task: str
    solves: tuple[str, ...] = ()
    fails: tuple[str, ...] = ()
    beats: tuple[str, tuple[str, ...]] | None = None
    note: str = ""


CLAIMS = (
    Claim(
        "Adding problem, T=100 (Hochreiter & Schmidhuber 1997): the tanh RNN stays at the "
        "0.167 baseline, the gated LSTM and GRU solve it",
        "adding-100",
        solves=("lstm", "gru"),
        fails=("rnn",),
    ),
    Claim(
        "Adding problem, T=1000: the same, over ten times the distance",
        "adding-1000",
        solves=("lstm", "gru"),
        fails=("rnn",),
    ),
    Claim(
        "Parity (xLSTM; Merrill et al. 2024; Grazzi et al. 2024): the LSTM and the sLSTM solve "
        "it and extrapolate to longer strings; linear recurrences with decays in (0, 1) "
        "(minGRU, minLSTM, LRU, RG-LRU, S6, mLSTM) cannot",
        "parity",
        solves=("lstm", "slstm"),
        fails=("mingru", "minlstm", "lru", "rglru", "s6", "mlstm"),
    ),
    Claim(
        "Selective copying (Mamba §4.1): the selective SSM (S6) solves it; a time-invariant "
        "recurrence (the LRU) does not",
        "selective-copy",
        solves=("s6",),
        fails=("lru",),
        note=(
            "the LRU is the only cell here whose recurrence and output are both linear; with "
            "no nonlinearity between the layers its model is linear end to end, so its failure "
            "does not isolate time invariance (it fails the adding problem too)"
        ),
    ),
    Claim(
        "MQAR (Zoology; xLSTM): the matrix memory of the mLSTM recalls more pairs than the "
        "vector-state cells",
        "mqar",
        beats=("mlstm", VECTOR_STATE),
        note=(
            "the cells are matched in parameters, not in state (see the table's state "
            "column); and the mLSTM here is the cell alone, where xLSTM evaluates it inside "
            "its block (an up-projection and a causal convolution before the keys)"
        ),
    ),
    Claim(
        "Induction heads (Mamba §4.1): S6 solves it and extrapolates beyond the training length",
        "induction",
        solves=("s6",),
    ),
)


def _verdict(skill: float) -> str:
    return "solves" if skill >= SOLVED else "fails" if skill < FAILED else "partial"


def check(claim: Claim, results, tasks) -> tuple[str, str]:
    """``(verdict, figures)``: ``"reproduced"``, ``"not reproduced"``, ``"partly reproduced"``
    or ``"not run"``, and the figures it rests on."""
    task = tasks[claim.task]
    by = {r["cell"]: r for r in results if r["task"] == claim.task}
    fmt = (lambda v: f"{v:.4f}") if task.metric_name == "MSE" else (lambda v: f"{v:.2f}")
    if claim.beats is not None:
        cell, others = claim.beats
        others = [c for c in others if c in by]
        if cell not in by or not others:
            return "not run", ""
        sign = -1 if task.metric_name == "MSE" else 1
        best = max(others, key=lambda c: sign * by[c]["metric"])
        held = sign * by[cell]["metric"] > sign * by[best]["metric"]
        figures = f"{cell} {fmt(by[cell]['metric'])}, best vector-state {best} " + fmt(
            by[best]["metric"]
        )
        return ("reproduced" if held else "not reproduced"), figures
    checks = [(c, "solves") for c in claim.solves if c in by]
    checks += [(c, "fails") for c in claim.fails if c in by]
    if not checks:
        return "not run", ""
    held = [_verdict(by[c]["skill"]) == expected for c, expected in checks]
    figures = ", ".join(
        f"{c} {fmt(by[c]['metric'])} ({_verdict(by[c]['skill'])}; claimed {expected})"
        for c, expected in checks
    )
    verdict = (
        "reproduced" if all(held) else "not reproduced" if not any(held) else "partly reproduced"
    )
    return verdict, figures


def verdicts(claims, results, tasks) -> list[str]:
    """One line per claim: the claim, the verdict, the figures."""
    lines = []
    for claim in claims:
        verdict, figures = check(claim, results, tasks)
        line = f"{claim.text}: **{verdict}**" + (f" ({figures})" if figures else "")
        lines.append(
            line + (f". Note: {claim.note}" if claim.note and verdict != "not run" else "")
        )
    return lines
