"""Constants of the 95 % intervals the package reports (one value, not 1.96 here and 1.959964 there)."""

from __future__ import annotations

from scipy.special import ndtri

#: Standard-normal quantile of a two-sided 95 % interval: a normal 95 % interval is +-Z95 sd.
Z95 = float(ndtri(0.975))
#: Width of a normal 95 % interval in standard deviations: an interval's sd is its width / WIDTH95_SD.
WIDTH95_SD = 2.0 * Z95
