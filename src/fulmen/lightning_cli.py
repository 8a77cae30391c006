"""``fulmen.lightning_cli``: LightningCLI and its helpers, where ``pl.cli.LightningCLI``-style
code finds them (``fulmen.cli`` re-exports them lazily; that module is also the ``fulmen``
command). Defined in ``fulmen.train._cli``; needs jsonargparse (a dependency)."""

from fulmen.train._cli import (
    LightningArgumentParser,
    LightningCLI,
    SaveConfigCallback,
    cli_lightning_logo,
)

__all__ = ["LightningArgumentParser", "LightningCLI", "SaveConfigCallback", "cli_lightning_logo"]
