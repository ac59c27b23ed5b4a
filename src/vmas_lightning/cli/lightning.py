"""LightningCLI over `VMASModule` and `VMASDataModule` (`vmas fit/validate/test/predict`)."""
from __future__ import annotations

from typing import Sequence

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from vmas_lightning.data.datamodule import VMASDataModule
from vmas_lightning.lit_module import VMASModule


class VMASCLI(LightningCLI):
    """`model.sequence` is the one clip geometry: the data module receives it by link."""

    def __init__(self, args: Sequence[str]):
        super().__init__(
            VMASModule,
            VMASDataModule,
            args=list(args),
            seed_everything_default=0,
            parser_kwargs={"exit_on_error": False},
            save_config_kwargs={"overwrite": True},
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("model.sequence", "data.sequence")
