"""Batch analysis: statuses and error isolation, resume after a kill, Dask clusters, worker death."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stem_pipeline import batch, cli, io
from stem_pipeline._atomic import TEMPORARY
from stem_pipeline.synthetic import make_carbon, make_dot

N_GOOD = 3


def _dot(seed: int):
    return make_dot((256, 256), dot_size_nm=6.0, domain_size_nm=2.5, rng=seed).micrograph(source=f"dot {seed}")


def _write_good(folder: Path, n: int, *, prefix: str = "good") -> list[Path]:
    return [io.save(_dot(10 + i), folder / f"{prefix}{i}.tif") for i in range(n)]


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    """Good dots, a truncated TIFF, a 3-D stack, a NaN image and a carbon-only image."""
    folder = tmp_path_factory.mktemp("mixed")
    good = _write_good(folder, N_GOOD)
    data = good[0].read_bytes()
    (folder / "truncated.tif").write_bytes(data[: len(data) // 3])
    np.save(folder / "stack.npy", np.stack([_dot(1).data] * 3))
    nan = _dot(2).data.copy()
    nan[100:120, 50:90] = np.nan
    np.save(folder / "nan.npy", nan)
    io.save(make_carbon((256, 256), rng=3), folder / "carbon.tif")
    return folder


EXPECTED = {
    **{f"good{i}": "ok" for i in range(N_GOOD)},
    "truncated": "error",
    "stack": "error",
    "nan": "error",
    "carbon": "no_crystal",
}


def _temporaries(folder: Path) -> list[Path]:
    """Temporary files of atomic writes (``.<name>.<random>.stem-pipeline-tmp[.ext]``) left anywhere under ``folder``."""
    return [p for p in folder.rglob(".*") if TEMPORARY.fullmatch(p.name)]


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def mixed_run(mixed_folder, tmp_path_factory):
    """The mixed folder analysed in-process through the command line."""
    before = _snapshot(mixed_folder)
    out = tmp_path_factory.mktemp("mixed_out")
    status = cli.main(["-q", "analyze", str(mixed_folder), "--out", str(out), "--workers", "1"])
    return {"out": out, "status": status, "before": before}


def test_output_names_are_unique_and_deterministic():
    files = ["a/x/img.tif", "a/y/img.tif", "a/y/img.npy", "b/other.dm4", "c/x__img.tif"]
    names = batch.output_names(files)
    assert len(set(names)) == len(files)
    assert names[3] == "other"  # unique stems are kept
    assert all("img" in n for n in names[:3])
    assert batch.output_names(files[::-1]) == names[::-1]  # independent of the order
    assert len({n.lower() for n in batch.output_names(["d/Scan.tif", "d/scan.tif"])}) == 2  # case-insensitive disks


def test_mixed_folder_statuses_and_exit_status(mixed_run, mixed_folder):
    assert mixed_run["status"] == 1  # some inputs failed, the rest were processed
    out = mixed_run["out"]
    report = json.loads((out / "report.json").read_text())
    rows = {Path(r["file"]).stem: r for r in report["images"]}
    assert {k: r["status"] for k, r in rows.items()} == EXPECTED
    for name, row in rows.items():
        summary = json.loads((out / row["folder"] / "summary.json").read_text())
        assert summary["status"] == EXPECTED[name]
        if EXPECTED[name] == "error":
            assert name in summary["error"]  # the message names the file
        if EXPECTED[name] == "ok":
            assert summary["n_columns"] > 50
            lo, hi = summary["uniform_fraction_ci95"]
            assert 0.0 <= lo <= summary["fractions"]["uniform"] <= hi <= 1.0
            assert (out / row["folder"] / "overlay.png").is_file()
            assert (out / row["folder"] / "columns.csv").is_file()
    assert "truncat" in rows["truncated"]["error"] or "corrupt" in rows["truncated"]["error"]
    assert "2-D" in rows["stack"]["error"]
    assert "NaN" in rows["nan"]["error"] or "nan" in rows["nan"]["error"]
    assert report["statistics"]["counts"] == {"ok": N_GOOD, "no_crystal": 1, "error": 3}


def test_report_csv_has_every_input(mixed_run):
    import csv

    with open(mixed_run["out"] / "report.csv", newline="") as f:
        rows = {Path(r["file"]).stem: r for r in csv.DictReader(f)}
    assert {k: r["status"] for k, r in rows.items()} == EXPECTED
    assert rows["stack"]["error"]  # failed rows carry their error
    assert 0.0 <= float(rows["good0"]["uniform_fraction"]) <= 1.0


def test_inputs_are_never_modified(mixed_run, mixed_folder):
    assert _snapshot(mixed_folder) == mixed_run["before"]


def test_no_temporaries_and_every_json_parses(mixed_run):
    out = mixed_run["out"]
    assert not _temporaries(out)
    for path in out.rglob("*.json"):
        json.loads(path.read_text())


def test_second_run_skips_finished_images(mixed_run, mixed_folder):
    out = mixed_run["out"]
    summaries = {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")}
    report = batch.run_batch([mixed_folder], out, workers=1, progress=False)
    done = {r["file"]: r["skipped"] for r in report}
    for r in report:  # finished images are reused; failed ones are tried again
        assert r["skipped"] == (r["status"] != "error"), r["file"]
    assert len(done) == len(EXPECTED)
    for path, mtime in summaries.items():
        if json.loads(path.read_text())["status"] != "error":
            assert path.stat().st_mtime_ns == mtime


def test_overwrite_redoes_an_image(mixed_folder, tmp_path):
    good = mixed_folder / "good0.tif"
    first = batch.run_batch([good], tmp_path, workers=1, progress=False)
    again = batch.run_batch([good], tmp_path, workers=1, progress=False, overwrite=True)
    assert not again[0]["skipped"] and first[0]["fractions"] == again[0]["fractions"]


def test_a_quiet_batch_shows_no_bar_and_does_not_import_tqdm(mixed_folder, tmp_path):
    code = (
        "import sys; from stem_pipeline import batch; "
        f"batch.run_batch([{str(mixed_folder / 'carbon.tif')!r}], {str(tmp_path)!r}, workers=1, progress=False); "
        "print('tqdm' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False" and "image" not in done.stderr


def test_recorded_versions_are_the_installed_distributions():
    from importlib import metadata

    from stem_pipeline.provenance import versions

    found = versions(("pydantic", "no-such-distribution-here"))
    assert found["no-such-distribution-here"] == "not installed"
    for name, version in found.items():
        if version != "not installed":
            assert version == metadata.version(name), name


def test_temporaries_of_a_killed_run_are_removed(mixed_folder, tmp_path):
    inputs = [mixed_folder / "carbon.tif", mixed_folder / "stack.npy"]  # one finished, one to redo
    batch.run_batch(inputs, tmp_path, workers=1, progress=False)
    left = [
        tmp_path / "carbon" / ".thumbnail.png.x1abcdef.stem-pipeline-tmp.png",
        tmp_path / "stack" / ".summary.json.x2abcdef.stem-pipeline-tmp.json",
        tmp_path / ".report.csv.x3abcdef.stem-pipeline-tmp.csv",
    ]
    for path in left:
        path.write_bytes(b"half a fi")
    report = batch.run_batch(inputs, tmp_path, workers=1, progress=False)
    assert [r["skipped"] for r in report] == [True, False]
    assert not _temporaries(tmp_path)


def test_colliding_stems_get_separate_folders(tmp_path, mixed_folder):
    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        shutil.copy(mixed_folder / "carbon.tif", tmp_path / "in" / sub / "img.tif")
    report = batch.run_batch([tmp_path / "in"], tmp_path / "out", workers=1, progress=False)
    assert sorted(r["folder"] for r in report) == ["a__img", "b__img"]
    assert all((tmp_path / "out" / r["folder"] / "summary.json").is_file() for r in report)


# --- interrupted runs ---------------------------------------------------------------------------


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "stem_pipeline.cli", *args]


def test_kill_and_resume(tmp_path, mixed_folder):
    folder = tmp_path / "in"
    folder.mkdir()
    n = 6
    for i in range(n):
        shutil.copy(mixed_folder / f"good{i % N_GOOD}.tif", folder / f"img{i}.tif")
    out = tmp_path / "out"
    proc = subprocess.Popen(_cli("-q", "analyze", str(folder), "--out", str(out), "--workers", "1"))
    deadline = time.monotonic() + 120
    try:
        while len(list(out.glob("*/summary.json"))) < 2:
            assert proc.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline, "no image finished in time"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    first = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/summary.json")}
    assert 2 <= len(first) < n, "kill the run part-way"
    for path in out.glob("*/summary.json"):
        json.loads(path.read_text())  # a summary on disk is complete even after SIGKILL
    done = subprocess.run(_cli("-q", "analyze", str(folder), "--out", str(out), "--workers", "1"), timeout=300)
    assert done.returncode == 0
    report = json.loads((out / "report.json").read_text())["images"]
    assert sorted(r["folder"] for r in report) == [f"img{i}" for i in range(n)]
    for row in report:  # each image computed exactly once: the first run's results were reused
        assert row["status"] == "ok"
        assert row["skipped"] == (row["folder"] in first)
    for name, mtime in first.items():
        assert (out / name / "summary.json").stat().st_mtime_ns == mtime
    assert not _temporaries(out)
    for path in out.rglob("*.json"):
        json.loads(path.read_text())


# --- Dask clusters ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    with batch.local_cluster(2) as c:
        yield c


def _thread_budget() -> dict:
    import os

    from stem_pipeline._threads import FFT_WORKERS

    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    return {"env": [os.environ.get(n) for n in names], "fft": FFT_WORKERS}


def test_local_cluster_workers_share_the_cores_for_blas_and_fft_threads(cluster):
    """Each of the 2 workers gets cores // 2 BLAS and FFT threads (not Dask's 1 BLAS + our 2 FFT threads each);
    a budget set in the environment wins, as Dask documents."""
    import os

    from distributed import Client

    threads = str(max(1, (os.cpu_count() or 1) // 2))
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    expected = [os.environ.get(name, threads) for name in names]
    with Client(cluster) as client:
        budgets = list(client.run(_thread_budget).values())
    assert len(budgets) == 2
    assert all(b == {"env": expected, "fft": max(1, int(expected[0]))} for b in budgets)


def _comparable(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in ("timings_s", "versions", "skipped", "folder")}


def test_distributed_scheduler_matches_local_run(cluster, mixed_run, mixed_folder, tmp_path):
    out = tmp_path / "dist"
    status = cli.main(["-q", "analyze", str(mixed_folder), "--out", str(out), "--scheduler", cluster.scheduler_address])
    assert status == 1
    local = json.loads((mixed_run["out"] / "report.json").read_text())["images"]
    dist = json.loads((out / "report.json").read_text())["images"]
    assert [_comparable(r) for r in dist] == [_comparable(r) for r in local]
    for row in local:
        if row["status"] == "ok":
            a = (mixed_run["out"] / row["folder"] / "columns.csv").read_bytes()
            assert (out / row["folder"] / "columns.csv").read_bytes() == a


def _crash_plugin():
    """A worker plugin making the batch task kill its worker process for files whose name contains ``crash``.

    Only the crash is fake: other files go through the real analysis.
    """
    from distributed import WorkerPlugin

    class CrashOnName(WorkerPlugin):
        name = "stem-pipeline-test-crash"

        def setup(self, worker):
            import stem_pipeline.batch as module

            original = getattr(module, "_original_analyze_task", module.analyze_task)
            module._original_analyze_task = original

            def crashing(path, *args, **kwargs):
                if "crash" in Path(path).name:
                    os._exit(1)
                return original(path, *args, **kwargs)

            module.analyze_task = crashing

    return CrashOnName()


def test_dead_worker_is_retried_once_then_recorded(cluster, mixed_folder, tmp_path):
    from distributed import Client

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(mixed_folder / "good0.tif", folder / "good0.tif")
    shutil.copy(mixed_folder / "good1.tif", folder / "crash_me.tif")
    with Client(cluster) as client:
        plugin = _crash_plugin()
        client.register_plugin(plugin)
        try:
            report = batch.run_batch([folder], tmp_path / "out", scheduler=cluster.scheduler_address, progress=False)
        finally:
            client.unregister_worker_plugin(plugin.name)
    rows = {r["folder"]: r for r in report}
    assert rows["good0"]["status"] == "ok"
    assert rows["crash_me"]["status"] == "error"
    assert "crash_me.tif" in rows["crash_me"]["error"] and "died" in rows["crash_me"]["error"]
    summary = json.loads((tmp_path / "out" / "crash_me" / "summary.json").read_text())
    assert summary["status"] == "error"


def test_two_local_clusters_at_once_take_no_fixed_port():
    """Each cluster's scheduler serves its HTTP routes on a free port: a second cluster on the machine
    (another batch, another user) no longer warned that port 8787 was taken."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with batch.local_cluster(1) as first, batch.local_cluster(1) as second:
            ports = [c.scheduler_info["services"]["dashboard"] for c in (first, second)]
    assert 8787 not in ports and ports[0] != ports[1]


