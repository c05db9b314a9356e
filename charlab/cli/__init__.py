"""Subcommands of `python -m charlab`. Each module here defines
`register(subparsers)` that adds its parser and sets `func=handler` on it;
the modules are discovered, so adding a command is adding a file."""
