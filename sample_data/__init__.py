"""Seeded scenario generator: native logs of six systems, labelled incidents, point-in-time truth."""

from __future__ import annotations

from typing import Any

__all__ = ["Manifest", "generate"]


def __getattr__(name: str) -> Any:
    # Lazy, so `python -m sample_data.generator` does not import the module twice.
    if name in __all__:
        from sample_data import generator

        return getattr(generator, name)
    raise AttributeError(name)
