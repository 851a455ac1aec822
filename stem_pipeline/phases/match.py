"""Which library phase explains a set of columns: grid shape and scale, then the site pattern.

For one group of columns on one lattice (a lattice's columns, or those the
two-phase classifier labelled alike), every library grid whose shape matches
the image lattice is tried in every orientation that maps the one onto the
other and every placement of its repeat cell, and the measured intensities are
fitted by the grid's expected site intensities (``I = a + b * expected``,
``b >= 0``: an offset and a scale, since measured intensities hold background).
A phase's score is the fit's Bayesian information criterion, plus, for a
calibrated image, how far its spacing is from the measured one. A phase does
not explain the pattern when the columns hold structure its sites lack (one
mean per site refined by the grid's two-step parity wins in BIC) or when its
sites' brightness comes out in the wrong order; a group no phase explains is
unexplained.
"""

from __future__ import annotations

import dataclasses
from itertools import product

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components
from scipy.spatial import cKDTree

from .library import Phase
from .sites import ColumnGrid

__all__ = ["PhaseFit", "explain_columns", "grid_orientations", "index_columns"]

#: Unimodular 2x2 integer matrices with entries in {-1, 0, 1}: the re-labellings of a reduced basis.
_UNIMODULAR = [
    m
    for m in (np.array(e, int).reshape(2, 2) for e in product((-1, 0, 1), repeat=4))
    if abs(round(np.linalg.det(m))) == 1
]


@dataclasses.dataclass(frozen=True, eq=False)
class PhaseFit:
    """The best explanation of a group of columns by one phase.

    Attributes
    ----------
    phase : str
        The phase's name.
    grid : ColumnGrid
        The grid of the phase that matched.
    site : (N,) ndarray of str
        Each column's site (e.g. ``"Pb-Br"``, ``"Cs"``).
    score : float
        -BIC/2 of the intensity fit, plus the spacing term (higher is better).
    explains : bool
        False when the columns hold structure the phase's sites lack, or its sites' brightness is out of order.
    implied_pixel_size_nm : float
        Pixel size at which the phase's spacing equals the image's [nm].
    spacing_error : float or None
        (calibrated pixel size / implied) - 1; None for an uncalibrated image.
    probability : float
        Share of the phases' likelihoods (set by :func:`explain_columns`).
    """

    phase: str
    grid: ColumnGrid
    site: np.ndarray
    score: float
    explains: bool
    implied_pixel_size_nm: float
    spacing_error: float | None
    probability: float = 0.0


def grid_orientations(vectors_px: np.ndarray, grid: ColumnGrid, *, tolerance: float) -> list[tuple[np.ndarray, float]]:
    """The re-labellings of the image lattice that match the grid's shape.

    Parameters
    ----------
    vectors_px : (2, 2) ndarray
        Image lattice vectors (rows) [px].
    grid : ColumnGrid
        A phase grid.
    tolerance : float
        Largest relative misfit of the metric (Gram matrix) after scaling.

    Returns
    -------
    list of (U, px_per_nm)
        ``U`` (2x2 int): image grid steps times ``U`` are the phase grid's
        steps; ``px_per_nm`` the scale of the match.
    """
    gram_image = vectors_px @ vectors_px.T
    gram_phase = grid.vectors_nm @ grid.vectors_nm.T
    found = []
    for u in _UNIMODULAR:
        g = u @ gram_phase @ u.T  # the phase's metric in image steps
        scale2 = float(np.sum(gram_image * g) / np.sum(g * g))
        if np.linalg.norm(gram_image - scale2 * g) <= tolerance * np.linalg.norm(gram_image):
            found.append((u, float(np.sqrt(scale2))))
    return found


