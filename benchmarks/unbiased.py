"""Benchmark of the bias of the uniform fraction through the default run, against the domain area.

Every dot is a synthetic mixed dot (``stem_pipeline.synthetic.make_dot``) analysed by
``pipeline.analyze`` with its defaults; the truth is the area of each phase's domains inside
the dot outline (``SyntheticDot.region_map``). The dots vary in size (12-16 nm, and 8-11 nm),
rotation, domain size (2-7 nm), uniform share, thickness gradient (0-40 %) and dose
(30 / 100 / 400 counts at a bright column).

Seeds. Tuning (chose the defaults of issue 14: the boundary rule, ``ClassifyConfig.boundary_rounds``;
not reported here): seeds 9000-9059 of a similar draw (12-16 nm dots, a third of 9030-9059 8-11 nm; domains
2.5-6 nm; uniform share 0.2-0.8; gradients 0-30 %). The crystal edge at the diffuse intensity step
(``ClassifyConfig.edge_from_intensity``) was judged, and the interval's terms (``boundary_sd_spacings``,
``boundary_noise_spacings``, ``edge_sd_spacings``) set, on seeds 30000-30139 of this draw (``TUNING_SEEDS``, 420
dots at the three doses; :data:`TUNING`); the faint maxima beyond the crystal's edge were found, and the interval
re-set after dropping them, on the same tuning dots (:data:`FAINT`); the mixture's small domains kept through the
random field and the interval's noise term re-set on them and on 60 more tuning dots, seeds 57000-57059
(:data:`SMALL_DOMAINS_KEPT`); the superlattice scan with the crystal edge left out of it on seeds 30000-30139 and
57000-57059 (:data:`SCAN_EDGE`). Held out: ``HELD_OUT_SEEDS`` (82000-82119 per dose), run once with the final
defaults. The earlier held-out runs (72000-72119 and 62000-62119, 52000-52119 of the earlier rounds, seeds 42000-42119 and 32000-32059 of the
previous round, 14000-14035, 16000-16035, 32000-32059 with older code, 36000-36059 of the unmerged ``edge``
branch) are recorded in the results as they came out. ``tests/test_unbiased.py`` uses seeds 15000-15005. The
oracle page (``--oracle``) was recorded on seeds 32000-32059 (``ORACLE_SEEDS``).

Usage: ``python benchmarks/unbiased.py [--quick]``; writes ``benchmarks/results/unbiased.md`` and
``benchmarks/results/unbiased.png`` (signed error against dose, domain size and boundary
length per area); ``--quick`` runs 4 dots per dose and writes nothing. ``--oracle`` measures the information
floor of column-based estimates on the same dots (true columns, labels and outline, alone and mixed with the
run's: :func:`oracle_no_image`, :func:`oracle_mixed`) and writes ``benchmarks/results/unbiased_oracle.md``.
"""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from stem_pipeline._types import REGION_ORDERED, REGION_OUTSIDE, REGION_UNIFORM
from stem_pipeline.classify import boundary_length_px, hull_mask, region_map_from_columns
from stem_pipeline.pipeline import analyze
from stem_pipeline.synthetic import make_dot, region_uniform_fraction

DOSES = (30.0, 100.0, 400.0)
HELD_OUT_SEEDS = range(82000, 82120)
#: The held-out seeds the oracle page (``--oracle``) was recorded on.
ORACLE_SEEDS = range(32000, 32060)
#: Seeds the defaults were re-set on (not reported in the results table); the oracle's no-image estimates run on them.
TUNING_SEEDS = range(30000, 30140)
#: Largest error allowed (issue 14): 0.02 at >= 100 counts, 0.04 at 30.
LIMITS = {30.0: 0.04, 100.0: 0.02, 400.0: 0.02}


#: The tuning dots (seeds 30000-30139, 140 per dose) through this code with each crystal-edge rule; the interval's
#: coverage and mean width (pure dots keep their one-phase interval) with the terms set before and after this round.
TUNING = """Tuning dots (seeds 30000-30139, 140 per dose; not held out): the crystal edge at the diffuse intensity step
(``ClassifyConfig.edge_from_intensity``, the image less its fitted columns smoothed over a spacing and cut half-way
between crystal and carbon) against the columns' hull grown by half a spacing, both with the column heights. The
interval terms are ``boundary_sd_spacings``, ``boundary_noise_spacings``, ``edge_sd_spacings``.

| crystal edge | interval terms | dose [counts] | dots | mean signed error | sd | largest error | over the limit | coverage | mean width | sd inside both outlines | sd of the edge part |
|---|---|---|---|---|---|---|---|---|---|---|---|
| columns' hull + 0.5 spacing | 0.12, -, 0.29 | 30 | 140 | -0.0000 | 0.0135 | 0.0338 | 0 | 0.96 | 0.067 | 0.0088 | 0.0094 |
| columns' hull + 0.5 spacing | 0.12, -, 0.29 | 100 | 140 | -0.0002 | 0.0099 | 0.0259 | 4 | 0.96 | 0.048 | 0.0048 | 0.0084 |
| columns' hull + 0.5 spacing | 0.12, -, 0.29 | 400 | 140 | +0.0002 | 0.0089 | 0.0252 | 3 | 0.95 | 0.041 | 0.0028 | 0.0082 |
| diffuse step | 0.11, 1.5, 0.15 | 30 | 140 | -0.0013 | 0.0112 | 0.0324 | 0 | 0.98 | 0.067 | 0.0091 | 0.0056 |
| diffuse step | 0.11, 1.5, 0.15 | 100 | 140 | -0.0014 | 0.0063 | 0.0251 | 2 | 0.99 | 0.049 | 0.0051 | 0.0042 |
| diffuse step | 0.11, 1.5, 0.15 | 400 | 140 | -0.0011 | 0.0043 | 0.0185 | 0 | 0.99 | 0.041 | 0.0030 | 0.0031 |
| diffuse step | 0.05, 1.6, 0.06 (default) | 30 | 140 | -0.0013 | 0.0112 | 0.0324 | 0 | 0.96 | 0.063 | 0.0091 | 0.0056 |
| diffuse step | 0.05, 1.6, 0.06 (default) | 100 | 140 | -0.0014 | 0.0063 | 0.0251 | 2 | 0.94 | 0.039 | 0.0051 | 0.0042 |
| diffuse step | 0.05, 1.6, 0.06 (default) | 400 | 140 | -0.0011 | 0.0043 | 0.0185 | 0 | 0.96 | 0.027 | 0.0030 | 0.0031 |

With the heights' labels the crystal edge had become the larger part of the error; the diffuse step shrinks it by
40-60 % (sd 0.0094 / 0.0084 / 0.0082 -> 0.0056 / 0.0042 / 0.0031) and the error sd by 17-52 %, so it is the
default now (it was not merged with the volume labels). The interval terms set before it (0.11, 1.5, 0.15, with
the volumes) covered 0.98-0.99: re-set on these dots to 0.05, 1.6, 0.06 (coverage 0.96 / 0.94 / 0.96; a grid of
boundary 0-0.2, noise 0-2, edge 0.05-0.3 spacing; neighbouring values within 0.01-0.02 of these coverages). The
boundary term now carries mostly the noise: the labels' errors at domain boundaries grow with it."""

#: What the tuning dots (seeds 30000-30139, 420 dots) showed about the errors left; measured, not tuned on.
DIAGNOSIS = """Where the error came from before the edge at the diffuse step (tuning dots 30000-30139, with the volumes). The same dot at the three
doses errs alike (correlation 0.82 between 30 and 100 counts, 0.87 between 100 and 400): most of the error is the
dot's geometry, not the noise. (1) The crystal edge: sd 0.008-0.010 at every dose, as the interval's edge term
predicts (0.009); it alone puts the largest of 60 errors near 0.02. (2) Labels at domain boundaries: the majority
phase takes columns of the minority's small domains (dot 30058 at 100 counts, 75 % uniform, 2 nm domains: 58
ordered columns called uniform against 14 the other way, +0.032). About half of the ~350 columns the boundary pass
re-decides have no evidence of their own (a phase has too few columns near to predict them: the corners of small
domains), so the Potts coupling decides them, and it favours the phase around them. Predicting such columns from
a 1.6x wider neighbourhood made the error larger (sd 0.0107 -> 0.0117 at 30 counts); a coupling to the 8 nearest
columns only did not change it at 30 counts (0.0106) and lowered it at 100 (0.0098 -> 0.0086) with a larger mean
(+0.0033 at 30): neither was adopted. (3) Noise: the error changes between doses by 0.008 rms (30 against 100
counts) and 0.006 (400 against 100), which the column-label term of the interval (sd ~0.002, from posteriors
after the random field) does not carry; the interval under-covers at 30 counts."""

