"""What many tests share: the checkout's paths, the CLI's one-line error check, a plugin installed
from source, and a 2-step fit of the tiny config. (pytest puts `tests/` on the path: pyproject's
`pythonpath`.)"""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT / "configs" / "tiny.yaml"
DEMO_CONFIG = ROOT / "configs" / "demo.yaml"
DEMO_TEXT_CONFIG = ROOT / "configs" / "demo_text.yaml"  # stacked on DEMO_CONFIG: the committed model's text parts
DEMO_CODEC = ROOT / "checkpoints" / "demo" / "mel_rvq.pt"
DEMO_STYLE_NET = ROOT / "checkpoints" / "demo" / "style_net.pt"
DEMO_CKPT = ROOT / "checkpoints" / "demo" / "model.ckpt"


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


def fit_tiny(demo_data, root, *extra) -> Path:
    """`vmas fit` of the tiny config for 2 steps on the demo data; returns its last.ckpt."""
    from vmas_lightning.cli.main import main

    args = ["fit", "--config", str(TINY_CONFIG), *extra, "--data.root", str(demo_data),
            "--trainer.default_root_dir", str(root), "--trainer.max_steps", "2", "--data.num_workers", "0",
            "--model.num_audio_samples", "1", "--trainer.limit_val_batches", "1"]
    assert main(args) == 0
    return next(Path(root).glob("lightning_logs/version_*/checkpoints/last.ckpt"))
