"""The version of fulmen, read by the build and by ``fulmen --version`` without other imports."""

__version__ = "0.1.0"
