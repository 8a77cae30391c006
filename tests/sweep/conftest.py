"""Every sweep test runs in its own folder with a clean tracker environment: tests/track's
fixture and helpers, shared (one copy)."""

from tests.track.conftest import QUIET, child_env, clean_tracker

__all__ = ["QUIET", "child_env", "clean_tracker"]
