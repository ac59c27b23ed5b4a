"""benchmarks/ablation.py --quick: the tables' structure and the reference rows at their ideal values
(the benchmark's numbers themselves are results, in benchmarks/RESULTS.md, never asserted)."""
import importlib.util
import json

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def load_ablation():
    spec = importlib.util.spec_from_file_location("ablation", ROOT / "benchmarks" / "ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_ablation_tables(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # configs/demo.yaml names the committed demo assets relative to the checkout
    ablation = load_ablation()
    report = ablation.main(["--quick", "--out", str(tmp_path)])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == report
    assert report["quick"] and report["seeds"] == [0, 1] and report["steps"] == [2]  # every run trained 2 steps
    assert set(report["tables"]) == {"table5", "table6"}
    for number, names in (("table5", ablation.TABLE5), ("table6", ablation.TABLE6)):
        table = report["tables"][number]
        assert list(table["rows"]) == list(names)
        for row in table["rows"].values():
            for metric in ablation.METRICS:
                assert len(row[metric]["values"]) == 2  # one per seed
                if row[metric]["mean"] is not None and row[metric]["ci95"] is not None:
                    assert row[metric]["ci95"] >= 0
            if number == "table6":
                assert row["seconds_per_step"]["mean"] > 0 and row["encoder_gflops"]["mean"] > 0
        truth, chance = table["reference"]["ground truth"], table["reference"]["another clip"]
        assert truth["fad"] == pytest.approx(0, abs=1e-6) and truth["kl"] == pytest.approx(0, abs=1e-6)
        assert truth["onset_f1"] == 1.0 and truth["style_accuracy"] == 1.0
        assert truth["onsets_per_clip"] == chance["onsets_per_clip"]  # the same clips' music, rolled
        assert chance["kl"] > 0.5 and chance["onset_f1"] < 0.5
    markdown = (tmp_path / "ablation.md").read_text()
    assert "### Table 5" in markdown and "### Table 6" in markdown and "| ground truth |" in markdown
    assert "-0.000" not in markdown  # a ground-truth FAD of -1e-9 reads 0.000
    # finished runs are reused: a second call trains nothing and reports the same numbers
    assert ablation.main(["--quick", "--out", str(tmp_path)])["tables"] == report["tables"]
    # --report-only reads the finished runs; a missing run is a '-' and the row says how many seeds it has
    import shutil

    shutil.rmtree(tmp_path / "runs" / "AR_baseline" / "seed1")
    partial = ablation.main(["--quick", "--report-only", "--out", str(tmp_path)])
    baseline = partial["tables"]["table5"]["rows"]["AR baseline"]
    assert baseline["seeds_finished"] == 1 and baseline["fad"]["values"][1] is None and baseline["fad"]["ci95"] is None
    assert partial["tables"]["table6"] == report["tables"]["table6"]  # its rows lost no run
    assert "| AR baseline (1 of 2 seeds) |" in (tmp_path / "ablation.md").read_text()
