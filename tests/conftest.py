import sys
from pathlib import Path

import lightning.pytorch  # noqa: F401  (its logger binds sys.stderr on import: before any test captures it)
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/media.py and friends

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT / "configs" / "tiny.yaml"
DEMO_CONFIG = ROOT / "configs" / "demo.yaml"
DEMO_CODEC = ROOT / "checkpoints" / "demo" / "mel_rvq.pt"
DEMO_STYLE_NET = ROOT / "checkpoints" / "demo" / "style_net.pt"


def install_plugin(folder: Path, module: str, source: str) -> Path:
    """Write `module` into `folder` as an installed distribution whose `vmas_lightning.plugins` entry
    point imports it; returns `folder` (put it on sys.path or PYTHONPATH)."""
    folder.mkdir(exist_ok=True)
    (folder / f"{module}.py").write_text(source)
    dist = folder / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[vmas_lightning.plugins]\n{module} = {module}\n")
    return folder


def one_line_error(capsys) -> str:
    """The CLI's error output, checked to be one line `vmas: error: ...` without a traceback."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("vmas: error: "), err
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """A small demo dataset for the tiny config (8 train, 4 val, 4 test clips), written once; each
    test clip also as a 25-fps 96x96 H.264 file under `videos/test/`, its shard's source."""
    from vmas_lightning.data.demo import VideoForm, write_demo_dataset
    from vmas_lightning.data.shards import DataConfig

    root = tmp_path_factory.mktemp("demo")
    write_demo_dataset(root / "data", DataConfig.from_yaml(TINY_CONFIG), {"train": 8, "val": 4, "test": 4},
                       seed=0, test_videos=VideoForm(fps=25.0, size=96))
    return root / "data"


def fit_tiny(demo_data, root, *extra) -> Path:
    """`vmas fit` of the tiny config for 2 steps on the demo data; returns its last.ckpt."""
    from vmas_lightning.cli.main import main

    args = ["fit", "--config", str(TINY_CONFIG), *extra, "--data.root", str(demo_data),
            "--trainer.default_root_dir", str(root), "--trainer.max_steps", "2", "--data.num_workers", "0",
            "--model.num_audio_samples", "1", "--trainer.limit_val_batches", "1"]
    assert main(args) == 0
    return next(Path(root).glob("lightning_logs/version_*/checkpoints/last.ckpt"))


@pytest.fixture(scope="session")
def tiny_ckpt(demo_data, tmp_path_factory) -> Path:
    """A checkpoint of the tiny config trained for 2 steps on the demo data, written once."""
    return fit_tiny(demo_data, tmp_path_factory.mktemp("tiny_fit"))
