"""Faults a fault-injection run found: each test reproduces one and fails without its fix.

Odd file names, two runs into one ``--out``, ``--out`` inside the input, runs with nothing to
analyse, usage errors, resume after a deleted output, colour images, iteration caps, and Dask:
relative paths on a real ``dask.distributed`` scheduler with a worker started in another
folder, a cluster whose only worker is killed, errors and Ctrl-C on stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from stem_pipeline import Micrograph, batch, cli, io
from stem_pipeline._lock import LOCK_NAME
from stem_pipeline.synthetic import make_dot


def _dot(seed: int):
    return make_dot((192, 192), dot_size_nm=5.0, domain_size_nm=2.5, rng=seed).micrograph(source=f"dot {seed}")


def _folder_of_dots(folder: Path, seeds: range) -> Path:
    """``folder/img<i>.tif``, one small synthetic dot per seed."""
    folder.mkdir(parents=True)
    for i, seed in enumerate(seeds):
        io.save(_dot(seed), folder / f"img{i}.tif")
    return folder


@pytest.fixture(scope="module")
def good_tif(tmp_path_factory) -> Path:
    return io.save(_dot(21), tmp_path_factory.mktemp("good") / "good.tif")


def _snapshot(folder: Path, *, exclude: Path | None = None) -> dict[str, bytes]:
    return {
        str(p): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and (exclude is None or exclude not in p.parents)
    }


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "stem_pipeline.cli", *args]


def _status(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        return int(exc.code)


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


# --- 1. output paths stay inside --out; clean-up touches only our files ------------------------


def test_dot_names_write_only_inside_out_and_delete_nothing(tmp_path, good_tif, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("...tif", "..tif", "a b;c.tif"):
        shutil.copy(good_tif, tmp_path / name)
    (tmp_path / ".notes.tmp").write_text("x")
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / ".mine.tmp").write_text("y")  # a user's file inside --out is not ours either
    before = _snapshot(tmp_path)
    assert _status(["-q", "analyze", "...tif", "..tif", "a b;c.tif", "--out", "o", "--workers", "1"]) == 0
    assert _snapshot(tmp_path, exclude=tmp_path / "o") == {k: v for k, v in before.items() if "/o/" not in k}
    assert (tmp_path / "o" / ".mine.tmp").read_text() == "y"
    assert not (tmp_path / "o" / "summary.json").exists()  # "..tif" once wrote into --out itself
    folders = [r["folder"] for r in _report(tmp_path / "o")["images"]]
    assert len(set(folders)) == 3
    for folder in folders:
        path = (tmp_path / "o" / folder).resolve()
        assert path.parent == (tmp_path / "o").resolve() and not folder.startswith(".")
        assert json.loads((path / "summary.json").read_text())["status"] == "ok"


def test_output_names_are_plain_visible_folder_names():
    names = batch.output_names(["...tif", "..tif", ".tif.tif", "x/../y.tif", "a\\b.tif", "é.tif", "z" * 300 + ".tif"])
    assert len(set(names)) == len(names)
    for name in names:
        assert name not in (".", "..") and not name.startswith(".")
        assert "/" not in name and "\\" not in name and len(name) <= 96


# --- 3. one run at a time per output folder ---------------------------------------------------


def test_second_run_into_a_busy_out_is_refused_and_the_first_finishes_consistently(tmp_path, good_tif, capsys):
    folder = _folder_of_dots(tmp_path / "in", range(30, 34))
    out = tmp_path / "out"
    first = subprocess.Popen(_cli("-q", "analyze", str(folder), "--out", str(out), "--workers", "1"))
    try:
        deadline = time.monotonic() + 120
        while not (out / LOCK_NAME).is_file() or not (out / LOCK_NAME).read_text().strip():
            assert first.poll() is None and time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.05)
        assert _status(["-q", "analyze", str(folder), "--out", str(out), "--workers", "1"]) == 2
        err = capsys.readouterr().err
        assert "another stem-pipeline run" in err and str(first.pid) in err
    finally:
        assert first.wait(timeout=300) == 0
    report = {r["folder"]: r["status"] for r in _report(out)["images"]}
    assert report == {f"img{i}": "ok" for i in range(4)}
    for name, status in report.items():
        assert json.loads((out / name / "summary.json").read_text())["status"] == status


# --- 4. iteration counts have a maximum -------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        "classify:\n  mrf_iterations: 1000000000\n",
        "classify:\n  boundary_iterations: 1000000000\n",
        "denoise:\n  steps:\n  - name: rl\n    iterations: 1.0e+9\n    tol: 0\n",
    ],
)
def test_unbounded_iteration_counts_are_refused(tmp_path, config, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(config)
    assert _status(["analyze", "--print-config", "--config", str(path)]) == 2
    assert "less than or equal" in capsys.readouterr().err


# --- 5 and 6. what is analysed, what is skipped, and why ---------------------------------------


def test_out_inside_the_input_folder_is_not_read_back(tmp_path, good_tif):
    shutil.copy(good_tif, tmp_path / "dot.tif")
    out = tmp_path / "results"
    for _ in range(2):
        report = batch.run_batch([tmp_path], out, workers=1, progress=False)
        assert [Path(r["file"]).name for r in report] == ["dot.tif"]  # no overlay.png, thumbnail.png
    skipped = _report(out)["skipped_inputs"]
    assert any(Path(s["path"]) == out and "output folder" in s["reason"] for s in skipped)


def test_nothing_to_analyse_exits_2_and_says_why(tmp_path, capsys):
    (tmp_path / "x.tif").mkdir()
    assert _status(["analyze", str(tmp_path / "x.tif"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no images" in err and "x.tif" in err and "no image files" in err


def test_skipped_entries_are_counted_with_their_reasons(tmp_path, good_tif, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(good_tif, folder / "dot.tif")
    (folder / ".hidden.tif").write_bytes(good_tif.read_bytes())
    (folder / "broken.tif").symlink_to(folder / "gone.tif")
    (folder / "notes.txt").write_text("n")
    assert _status(["analyze", str(folder), "--out", str(tmp_path / "o"), "--workers", "1"]) == 0
    reasons = {Path(s["path"]).name: s["reason"] for s in _report(tmp_path / "o")["skipped_inputs"]}
    assert reasons == {
        ".hidden.tif": "hidden file",
        "broken.tif": "broken symbolic link",
        "notes.txt": "not an image file (.txt)",
    }
    assert "skipped 3 input entries" in capsys.readouterr().err
    html = (tmp_path / "o" / "report.html").read_text()
    assert "broken symbolic link" in html


# --- 7. usage errors: one line, exit 2 ---------------------------------------------------------


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--scheduler", "foo"], "cannot reach the Dask scheduler"),
        (["--scheduler", "tcp://127.0.0.1:1"], "cannot reach the Dask scheduler"),
        (["--pixel-size-nm", "-1"], "--pixel-size-nm must be a positive"),
        (["--pixel-size-nm", "nan"], "--pixel-size-nm must be a positive"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(tmp_path, good_tif, extra, message, capsys, monkeypatch):
    monkeypatch.setattr(batch, "SCHEDULER_CONNECT_TIMEOUT_S", 2.0)
    assert _status(["analyze", str(good_tif), "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_out_that_is_a_file_is_a_usage_error(tmp_path, good_tif, capsys):
    (tmp_path / "o").write_text("not a folder")
    assert _status(["analyze", str(good_tif), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "is an existing file" in err and len(err.splitlines()) == 1
    assert (tmp_path / "o").read_text() == "not a folder"


def test_unwritable_out_is_a_usage_error(tmp_path, good_tif, capsys):
    out = tmp_path / "locked" / "o"
    (tmp_path / "locked").mkdir()
    if os.geteuid() == 0:  # root writes through permission bits: a path below a file cannot be created either
        (tmp_path / "locked").rmdir()
        (tmp_path / "locked").write_text("")
    else:
        (tmp_path / "locked").chmod(0o500)
    assert _status(["analyze", str(good_tif), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot write the output folder" in err and len(err.splitlines()) == 1


# --- 9. resume checks every file of the contract ------------------------------------------------


def test_resume_redoes_an_image_whose_outputs_were_deleted(tmp_path, good_tif):
    out = tmp_path / "o"
    batch.run_batch([good_tif], out, workers=1, progress=False)
    for name in ("columns.csv", "overlay.png"):
        (out / "good" / name).unlink()
        again = batch.run_batch([good_tif], out, workers=1, progress=False)
        assert not again[0]["skipped"] and (out / "good" / name).is_file()
    assert batch.run_batch([good_tif], out, workers=1, progress=False)[0]["skipped"]


# --- 10. colour images ------------------------------------------------------------------------


def test_false_colour_image_is_refused_grey_rgb_is_read(tmp_path, good_tif):
    import imageio.v3 as iio
    from matplotlib import colormaps

    grey = io.load(good_tif).data
    grey = (255 * (grey - grey.min()) / np.ptp(grey)).astype(np.uint8)
    iio.imwrite(tmp_path / "viridis.png", (255 * colormaps["viridis"](grey)[..., :3]).astype(np.uint8))
    iio.imwrite(tmp_path / "grey_rgb.png", np.repeat(grey[..., None], 3, axis=-1))
    report = {
        Path(r["file"]).stem: r
        for r in batch.run_batch(
            [tmp_path / "viridis.png", tmp_path / "grey_rgb.png"],
            tmp_path / "o",
            workers=1,
            progress=False,
            pixel_size_nm=0.035,
        )
    }
    assert report["viridis"]["status"] == "error" and "colour" in report["viridis"]["error"]
    assert "viridis.png" in report["viridis"]["error"]
    assert report["grey_rgb"]["status"] == "ok"


# --- 11. stderr with Dask: every per-file error, prefixed; Ctrl-C in one line -------------------


def test_every_file_error_reaches_stderr_with_a_prefix(tmp_path, good_tif):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(good_tif, folder / "good.tif")
    for i in range(4):
        (folder / f"broken{i}.tif").write_bytes(b"II*\x00garbage")
    done = subprocess.run(
        _cli("-q", "analyze", str(folder), "--out", str(tmp_path / "o"), "--workers", "2"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR: ")]
    assert sorted(Path(line.split()[1].rstrip(":")).name for line in errors) == [f"broken{i}.tif" for i in range(4)]
    assert "distributed." not in done.stderr and "Traceback" not in done.stderr


def test_ctrl_c_on_a_local_cluster_prints_one_line_and_resumes(tmp_path):
    folder = _folder_of_dots(tmp_path / "in", range(40, 46))
    # First in input order, so one worker is still on it (seconds) when the other's first image is done:
    # with small images only, a loaded machine could finish the batch before the interrupt arrived.
    slow = np.random.default_rng(0).poisson(50, (2560, 2560)).astype(np.float32)
    io.save(Micrograph(slow, pixel_size_nm=0.02, source="noise"), folder / "a_slow.tif")
    out = tmp_path / "o"
    # A terminal's Ctrl-C: SIGINT to the whole process group (the command and its workers).
    proc = subprocess.Popen(
        _cli("analyze", str(folder), "--out", str(out), "--workers", "2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while not list(out.glob("*/summary.json")):
        assert proc.poll() is None and time.monotonic() < deadline, "no image finished in time"
        time.sleep(0.05)
    assert not (out / "a_slow" / "summary.json").exists()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert [line for line in err.splitlines() if line.startswith("ERROR")] == [
        "ERROR: interrupted; a re-run resumes where this one stopped"
    ]
    assert _status(["-q", "analyze", str(folder), "--out", str(out), "--workers", "1"]) == 0
    assert sum(r["skipped"] for r in _report(out)["images"]) >= 1


def test_a_local_cluster_writes_nothing_outside_out(tmp_path):
    """Dask's scratch space and lock files (in the system's temporary folder by default) go to a temporary
    folder inside ``--out``, removed with the cluster."""
    folder = _folder_of_dots(tmp_path / "in", range(50, 52))
    tmp, out = tmp_path / "tmp", tmp_path / "o"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    done = subprocess.run(_cli("-q", "analyze", str(folder), "--out", str(out), "--workers", "2"), env=env, timeout=300)
    assert done.returncode == 0
    assert list(tmp.iterdir()) == []
    assert not list(out.glob(".dask-scratch-*"))
    assert {r["status"] for r in _report(out)["images"]} == {"ok"}


# --- 2 and 8. a real dask.distributed scheduler and worker on 127.0.0.1 -------------------------


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """A ``dask scheduler`` process on 127.0.0.1; yields its address."""
    folder = tmp_path_factory.mktemp("scheduler")
    info = folder / "scheduler.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(info),
        ],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not info.is_file():
            assert proc.poll() is None and time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        yield json.loads(info.read_text())["address"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _start_worker(address: str, cwd: Path) -> subprocess.Popen:
    """A ``dask worker`` process (with its nanny) in ``cwd``, in its own process group."""
    from distributed import Client

    cwd.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_worker",
            address,
            "--nworkers",
            "1",
            "--nthreads",
            "1",
            "--no-dashboard",
        ],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    with Client(address, timeout=30) as client:
        client.wait_for_workers(1, timeout=60)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_relative_paths_on_a_scheduler_whose_worker_runs_elsewhere(scheduler, tmp_path, good_tif, monkeypatch):
    worker_dir = tmp_path / "worker_cwd"
    worker = _start_worker(scheduler, worker_dir)
    try:
        (tmp_path / "me" / "batch").mkdir(parents=True)
        for i in range(2):
            shutil.copy(good_tif, tmp_path / "me" / "batch" / f"img{i}.tif")
        (tmp_path / "me" / "batch" / "bad.tif").write_bytes(b"II*\x00garbage")
        monkeypatch.chdir(tmp_path / "me")
        assert _status(["-q", "analyze", "batch", "--out", "o", "--scheduler", scheduler]) == 1
    finally:
        _stop(worker)
    report = {r["folder"]: r for r in _report(tmp_path / "me" / "o")["images"]}
    assert {k: r["status"] for k, r in report.items()} == {"img0": "ok", "img1": "ok", "bad": "error"}
    assert "bad.tif" in report["bad"]["error"] and "no such file" not in report["bad"]["error"].lower()
    assert (tmp_path / "me" / "o" / "bad" / "summary.json").is_file()
    assert not [p for p in worker_dir.rglob("*") if p.is_file()]  # nothing written where the worker runs


def test_killed_only_worker_times_out_and_keeps_finished_results(scheduler, tmp_path, monkeypatch):
    folder = _folder_of_dots(tmp_path / "in", range(50, 56))
    out = tmp_path / "o"
    worker = _start_worker(scheduler, tmp_path / "worker_cwd")

    def kill_after_first_result() -> None:
        deadline = time.monotonic() + 120
        while not list(out.glob("*/summary.json")) and time.monotonic() < deadline:
            time.sleep(0.02)
        _stop(worker)

    killer = threading.Thread(target=kill_after_first_result)
    killer.start()
    try:
        report = batch.run_batch([folder], out, scheduler=scheduler, progress=False, no_worker_timeout_s=3.0)
    finally:
        killer.join()
        _stop(worker)
    statuses = [r["status"] for r in report]
    assert len(report) == 6 and "ok" in statuses and "error" in statuses
    for row in report:
        summary = json.loads((out / row["folder"] / "summary.json").read_text())
        assert summary["status"] == row["status"]
        if row["status"] == "error":
            assert "no worker" in row["error"] and row["folder"] in row["error"]
    csv_rows = (out / "report.csv").read_text().splitlines()
    assert len(csv_rows) == 7
    resumed = batch.run_batch([folder], out, workers=1, progress=False)
    assert [r["status"] for r in resumed] == ["ok"] * 6
    assert [r["skipped"] for r in resumed] == [s == "ok" for s in statuses]
