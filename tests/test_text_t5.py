"""The `t5` text conditioner (MusicGen's frozen T5 encoder) from a local folder in the real format, a small
random T5 with a word-level tokenizer: built, frozen, read back from a checkpoint, missing weights in one line,
and the paper config with it in `vmas profile` and its memory estimate."""
import json

import pytest
import torch
import yaml

from helpers import one_line_error
from vmas_lightning.cli.main import main
from vmas_lightning.errors import MissingWeightsError
from vmas_lightning.registry import TEXT_CONDITIONERS

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
WORDS = "fast slow bpm tones synth in a minor major calm".split()


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

    folder = tmp_path_factory.mktemp("t5-tiny")
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{word: index + 3 for index, word in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(folder)
    torch.manual_seed(0)
    T5EncoderModel(T5Config(vocab_size=len(vocab), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)).save_pretrained(folder)
    return folder


def test_t5_from_a_folder_is_frozen_and_masks_padding(t5_folder):
    conditioner = TEXT_CONDITIONERS.build({"name": "t5", "pretrained": str(t5_folder), "max_tokens": 8})
    conditioner.train()
    assert not conditioner.training and not any(p.requires_grad for p in conditioner.parameters())
    features, mask = conditioner(["fast synth in a minor", "calm"])
    assert features.shape == (2, 8, 32) and mask.sum(dim=1).tolist() == [5, 1]
    again, _ = conditioner(["fast synth in a minor", "slow slow slow"])
    torch.testing.assert_close(features[0], again[0])  # a row does not depend on its batch mates


def test_t5_rebuilt_from_what_a_checkpoint_records(t5_folder):
    conditioner = TEXT_CONDITIONERS.build({"name": "t5", "pretrained": str(t5_folder)})
    options = conditioner.rebuild_options()
    assert options["pretrained"] is None and options["tokenizer"] == str(t5_folder)
    rebuilt = TEXT_CONDITIONERS.build({"name": "t5", **options})
    rebuilt.load_state_dict(conditioner.state_dict())
    torch.testing.assert_close(rebuilt(["slow bpm"])[0], conditioner(["slow bpm"])[0])


def test_missing_t5_weights_say_what_to_download(tmp_path):
    with pytest.raises(MissingWeightsError, match="hf download t5-base"):
        TEXT_CONDITIONERS.build({"name": "t5", "pretrained": str(tmp_path / "nowhere")})


def test_paper_config_with_t5_profiles_and_its_memory_includes_it(t5_folder, tmp_path, capsys):
    overlay = tmp_path / "t5.yaml"
    # configs/text/t5.yaml from a local folder (a stacked file replaces a plugin spec whole: name it again)
    overlay.write_text(yaml.safe_dump({"model": {"text": {"name": "t5", "pretrained": str(t5_folder)}}}))
    paper = str(ROOT / "configs" / "vmas.yaml")
    assert main(["profile", "--config", paper, "--config", str(ROOT / "configs" / "text" / "t5.yaml"), "--config", str(overlay),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    text_params = report["text"]["params"]
    assert report["text"]["name"] == "t5" and report["text"]["frozen_params"] > 0
    assert report["text"]["params"] - report["text"]["frozen_params"] == 32 * 1536 + 1536 + 32  # projection and null
    assert main(["profile", "--memory", "--config", paper, "--config", str(ROOT / "configs" / "text" / "t5.yaml"), "--config",
                 str(overlay), "--json", "--batch-size", "1"]) == 0
    with_text = json.loads(capsys.readouterr().out)
    assert main(["profile", "--memory", "--config", paper, "--json", "--batch-size", "1"]) == 0
    without = json.loads(capsys.readouterr().out)
    grown = with_text["total_bytes"] - without["total_bytes"]
    assert grown >= 4 * text_params, (grown, text_params)  # at least the text parts' fp32 weights


def test_a_broken_t5_folder_is_one_line(t5_folder, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((t5_folder / "config.json").read_text())
    overlay = tmp_path / "t5.yaml"
    overlay.write_text(yaml.safe_dump({"model": {"text": {"name": "t5", "pretrained": str(broken)}}}))
    assert main(["fit", "--config", str(ROOT / "configs" / "tiny.yaml"), "--config", str(overlay), "--data.root", str(tmp_path),
                 "--trainer.default_root_dir", str(tmp_path / "run")]) == 2
    assert str(broken) in one_line_error(capsys)
