"""hybrid-engine: a shadow-first trading engine on Trio structured concurrency."""

__version__ = "0.1.0"