#: The search for small uniform domains in a dot the mixture calls all ordered, measured on the tuning dots.
SMALL_DOMAINS = """Small uniform domains in ordered dots (``ClassifyConfig.uniform_minority_threshold`` and
``uniform_minority_min_columns``, a cluster of low superlattice amplitude): set on tuning dots (fields, seeds
20100-20107; pure dots, seeds 40000-40069). It changed none of the 420 tuning dots of this draw (30000-30139;
uniform shares 0.15-0.85: the mixture already finds two classes) nor any of 204 pure dots; it found the one
missed 23-column domain at a dot's edge among the field tuning dots (0 -> 0.027 of 0.041 at 100 and 400 counts).
The table above is the run with it."""

#: The interval terms of the code the held-out table was measured with (``boundary_sd_spacings``,
#: ``boundary_noise_spacings`` with ``boundary_noise_power``, ``edge_sd_spacings``; :data:`SMALL_DOMAINS_KEPT`).
INTERVAL_TERMS = "0.02 / 7.5 (squared noise) / 0.12"

#: What this round found on the tuning dots and changed (faint maxima beyond the crystal's edge).
FAINT = """This round (2026-11-29, evening): the largest errors. Diagnosed on the tuning dots only (seeds 30000-30139, all
140 per dose re-run and compared with the generator's truth per dot: its region map, and its columns matched to
the found ones within 0.35 spacing). Two causes:

1. **Faint maxima beyond the crystal's edge** (fixed). The detector kept noise maxima on grid sites 0.6-1.1
   spacing past the dot's edge (its minimum-filter background there is the carbon's): 1,118 columns on the 140
   dots at 30 counts (8 per dot), 291 at 100; 64-69 % of them labelled uniform (no alternation). Their fitted
   heights are noise (median 0.13 of the median column height, 90 % below 0.22; the lowest true column 0.35).
   They widened the crystal (the diffuse outline contains the columns' hull) by a band along the edges they sit
   on, mostly uniform, and pulled the edge columns next to them towards uniform: dot 30057 (pure ordered, truth
   0.000) read +0.029 with an interval [0.020, 0.039] that missed the truth (23 ordered edge columns called
   uniform beside 11 such maxima); 30025 +0.019 (a 7,485-pixel band, 6,214 of it uniform); 30015 at 100 counts
   +0.019 (2,626 pixels, 2,120 uniform). Now (``pipeline._crystal_outline``,
   ``columns.fitted_above_threshold``): a column whose fitted height is below the detector's own threshold
   (``ColumnsConfig.threshold_fraction``, 0.2 of its lattice's 90th percentile; no new constant) is left out of
   the hull the diffuse edge is searched from, and dropped where it lies beyond that edge. On the tuning dots:
   columns beyond the dot 1,118 -> 340 at 30 counts, 291 -> 92 at 100, 41 left at 400; true columns found the
   same (217,814 / 217,740 at 30 / 100); 30057 +0.029 -> +0.014, 30025 +0.019 -> +0.006, 30015 +0.019 ->
   +0.002. Error over the 140 dots per dose (30 / 100 / 400 counts): mean -0.0013 / -0.0014 / -0.0011 ->
   -0.0024 / -0.0018 / -0.0013; sd 0.0112 / 0.0063 / 0.0043 -> 0.0092 / 0.0057 / 0.0040; largest 0.0324 /
   0.0251 / 0.0185 -> 0.0288 / 0.0251 / 0.0172; dots over 0.02: 14 / 2 / 0 -> 9 / 2 / 0. With the edge error
   smaller the interval terms set before (0.05, 1.6, 0.06) covered 0.986 / 0.971 / 0.979: re-set on these dots
   to 0.02 / 1.0 / 0.12 (``ClassifyConfig.boundary_sd_spacings``, ``boundary_noise_spacings``,
   ``edge_sd_spacings``): 0.950 / 0.964 / 0.964, mean width 0.044 / 0.030 / 0.024 (a grid of boundary 0-0.2,
   noise 0-2, edge 0-0.2 spacing; chosen for 0.95-0.96 at every dose, not the narrowest, 0.943 / 0.950 / 0.943
   at 0.02 / 0.9 / 0.10). On the robustness set's real images (``shared/realdata``): none dropped in the CsPbBr3
   image nor the Au particle; 8 of 178 in the Pb particle, 7 of them on StatSTEM's reference columns of its
   faint rim, which lies beyond the diffuse edge the pipeline draws (recall against the reference 177 -> 170 of
   219 there); a height rule alone (without the edge) would have dropped 2 of the CsPbBr3 image's too.
2. **Labels at small domains** (not fixed; what the tail is now). The largest errors left are the majority
   phase taking a small minority domain's columns, inside the true outline: at 30 counts 30033 +0.029 (89 %
   uniform, 2.9 nm domains: 22 of the ordered minority's columns called uniform, +0.030 inside the true
   outline), 30130 +0.028 (38 ordered called uniform), 30003 -0.026 (29 uniform called ordered), 30058 +0.024;
   at 100 counts 30116 -0.025 (31 columns of a small uniform domain at the dot's corner called ordered, 14 true
   columns not found) and 30058 +0.021 (29). Traced per stage on 30033: the mixture calls 20 of the domain's
   columns uniform (with 79 uniform columns called ordered), the random field 26, the first boundary round 11,
   the second (the default stop) 22, a third 7: the rounds swing with period 2, and on this dot the stop falls
   on the bad phase; over all tuning dots at 30 counts (with the faint maxima) 3 rounds gave mean -0.0027,
   largest 0.036 (worse), 1 round largest 0.058. No change of the label passes was found in the time; this is where the 30-count tail
   (held out: 0.043 before this round) comes from."""

#: A test after this round on the tuning dots (keeping the mixture's small domains through the random field), not adopted.
SMALL_MIXTURE_DOMAINS = """Tried after this round (2026-11-29, late evening; not adopted, nothing in the classifier changed): keep the
mixture's own labels on its small domains, which the random field (a ~20-column neighbourhood) erases or shrinks
as it does a small domain of the cluster search's (``small_domain`` in ``classify._core._ordered_posterior``).
Tuning dots only (seeds 30000-30139, 140 per dose), on the classification inputs of a default run (columns
checked equal to a fresh ``pipeline.analyze`` on 30033 at 30 and 30116 at 100 counts; the errors of the
unchanged classifier reproduce the cached run's on every dot to 1e-4, and item 1's numbers), the current interval terms. A small domain:
a connected group (neighbours within 1.5 spacings) of columns of one mixture label, 10-40 columns; its columns
keep the mixture's posterior after the random field, before the boundary rounds. Error of the uniform fraction,
before -> after (mean / sd / largest / dots over 0.02 / coverage): at 100 counts -0.0018 / 0.0057 / 0.0251 / 2 /
0.964 -> -0.0025 / 0.0042 / 0.0140 / 0 / 0.993 (30116 -0.025 -> -0.014, 30058 +0.021 -> +0.003, 30001 +0.017
-> +0.004, 30097 +0.014 -> -0.003; 20 dots changed); at 30 counts -0.0024 / 0.0092 / 0.0288 / 9 / 0.950 ->
-0.0024 / 0.0109 / 0.0710 / 9 / 0.950: the 30-count tail dots (30033, 30130, 30003, 30116) did not move, and the
pure ordered dot 30090 went +0.017 -> +0.071, its edge columns (neighbourhoods 63-76 % complete, R^2 about -0.08)
forming four 'uniform' groups of 10-18 columns that the random field had rightly removed; at 400 counts mean /
sd / largest -0.0013 / 0.0040 / 0.0172 -> -0.0014 / 0.0039 / 0.0172. Variants: groups of 20-40 or 20-60
columns changed nothing at 100 counts (the groups that helped there have 10-17 columns) and nothing of note at
30; ordered groups only: 100 counts -0.0026 / 0.0045 / 0.0251 (30116's is a uniform group) / 1 / 0.986, 30
counts -0.0029 / 0.0090 / 0.0288 / 8 / 0.950; the mean of the two posteriors on 10-40-column groups: 30 counts
largest 0.0646 (30090), 100 counts 0.0159. So at 100 counts the idea clears the tail and lowers the sd by a
quarter, but the noise at 30 counts makes groups of the same size at crystal edges, the mean moves 0.0007 towards
ordered, and the interval (set for the errors before) then covers 0.99 at 100 counts, outside 0.93-0.97. Adopting
it would need a noise-dependent group size (or an edge test) and the interval terms re-set, then a fresh
held-out run; and one set of terms does not fit both doses then: with the groups kept, the noise term
(``boundary_noise_spacings``) 1.0 -> 0.7 / 0.5 brings 100 counts to coverage 0.986 / 0.964 (width 0.026 /
0.024), while 30 counts (its labels as before, the groups switched off there by the noise) falls to 0.907 / 0.871. Not done in the time."""

