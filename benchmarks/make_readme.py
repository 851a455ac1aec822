"""Assemble benchmarks/README.md from the tables the benchmarks wrote to benchmarks/results/.

Run each benchmark first (``python benchmarks/<name>.py``; ``--quick`` for a small
run, which does not overwrite the recorded results), then ``python benchmarks/make_readme.py``.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
ORDER = ("denoise", "columns", "classify", "simulate", "compare", "batch")

HEADER = """# Benchmarks

Speed and accuracy of stem_pipeline, measured side by side with the tools a microscopist would
otherwise use, as ratios from one run of each script: atomap's centre-of-mass and Gaussian
refinement (`columns.py`), DigitalMicrograph-style and scikit-image/BM3D filters (`denoise.py`), a
hard intensity threshold (`classify.py`), abTEM plain multislice (`simulate.py`), and the
in-process run against Dask workers (`batch.py`). Accuracy is measured against ground truth:
synthetic dots with known column positions, contrasts and domains (`stem_pipeline.synthetic`) at
several doses, and abTEM simulations.

All timings were taken on the project's 2-core, 24 GiB machine without a GPU, often while other
jobs were running: absolute times vary by tens of per cent, ratios from one run much less. Each
section below is the table its script wrote to `results/<name>.md`; reproduce one with
`python benchmarks/<name>.py` and rebuild this page with `python benchmarks/make_readme.py`.

"""


def main() -> None:
    parts = [HEADER]
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
