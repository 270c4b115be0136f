"""Paths of the data files the tests ship with (a fresh clone runs every test; a missing file fails, never skips)."""

from __future__ import annotations

from pathlib import Path

PARITY_FIXTURE = Path(__file__).resolve().parent / "data" / "official_tiny_v1"
"""A tiny random-weight PanSt3R in the official checkpoint format with the official code's outputs (its README)."""
