"""Figures and reports: the colour-coded overlay, per-image and batch reports.

matplotlib is imported inside the functions that use it; the HTML report is written without a template engine.
"""

from .overlay import plot_overlay, save_overlay

__all__ = ["plot_overlay", "save_overlay"]
