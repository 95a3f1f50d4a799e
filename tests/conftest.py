"""Fixtures shared by every tier: ``fake_root`` (tmpfs-backed fake trees)."""

from tests.fakefs import fake_root  # noqa: F401  (re-exported fixture)
