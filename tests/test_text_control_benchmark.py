"""benchmarks/text_control.py: held-out demo clips as files, with and without captions. Its numbers are
results (benchmarks/RESULTS.md), never asserted; here: that each row measures what it says (the
contradicting captions are of each other style in turn, and the evaluators score the clips' own music
ideal against its video and at zero against the other caption's style)."""
import importlib.util
import json
import sys

import pytest

from helpers import ROOT
from vmas_lightning.data.demo import STYLES


def load_text_control():
    spec = importlib.util.spec_from_file_location("text_control", ROOT / "benchmarks" / "text_control.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["text_control"] = module
    spec.loader.exec_module(module)
    return module


def test_contradicting_styles_are_each_other_style_in_turn():
    other_style = load_text_control().other_style
    for style in STYLES:
        picked = [other_style(style.name, index) for index in range(3)]
        assert sorted(picked) == sorted(s.name for s in STYLES if s != style)


@pytest.mark.slow
def test_the_benchmark_scores_the_truth_and_runs_the_rows_it_is_asked(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    report = load_text_control().main(["--num-clips", "3", "--rows", "text_only", "--cfg-scale", "2.5"])
    assert json.loads(capsys.readouterr().out) == report  # nothing but the JSON on stdout
    truth = report["truth"]
    assert truth["style_accuracy"] == 1.0 and truth["style_accuracy_caption"] == 0.0 and truth["onset_f1"] == 1.0
    assert list(report["rows"]) == ["text_only"] and report["generation"]["text_cfg_scale"] > 0
    # --cfg-scale sets the video guidance of the rows with the video; the text-only row never runs the video
    assert report["generation"]["cfg_scale"] == 2.5 and report["text_only_generation"]["cfg_scale"] == 0.0
