"""``python -m engine`` is the same as ``hybrid-engine``."""

from engine.cli import entrypoint

entrypoint()
