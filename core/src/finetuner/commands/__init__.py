"""Subcommands of the ``finetuner`` CLI."""
