"""benchmarks/ablation.py --quick: the tables' structure and the reference rows at their ideal values
(the benchmark's numbers themselves are results, in benchmarks/RESULTS.md, never asserted)."""
import importlib.util
import json

import pytest

from helpers import ROOT

pytestmark = pytest.mark.slow


def load_ablation():
    spec = importlib.util.spec_from_file_location("ablation", ROOT / "benchmarks" / "ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_ablation_tables(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # configs/demo.yaml names the committed demo assets relative to the checkout
    ablation = load_ablation()
    pack = tmp_path / "pack.json"
    report = ablation.main(["--quick", "--out", str(tmp_path), "--jobs", "2", "--data-workers", "2",
                            "--pack", str(pack)])  # two processes share the runs
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == report
    # ... each run trained by one of them, once
    run_dirs = [run for run in (tmp_path / "runs").glob("*/seed*") if run.is_dir()]
    assert len(run_dirs) == 18 and all(len(list(run.glob("lightning_logs/version_*/checkpoints"))) == 1 for run in run_dirs)
    assert report["quick"] and report["seeds"] == [0, 1] and report["steps"] == [2]  # every run trained 2 steps
    assert set(report["tables"]) == {"table5", "tablelambda", "table6", "tablearch"}
    base = ablation.load_config(ROOT / "configs" / "demo.yaml")
    for number, names in (("table5", ablation.TABLE5), ("tablelambda", ablation.TABLE_LAMBDA), ("table6", ablation.TABLE6),
                          ("tablearch", ablation.table_rows("arch", base))):
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
    rows, steps = report["tables"]["table5"]["rows"], report["tables"]["table5"]["paired_differences"]
    assert list(steps) == ["+ contrastive vs AR baseline", "+ contrastive + beat weighting (VMAs) vs + contrastive"]
    for metric in ("ce", "onset_f1"):  # per seed: the row's value minus the row above's
        assert steps["+ contrastive vs AR baseline"][metric]["values"] == pytest.approx(
            [b - a for a, b in zip(rows["AR baseline"][metric]["values"], rows["+ contrastive"][metric]["values"])])
    lambdas = report["tables"]["tablelambda"]
    assert lambdas["rows"]["lambda 1 (VMAs)"] == report["tables"]["table5"]["rows"][ablation.VMAS]  # one run, two rows
    assert list(lambdas["paired_differences"]) == [f"{name} vs no beat weighting (+ contrastive)"
                                                   for name in ("lambda 1 (VMAs)", "lambda 0.1", "lambda 0.01")]
    arch = report["tables"]["tablearch"]
    assert arch["rows"]["demo decoder, beat weighting (VMAs)"] == report["tables"]["table5"]["rows"][ablation.VMAS]
    assert list(arch["paired_differences"]) == ["demo decoder, beat weighting (VMAs) vs demo decoder, no beat weighting",
                                                "paper decoder, beat weighting vs paper decoder, no beat weighting"]
    paper_run = json.loads((tmp_path / "records" / "paper_decoder_beat_weighting" / "seed0.json").read_text())
    decoder = paper_run["recipe"]["overlay"]["model"]["decoder"]  # the demo decoder's sizes, none of its timing paths
    assert decoder["width"] == base.model.decoder["width"] and not set(decoder) & set(ablation.TIMING_OPTIONS)
    records = tmp_path / "records"
    runs = sorted(path.relative_to(records).as_posix() for path in records.glob("*/seed*.json"))
    assert runs == [f"{row}/seed{seed}.json" for row in ("AR_baseline", "clip", "hiera", "lambda_0.01", "lambda_0.1",
                                                          "paper_decoder_beat_weighting", "paper_decoder_no_beat_weighting",
                                                          "plus_contrastive", "plus_contrastive_plus_beat_weighting")
                    for seed in (0, 1)]
    record = json.loads((records / "hiera" / "seed1.json").read_text())
    assert record["recipe"]["seed"] == 1 and record["recipe"]["steps"] == 2 and record["steps"] == 2
    assert record["recipe"]["overlay"] == ablation.TABLE6["hiera"] and record["provenance"]["finished"]
    dataset = json.loads((tmp_path / "data" / "dataset.json").read_text())
    assert dataset["recipe"]["num_train"] == 8 and record["provenance"]["data_sha256"] == dataset["sha256"]
    assert (records / "hiera" / "seed1.clips.csv").read_text().count("\n") == 1 + 4  # header, 4 test clips
    markdown = (tmp_path / "ablation.md").read_text()
    assert "### Table 5" in markdown and "### Table 6" in markdown and "| ground truth |" in markdown
    assert "-0.000" not in markdown  # a ground-truth FAD of -1e-9 reads 0.000
    assert "Retrieval among the 4 test clips at chance: R@1 0.250, R@10 1.000." in markdown
    # recorded runs are reused: on another machine (no data, checkpoints or logs: a new --out) with the
    # same records, a second call trains nothing (writes no data) and reports the same numbers
    again = ablation.main(["--quick", "--out", str(tmp_path / "elsewhere"), "--records", str(records)])
    assert again["tables"] == report["tables"] and not (tmp_path / "elsewhere" / "data").exists()
    # ... and so do the records carried back in one file (--pack), unpacked into another records folder
    assert report["packed"] == {"file": str(pack), "records": 18}
    home = ablation.main(["--quick", "--out", str(tmp_path / "home"), "--records", str(tmp_path / "home" / "records"),
                          "--unpack", str(pack)])
    assert home["tables"] == report["tables"]
    assert (tmp_path / "home" / "records" / "hiera" / "seed1.clips.csv").read_text() == (records / "hiera" / "seed1.clips.csv").read_text()
    # a record made by another recipe is refused, naming the file and what differs
    record["recipe"]["steps"] = 3
    (records / "hiera" / "seed1.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit, match=r"hiera/seed1\.json: recorded with another recipe \(steps: 3 -> 2\)"):
        ablation.main(["--quick", "--report-only", "--out", str(tmp_path)])
    # ... as is a run folder whose checkpoints another recipe made
    (records / "hiera" / "seed1.json").unlink()
    run_dir = tmp_path / "runs" / "hiera" / "seed1"
    recipe = json.loads((run_dir / "recipe.json").read_text())
    with pytest.raises(SystemExit, match=r"hiera/seed1: checkpoints of another recipe \(data.num_train: 8 -> 9\)"):
        ablation.check_run_dir(run_dir, {**recipe, "data": {**recipe["data"], "num_train": 9}})
    capsys.readouterr()
    with pytest.raises(SystemExit):
        ablation.parse_args(["--quick", "--steps", "10"])
    assert "--quick sets the steps and clips" in capsys.readouterr().err
    # --report-only reads the recorded runs; a missing run is a '-' and the row says how many seeds it has
    (records / "AR_baseline" / "seed1.json").unlink()
    partial = ablation.main(["--quick", "--report-only", "--out", str(tmp_path)])
    baseline = partial["tables"]["table5"]["rows"]["AR baseline"]
    assert baseline["seeds_finished"] == 1 and baseline["fad"]["values"][1] is None and baseline["fad"]["ci95"] is None
    step = partial["tables"]["table5"]["paired_differences"]["+ contrastive vs AR baseline"]["fad"]
    assert step["values"][1] is None and step["ci95"] is None  # seed 1 has no pair
    assert partial["tables"]["table6"]["rows"]["hiera"]["seeds_finished"] == 1
    assert partial["tables"]["table6"]["rows"]["clip"] == report["tables"]["table6"]["rows"]["clip"]  # it lost no run
    assert "| AR baseline (1 of 2 seeds) |" in (tmp_path / "ablation.md").read_text()
