"""The markup of the HTML batch report (``report.html``), from the values :func:`~.batch.render_html` gathers.

Written with Python's string formatting, every value escaped (:func:`html.escape`), instead of a jinja2
template: every ``analyze`` run writes this page, and jinja2's import and the template's compilation took
0.031 s CPU of the ~1.7 s of a one-image ``analyze`` process (benchmarks/process.py), the markup here
~0.001 s.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Any

__all__ = ["fmt", "report_html"]

_STYLE = """\
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img.thumb { max-width: 160px; max-height: 160px; }
img.overlay { max-width: 320px; max-height: 320px; }
.status-ok { color: #1a7f37; }
.status-no_crystal { color: #9a6700; }
.status-error { color: #cf222e; font-weight: bold; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; }
"""

#: The columns of the table of images.
_IMAGE_COLUMNS = (
    "file",
    "status",
    "input",
    "overlay",
    "columns",
    "ordered",
    "uniform",
    "uniform 95% CI",
    "phases (95% CI)",
    "calibration",
    "notes",
)


def fmt(value: Any, digits: int = 3) -> str:
    """A value as the report shows it: a float to ``digits`` decimals, None as a dash.

    Examples
    --------
    >>> fmt(0.12345), fmt(None), fmt(7)
    ('0.123', '–', '7')
    """
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _e(value: Any) -> str:
    """``value`` as text, escaped for HTML."""
    return escape(str(value))


def _f(value: Any) -> str:
    """:func:`fmt` of ``value``, escaped for HTML."""
    return escape(fmt(value))


def _interval(ci: Any) -> str:
    """``lo – hi``, or a dash without an interval."""
    return f"{_f(ci[0])} – {_f(ci[1])}" if ci else "–"


def _row(cells: Iterable[str], tag: str = "td") -> str:
    """One table row of already escaped cells."""
    return "<tr>" + "".join(f"<{tag}>{cell}</{tag}>" for cell in cells) + "</tr>"


def report_html(
    *,
    title: str,
    created: str,
    images: list[dict[str, Any]],
    stats: dict[str, Any],
    histogram: str | None,
    dot_histogram: str | None,
    config_yaml: str,
    versions: dict[str, str],
    skipped_inputs: list[dict[str, str]],
) -> str:
    """The report page.

    Parameters
    ----------
    title, created : str
        The page's title and its creation time.
    images : list of dict
        One entry per image, as :func:`~.batch.render_html` gathers them (links relative to the page).
    stats : dict
        :func:`~.batch.batch_statistics` of the images.
    histogram, dot_histogram : str or None
        Links of the histograms of uniform fractions and of the dots (None: not drawn).
    config_yaml : str
        The configuration as YAML text.
    versions : dict of str to str
        Package versions.
    skipped_inputs : list of dict
        Input entries not analysed, each ``{"path", "reason"}``.

    Returns
    -------
    str
        The HTML document.
    """
    failed = [im for im in images if im["status"] == "error"]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{_e(title)}</title>",
            f"<style>\n{_STYLE}</style>",
            "</head>",
            "<body>",
            f"<h1>{_e(title)}</h1>",
            _overview(created, stats),
            _batch_mean(stats),
            _phase_means(stats),
            *_batch_notes(stats, histogram, dot_histogram),
            '<h2 id="images">Images</h2>',
            "<table>",
            _row(_IMAGE_COLUMNS, "th"),
            *(_image_row(im) for im in images),
            "</table>",
            '<h2 id="failed">Failed files</h2>',
            _listing([(im["file"], im["error"]) for im in failed]),
            '<h2 id="skipped">Input entries not analysed</h2>',
            _listing([(s["path"], s["reason"]) for s in skipped_inputs]),
            '<h2 id="config">Configuration</h2>',
            f"<pre>{_e(config_yaml)}</pre>",
            '<h2 id="versions">Versions</h2>',
            "<table>",
            *(_row([_e(name), _e(version)]) for name, version in versions.items()),
            "</table>",
            "</body>",
            "</html>",
        ]
    )


def _overview(created: str, stats: dict[str, Any]) -> str:
    counts = stats["counts"]
    reused = f" ({_e(stats['n_skipped'])} reused from an earlier run)" if stats["n_skipped"] else ""
    return (
        f"<p>Created {_e(created)}. {_e(stats['n_images'])} images: {_e(counts['ok'])} ok, "
        f"{_e(counts['no_crystal'])} without crystal,\n{_e(counts['error'])} failed{reused}.\n"
        "Green = uniform (PbI2/FAPbI3-like), red = bright and purple = dim columns of the ordered (CsPbI3-like) "
        "phase.</p>"
    )


def _confidence(stats: dict[str, Any]) -> str:
    return f"{stats['confidence'] * 100:.0f}"


def _batch_mean(stats: dict[str, Any]) -> str:
    head = '<h2 id="batch">Batch mean</h2>\n'
    if stats["mean_uniform_fraction"] is None:
        return head + "<p>No image gave phase fractions.</p>"
    ci = stats["mean_ci"]
    interval = f"[{_confidence(stats)}% CI {_interval(ci)}]" if ci else "(no interval: fewer than 2 images)"
    return head + (
        f"<p>Mean uniform fraction <strong>{_f(stats['mean_uniform_fraction'])}</strong>\n{interval},\n"
        f"standard deviation {_f(stats['sd_uniform_fraction'])}; crystal-area-weighted pooled fraction "
        f"{_f(stats['pooled_uniform_fraction'])}.</p>\n<p><small>How: {_e(stats['method'])}.</small></p>"
    )


def _phase_means(stats: dict[str, Any]) -> str:
    head = '<h3 id="phases">Phase fractions (phase library)</h3>\n'
    how = f"\n<p><small>How: {_e(stats['phase_method'])}.</small></p>"
    means = stats["mean_phase_fractions"]
    if not means:
        return head + "<p>No image entered a mean of phase fractions.</p>" + how
    header = _row(["phase", "mean fraction", f"{_confidence(stats)}% CI of the mean", "sd"], "th")
    rows = [
        f'<tr><td>{_e(name)}</td><td class="num">{_f(m["mean"])}</td>\n'
        f'<td class="num">{_interval(m["ci"])}</td><td class="num">{_f(m["sd"])}</td></tr>'
        for name, m in means.items()
    ]
    return head + "\n".join(["<table>", header, *rows, "</table>"]) + how


def _batch_notes(stats: dict[str, Any], histogram: str | None, dot_histogram: str | None) -> list[str]:
    """The images left out of the means, the histograms and the link to ``dots.csv``."""
    notes = []
    left_out = stats["uncalibrated_left_out"]
    if left_out:
        files = ", ".join(f"<code>{_e(f)}</code>" for f in left_out)
        notes.append(f"<p><strong>Left out of the means, uncalibrated ({len(left_out)}):</strong>\n{files}.</p>")
    if stats["include_uncalibrated"]:
        notes.append("<p><strong>Uncalibrated images are included in the means (--include-uncalibrated).</strong></p>")
    if histogram:
        notes.append(f'<p><img src="{_e(histogram)}" alt="histogram of the uniform fractions"></p>')
    if dot_histogram:
        notes.append(
            f'<p><img src="{_e(dot_histogram)}" alt="dot edge lengths and per-dot uniform fractions"><br>\n'
            'One row per dot (size, shape, status or reason, fractions): <a href="dots.csv">dots.csv</a></p>'
        )
    return notes


def _image_row(im: dict[str, Any]) -> str:
    """One image's row of the table of images."""
    name = _e(im["name"])
    thumbnail = f'<img class="thumb" src="{_e(im["thumbnail"])}" alt="{name}">' if im["thumbnail"] else "–"
    overlay = (
        f'<a href="{_e(im["overlay"])}"><img class="overlay" src="{_e(im["overlay"])}" alt="overlay of {name}"></a>'
        if im["overlay"]
        else "–"
    )
    columns = (
        f'<a href="{_e(im["columns_link"])}">{_e(im["n_columns"])}</a>' if im["columns_link"] else _f(im["n_columns"])
    )
    phases = "<br>".join(
        f"{_e(phase)} {_f(v['fraction'])} [{_f(v['ci95'][0])} – {_f(v['ci95'][1])}]"
        for phase, v in im["phase_fractions"].items()
    )
    cells = [
        f'<td><a href="{_e(im["summary_link"] or "")}" title="{_e(im["file"])}">{name}</a></td>',
        f'<td class="status-{_e(im["status"])}">{_e(im["status"])}{" (reused)" if im["skipped"] else ""}</td>',
        f"<td>{thumbnail}</td>",
        f"<td>{overlay}</td>",
        f'<td class="num">{columns}</td>',
        f'<td class="num">{_f((im["fractions"] or {}).get("ordered"))}</td>',
        f'<td class="num">{_f(im["uniform"])}</td>',
        f'<td class="num">{_interval(im["ci"])}</td>',
        f"<td>{phases or '–'}</td>",
        f"<td>{_f(im['calibration'])}{' (left out of the means)' if im['left_out'] else ''}</td>",
        f"<td>{_e(im['error'] or im['message'] or '')}</td>",
    ]
    return "<tr>\n" + "\n".join(cells) + "\n</tr>"


def _listing(entries: list[tuple[Any, Any]]) -> str:
    """A list of ``path: reason`` entries, or "None."."""
    if not entries:
        return "<p>None.</p>"
    return "<ul>\n" + "\n".join(f"<li><code>{_e(path)}</code>: {_e(why)}</li>" for path, why in entries) + "\n</ul>"
