"""`vmas results` and `vmas export`: side-by-side tables, inference-only checkpoints, one-line errors."""
import json

import torch

from helpers import DEMO_CKPT, one_line_error
from vmas_lightning.cli.main import main


def test_results_prints_runs_side_by_side_under_the_reference_rows(tmp_path, capsys):
    reference = {"ground_truth": {"fad": 0.0, "style_accuracy": 1.0}, "another_clip": {"fad": 0.0, "style_accuracy": 0.25}}
    for name, accuracy in (("a", 0.9), ("b", 0.5)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({"fad": 2.0, "style_accuracy": accuracy, "reference_rows": reference}))
    assert main(["results", str(tmp_path / "a"), str(tmp_path / "b" / "metrics.json"), "--names", "long,short"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "| audio | FAD | style acc |"
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| ground truth", "| another clip", "| **long**", "| **short**"]
    assert lines[4] == "| **long** | 2.000 | 0.90 |" and lines[5] == "| **short** | 2.000 | 0.50 |"
    assert main(["results", str(tmp_path / "missing")]) == 2
    assert "missing" in one_line_error(capsys)
    (tmp_path / "list.json").write_text("[1, 2]")
    assert main(["results", str(tmp_path / "list.json")]) == 2
    assert "list.json: metrics.json of vmas test must be a mapping" in one_line_error(capsys)
    (tmp_path / "empty.json").write_text("")
    assert main(["results", str(tmp_path / "empty.json")]) == 2
    assert "empty.json: empty" in one_line_error(capsys)
    assert main(["results", str(tmp_path / "a"), "--names", "x,y"]) == 2
    assert "2 names for 1 runs" in one_line_error(capsys)
    # two rows of one name would show only the last: refused (a run and its video-file run, say)
    assert main(["results", str(tmp_path / "a"), str(tmp_path / "b"), "--names", "model,model"]) == 2
    assert "two runs have the same name" in one_line_error(capsys)


def test_export_keeps_weights_and_hyper_parameters_only(tmp_path, capsys):
    full = {"state_dict": {"w": torch.ones(3)}, "global_step": 7,
            "hyper_parameters": {"cond_dropout": 0.1, "encoder": "efficient_hiera", "decoder": "musicgen", "codec": "encodec"},
            "rebuild_options": {"codec": {"pretrained": None}},
            "optimizer_states": [{"state": {0: torch.zeros(3)}}], "loops": {"fit": 1}, "current_model_state": {"w": torch.zeros(3)}}
    torch.save(full, tmp_path / "last.ckpt")
    assert main(["export", "--ckpt", str(tmp_path / "last.ckpt"), "--out", str(tmp_path / "model.ckpt")]) == 0
    slim = torch.load(tmp_path / "model.ckpt", weights_only=True)
    assert set(slim) == {"state_dict", "hyper_parameters", "rebuild_options", "global_step"} and torch.equal(slim["state_dict"]["w"], torch.ones(3))
    capsys.readouterr()
    torch.save({"weights": 1}, tmp_path / "other.ckpt")
    assert main(["export", "--ckpt", str(tmp_path / "other.ckpt"), "--out", str(tmp_path / "x.ckpt")]) == 2
    assert "other.ckpt: not a VMASModule checkpoint" in one_line_error(capsys)
    (tmp_path / "truncated.ckpt").write_bytes((tmp_path / "last.ckpt").read_bytes()[:100])
    assert main(["export", "--ckpt", str(tmp_path / "truncated.ckpt"), "--out", str(tmp_path / "x.ckpt")]) == 2
    assert "truncated.ckpt: not a readable checkpoint" in one_line_error(capsys)
    # the model settings are read by the config parser first: an unknown one is refused, nothing written
    torch.save({**full, "hyper_parameters": {**full["hyper_parameters"], "frames_per_feature": 2}}, tmp_path / "old.ckpt")
    assert main(["export", "--ckpt", str(tmp_path / "old.ckpt"), "--out", str(tmp_path / "old_model.ckpt")]) == 2
    error = one_line_error(capsys)
    assert "old.ckpt: its model settings: " in error and "frames_per_feature" in error
    assert not (tmp_path / "old_model.ckpt").exists()
    assert main(["export", "--ckpt", str(DEMO_CKPT), "--out", str(tmp_path / "demo.ckpt")]) == 0  # a real one reads
