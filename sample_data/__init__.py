"""Seeded scenario generator: native logs of six systems, labelled incidents, point-in-time truth."""

from sample_data.generator import Manifest, generate

__all__ = ["Manifest", "generate"]
