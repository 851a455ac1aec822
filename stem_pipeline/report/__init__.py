"""Figures and reports: the colour-coded overlay, per-image and batch reports.

matplotlib and jinja2 are imported inside the functions that use them.
"""

from .overlay import plot_overlay, save_overlay

__all__ = ["plot_overlay", "save_overlay"]
