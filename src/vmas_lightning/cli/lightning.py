"""LightningCLI over `VMASModule` and `VMASDataModule` (`vmas fit/validate/test/predict`)."""
from __future__ import annotations

from typing import Optional, Sequence

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from vmas_lightning.config_file import link_model_to_data
from vmas_lightning.data.datamodule import VMASDataModule
from vmas_lightning.errors import VMASError
from vmas_lightning.lit_module import VMASModule


class VMASCLI(LightningCLI):
    """`model.sequence` is the one clip geometry and `model.codec` the one codec: the data module
    receives both by link."""

    def __init__(self, args: Optional[Sequence[str]] = None, run: bool = True):
        """`run=False`: parse `args` without a subcommand and build `model`, `datamodule` and `trainer`
        only (as `benchmarks/train_step.py` does)."""
        super().__init__(
            VMASModule,
            VMASDataModule,
            args=None if args is None else list(args),
            seed_everything_default=0,
            parser_kwargs={"exit_on_error": False},
            save_config_kwargs={"overwrite": True},
            run=run,
        )

    # An override of a private LightningCLI method: Lightning 2.6 has no public way to keep the
    # checkpoint's hyper-parameters out of the config (the `adapt_checkpoint_hparams` hook of
    # Lightning PR #21408 is unreleased). If Lightning renames it, the `--model.evaluation.*` overrides
    # of tests/test_pipeline.py and tests/test_test_mv_align_source.py stop being honoured and fail.
    def _parse_ckpt_path(self) -> None:
        """Keep `--config` and command-line overrides in charge with `--ckpt_path`.

        LightningCLI would replace the whole `model` block by the checkpoint's hyper-parameters,
        discarding test-time settings such as `--model.generation.*` and `--model.evaluation.*`.
        """

    def before_instantiate_classes(self) -> None:
        """Stop in one line before any network is built: without `--config` the defaults are the
        paper's 1.9 B-parameter model with random weights; evaluating or predicting without
        `--ckpt_path` would use untrained weights."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        if not config.get("config"):
            raise VMASError(f"vmas {self.subcommand or 'fit'} needs --config (configs/tiny.yaml for a CPU run, "
                            "configs/vmas.yaml for the paper's model)")
        if self.subcommand not in ("fit", None) and not config.get("ckpt_path"):
            raise VMASError(f"vmas {self.subcommand} needs --ckpt_path CKPT, the trained checkpoint "
                            "(without it the model has untrained weights)")

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        link_model_to_data(parser)