#: This round (issue 14, sixth): the mixture's small domains kept, the interval's noise term re-set; tuning dots only.
SMALL_DOMAINS_KEPT = """This round (2026-11-30, branch h14; chosen on tuning dots only, then scored once on the held-out seeds
62000-62119 of the table above, on the merged code): the largest
error at 100 counts. Diagnosed on the tuning dots 30000-30139 (classification inputs of a default run cached and the
classifier re-run; the unchanged classifier reproduces the run on every dot): the dots beyond 0.013 at 100 counts
(30001 +0.017, 30040 +0.015, 30058 +0.021, 30097 +0.014, 30116 -0.025) are each a whole small minority domain of
16-26 columns lost inside the true outline (e.g. 30058: 25 of a 26-column ordered domain's columns called uniform;
30001: 17 of 19); not the crystal edge (edge part within 0.006), not faint columns. The mixture of the order
parameter sees them; the random field's ~20-column neighbourhood erases them. The earlier test (above: keep every
10-40-column domain of the mixture) also kept false domains: of the mixture's 10-40-column domains at 100 counts, 24
of 70 were mostly wrong, and the ordered ones among them had a high R^2 (0.5-0.7, uniform columns beside ordered ones) but
a low superlattice amplitude (0.13-0.30 of the ordered interior level; the right ones 0.76-1.40), the uniform ones
(edge columns of ordered domains, like 30090's at 30 counts) 0.53-0.79 (the right ones 0.09-0.47). Changed
(``classify.small_domains``, ``ClassifyConfig.small_domain_min_columns`` 10 / ``small_domain_max_columns`` 40): a
10-40-column domain of the mixture keeps the mixture's posterior through the random field only where its mean
amplitude lies on its label's side of ``uniform_minority_threshold`` (0.5) times the ordered level, the split the
small-uniform-domain search already used; no new threshold. Then the interval: with the tail gone at 100 counts the
terms before covered 0.950 / 0.993 / 0.971 at 30 / 100 / 400 counts, and no linear noise term fitted all three
doses (best 0.95 +- 0.03 on a grid); the boundary shift now grows with the square of the pipeline's own noise
measurement (``boundary_noise_power`` 2, ``boundary_noise_spacings`` 1.0 -> 7.5; ``boundary_sd_spacings`` 0.02 and
``edge_sd_spacings`` 0.12 kept), the middle of the plateau 7-8 of terms within 0.935-0.965 at every dose.

| tuning dots | code | dose [counts] | dots | mean signed error | sd | largest error | over the limit | coverage | mean width | sd inside both outlines | sd of the edge part |
|---|---|---|---|---|---|---|---|---|---|---|---|
| 30000-30139 | before | 30 | 140 | -0.0024 | 0.0092 | 0.0288 | 0 | 0.950 | 0.044 | - | - |
| 30000-30139 | before | 100 | 140 | -0.0018 | 0.0057 | 0.0251 | 2 | 0.964 | 0.030 | - | - |
| 30000-30139 | before | 400 | 140 | -0.0013 | 0.0041 | 0.0171 | 0 | 0.964 | 0.024 | - | - |
| 30000-30139 | now | 30 | 140 | -0.0028 | 0.0090 | 0.0287 | 0 | 0.943 | 0.043 | 0.0082 | 0.0033 |
| 30000-30139 | now | 100 | 140 | -0.0025 | 0.0042 | 0.0140 | 0 | 0.964 | 0.025 | 0.0034 | 0.0029 |
| 30000-30139 | now | 400 | 140 | -0.0014 | 0.0039 | 0.0171 | 0 | 0.943 | 0.021 | 0.0026 | 0.0028 |
| 57000-57059 | before | 30 | 60 | +0.0016 | 0.0120 | 0.0608 | 2 | 0.950 | 0.039 | 0.0112 | 0.0038 |
| 57000-57059 | before | 100 | 60 | +0.0005 | 0.0077 | 0.0379 | 2 | 0.967 | 0.026 | 0.0072 | 0.0029 |
| 57000-57059 | before | 400 | 60 | +0.0011 | 0.0070 | 0.0347 | 2 | 0.933 | 0.021 | 0.0065 | 0.0030 |
| 57000-57059 | now | 30 | 60 | +0.0002 | 0.0074 | 0.0243 | 0 | 0.983 | 0.038 | 0.0065 | 0.0037 |
| 57000-57059 | now | 100 | 60 | +0.0001 | 0.0067 | 0.0304 | 2 | 0.950 | 0.022 | 0.0061 | 0.0029 |
| 57000-57059 | now | 400 | 60 | +0.0002 | 0.0051 | 0.0218 | 1 | 0.933 | 0.019 | 0.0040 | 0.0030 |

The seeds 57000-57059 were drawn after the change was chosen on 30000-30139 (the interval's noise term was set on
30000-30139 alone); on them the tail at 100 and 400 counts is not cleared: 57048 (+0.030 at 100 counts, 729
columns, 89 % uniform) has a 24-column ordered domain of which the mixture itself calls 6 columns (R^2 0.21,
amplitude 0.59 of the ordered level), the random field none; 57007 (+0.025 / +0.022 at 100 / 400 counts, 88 %
uniform, 2.3 nm domains) loses ordered domains of 11 and 13 columns the same way (mixture 2-6 of their columns). That
is the local fit's detection limit (its 2.6-spacing neighbourhood sees mostly uniform columns), not the random
field. So issue 14's largest error (0.02 at 100 counts and above) is not met on these tuning dots; the held-out
seeds (table above) were then run once as the record of the merged code: 1 of 120 dots over 0.02 at 100 counts
(0.0244), none at 30 or 400 counts. Tried and not adopted: uniform-labelled clusters of 10-40 columns with an
amplitude above the split and no ordered column within 1.5 (or 2.3) spacings, started as weakly ordered for the
boundary rounds: 57048 cleared (57000-57059 at 100 counts largest 0.025, sd 0.0053), 57007 not (0.023-0.025); with
10 columns the 30-count tuning dots 30000-30139 got worse (largest 0.029 -> 0.036-0.039, false domains), with 14
unchanged there, but on issue 13's ordered-minority dots (``benchmarks/minority.py``, seeds 51000-51079) it grew the
true domains (sum of errors at 100 counts 0.899 -> 0.945-0.953; 51068 +0.002 -> -0.024). Issue 13's minority dots
with the change adopted: no pure dot changed (60 uniform, 20 ordered per dose); ordered minorities sum of errors
1.601 / 0.908 / 0.692 -> 1.606 / 0.899 / 0.694 at 30 / 100 / 400 counts, largest the same (0.064 / 0.054 / 0.035);
uniform minorities 0.289 / 0.185 / 0.160 -> 0.277 / 0.179 / 0.143; their interval coverage (not in 0.93-0.97 before
either: a single small domain is the interval's hardest case) 0.84 / 0.88 / 0.84 -> 0.82 / 0.85 / 0.75 for ordered
minorities, 0.72 / 0.85 / 0.80 -> 0.75 / 0.82 / 0.72 for uniform ones: the narrower interval at 400 counts."""

