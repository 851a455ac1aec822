"""Plain helpers shared by several test modules (importable as ``helpers``: pytest puts tests/ on the path)."""

from __future__ import annotations

import numpy as np


def same_lattice(found: np.ndarray, truth: np.ndarray, rtol: float) -> bool:
    """True when each true vector is an integer combination of the found ones (and vice versa)."""
    for a, b in ((found, truth), (truth, found)):
        coef = b @ np.linalg.inv(a)
        if not np.allclose(coef, np.round(coef), atol=rtol * 3) or abs(abs(np.linalg.det(np.round(coef))) - 1) > 0:
            return False
    return True
