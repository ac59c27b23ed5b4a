"""`model.init_from`: training starts from another run's weights (fine-tuning), or stops in one line."""
import pytest
import torch

from helpers import TINY_CONFIG, fit_tiny, one_line_error
from vmas_lightning.cli.main import main


@pytest.mark.slow
def test_a_run_starts_from_the_weights_it_is_given(demo_data, tiny_ckpt, tmp_path):
    """One step at a vanishing learning rate: the new run's weights are the given checkpoint's (its
    EMA weights, what `state_dict` holds), not a fresh initialisation's."""
    given = torch.load(tiny_ckpt, map_location="cpu", weights_only=False)["state_dict"]
    tuned = fit_tiny(demo_data, tmp_path / "tuned", "--model.init_from", str(tiny_ckpt), "--model.optim.lr", "1e-12")
    fresh = fit_tiny(demo_data, tmp_path / "fresh", "--model.optim.lr", "1e-12", "--seed_everything", "1")
    tuned, fresh = (torch.load(path, map_location="cpu", weights_only=False)["state_dict"] for path in (tuned, fresh))
    decoder = "model.decoder.cond_proj.weight"
    torch.testing.assert_close(tuned[decoder], given[decoder], rtol=0, atol=1e-6)
    assert not torch.allclose(fresh[decoder], given[decoder], atol=1e-3)
    assert all(torch.allclose(tuned[k].float(), given[k].float(), atol=1e-5) for k in given if given[k].is_floating_point())


def test_weights_of_another_model_or_a_missing_file_stop_in_one_line(demo_data, tiny_ckpt, tmp_path, capsys):
    args = ["fit", "--config", str(TINY_CONFIG), "--data.root", str(demo_data), "--trainer.default_root_dir", str(tmp_path),
            "--trainer.max_steps", "1", "--data.num_workers", "0"]
    assert main([*args, "--model.init_from", str(tiny_ckpt), "--model.decoder.width", "32"]) == 2
    error = one_line_error(capsys)
    assert f"model.init_from {tiny_ckpt}: its weights do not fit this config's model" in error and "size mismatch" in error
    assert main([*args, "--model.init_from", str(tmp_path / "none.ckpt")]) == 2
    assert "none.ckpt: checkpoint not found" in one_line_error(capsys)


def test_print_config_shows_it(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(TINY_CONFIG), "--print_config"])
    assert "\n  init_from: null\n" in capsys.readouterr().out
