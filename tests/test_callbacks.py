"""`PeakMemoryMonitor`: a no-op on CPU (it must not touch CUDA or log anything there)."""
import lightning as L
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from vmas_lightning.callbacks import PeakMemoryMonitor


def test_peak_memory_monitor_does_nothing_on_cpu(tmp_path, monkeypatch):
    def no_cuda(*args, **kwargs):
        raise AssertionError("CUDA memory queried on CPU")

    for name in ("reset_peak_memory_stats", "max_memory_allocated", "max_memory_reserved"):
        monkeypatch.setattr(torch.cuda, name, no_cuda)
    monitor = PeakMemoryMonitor()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=3, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, callbacks=[monitor],
                        default_root_dir=tmp_path)
    trainer.fit(BoringModel())
    assert trainer.global_step == 3
    assert monitor.max_allocated == 0 and not any(key.startswith("memory/") for key in trainer.callback_metrics)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_peak_memory_monitor_logs_on_cuda(tmp_path):
    monitor = PeakMemoryMonitor()
    trainer = L.Trainer(accelerator="gpu", devices=1, max_steps=2, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, callbacks=[monitor],
                        default_root_dir=tmp_path)
    trainer.fit(BoringModel())
    peak = trainer.callback_metrics["memory/step_peak_allocated_gib"].item()
    assert 0 < peak <= trainer.callback_metrics["memory/step_peak_reserved_gib"].item()
    assert monitor.max_allocated / 2**30 == pytest.approx(trainer.callback_metrics["memory/max_allocated_gib"].item())