def index_columns(
    rc: np.ndarray, vectors_px: np.ndarray, *, max_residual: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """Integer grid steps of every column, walked from neighbour to neighbour.

    Parameters
    ----------
    rc : (N, 2) ndarray
        Column positions (row, col) [px].
    vectors_px : (2, 2) ndarray
        Lattice vectors (rows) [px].
    max_residual : float
        Neighbour links further than this from a whole grid step (in steps) are not followed.

    Returns
    -------
    steps : (N, 2) ndarray of int
        Grid steps, consistent within each connected patch.
    patch : (N,) ndarray of int
        Connected patch of each column (steps of different patches are not comparable).
    """
    n = len(rc)
    if n == 0:
        return np.zeros((0, 2), int), np.zeros(0, int)
    inverse = np.linalg.inv(vectors_px)
    spacing = float(np.linalg.norm(vectors_px, axis=1).max())
    pairs = cKDTree(rc).query_pairs(1.25 * spacing, output_type="ndarray")
    step = (rc[pairs[:, 1]] - rc[pairs[:, 0]]) @ inverse
    good = np.abs(step - np.round(step)).max(axis=1) < max_residual
    pairs, step = pairs[good], np.round(step[good]).astype(int)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)).tocsr()
    n_patch, patch = connected_components(graph, directed=False)
    # Each patch's breadth-first tree from its first column; a column's steps are the sum of the links'
    # steps on its path to that root, summed for all columns at once by pointer doubling (a Python walk
    # over the columns with a dict of links took ~0.03 s CPU of a 1024^2 process, benchmarks/process.py).
    parent = np.arange(n)
    for start in np.unique(patch, return_index=True)[1]:
        order, pred = breadth_first_order(graph, int(start), directed=False)
        parent[order[1:]] = pred[order[1:]]
    child = np.arange(n)
    low, high = np.minimum(parent, child), np.maximum(parent, child)
    keys = pairs[:, 0] * n + pairs[:, 1]  # query_pairs gives i < j
    by_key = np.argsort(keys)
    found = parent != child
    link = by_key[np.searchsorted(keys[by_key], (low * n + high)[found])]
    steps = np.zeros((n, 2), int)
    steps[found] = step[link] * np.where(parent[found] < child[found], 1, -1)[:, None]
    while (parent != parent[parent]).any():
        steps += steps[parent]
        parent = parent[parent]
    return steps, patch


def _fit_rss(y: np.ndarray, expected: np.ndarray) -> float:
    """Residual sum of squares of y = a + b * expected with b >= 0."""
    e = expected - expected.mean()
    var = float(e @ e)
    b = max(0.0, float(e @ (y - y.mean())) / var) if var > 0 else 0.0
    r = y - y.mean() - b * e
    return float(r @ r)


def _class_rss(y: np.ndarray, classes: np.ndarray) -> tuple[float, int]:
    """Residual sum of squares around each class's mean, and the number of classes."""
    _, inverse, counts = np.unique(classes, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=y) / counts
    r = y - means[inverse]
    return float(r @ r), len(counts)


#: Patches (neighbour-connected pieces of a group) with fewer columns than this are left out of the
#: pattern test: their placement on the repeat cell rests on a handful of intensities.
MIN_PATCH_COLUMNS = 10
#: Sites whose expected intensities differ by more than this (of the brightest) must measure in that order.
ORDER_MARGIN = 0.1


def _explains(y, site, steps, patch, grid: ColumnGrid, max_bic: float, floor: float) -> bool:
    """Whether the grid's sites account for the pattern: no structure beyond them, brightness in their order.

    Structure: one mean per kind of site (sites of one name, e.g. the two I sites of CsPbI3 [001],
    are alike) and patch is compared with one mean per site, patch and two-step grid parity (alike
    sites that measure differently, or a checkerboard or stripes the grid lacks); the finer
    partition must not win by more than ``max_bic``. Order: of two kinds whose expected intensities
    differ by more than :data:`ORDER_MARGIN`, the brighter must measure brighter by more than two
    standard errors of the difference of their means. The intensity
    ratios themselves are not tested here (measured intensities of faint columns are not
    proportional to the projected-Z estimate); they count in the phase's score.
    """
    ids, counts = np.unique(patch, return_counts=True)
    big = np.isin(patch, ids[counts >= MIN_PATCH_COLUMNS])
    if big.sum() >= MIN_PATCH_COLUMNS:  # a patch of a few columns is placed on the cell by chance: left out
        y, site, steps, patch = y[big], site[big], steps[big], patch[big]
    n = len(y)
    names, kind = np.unique(grid.names, return_inverse=True)
    coarse_rss, k_coarse = _class_rss(y, kind[site] + patch * 1000)
    fine_rss, k_fine = _class_rss(y, site * 4 + (steps[:, 0] % 2) * 2 + steps[:, 1] % 2 + patch * 1000)
    bic_coarse = n * np.log(max(coarse_rss, floor) / n) + k_coarse * np.log(n)
    bic_fine = n * np.log(max(fine_rss, floor) / n) + k_fine * np.log(n)
    if bic_coarse - bic_fine > max_bic:
        return False
    present = np.unique(kind[site])
    groups = [y[kind[site] == k] for k in present]
    means = np.array([g.mean() for g in groups])
    var_of_mean = np.array([g.var(ddof=1) / len(g) if len(g) > 1 else np.inf for g in groups])
    expected = np.array([grid.relative_intensity[kind == k].max() for k in present])
    brighter = expected[:, None] - expected[None, :] > ORDER_MARGIN
    significant = means[:, None] - means[None, :] > 2 * np.sqrt(var_of_mean[:, None] + var_of_mean[None, :])
    return bool(np.all(significant[brighter]))


