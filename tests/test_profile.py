"""`vmas profile`: full-size model on the meta device, FLOPs with known analytic parts."""
import json

import pytest
import yaml

from helpers import one_line_error
from vmas_lightning.cli.main import main

SEQUENCE = {"duration_s": 10.0, "fps": 9.6, "frame_size": 224, "sample_rate": 32000, "token_rate": 50.0,
            "num_codebooks": 4}


def _profile(tmp_path, capsys, encoder, sequence=SEQUENCE, decoder=None):
    model = {"sequence": sequence, "encoder": encoder, "codec": {"name": "encodec", "pretrained": "facebook/encodec_32khz"},
             "decoder": decoder or {"name": "musicgen", "pretrained": "facebook/musicgen-medium"}}
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump({"seed_everything": 0, "model": model}))
    assert main(["profile", "--config", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_paper_model_without_weights(tmp_path, capsys):
    report = _profile(tmp_path, capsys, {"name": "efficient_hiera", "pretrained": "checkpoints/hiera_base_16x224.pth"})
    enc, dec, codec = report["encoder"], report["decoder"], report["codec"]
    assert enc["name"] == "efficient_hiera" and enc["output_shape"] == [48, 768] and enc["feature_rate"] == 4.8
    # 3-D patch embedding: 2 * (3 * 3*7*7) * 96 FLOPs for each of the 48x56x56 tokens
    assert enc["gflops_by_op"]["convolution"] == round(2 * 3 * 3 * 7 * 7 * 96 * 48 * 56 * 56 / 1e9, 2)
    assert enc["gflops"] == pytest.approx(sum(enc["gflops_by_op"].values()), abs=0.02)
    width, layers, ffn = 1536, 48, 6144
    per_layer = 8 * width**2 + 2 * width * ffn + 3 * 2 * width  # self + cross attention, FFN, 3 LayerNorms
    embeddings_and_heads = 4 * 2049 * width + 4 * width * 2048 + 2 * width + (768 + 1) * width
    assert (dec["layers"], dec["width"], dec["params"]) == (layers, width, layers * per_layer + embeddings_and_heads)
    assert (codec["frame_rate"], codec["codebooks"], codec["codebook_size"]) == (50, 4, 2048)

    hiera = _profile(tmp_path, capsys, {"name": "hiera"})["encoder"]
    assert hiera["output_shape"] == [48, 768] and hiera["params"] == enc["params"]
    assert hiera["gflops"] >= 2 * enc["gflops"]


def test_clip_b32_at_16_frames(tmp_path, capsys):
    enc = _profile(tmp_path, capsys, {"name": "clip", "pretrained": True})["encoder"]
    assert enc["output_shape"] == [16, 768] and enc["input_shape"] == [3, 96, 224, 224]
    tokens, width = 50, 768  # 7x7 patches + class token
    per_frame = 12 * (12 * width**2 * tokens + 2 * tokens**2 * width) + 3 * 32 * 32 * width * 49
    assert enc["gflops"] == pytest.approx(16 * 2 * per_frame / 1e9, rel=1e-3)


def test_text_report_and_bad_config(tmp_path, capsys):
    tiny = {"sequence": {"duration_s": 1.0, "fps": 8.0, "frame_size": 64},
            "encoder": {"name": "hiera", "size": "tiny"}, "decoder": {"name": "musicgen", "size": "tiny"},
            "codec": {"name": "encodec", "size": "tiny"}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({"model": tiny}))
    assert main(["profile", "--config", str(tmp_path / "tiny.yaml")]) == 0
    out = capsys.readouterr().out
    assert "hiera" in out and "[4, 128]" in out and "2 layers, width 64" in out
    assert main(["profile", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in one_line_error(capsys)
    # options of --memory are refused without it, not ignored
    assert main(["profile", "--config", str(tmp_path / "tiny.yaml"), "--devices", "8", "--gpu-memory", "80GB"]) == 2
    assert one_line_error(capsys) == "vmas: error: --devices, --gpu-memory: only with --memory"
