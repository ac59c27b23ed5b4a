"""Results of a pairwise A/B study: preference shares with 95% Wilson intervals, and a two-sided
exact binomial (sign) test of A against B on the answers that chose one (`cannot tell` left out),
both from `scipy.stats.binomtest`."""
from __future__ import annotations

from scipy.stats import binomtest

from vmas_lightning.serve.study import QUESTIONS

OUTCOMES = ("A", "B", "cannot tell")
CONFIDENCE = 0.95


def preference(choices: list[str]) -> dict:
    """Counts, shares and 95% intervals of `A`, `B` and `cannot tell` among `choices`, and the
    p-value of "A and B are preferred equally often" (None without an answer that chose)."""
    total = len(choices)
    rows = {}
    for outcome in OUTCOMES:
        count = choices.count(outcome)
        low, high = binomtest(count, total).proportion_ci(CONFIDENCE, method="wilson") if total else (0.0, 0.0)
        rows[outcome] = {"count": count, "share": count / total if total else 0.0, "low": float(low), "high": float(high)}
    decided = rows["A"]["count"] + rows["B"]["count"]
    p_value = float(binomtest(rows["A"]["count"], decided).pvalue) if decided else None
    return {"total": total, "rows": rows, "p_value": p_value}


def study_results(answers: list[dict]) -> dict:
    """`preference` for each question of `study.QUESTIONS`, from `StudyStore.answers`."""
    return {question: preference([answer[question] for answer in answers]) for question in QUESTIONS}
