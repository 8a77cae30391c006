"""fulmen.train: the training framework: Trainer, LightningModule, callbacks, precision, strategies.

Imports torch. Never imports ``fulmen.track``, ``fulmen.loggers`` or ``fulmen.server``: loggers
reach the tracker, and the Trainer only knows the Logger protocol.
"""

__all__: list[str] = []