def _phase_fit(y, steps, patch, vectors_px, phase: Phase, grid: ColumnGrid, pixel_size_nm, config) -> PhaseFit | None:
    """The best orientation and placement of one grid on the columns, or None if its shape does not match."""
    n = len(y)
    floor = 1e-12 * max(float(y @ y), 1.0)
    best = None
    # shifted[t][s]: the site that site s becomes when the cell is placed t sites further
    shifted = [grid.site_index(grid.site_steps + t) for t in grid.site_steps]
    for u, px_per_nm in grid_orientations(vectors_px, grid, tolerance=config.shape_tolerance):
        implied = 1.0 / px_per_nm
        error = None if pixel_size_nm is None else pixel_size_nm / implied - 1.0
        if error is not None and abs(error) > config.max_spacing_error:
            continue
        phase_steps = steps @ u
        base = grid.site_index(phase_steps)
        site = np.zeros(n, int)
        rss = 0.0
        for k in np.unique(patch):  # each patch is placed on its own (antiphase domains)
            sel = patch == k
            options = [moved[base[sel]] for moved in shifted]
            fits = [_fit_rss(y[sel], grid.relative_intensity[o]) for o in options]
            site[sel] = options[int(np.argmin(fits))]
            rss += min(fits)
        k_params = 1 if np.ptp(grid.relative_intensity) == 0 else 2
        pattern = -0.5 * (n * np.log(max(rss, floor) / n) + k_params * np.log(n))
        explains = _explains(y, site, steps, patch, grid, config.unexplained_bic, floor)
        score = pattern - (0.0 if error is None else 0.5 * (np.log1p(error) / config.spacing_sd) ** 2)
        fit = PhaseFit(
            phase=phase.name,
            grid=grid,
            site=grid.names[site],
            score=float(score),
            explains=explains,
            implied_pixel_size_nm=implied,
            spacing_error=error,
        )
        if best is None or fit.score > best.score:
            best = fit
    return best


def explain_columns(
    rc: np.ndarray,
    intensity: np.ndarray,
    vectors_px: np.ndarray,
    library: dict[str, Phase],
    *,
    pixel_size_nm: float | None,
    config,
    site_intensities: dict[str, dict[str, float]] | None = None,
) -> list[PhaseFit]:
    """Every library phase's best explanation of a group of columns, best first.

    Parameters
    ----------
    rc : (N, 2) ndarray
        Column positions (row, col) [px].
    intensity : (N,) ndarray
        Column intensities (raw counts).
    vectors_px : (2, 2) ndarray
        The group's lattice vectors (rows) [px].
    library : dict of str to Phase
        The phases to try.
    pixel_size_nm : float or None
        The image's calibration; None tries every scale.
    config : PhasesConfig
        Tolerances (see :class:`~stem_pipeline.phases.config.PhasesConfig`).
    site_intensities : dict, optional
        {phase: {site: relative intensity}} replacing the projected-Z estimate
        of those phases (e.g. abTEM's, :func:`~stem_pipeline.phases.simulated.simulated_site_intensities`);
        a site it does not name counts as 0.

    Returns
    -------
    list of PhaseFit
        Phases whose grid matches in shape (and, calibrated, in spacing
        within ``config.max_spacing_error``), best score first; ``probability``
        is each one's share of the likelihoods of those that explain the pattern
        (0 for those that do not).
    """
    y = np.asarray(intensity, float)
    steps, patch = index_columns(np.asarray(rc, float), np.asarray(vectors_px, float))
    fits = []
    for phase in library.values():
        grids = phase.grids()
        if site_intensities and phase.name in site_intensities:
            given = site_intensities[phase.name]
            grids = [
                dataclasses.replace(g, relative_intensity=np.array([given.get(str(n), 0.0) for n in g.names]))
                for g in grids
            ]
        tried = (_phase_fit(y, steps, patch, vectors_px, phase, g, pixel_size_nm, config) for g in grids)
        candidates = [c for c in tried if c is not None]
        if candidates:
            fits.append(max(candidates, key=lambda c: c.score))
    fits.sort(key=lambda f: -f.score)
    scores = np.array([f.score if f.explains else -np.inf for f in fits])
    if np.isfinite(scores).any():
        weights = np.exp(scores - scores[np.isfinite(scores)].max())
        fits = [dataclasses.replace(f, probability=float(w / weights.sum())) for f, w in zip(fits, weights)]
    return fits
