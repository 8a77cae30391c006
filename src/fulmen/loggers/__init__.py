"""fulmen.loggers: the Logger protocol, CSVLogger and WandbLogger, the only bridge between
``fulmen.train`` and ``fulmen.track``."""

__all__: list[str] = []
