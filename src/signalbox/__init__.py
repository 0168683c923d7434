"""signalbox: shared dev/ops tools for what happens after code ships."""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