def test_running_report_is_rewritten_at_a_bounded_cost_and_when_interrupted(tmp_path, monkeypatch):
    """The report written while a batch runs is not rewritten after every image (O(n^2) in the batch):
    a rewrite waits until REPORT_COST_FACTOR times the last one's cost has passed; an interrupted batch
    still leaves a report of every image finished."""
    import stem_pipeline.report.batch as report_batch

    folder = tmp_path / "in"
    folder.mkdir()
    n = 8
    for i in range(n):
        (folder / f"img{i}.npy").write_bytes(b"")  # never read: the task is faked
    calls = []
    real_write = report_batch.write_reports

    def slow_write(rows, out, **kwargs):
        calls.append((len(rows), kwargs["html"]))
        time.sleep(0.1)  # a report of a long batch: 10 images already make the next rewrite wait 1 s
        return real_write(rows, out, **kwargs)

    def fake_task(path, folder, config=None, **options):
        if Path(path).stem == "img5" and interrupt:
            raise KeyboardInterrupt
        return {"file": str(path), "status": "no_crystal", "n_columns": 0, "dots": []}

    monkeypatch.setattr(report_batch, "write_reports", slow_write)
    monkeypatch.setattr(batch, "analyze_task", fake_task)
    interrupt = False
    batch.run_batch([folder], tmp_path / "out", workers=1, progress=False)
    interim = [k for k, html in calls if not html]
    assert interim == [1], "one rewrite while the batch ran (it took ~0.1 s; the next was due 1 s later)"
    assert calls[-1] == (n, True)
    interrupt = True
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        batch.run_batch([folder], tmp_path / "out2", workers=1, progress=False)
    report = json.loads((tmp_path / "out2" / "report.json").read_text())["images"]
    assert sorted(r["folder"] for r in report) == [f"img{i}" for i in range(5)]
