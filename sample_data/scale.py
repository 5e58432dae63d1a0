"""Scenario sizes as people write them: ``3000``, ``10k``, ``1m``, ``2.5m``."""

from __future__ import annotations

import argparse


def parse_scale(text: str) -> int:
    """'10k' → 10_000, '1m' → 1_000_000, '2500' → 2500."""
    t = text.strip().lower().replace("_", "")
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    num = t[:-1] if mult != 1 else t
    try:
        value = int(float(num) * mult)
    except OverflowError:  # "inf"
        raise ValueError(f"scale must be a finite number: {text!r}") from None
    if value <= 0:
        raise ValueError(f"scale must be positive: {text!r}")
    return value


def scale_arg(text: str) -> int:
    """``parse_scale`` for argparse: a bad value is a usage error naming the forms accepted."""
    try:
        return parse_scale(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a scale: give a positive number of events, "
                                         "e.g. 3000, 10k or 1m") from e
