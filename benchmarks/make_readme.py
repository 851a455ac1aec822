"""Assemble benchmarks/README.md from the tables the benchmarks wrote to benchmarks/results/.

Run each benchmark first (``python benchmarks/<name>.py``; ``--quick`` for a small
run, which does not overwrite the recorded results), then ``python benchmarks/make_readme.py``.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
ORDER = ("denoise", "columns", "classify", "unbiased", "fields", "simulate", "compare", "batch", "memory", "series")

HEADER = """# Benchmarks

Speed and accuracy of stem_pipeline, measured side by side with the tools a microscopist would
otherwise use, as ratios from one run of each script: atomap's centre-of-mass and Gaussian
refinement (`columns.py`), DigitalMicrograph-style and scikit-image/BM3D filters (`denoise.py`), a
hard intensity threshold (`classify.py`), abTEM plain multislice (`simulate.py`), the
in-process run against Dask workers (`batch.py`), and the peak memory of one image's analysis against its
size (`memory.py`); fields of many dots (`fields.py`) and frame series (`series.py`) against their ground truth, and the bias of the phase fractions against the domains' area (`unbiased.py`). Accuracy is measured against ground truth:
synthetic dots with known column positions, contrasts and domains (`stem_pipeline.synthetic`) at
several doses, and abTEM simulations.

All timings were taken on the project's 2-core, 24 GiB machine without a GPU, often while other
jobs were running: absolute times vary by tens of per cent, ratios from one run much less. Each
section below is the table its script wrote to `results/<name>.md`; reproduce one with
`python benchmarks/<name>.py` and rebuild this page with `python benchmarks/make_readme.py`.

"""

#: Hand-kept summary of the goals (from the issues) against the recorded tables below.
SUMMARY = """## Summary: goals against measurements

