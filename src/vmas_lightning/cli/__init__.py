"""The `vmas` command: LightningCLI subcommands plus project subcommands."""
