"""`vmas serve`: the web app. A Generate page (a video in, the video with music out, one queue) and
the paper's pairwise A/B listening study (raters' answers in SQLite, results with confidence intervals)."""