#: The previous round's held-out runs (seeds 42000-42119 and 32000-32059), kept as they came out.
PREVIOUS_ROUND = """Previous round (before faint columns beyond the edge were dropped; main 00d305f): uniform fraction through `pipeline.analyze` (defaults) on 120 held-out mixed dots per dose (seeds 42000-42119; a third 8-11 nm, the others 12-16 nm; rotation 0-90 deg; domains 2-7 nm; uniform share 0.15-0.85; thickness gradient 0-40 %), against the truth of issue 14: the area of each phase's domains inside the dot outline. The code: column heights as the classification intensity, the crystal edge at the diffuse intensity step, interval terms 0.05 / 1.6 / 0.06 (boundary, its growth with the noise, edge) set on tuning seeds 30000-30139 (below); none of these seeds was looked at before, and they were scored once. Plot: `results/unbiased.png`.

| dose [counts] | dots | with fractions | mean signed error | sd | largest error | limit | coverage of the truth | mean width | median width | sd inside both outlines | sd of the edge part |
|---|---|---|---|---|---|---|---|---|---|---|---|
| 30 | 120 | 120 | -0.0017 | 0.0108 | 0.0429 | 0.04 | 0.97 | 0.056 | 0.049 | 0.0092 | 0.0052 |
| 100 | 120 | 120 | -0.0015 | 0.0055 | 0.0176 | 0.02 | 0.97 | 0.036 | 0.030 | 0.0044 | 0.0031 |
| 400 | 120 | 120 | -0.0002 | 0.0051 | 0.0175 | 0.02 | 0.93 | 0.025 | 0.020 | 0.0039 | 0.0029 |

Coverage over all 360 dots with fractions: 0.956.

The same held-out dots through the final code of 2026-11-29 (main 3b4fe29: with `MIN_INTERIOR_COLUMNS` and `hull_edge_sd_spacings` merged after the run above; a confirmation, nothing chosen on it): the table is the same to the printed digits.

The previous round's held-out dots (seeds 32000-32059, 60 per dose), re-run with the same code:

| dose [counts] | dots | with fractions | mean signed error | sd | largest error | limit | coverage of the truth | mean width | median width | sd inside both outlines | sd of the edge part |
|---|---|---|---|---|---|---|---|---|---|---|---|
| 30 | 60 | 60 | -0.0023 | 0.0103 | 0.0391 | 0.04 | 0.98 | 0.051 | 0.044 | 0.0096 | 0.0049 |
| 100 | 60 | 60 | -0.0017 | 0.0071 | 0.0251 | 0.02 | 0.93 | 0.030 | 0.026 | 0.0058 | 0.0037 |
| 400 | 60 | 60 | -0.0011 | 0.0049 | 0.0161 | 0.02 | 0.95 | 0.020 | 0.017 | 0.0040 | 0.0028 |

Coverage over all 180 dots with fractions: 0.956."""

#: The earlier held-out runs (same draw), kept as they came out.
EARLIER_RUNS = """Fourth held-out run (seeds 32000-32059, 60 dots per dose), column heights, crystal edge from the columns'
hull grown by half a spacing, interval terms 0.12 / - / 0.29 (main before this round):

| dose [counts] | dots | mean signed error | sd | largest error | coverage | mean width | sd inside both outlines | sd of the edge part |
|---|---|---|---|---|---|---|---|---|
| 30 | 60 | -0.0000 | 0.0116 | 0.0315 | 0.93 | 0.046 | 0.0094 | 0.0088 |
| 100 | 60 | +0.0005 | 0.0091 | 0.0224 | 0.93 | 0.044 | 0.0058 | 0.0081 |
| 400 | 60 | +0.0009 | 0.0081 | 0.0167 | 0.98 | 0.043 | 0.0038 | 0.0076 |

Coverage over all 180: 0.950. With the same code, fresh seeds 38000-38059 (scored once, ``results/labels.md``):
largest 0.049 / 0.029 / 0.024, coverage 0.93 / 0.95 / 0.97. The unmerged ``edge`` branch (edge at the diffuse
step, volume labels, interval terms 0.11 / 1.5 / 0.15) on seeds 36000-36059: mean -0.0009 / -0.0003 / -0.0010,
largest 0.034 / 0.024 / 0.017, coverage 0.98 / 1.00 / 1.00; on 32000-32059: largest 0.036 / 0.045 / 0.043,
coverage 0.98 / 0.93 / 0.93.

Second held-out run (seeds 16000-16035, 36 dots per dose), with ``boundary_sd_spacings`` 0.08 (set on
165 tuning dots, seeds 9000-9059):

| dose [counts] | dots | mean signed error | sd | largest error | coverage | mean width |
|---|---|---|---|---|---|---|
| 30 | 36 | +0.0045 | 0.0150 | 0.0326 | 0.83 | 0.049 |
| 100 | 36 | +0.0022 | 0.0102 | 0.0224 | 0.94 | 0.047 |
| 400 | 36 | +0.0026 | 0.0103 | 0.0208 | 0.94 | 0.047 |

Coverage over all 108: 0.907.

First held-out run (seeds 14000-14035, 36 dots per dose), with the same classifier but an interval
without the crystal-edge term and a boundary shift of 0.16 spacings:

| dose [counts] | dots | mean signed error | sd | largest error | coverage | mean width |
|---|---|---|---|---|---|---|
| 30 | 36 | +0.0013 | 0.0125 | 0.0341 | 0.83 | 0.044 |
| 100 | 36 | +0.0008 | 0.0108 | 0.0294 | 0.89 | 0.043 |
| 400 | 36 | +0.0005 | 0.0098 | 0.0392 | 0.92 | 0.042 |

Coverage over all 108: 0.880. The intervals were too narrow on the small dots, where the placement of the
crystal edge (the outermost columns lie 0-1 spacing inside the true edge) weighs most."""


def draw(seed: int, dose: float):
    """One held-out mixed dot: a third of the seeds 8-11 nm, the others 12-16 nm; domains 2-7 nm,
    uniform share 0.15-0.85, thickness gradients 0-40 %."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(8, 11) if seed % 3 == 0 else rng.uniform(12, 16)
    side = int(np.ceil((size * np.sqrt(2) + 1.5) / 0.035 / 16)) * 16
    rotation = rng.uniform(0, 90)
    domain_nm = rng.uniform(2, 7)
    dot = make_dot(
        (side, side),
        dot_size_nm=size,
        rotation_deg=rotation,
        domain_size_nm=domain_nm,
        uniform_fraction=rng.uniform(0.15, 0.85),
        thickness_gradient=rng.uniform(0, 0.4),
        dose=dose,
        rng=rng,
    )
    return dot, float(domain_nm)


def measure(dot, res) -> dict:
    """Signed error, interval and truth descriptors of one dot through the default run (``res``)."""
    truth = dot.uniform_fraction
    inside = dot.region_map != REGION_OUTSIDE
    area_nm2 = inside.sum() * dot.pixel_size_nm**2
    row = dict(
        truth=truth,
        boundary_per_area=boundary_length_px(dot.region_map) * dot.pixel_size_nm / area_nm2,
        area_nm2=area_nm2,
    )
    if res.fractions is None or res.labels is None:
        return {**row, "err": np.nan, "lo": np.nan, "hi": np.nan, "err_inside": np.nan}
    lo, hi = res.fractions.uniform_ci95
    # The error over the pixels inside both outlines (true and measured): labels and domain boundaries only.
    both = inside & (res.labels.region_map != REGION_OUTSIDE)
    err_inside = np.mean(res.labels.region_map[both] == REGION_UNIFORM) - np.mean(
        dot.region_map[both] == REGION_UNIFORM
    )
    return {**row, "err": res.fractions.uniform - truth, "lo": lo, "hi": hi, "err_inside": float(err_inside)}


def run(seeds, *, oracle: bool = False) -> dict[float, list[dict]]:
    """Every seed at every dose through the default run; with ``oracle``, also the column-based estimates of
    :func:`oracle_no_image` (once per seed: the geometry is the same at every dose) and :func:`oracle_mixed`."""
    rows: dict[float, list[dict]] = {}
    no_image: dict[int, dict] = {}
    for dose in DOSES:
        rows[dose] = []
        for seed in seeds:
            dot, domain_nm = draw(seed, dose)
            res = analyze(dot.micrograph())
            row = {**measure(dot, res), "seed": seed, "domain_nm": domain_nm}
            if oracle:
                if seed not in no_image:
                    no_image[seed] = oracle_no_image(dot)
                row.update(no_image[seed], **oracle_mixed(dot, res))
            rows[dose].append(row)
    return rows


def _spacing_px(dot) -> float:
    """The ordered grid's column spacing (a/2) [px]."""
    return float(np.mean(np.linalg.norm(dot.lattice_vectors_px, axis=1)))


def _column_fraction_error(dot, mask: np.ndarray, rc: np.ndarray, label: np.ndarray) -> float:
    """Uniform fraction of the region map the pipeline draws from labelled columns in ``mask``, less the truth."""
    region, _ = region_map_from_columns(mask, rc, label)
    return region_uniform_fraction(region) - dot.uniform_fraction


