"""Entry point of the `vmas` command.

`fit`, `validate`, `test` and `predict` are LightningCLI subcommands over `VMASModule` and
`VMASDataModule`; the project subcommands (`demo-data`, `plugins`, `prepare`, ...) live in one
module each under `vmas_lightning.cli` with `HELP`, `build_parser()` and `run(cfg)`.
Every user-caused error ends as one line `vmas: error: ...` and a non-zero exit.
"""
from __future__ import annotations

import importlib
import sys
from typing import Sequence

from vmas_lightning.errors import Interrupted, VMASError

LIGHTNING_COMMANDS = {
    "fit": "Train a model (configs/*.yaml).",
    "validate": "Run one validation epoch.",
    "test": "Generate music for the test split and compute FAD, KL, MV-Align and retrieval.",
    "predict": "Generate music for a dataset with many devices in parallel.",
}
PROJECT_COMMANDS = {
    "demo-data": "vmas_lightning.cli.demo_data",
    "demo-assets": "vmas_lightning.cli.demo_assets",
    "plugins": "vmas_lightning.cli.plugins",
    "prepare": "vmas_lightning.cli.prepare",
    "generate": "vmas_lightning.cli.generate",
    "profile": "vmas_lightning.cli.profile",
    "beats": "vmas_lightning.cli.beats",
    "results": "vmas_lightning.cli.results",
    "export": "vmas_lightning.cli.export",
    "serve": "vmas_lightning.cli.serve",
}


def _usage() -> str:
    lines = ["usage: vmas <command> [options]   (vmas <command> --help for the options)", "", "Lightning commands:"]
    lines += [f"  {name:10s} {text}" for name, text in LIGHTNING_COMMANDS.items()]
    lines += ["", "Project commands:"]
    for name, module in PROJECT_COMMANDS.items():
        lines.append(f"  {name:10s} {importlib.import_module(module).HELP}")
    return "\n".join(lines)


def _run_project_command(name: str, args: Sequence[str]) -> int:
    command = importlib.import_module(PROJECT_COMMANDS[name])
    parser = command.build_parser()
    parser.exit_on_error = False
    return int(command.run(parser.parse_args(list(args))) or 0)


def _run_lightning(args: Sequence[str] | None) -> int:
    from vmas_lightning.cli.lightning import VMASCLI

    VMASCLI(args=args)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    lightning_args = None if argv is None else args  # LightningCLI reads sys.argv itself when run as `vmas`
    try:
        if not args or args[0] in ("-h", "--help"):
            print(_usage())
            return 0 if args else 2
        if args[0] in PROJECT_COMMANDS:
            return _run_project_command(args[0], args[1:])
        if args[0] in LIGHTNING_COMMANDS or args[0].startswith("-"):
            return _run_lightning(lightning_args)
        raise VMASError(f"unknown command '{args[0]}'; commands: {', '.join([*LIGHTNING_COMMANDS, *PROJECT_COMMANDS])}")
    except KeyboardInterrupt:
        return _report(Interrupted("interrupted"))
    except VMASError as err:
        return _report(err)
    except _argument_errors() as err:
        print(f"vmas: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2


def _report(err: VMASError) -> int:
    print(f"vmas: error: {err}", file=sys.stderr)
    return err.exit_code


def _argument_errors() -> tuple[type[BaseException], ...]:
    from argparse import ArgumentError

    from jsonargparse import ArgumentError as JsonArgumentError

    return (ArgumentError, JsonArgumentError)


def console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console_main()