| stage | goal | measured (see the section) | met |
|---|---|---|---|
| denoise | default chain >= 1 dB PSNR above the best single baseline at every dose, on unseen dots | +2.0 / +2.6 / +2.5 dB vs BM3D at 400 / 100 / 30 counts; level with BM3D + Anscombe | yes |
| denoise | < 1 s per 1024x1024 image | 0.38 s (loaded machine) | yes |
| columns | Gaussian refinement >= 100x atomap's, equal or lower error | 121x; rms 0.108 vs 0.185 px | yes |
| columns | whole analysis of a 1024x1024, ~2,000-column dot >= 10x atomap's Gaussian refinement alone (aim 30x) | column stage 27x; `pipeline.analyze` 16x; a fresh `stem-pipeline analyze` process 5x (start-up dominates) | yes for the analysis |
| columns | < 2 GB for 4096x4096 | 920 MB peak RSS | yes |
| classify | fraction error <= 0.03 (high dose), <= 0.06 (~30 counts); interval coverage | recorded before issue 14 (old truth, old generator and intervals; not re-run): 400 / 30 counts, against the area each phase's columns cover: true positions max 0.018 / 0.038 (20 dots per dose); through `pipeline.analyze` max 0.012 / 0.020 (10 dots), 0.018 / 0.028 (12 held-out dots) and 0.027 / 0.031 (30 wide held-out dots: 8-14 nm, pixel size 0.028-0.04 nm, seeds never used to choose a default; mean 0.006 / 0.010; at 30 counts 1 of the 30 gets no fractions: its bright share reads 0.39); coverage of the dot's fraction 0.97-1.00. Minor phase (0-10 %): 10-16 of 64 small CsPbI3 minorities missed (<= 92 columns), covered by the one-phase interval; coverage 0.90-0.97 | yes |
| classify | unbiased fractions (issue 14): against the domain area inside the dot outline, through `pipeline.analyze`, mean signed error within +-0.005 at every dose; largest error <= 0.02 at >= 100 counts, <= 0.04 at 30; coverage 0.93-0.97 | 108 held-out mixed dots (36 per dose, 8-16 nm, domains 2-7 nm, gradients 0-40 %): mean signed error +0.0045 / +0.0022 / +0.0026 at 30 / 100 / 400 counts (before: +0.019 on 9 of 9 dots in the issue); largest 0.033 / 0.022 / 0.021; coverage 0.83 / 0.94 / 0.94 (0.91 overall), mean width 0.049 / 0.047 / 0.047 (was ~0.09); a first held-out run before the interval's edge term: coverage 0.88 (unbiased) | mean yes; largest error no at >= 100 counts (0.021-0.022); coverage no at 30 counts |
| classify | the paper's Cs0.5FA0.5PbI3 case from abTEM: fraction near the truth | abTEM mosaic of CsPbI3 [001] + PbI2 <1 -1 1> (two lattices, each column on its own grid): 12 of 12 dots get fractions, mean error +0.021 / +0.019 / +0.022 at 30 / 100 / 400 counts, max 0.041 / 0.037 / 0.037 (one dot: a 2-column-wide CsPbI3 wedge at the image edge is not found); interval coverage 1.00 (a 3 % CsPbI3 domain that is not found lies inside the one-phase interval) (paper_case) | near the truth; max above 0.03 on one dot |
| compare | on a simulated two-phase dot, the right model per region | abTEM mosaic: `--region ordered` -> cspbi3_001, `--region uniform` -> pbi2_1m11 (4 models) (paper_case) | yes |
| fields | >= 98 % of dots wholly inside found over >= 50 dots, none on carbon; >= 90 % of touching pairs split; edge within 0.3 nm (1 px in overview); per-dot fractions within the single-dot limits; interval coverage stated | 130/130 dots found, 0 spurious, 45/45 touching pairs split, edge error <= 0.17 nm (atomic resolution, 0.02-0.04 nm/px, 30-400 counts); overview 90/90, 9/9 pairs, <= 0.44 px; per-dot fractions (96 dots of 8-11 nm in 24 fields): mean abs error 0.012 / 0.011 / 0.008 at 30 / 100 / 400 counts, max 0.054 / 0.033 / 0.030 (97 % within 0.03 at >= 100 counts, all within 0.06 at 30); field interval (area-weighted, DerSimonian-Laird or empirical variance, Student t) covers the population fraction in 0.93-0.98 of re-assembled 2-6 dot fields (0.76-0.83 with DerSimonian-Laird and 1.96) | detection, split, size, 30-count fractions: yes; 2 of 64 dots at >= 100 counts at 0.030-0.033 |
| simulate | fast >= 8x exact, <= 2 % deviation | 28.7x / 27.5x at 6.3 / 13.8 nm, 0.31 % (static); with phonons the deviation equals the phonon noise floor | yes |
| simulate | thickness series cheaper than separate runs | 2.2x, identical | yes |
| batch | throughput with 1 and 2 workers, memory per worker; re-run in seconds | 36 images/min in-process, ~440-500 MB per worker; re-run 1.1 s | recorded |
| series | synthetic frame series (5-20 frames, 30-200 counts, drift <= 5 px/frame): f0 within 0.03, Dc within 20 %, drift within 0.3 px; interval coverage; cost per frame | 72 series of 8 dots: f0 mean abs error 0.012, max 0.049 (92 % within 0.03); Dc median 4 %, max 19 % (all within 20 %); drift max 0.051 px; coverage f0 1.00, Dc 0.90; 16 other dots (10 frames, 100 counts): f0 mean 0.024, max 0.054 (69 % within 0.03), Dc median 9 %, max 31 % (80 % within 20 %; 1 of 16 flagged not constrained), coverage f0 0.94, Dc 0.69; 0.3-0.8 s per 320x320 frame | f0 and drift yes on most dots; Dc intervals too narrow |
| memory | one image's analysis (`analyze_file`) peaks at <= 8x its float32 size + 400 MB, 1k-8k (issue 17) | after the fields work (each dot analysed on its own crop): 1024² 263 / 190 MB (field / noise, limit 432), 2048² 510 / 410 (528), 4096² 792 / 618 (912, was 2,218 / 2,213), 8192² 2,799 / 2,354 (2,448; the issue measured 8.5 / 9.1 GB); before the fields work 8192² peaked at 2,085 MB | yes up to 4096² and on 8192² noise; no on the 8192² field (2,748 MB after dropping the per-dot crops; the peak, outside the hooked stages, is not yet located) |

"""


def main() -> None:
    parts = [HEADER, SUMMARY]
    names = [n for n in ORDER if (HERE / "results" / f"{n}.md").is_file()]
    names += sorted(p.stem for p in (HERE / "results").glob("*.md") if p.stem not in ORDER)
    parts.append("Contents: " + ", ".join(f"[{n}](#{n})" for n in names) + "\n")
    for name in names:
        text = (HERE / "results" / f"{name}.md").read_text().strip()
        # Demote the results' own headings one level under this page's sections.
        text = "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())
        parts.append(f'<a id="{name}"></a>\n\n## {name} (`benchmarks/{name}.py`)\n\n{text}\n')
    (HERE / "README.md").write_text("\n".join(parts))


if __name__ == "__main__":
    main()