def _own_spacing_region(mask: np.ndarray, rc: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Region map: each pixel of ``mask`` takes the label of the column nearest in units of its phase's spacing."""
    tree = cKDTree(rc)
    spacing = np.ones(len(rc))
    for phase in np.unique(label):
        own = label == phase
        if own.sum() > 1:
            spacing[own] = np.median(cKDTree(rc[own]).query(rc[own], k=2)[0][:, 1])
    pix = np.argwhere(mask)
    dist, idx = tree.query(pix, k=min(4, len(rc)))
    owner = idx[np.arange(len(pix)), np.argmin(dist / spacing[idx], axis=1)]
    region = np.full(mask.shape, REGION_OUTSIDE, np.int8)
    region[pix[:, 0], pix[:, 1]] = np.where(label[owner] == 1, REGION_UNIFORM, REGION_ORDERED)
    return region


def oracle_no_image(dot) -> dict:
    """Column-based estimates from the true columns and labels, without the image (the same at every dose).

    ``true_all``: the pipeline's region map (:func:`~stem_pipeline.classify.region_map_from_columns`: each pixel
    the label of its nearest column, so a domain boundary lies midway between the last columns of the two
    phases) of the true columns with their true labels inside the true outline; this is also the nearest true
    column rule. ``own_cells``: each pixel inside the true outline to the column nearest in units of the column's
    own phase's spacing (each phase's median nearest-neighbour distance), so a boundary divides the gap between
    the last columns of the two phases in the ratio of their spacings, not at its midpoint.
    ``column_outline``: true columns and labels inside the outline the pipeline draws from columns alone (their
    hull grown by half a spacing, ``ClassifyConfig.hull_margin_spacings``). ``boundary_shift``: the area
    fraction a shift of one spacing of every domain boundary would move (boundary length x spacing / area).
    """
    inside = dot.region_map != REGION_OUTSIDE
    spacing = _spacing_px(dot)
    nearest, _ = region_map_from_columns(inside, dot.rc, dot.label)
    cells = _own_spacing_region(inside, dot.rc, dot.label)
    hull = hull_mask(inside.shape, dot.rc, margin_px=0.5 * spacing)
    return {
        "true_all": region_uniform_fraction(nearest) - dot.uniform_fraction,
        "own_cells": region_uniform_fraction(cells) - dot.uniform_fraction,
        "column_outline": _column_fraction_error(dot, hull, dot.rc, dot.label),
        "boundary_shift": boundary_length_px(dot.region_map) * spacing / inside.sum(),
    }


def oracle_mixed(dot, res) -> dict:
    """Column-based estimates that mix truth and the default run's result ``res``.

    ``true_labels_run_outline``: true columns and labels inside the run's crystal outline (its region map's
    non-outside pixels). ``run_labels_true_outline``: the run's columns and labels inside the true outline.
    Both nan where the run gave no labels (the second also where its labels are not one per column).
    """
    nan = {"true_labels_run_outline": np.nan, "run_labels_true_outline": np.nan}
    if res.labels is None or res.columns is None:
        return nan
    outline = res.labels.region_map != REGION_OUTSIDE
    row = {**nan, "true_labels_run_outline": _column_fraction_error(dot, outline, dot.rc, dot.label)}
    if len(res.labels.label) == len(res.columns):
        rc, label = res.columns.rc, res.labels.label
        row["run_labels_true_outline"] = _column_fraction_error(dot, dot.region_map != REGION_OUTSIDE, rc, label)
    return row


def table(rows: dict[float, list[dict]]) -> list[str]:
    lines = RESULTS_HEADER.splitlines()
    for dose, rs in rows.items():
        err = np.array([r["err"] for r in rs])
        ok = np.isfinite(err)
        lo, hi = np.array([r["lo"] for r in rs])[ok], np.array([r["hi"] for r in rs])[ok]
        truth = np.array([r["truth"] for r in rs])[ok]
        cover = np.mean((lo <= truth) & (truth <= hi))
        width = hi - lo
        inner = np.array([r["err_inside"] for r in rs])[ok]
        lines.append(
            f"| {dose:g} | {len(rs)} | {ok.sum()} | {err[ok].mean():+.4f} | {err[ok].std():.4f} | "
            f"{np.abs(err[ok]).max():.4f} | {LIMITS[dose]:.2f} | {cover:.3f} | {width.mean():.3f} | "
            f"{np.median(width):.3f} | {inner.std():.4f} | {(err[ok] - inner).std():.4f} |"
        )
    allrows = [r for rs in rows.values() for r in rs if np.isfinite(r["err"])]
    cover = np.mean([r["lo"] <= r["truth"] <= r["hi"] for r in allrows])
    lines.append(f"\nCoverage over all {len(allrows)} dots with fractions: {cover:.3f}.")
    return lines


#: What code the held-out table ran.
CONFIRMED = (
    "This table is the code of 2026-11-30 with the superlattice scan on (below: its contrast leaves out the crystal "
    "edge; ``scan_threshold`` 6): seeds 82000-82119 were drawn after every default was chosen and scored once."
)

#: The same held-out dots with the scan off, run once after the table above, as a comparison (nothing chosen on it).
OFF_82000 = """Issue 14 is not met on these seeds: one dot over the limit at every dose, and coverage 0.908 at 100 counts. The
same seeds with the scan off (``scan_threshold`` 0; run once after the table above, to tell the scan from the draw;
nothing chosen on it): mean -0.0020 / -0.0017 / -0.0007, sd 0.0096 / 0.0063 / 0.0054, largest 0.0431 / 0.0324 /
0.0344 (1 / 2 / 2 dots over the limit), coverage 0.942 / 0.892 / 0.933 (0.922 over all 360), mean width 0.039 /
0.023 / 0.020. So the scan lowers the error's sd at 100 and 400 counts by 13-18 % and its largest error there
(0.032 -> 0.027, 0.034 -> 0.024), on dots it was not chosen on; this draw of seeds holds more of the tail than the three before it (largest at
100 counts with the scan off: 0.023, 0.024, 0.016 on 52000+, 62000+, 72000+; 0.032 here)."""

#: The held-out seeds' tail, looked at after both runs above (so 82000-82119 are tuning dots from here on).
TAIL_82000 = """Looked at after both runs (classification inputs cached, the classifier re-run: it reproduces the run's errors;
seeds 82000-82119 are tuning dots from here on). The tail has three causes, none of them the scan:

1. **Ordered domains of 9-12 columns cut by the dot's edge** (82041: +0.036 / +0.027 / +0.024 at 30 / 100 / 400
   counts; 82110: +0.020 at 400). 82041 has five ordered domains; the three of 30-93 columns are found (93 of 93,
   28 of 30, 46 of 50 at 100 counts), the two of 9 and 10 columns within a spacing of the outline are lost: the
   mixture calls 1 and 2 of their columns at 100 counts (2 and 6 at 400), the random field none, and the scan scores
   them at most 3.2 and 5.6 (their windows hold few columns with full neighbourhoods). 82110 at 400 counts: 11- and
   12-column domains at the edge, the mixture 7 and 5 of their columns, the random field none; the scan raised 2 of
   the second, which the rounds grew to 10 of 12.
2. **Boundary rounds that erase a small uniform domain at 30 counts** (82103: -0.043 at 30, -0.017 at 400; truth
   0.147, six uniform domains of 26-98 columns in an ordered dot). A 27-column domain inside the dot is uniform in
   the mixture, the random field and the kept small domains (23 of 27) and ordered after the boundary rounds (1 of
   27 left); domains of 44 and 40 columns lose 16 and 10 of their columns the same way. At 400 counts the rounds keep
   them (25 of 26); there a 26-column domain at the edge is lost in the mixture (9 of 26 columns) and the field.
3. **Intervals too narrow on dots of nearly one phase** (coverage 0.908 at 100 counts: 11 misses). 4 of the 11 are
   dots with 1-16 % of one phase (82006 truth 0.013, 82049 0.84, 82051 0.966, 82078 0.941) whose errors have the same
   sign and about the same size at every dose (-0.002 to -0.009: the geometry of a small domain's area, not noise)
   and whose intervals at 100 counts are 0.003-0.012 wide, missing by 0.001-0.003 (at 400 counts too; at 30 counts
   only 82006): the interval's boundary terms grow with the boundary length, which such a dot hardly has. 6 more
   are mixed dots whose ordered share is over-estimated by 0.007-0.014 at 100 counts only (covered at 30 and 400);
   the 11th is 82041 (1.).

Tried on them (not adopted): ``small_domain_min_columns`` 5 (the random field keeps the mixture's domains of 5-40
columns whose amplitude agrees): 82000-82119 at 400 counts largest 0.0235 -> 0.0137, sd 0.0047 -> 0.0037; at 100 and 30
counts unchanged (0.0271, 0.0431: 82041's domains are 1-2 columns in the mixture at 100 counts); tuning dots 30000-30139
and 57000-57059 the same within 0.0005 in the largest error; issue 13's minority dots (``benchmarks/minority.py``,
51000-51079): pure dots unchanged, one ordered minority of 50-69 columns at 400 counts 0.011 -> 0.027. It does not
touch the 100-count tail, and its gain is on the dots it was found on. The real images of ``../shared/realdata``: the
scan changes no label (the one image the two-phase classifier labels, kemstem's NSMO [110]: 0 of its columns; the
CsPbBr3 image goes through the phase library, ``tests/test_phases_pipeline.py``, unchanged)."""

#: The superlattice scan with the crystal edge left out (2026-11-30, twelfth session), chosen on tuning dots.
SCAN_EDGE = """This round (2026-11-30, twelfth session): the superlattice scan below, on by default (``scan_threshold`` 6),
with the crystal edge left out of its contrast. Cause of its false ordered regions on cell-mosaic dots, found on
the tuning dots and 30 cell-mosaic dots (hand-made cells of ``tests/test_mosaic.py``, 6-11 nm, 50 / 200 / 800
counts; not used for anything else): the tail of the scan's null distribution is the crystal edge. The outer row of
columns is dimmer (no neighbours' tails overlap it) and the next row brighter than its neighbours' mean: a row
alternation the matched filter reads as part of the superlattice. Of the uniform columns more than 3.5 spacings
from any true ordered column that the first scan scored 5.5 or more, 44 of 51 on the tuning dots lay within one
spacing of the dot's outline, 49 within two; on the mosaic dots 203 of the 204 scoring 5 or more lay within two
(6 of the 30 dots had columns over 6, 133 in all). Now (``features.superlattice_scan``) only columns with at least 7 of
the 9 sites of their 3x3 neighbourhood (a straight edge leaves 6; 9 of 9 also dropped interior columns beside
undetected ones, and missed 57007's domains) carry contrast and enter their neighbours' means, and a window needs 8
such columns to score. On the 30 mosaic dots no uniform column away from ordered ones scores 5 or more now (their
uniform fraction with the scan on: mean error +0.0001, largest 0.027); ``tests/test_mosaic.py``'s dots (7 nm, 200 counts), off -> on: 0.598 / 0.470 / 0.293 / 0.814 -> 0.598 /
0.467 / 0.293 / 0.814 (truth 0.632 / 0.490 / 0.299 / 0.804; the first scan 0.538 / 0.443 / 0.293 / 0.789; on the
second dot 11 of the 13 columns it raised are ordered in truth). Tuning dots, scan off -> on (30 / 100 / 400
counts): seeds 57000-57059 mean +0.0002 / +0.0001 / +0.0002 -> +0.0000 / -0.0009 / -0.0001, largest 0.024 / 0.030 /
0.022 -> 0.026 / 0.017 / 0.020, coverage 0.983 / 0.950 / 0.933 -> 0.983 / 0.967 / 0.933; seeds 30000-30139 mean
-0.0028 / -0.0025 / -0.0014 -> -0.0029 / -0.0024 / -0.0015, largest 0.029 / 0.014 / 0.017 (the same), coverage 0.943
/ 0.964 / 0.943 -> 0.950 / 0.964 / 0.950. Tried and not adopted (tuning dots only): seeds further than the window
plus a spacing from every ordered column (or every ordered domain of 10 columns or more), not only from domains of
more than 40: 57048 at 400 counts -0.020 -> -0.012 (the scan had grown a small domain the mixture had found into
its uniform neighbours) but 57007 at 100 counts 0.017 -> 0.022 (its domains are grown from the few columns the
mixture found)."""

#: The superlattice scan (branch h14b), chosen on tuning dots.
SCAN = """The first superlattice scan (2026-11-30, late, branch h14b; merged OFF, ``scan_threshold`` 0): the ordered domains of 11-24 columns that the mixture's local fit hardly sees (the
tail left after the small domains below: tuning dots 57048, +0.030 at 100 counts, and 57007, +0.025 / +0.022 at 100 /
400). ``classify.features.superlattice_scan``: each column's log intensity less its neighbours' mean (within 1.6
spacings), over the uniform columns' noise, clipped at +-4 sd (without the clip, faint failed columns scored up to
z = 73 in uniform regions), matched-filtered with the ordered pattern (one bright site in four, the best of the four
placements) over the columns within 2.5 spacings (~21): a z-score that pools a domain-sized window. A uniform column
scoring above ``scan_threshold`` (6), further than the window plus a spacing from any ordered domain of more than
``small_domain_max_columns``, enters the boundary rounds as ordered (0.9); only where the mixture found two classes.
On the tuning dots, uniform columns far from ordered ones score at most 5.3 / 4.9 / 5.2 (57000-57059) and 5.1 at 100
counts (30000-30139), the two target dots' missed columns 7.6 and 9.4. Tuning dots 57000-57059, off -> 6: largest
0.024 / 0.030 / 0.022 -> 0.024 / 0.016 / 0.015, coverage 0.983 / 0.950 / 0.933 -> 0.983 / 0.967 / 0.950; 30000-30139:
largest the same (0.029 / 0.014 / 0.017), coverage 0.943 / 0.964 / 0.943 -> 0.957 / 0.964 / 0.943, mean -0.0034 /
-0.0026 / -0.0015. Issue 13's minority dots (``benchmarks/minority.py``, 51000-51079): no pure dot changed; ordered
minorities summed |error| 1.606 / 0.899 / 0.694 -> 1.569 / 0.928 / 0.687, coverage 0.825 / 0.850 / 0.750 -> 0.900 /
0.787 / 0.725. Cost ~11 ms per dot. With 6, the held-out seeds 72000-72119 (drawn after 6 was chosen, scored once):
mean -0.0037 / -0.0021 / -0.0013, largest 0.0280 / 0.0160 / 0.0157, coverage 0.950 / 0.942 / 0.942 (0.944 over all 360),
mean width 0.041 / 0.024 / 0.021: every limit of issue 14. Not adopted all the same: on dots of other cells
(``synthetic_mosaic`` with hand-made Gaussian cells, a 0.32 nm uniform grid against the 0.3145 nm ordered one;
``tests/test_mosaic.py``) it took uniform regions for ordered (7 nm dots at 200 counts, off -> 6: 0.598 / 0.470 / 0.293
/ 0.814 -> 0.538 / 0.443 / 0.293 / 0.789, truth 0.632 / 0.490 / 0.299 / 0.804). Its threshold was set on the
generator's own images, whose two phases share one lattice; real images need its null distribution first."""

#: The header of the results tables (:func:`table`; the earlier rounds' text below).
RESULTS_HEADER = """| dose [counts] | dots | with fractions | mean signed error | sd | largest error | limit | coverage of the truth | mean width | median width | sd inside both outlines | sd of the edge part |
|---|---|---|---|---|---|---|---|---|---|---|---|"""


#: The previous held-out round (seeds 72000-72119) as it came out.
def _recorded_round(intro: str, rows: tuple[str, ...], coverage: str, verdict: str, outro: str) -> str:
    """An earlier held-out round's text as :func:`result_lines` wrote it: ``rows`` are the table's dose rows."""
    table = "\n".join(f"| {row} |" for row in rows)
    return (
        f"{intro}\n\n{RESULTS_HEADER}\n{table}\n\nCoverage over all 360 dots with fractions: {coverage}.\n\n"
        f"{verdict}\n\n{outro}"
    )


ROUND_72000 = _recorded_round(
    "Previous round (main 6eb4c3a, the scan below merged off): the same draw on seeds 72000-72119, scored once.",
    (
        "30 | 120 | 120 | -0.0036 | 0.0084 | 0.0280 | 0.04 | 0.950 | 0.041 | 0.034 | 0.0077 | 0.0031",
        "100 | 120 | 120 | -0.0020 | 0.0044 | 0.0160 | 0.02 | 0.950 | 0.024 | 0.020 | 0.0033 | 0.0029",
        "400 | 120 | 120 | -0.0013 | 0.0035 | 0.0157 | 0.02 | 0.933 | 0.021 | 0.017 | 0.0023 | 0.0028",
    ),
    "0.944",
    "Largest error against issue 14's limits: 30 counts 0 of 120 over 0.04 (largest 0.0280); 100 counts 0 of 120 over 0.02 (largest 0.0160); 400 counts 0 of 120 over 0.02 (largest 0.0157). The dots over a limit were not looked at (the seeds stay held out).",
    "This table was the code of the 62000-62119 round below (main 75478d5; the superlattice scan, below, merged off): seeds 72000-72119 were drawn after its defaults were chosen, first scored with the scan on (below), then with it off, as shipped (this table): with the round below, 240 held-out dots per dose of that code, 1 of them over 0.02 at 100 counts (0.0244).",
)

#: The held-out round before (seeds 62000-62119) as it came out.
ROUND_62000 = _recorded_round(
    "Previous round (main 75478d5, before the superlattice scan below): uniform fraction through `pipeline.analyze` (defaults) on 120 held-out mixed dots per dose (seeds 62000-62119; a third 8-11 nm, the others 12-16 nm; rotation 0-90 deg; domains 2-7 nm; uniform share 0.15-0.85; thickness gradient 0-40 %), against the truth of issue 14: the area of each phase's domains inside the dot outline. The code: column heights as the classification intensity, the crystal edge at the diffuse intensity step, faint maxima beyond that edge dropped, the mixture's 10-40-column domains kept through the random field where their amplitude agrees with their label (below), interval terms 0.02 / 7.5 (squared noise) / 0.12 (boundary, its growth with the noise, edge) set on tuning seeds 30000-30139 and 57000-57059 (below); none of these seeds was looked at before, and they were scored once. Plot: `results/unbiased.png`.",
    (
        "30 | 120 | 120 | -0.0016 | 0.0080 | 0.0302 | 0.04 | 0.975 | 0.043 | 0.037 | 0.0065 | 0.0034",
        "100 | 120 | 120 | -0.0017 | 0.0048 | 0.0244 | 0.02 | 0.950 | 0.027 | 0.019 | 0.0046 | 0.0026",
        "400 | 120 | 120 | -0.0003 | 0.0040 | 0.0196 | 0.02 | 0.958 | 0.024 | 0.016 | 0.0027 | 0.0026",
    ),
    "0.961",
    "Largest error against issue 14's limits: 30 counts 0 of 120 over 0.04 (largest 0.0302); 100 counts 1 of 120 over 0.02 (largest 0.0244); 400 counts 0 of 120 over 0.02 (largest 0.0196). The dots over a limit were not looked at (the seeds stay held out).",
    "This table is the merged code of 2026-11-30 (issue 14's small domains kept through the random field and the interval's squared-noise boundary term, below; issue 20's start-up and output savings, results identical): seeds 62000-62119 were drawn after every default was chosen and scored once (the coverage printed to three digits since: 117 / 114 / 115 of 120, the 30-count value from a re-run of that dose with the same code).",
)

#: The held-out round before it (seeds 52000-52119) as it came out.
ROUND_52000 = """The held-out round before it (main fdba82b, before the small domains kept below; seeds 52000-52119, 120 dots per dose, the same draw and truth, interval terms 0.02 / 1.0 / 0.12 with the noise to the power 1; scored once, then confirmed on the merged code of 2026-11-29 late, main 395d0c0, the same to the printed digits): mean signed error -0.0020 / -0.0017 / -0.0006 at 30 / 100 / 400 counts, sd 0.0085 / 0.0053 / 0.0035, largest 0.0360 / 0.0228 / 0.0127 (1 of 120 over 0.02 at 100 counts), coverage 0.95 / 0.95 / 0.96 (0.953 over all 360), mean width 0.039 / 0.027 / 0.022, median 0.037 / 0.023 / 0.018; sd inside both outlines 0.0076 / 0.0045 / 0.0024, of the edge part 0.0035 / 0.0028 / 0.0027."""


#: How the tables split the error (after the first table of the results page).
ERROR_PARTS = (
    "The error splits into the labels and domain boundaries (the uniform share over the pixels inside both the "
    "true and the measured outline: *sd inside both outlines*) and the placement of the crystal edge (the rest: "
    "*sd of the edge part*). The outermost columns of a phase lie 0-1 spacing inside the generator's outline, "
    "which is not tied to the lattice; the edge is placed at the step of the image's diffuse intensity beyond "
    "them (``ClassifyConfig.edge_from_intensity``; ``edge_sd_spacings`` in the interval)."
)


#: The oracle's estimates (:func:`oracle_no_image`, :func:`oracle_mixed`), and whether each uses the image.
ORACLE_ESTIMATES = (
    ("true_all", "(a) = (d) true columns, true labels, true outline (each pixel: its nearest true column)", False),
    ("own_cells", "(d') as (a), the gap divided in the ratio of the two phases' spacings", False),
    ("column_outline", "(a') true columns, true labels, outline from the columns (hull + 0.5 spacing)", False),
    ("true_labels_run_outline", "(b) true columns, true labels, the run's outline", True),
    ("run_labels_true_outline", "(c) the run's columns and labels, true outline", True),
    ("err", "the default run (its own outline and labels)", True),
)


def _stats(err: np.ndarray, limit: float) -> str:
    """Table cells: dots, mean signed error, sd, largest error, dots over 0.02, dots over ``limit``."""
    ok = err[np.isfinite(err)]
    big = np.abs(ok)
    return (
        f"{len(ok)} | {ok.mean():+.4f} | {ok.std():.4f} | {big.max():.4f} | {(big > 0.02).sum()} | "
        f"{(big > limit).sum()} |"
    )


def oracle_table(rows: dict[float, list[dict]]) -> list[str]:
    """The oracle's estimates per dose (those without the image once), and their scaling with the boundary."""
    lines = [
        "| estimate | dose [counts] | dots | mean signed error | sd | largest error | dots over 0.02 | "
        "dots over the limit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    first = next(iter(rows))
    for key, name, uses_image in ORACLE_ESTIMATES:
        for dose, rs in rows.items() if uses_image else [(first, rows[first])]:
            err = np.array([r[key] for r in rs])
            cell = f"{dose:g}" if uses_image else "any (no image)"
            lines.append(f"| {name} | {cell} | {_stats(err, LIMITS[dose] if uses_image else 0.02)}")
    # Scaling with the boundary: rms error per third of the dots by boundary length per area, and the shift of
    # every boundary (in spacings, coherent along it) that would give the rms error.
    rs = rows[first]
    x = np.array([r["boundary_shift"] for r in rs])
    per_area = np.array([r["boundary_per_area"] for r in rs])
    thirds = np.array_split(np.argsort(per_area), 3)
    head = " | ".join(f"{per_area[t].min():.2f}-{per_area[t].max():.2f}" for t in thirds)
    lines += [
        "",
        f"Scaling with the domain boundaries (dose {first:g} for the estimates that use the image): rms error in "
        "each third of the dots by true boundary length per dot area [1/nm], and the shift of every domain "
        "boundary, coherent along it, that would give the rms error over all dots (rms error / rms of "
        "boundary length x spacing / area) [spacings].",
        "",
        f"| estimate | {head} | correlation of abs. error and boundary length per area | boundary shift [spacings] |",
        "|---|---|---|---|---|---|",
    ]
    for key, name, _ in ORACLE_ESTIMATES:
        err = np.array([r[key] for r in rs])
        ok = np.isfinite(err)
        rms = " | ".join(f"{np.sqrt(np.nanmean(err[t] ** 2)):.4f}" for t in thirds)
        corr = np.corrcoef(np.abs(err[ok]), per_area[ok])[0, 1]
        shift = np.sqrt(np.mean(err[ok] ** 2) / np.mean(x[ok] ** 2))
        lines.append(f"| {name} | {rms} | {corr:+.2f} | {shift:.3f} |")
    floor = np.array([r["true_all"] for r in rs])
    edge = np.array([r["column_outline"] for r in rs])
    lines += [
        "",
        f"Information floor: with the true labels and the true outline the largest error over these {len(rs)} dots "
        f"is {np.abs(floor).max():.4f} (limit 0.02); with the true labels and an outline from the columns alone "
        f"it is {np.abs(edge).max():.4f}, {(np.abs(edge) > 0.02).sum()} of {len(rs)} dots over 0.02.",
    ]
    return lines


#: What the oracle run showed (written after the run, from its numbers).
ORACLE_FINDINGS = """What the oracle shows (held-out numbers from the tables above; the candidates tried in (2) and (5) were
judged on the tuning dots only).

1. **The position of a domain boundary between two columns is not what limits the fractions.** With the true
   columns, labels and outline, the pipeline's own region map errs by at most 0.0043 over the 60 held-out dots (sd
   0.0013) and 0.0073 over the 140 tuning dots, the same at every dose: a fifth to a third of the issue's 0.02. The
   error grows with the boundary length per dot area (rms 0.0006 in the lowest third, 0.0016-0.0017 above), but it
   amounts to a coherent shift of every boundary by 0.025 spacing only: a boundary midway between the last columns
   of the two phases (the nearest-column edge: the same line) is right on average along its length. Dividing the
   gap in the ratio of the two phases' spacings (d') gives the same (0.0047). The limit does not ask for
   information the columns do not carry; the interval's boundary term (``boundary_sd_spacings`` 0.12, five times
   this) in fact carries the labels' errors at boundaries.
2. **The crystal edge from the columns alone is the larger floor.** True labels inside the columns' hull grown by
   half a spacing (the pipeline's rule for an outline from columns) err by sd 0.0063, at most 0.0192 (0 of 60 over
   0.02); on the tuning dots sd 0.0070, at most 0.0236 (2 of 140 over 0.02). The outermost row of each phase lies
   anywhere 0-1 spacing inside the dot's straight edges, coherently along each edge; columns cannot place it
   better (a union of the columns' own lattice cells instead of the hull: sd 0.0090, at most 0.0287 on the
   tuning dots, from notches where the two grids meet the edge). Near 0.02 at its worst, this floor alone leaves
   no room for label errors under the limit on small dots; only the image beyond the last columns (the intensity
   step at the edge, the unmerged ``edge`` branch) can place the edge closer.
3. **The run's outline adds to it:** true labels inside the run's outline err by sd 0.008-0.009, at most
   0.021-0.025, with a small bias toward uniform (+0.0009 to +0.0018).
4. **The labels are the largest part.** The run's columns and labels inside the true outline err by sd
   0.009-0.011, at most 0.041-0.047 (3-4 dots over 0.02 per dose); the two worst are dots with 2-2.5 nm domains
   (32037, 8-11 nm, 70 % uniform: +0.034 to +0.047; 32057, 27 % uniform: -0.033 to -0.041), where the majority
   phase takes the minority's columns at small domains. On 32037 the run's outline (-0.021 to -0.025, partly the
   column floor of -0.019) cancels part of the label error, so the run itself errs less there (+0.014 to +0.028).
   The earlier round's 0.030 / 0.034 / 0.031 for this estimate is not confirmed on this code: 0.046 / 0.047 /
   0.041 (the run's labels and the region map redrawn in the true outline, or the run's map with the true
   outline's pixels beyond it given the nearest mapped label, agree to 0.0004).
5. **No cheap change of the region map found.** The run's columns and labels inside their own hull grown by half
   a spacing, without the image's crystal mask, on the tuning dots at 100 counts: sd 0.0114 against 0.0120, largest
   0.0413 against 0.0399, 11 against 12 dots over 0.02: not adopted, not run on the held-out dots.

The default run in this table (largest 0.034 / 0.035 / 0.039, mean +0.0037 / +0.0036 / +0.0023) differs from the
recorded issue-14 table above at 100 counts (0.042): the code changed after that run (merges after 13:20 UTC); the
table above was not re-run."""


def plot(rows: dict[float, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    for dose, rs in rows.items():
        err = np.array([r["err"] for r in rs])
        axes[0].scatter(np.full(len(err), dose) * np.exp(np.linspace(-0.1, 0.1, len(err))), err, s=10)
        axes[1].scatter([r["domain_nm"] for r in rs], err, s=10, label=f"{dose:g} counts")
        axes[2].scatter([r["boundary_per_area"] for r in rs], err, s=10)
    axes[0].set_xscale("log")
    axes[0].set_xticks(DOSES, [f"{d:g}" for d in DOSES])
    axes[0].minorticks_off()
    axes[0].set_xlabel("dose [counts at a bright column]")
    axes[1].set_xlabel("domain size drawn [nm]")
    axes[2].set_xlabel("true boundary length per dot area [1/nm]")
    axes[0].set_ylabel("uniform fraction: estimate - domain-area truth")
    axes[1].legend()
    for ax in axes:
        ax.axhline(0, color="k", lw=0.8)
        for lim in (0.02, -0.02):
            ax.axhline(lim, color="grey", ls=":", lw=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def no_image_table(seeds) -> list[str]:
    """The oracle's estimates without the image (:func:`oracle_no_image`) on ``seeds``: geometry only, no run."""
    rows = [oracle_no_image(draw(seed, DOSES[0])[0]) for seed in seeds]
    lines = [
        "| estimate | dots | mean signed error | sd | largest error | dots over 0.02 | dots over the limit |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, name, uses_image in ORACLE_ESTIMATES:
        if not uses_image:
            lines.append(f"| {name} | {_stats(np.array([r[key] for r in rows]), 0.02)}")
    return lines


def verdict(rows: dict[float, list[dict]]) -> str:
    """Issue 14's largest-error limit per dose: the dots over it and the largest error, from the rows."""
    parts = []
    for dose, rs in rows.items():
        err = np.abs([r["err"] for r in rs if np.isfinite(r["err"])])
        over = int((err > LIMITS[dose]).sum())
        parts.append(f"{dose:g} counts {over} of {len(err)} over {LIMITS[dose]:g} (largest {err.max():.4f})")
    return (
        "Largest error against issue 14's limits: "
        + "; ".join(parts)
        + ". The dots over a limit were not looked at (the seeds stay held out)."
    )


def result_lines(rows: dict[float, list[dict]], seeds) -> list[str]:
    """The default run's results page (``results/unbiased.md``): the held-out ``rows``, then the earlier rounds'."""
    return [
        "# Unbiased phase fractions (issue 14)",
        "",
        f"Uniform fraction through `pipeline.analyze` (defaults) on {len(seeds)} held-out mixed dots per dose "
        f"(seeds {seeds[0]}-{seeds[-1]}; a third 8-11 nm, the others 12-16 nm; rotation 0-90 deg; domains "
        "2-7 nm; uniform share 0.15-0.85; thickness gradient 0-40 %), against the truth of issue 14: the area of "
        "each phase's domains inside the dot outline. The code: column heights as the classification intensity, "
        "the crystal edge at the diffuse intensity step, faint maxima beyond that edge dropped, the mixture's "
        "10-40-column domains kept through the random field where their amplitude agrees with their label, the "
        "superlattice scan for ordered domains the mixture misses, with the crystal edge left out of it (below), "
        f"interval terms {INTERVAL_TERMS} (boundary, its growth with the noise, edge) set on tuning seeds "
        "30000-30139 and 57000-57059 (below); none of these seeds was looked at before, and they were scored once. Plot: "
        "`results/unbiased.png`.",
        "",
        *table(rows),
        "",
        verdict(rows),
        "",
        CONFIRMED,
        "",
        OFF_82000,
        "",
        TAIL_82000,
        "",
        SCAN_EDGE,
        "",
        ROUND_72000,
        "",
        SCAN,
        "",
        ROUND_62000,
        "",
        SMALL_DOMAINS_KEPT,
        "",
        ROUND_52000,
        "",
        ERROR_PARTS,
        "",
        FAINT,
        "",
        SMALL_MIXTURE_DOMAINS,
        "",
        PREVIOUS_ROUND,
        "",
        TUNING,
        "",
        DIAGNOSIS,
        "",
        SMALL_DOMAINS,
        "",
        EARLIER_RUNS,
    ]


def oracle_lines(rows: dict[float, list[dict]], seeds, tuning_seeds) -> list[str]:
    """The oracle's results page (``results/unbiased_oracle.md``)."""
    return [
        "## Information floor of column-based fractions (issue 14, `unbiased.py --oracle`)",
        "",
        f"The same {len(seeds)} held-out dots per dose (seeds {seeds[0]}-{seeds[-1]}, the draw above), one default "
        "run per dot and dose. The image tells which columns belong to which phase, not where between two columns "
        "a domain boundary or the dot's edge runs. Each estimate below draws the region map the way the pipeline "
        "does from labelled columns (`classify.region_map_from_columns`: each pixel of an outline takes the label "
        "of its nearest column) from true or measured columns, labels and outline, and is compared with the truth "
        "(the domain area inside the dot outline). A boundary midway between the last columns of the two phases "
        "and the nearest-column (Voronoi) edge are the same line, so (a) and (d) are one estimate; (d') divides "
        "the gap in the ratio of the two phases' spacings instead.",
        "",
        *oracle_table(rows),
        "",
        f"The estimates without the image on {len(tuning_seeds)} tuning dots of the same draw (seeds "
        f"{tuning_seeds[0]}-{tuning_seeds[-1]}; the geometry only, no run):",
        "",
        *no_image_table(tuning_seeds),
        "",
        ORACLE_FINDINGS,
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 dots per dose; nothing written")
    parser.add_argument(
        "--oracle",
        action="store_true",
        help="the information floor of column-based estimates (true columns, labels, outline mixed with the "
        "run's); writes results/unbiased_oracle.md",
    )
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.getLogger("stem_pipeline").setLevel(logging.ERROR)
    seeds = ORACLE_SEEDS if args.oracle else HELD_OUT_SEEDS
    seeds = seeds[:4] if args.quick else seeds
    rows = run(seeds, oracle=args.oracle)
    tuning = TUNING_SEEDS[:4] if args.quick else TUNING_SEEDS
    lines = oracle_lines(rows, seeds, tuning) if args.oracle else result_lines(rows, seeds)
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        out = Path(__file__).parent / "results"
        (out / ("unbiased_oracle.md" if args.oracle else "unbiased.md")).write_text(text)
        if not args.oracle:
            plot(rows, out / "unbiased.png")


if __name__ == "__main__":
    main()
