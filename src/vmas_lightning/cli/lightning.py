"""LightningCLI over `VMASModule` and `VMASDataModule` (`vmas fit/validate/test/predict`)."""
from __future__ import annotations

from dataclasses import fields
from typing import Optional, Sequence

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from vmas_lightning.data.datamodule import VMASDataModule
from vmas_lightning.lit_module import VMASModule
from vmas_lightning.sequence import SequenceConfig


class VMASCLI(LightningCLI):
    """`model.sequence` is the one clip geometry: the data module receives it by link."""

    def __init__(self, args: Optional[Sequence[str]] = None):
        super().__init__(
            VMASModule,
            VMASDataModule,
            args=None if args is None else list(args),
            seed_everything_default=0,
            parser_kwargs={"exit_on_error": False},
            save_config_kwargs={"overwrite": True},
        )

    def _parse_ckpt_path(self) -> None:
        """Keep `--config` and command-line overrides in charge with `--ckpt_path`.

        LightningCLI would replace the whole `model` block by the checkpoint's hyper-parameters,
        discarding test-time settings such as `--model.generation.*` and `--model.evaluation.*`.
        """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for field in fields(SequenceConfig):
            parser.link_arguments(f"model.sequence.{field.name}", f"data.sequence.{field.name}")
