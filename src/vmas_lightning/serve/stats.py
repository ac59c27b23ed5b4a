"""Results of a pairwise A/B study: per answer, preference shares with 95% Wilson intervals and a
two-sided exact binomial (sign) test of A against B on the answers that chose one (`cannot tell`
left out); per rater (answers of one rater are not independent), the raters whose decided answers
chose A more often than B against those who chose B more often (ties left out), with the same sign
test. Both from `scipy.stats.binomtest`."""
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


def rater_preference(choices: dict[object, list[str]]) -> dict:
    """From each rater's choices (`A`, `B`, `cannot tell`): each rater's share of A among the answers that
    chose (`shares`, raters without one left out), how many raters chose A more often than B (`A`), B more
    often (`B`) or both equally often (`tied`, with the raters who never chose), and the p-value of the
    two-sided sign test of A-raters against B-raters (None without either)."""
    shares = {}
    for rater, rater_choices in choices.items():
        decided = rater_choices.count("A") + rater_choices.count("B")
        if decided:
            shares[rater] = rater_choices.count("A") / decided
    prefer_a = sum(share > 0.5 for share in shares.values())
    prefer_b = sum(share < 0.5 for share in shares.values())
    p_value = float(binomtest(prefer_a, prefer_a + prefer_b).pvalue) if prefer_a + prefer_b else None
    return {"raters": len(choices), "shares": shares, "A": prefer_a, "B": prefer_b,
            "tied": len(choices) - prefer_a - prefer_b, "p_value": p_value}


def study_results(answers: list[dict]) -> dict:
    """`preference` for each question of `study.QUESTIONS`, from `StudyStore.answers`."""
    return {question: preference([answer[question] for answer in answers]) for question in QUESTIONS}


def rater_results(answers: list[dict]) -> dict:
    """`rater_preference` for each question of `study.QUESTIONS`, from `StudyStore.answers`."""
    by_rater: dict[object, list[dict]] = {}
    for answer in answers:
        by_rater.setdefault(answer["rater"], []).append(answer)
    return {question: rater_preference({rater: [a[question] for a in mine] for rater, mine in by_rater.items()})
            for question in QUESTIONS}
