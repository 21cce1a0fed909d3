"""The Street View downloader against a local fake of the API (127.0.0.1 only)."""

import re
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from geoguesser.cli import main
from geoguesser.data.streetview import STATE_DIR, Settings, download, read_key, read_points
from geoguesser.data.validate import validate
from geoguesser.errors import UserError
from helpers.fake_streetview import KEY, FakeStreetView, panorama_at
from helpers.snapshots import tree_bytes, tree_snapshot

# Points around Zagreb (some share a panorama) and a few north of 45.5 (no panorama there).
POINTS = [(45.30 + 0.01 * i, 15.90 + 0.013 * i) for i in range(12)] + [(45.6, 16.0), (45.7, 16.2)]


@pytest.fixture
def server():
    fake = FakeStreetView()
    fake.base_url = fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def coords(tmp_path):
    path = tmp_path / "coords.csv"
    pd.DataFrame(POINTS, columns=["latitude", "longitude"]).to_csv(path, index=False)
    return path


def fast(server, **overrides) -> Settings:
    settings = dict(
        base_url=server.base_url,
        concurrency=4,
        rate_per_s=500,
        retries=3,
        backoff_s=0.01,
        progress=False,
    )
    settings.update(overrides)
    return Settings(**settings)


def expected_panoramas():
    return {p["pano_id"] for p in (panorama_at(lat, lon) for lat, lon in POINTS) if p}


def test_download_writes_the_layout_once_per_panorama(server, coords, tmp_path):
    out = tmp_path / "out"
    summary = download(coords, out, KEY, fast(server))
    assert summary.stopped is None and summary.no_panorama == 2
    frame = pd.read_csv(out / "data.csv")
    assert set(frame.pano_id) == expected_panoramas() and frame.uuid.is_unique
    assert summary.duplicates == len(POINTS) - 2 - len(expected_panoramas())
    # Labelled with the panorama's own coordinates; the sampled point is kept beside them.
    row = frame.iloc[0]
    pano = panorama_at(row.sample_latitude, row.sample_longitude)
    assert (row.latitude, row.longitude) == pytest.approx((pano["lat"], pano["lng"]))
    assert validate([out]).ok
    assert all(count == 1 for count in server.images.values()) and len(server.images) == 4 * len(
        frame
    )


def test_second_run_downloads_nothing_again(server, coords, tmp_path):
    out = tmp_path / "out"
    download(coords, out, KEY, fast(server))
    served, before = sum(server.images.values()), tree_snapshot(out / "images")
    summary = download(coords, out, KEY, fast(server))
    assert summary.downloaded == 0 and sum(server.images.values()) == served
    assert tree_snapshot(out / "images") == before


def test_retries_429_500_slow_answers_and_a_dropped_connection(server, coords, tmp_path):
    server.failures = [429, 500, 503, 429]
    server.drop_images = 2
    server.delay_s = 0.05
    out = tmp_path / "out"
    summary = download(coords, out, KEY, fast(server))
    assert summary.stopped is None
    assert validate([out]).ok and set(pd.read_csv(out / "data.csv").pano_id) == expected_panoramas()
    assert not list(out.rglob("*.part"))


def test_rate_limit_spaces_requests(server, coords, tmp_path):
    start = time.monotonic()
    download(coords, tmp_path / "out", KEY, fast(server, rate_per_s=40))
    requests = server.metadata_requests + sum(server.images.values())
    assert time.monotonic() - start >= (requests - 1) / 40 * 0.95


@pytest.mark.parametrize(
    "setup, message",
    [
        (
            lambda s: setattr(s, "metadata_status", "REQUEST_DENIED"),
            "rejected the key (REQUEST_DENIED)",
        ),
        (
            lambda s: setattr(s, "metadata_status", "OVER_QUERY_LIMIT"),
            "quota exhausted (OVER_QUERY_LIMIT)",
        ),
        (lambda s: setattr(s, "always_429", True), "quota exhausted"),
    ],
)
def test_fatal_answers_stop_cleanly_in_one_line(server, coords, tmp_path, capsys, setup, message):
    key_file = tmp_path / "key.txt"
    key_file.write_text(KEY)
    setup(server)
    out = tmp_path / "out"
    code = main(["download", str(coords), "--out", str(out), "--key-file", str(key_file),
                 "--base-url", server.base_url, "--retries", "1", "--rate", "500"])  # fmt: skip
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("geoguesser download:")]
    assert code == 2 and len(errors) == 1 and message in errors[0] and "Traceback" not in err
    assert (tmp_path / "out" / "data.csv").exists()  # the (empty) dataset stays readable


def test_network_down_keeps_what_was_finished(server, coords, tmp_path):
    out = tmp_path / "out"
    few = tmp_path / "few.csv"
    pd.DataFrame(POINTS[:3], columns=["latitude", "longitude"]).to_csv(few, index=False)
    download(few, out, KEY, fast(server))
    kept = pd.read_csv(out / "data.csv")
    server.stop()
    summary = download(coords, out, KEY, fast(server, retries=1))
    assert summary.stopped and summary.stopped.startswith(
        "network down: cannot connect to 127.0.0.1"
    )
    assert pd.read_csv(out / "data.csv").uuid.tolist() == kept.uuid.tolist()
    assert validate([out]).ok
    server.start()  # for the fixture's stop


def test_resume_after_a_kill(server, coords, tmp_path):
    key_file = tmp_path / "key.txt"
    key_file.write_text(KEY)
    server.delay_s = 0.15
    out = tmp_path / "out"
    command = [sys.executable, "-m", "geoguesser.cli", "download", str(coords), "--out", str(out),
               "--key-file", str(key_file), "--base-url", server.base_url, "--concurrency", "2",
               "--rate", "500"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    journal = out / STATE_DIR / "journal.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (
        not journal.exists() or journal.read_text().count('"ok"') < 2
    ):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    finished = {
        line.split('"pano_id": "')[1].split('"')[0]
        for line in journal.read_text().splitlines()
        if '"ok"' in line
    }
    assert finished and not (out / "data.csv").exists() or validate([out]).ok
    served = dict(server.images)
    server.delay_s = 0.0
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    frame = pd.read_csv(out / "data.csv")
    assert set(frame.pano_id) == expected_panoramas() and validate([out]).ok
    for pano in finished:  # finished before the kill: never fetched again
        assert all(server.images[(pano, h)] == served[(pano, h)] == 1 for h in (0, 90, 180, 270))
    assert not list(out.rglob("*.part"))


def test_the_key_is_in_no_output_and_no_log_line(server, coords, tmp_path, capsys):
    key_file = tmp_path / "key.txt"
    key_file.write_text(KEY)
    server.failures = [500, 429]
    out = tmp_path / "out"
    assert main(["download", str(coords), "--out", str(out), "--key-file", str(key_file),
                 "--base-url", server.base_url, "--rate", "500"]) == 0  # fmt: skip
    server.metadata_status = "REQUEST_DENIED"
    main(["download", str(coords), "--out", str(tmp_path / "out2"), "--key-file", str(key_file),
          "--base-url", server.base_url, "--rate", "500"])  # fmt: skip
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err
    for path in [*out.rglob("*"), *(tmp_path / "out2").rglob("*")]:
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    assert KEY in server.keys_seen  # it was sent, only to the API


def test_missing_key_and_bad_coordinates_are_one_line_each(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("GOOGLE_MAPS_API_KEY", raising=False)
    with pytest.raises(UserError, match="no API key: set GOOGLE_MAPS_API_KEY or pass --key-file"):
        read_key(None)
    monkeypatch.setenv("GOOGLE_MAPS_API_KEY", "k")
    assert read_key(None) == "k"
    bad = tmp_path / "bad.csv"
    bad.write_text("latitude,longitude\n45.1,15.2\nnorth,15.0\n95,15\n45.2,\n")
    with pytest.raises(UserError) as error:
        read_points(bad)
    lines = str(error.value).splitlines()
    assert [line.split(": ")[0].rsplit(":", 1)[1] for line in lines] == ["3", "4", "5"]
    assert main(["download", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 3
    assert not (tmp_path / "o").exists()


# --- nothing lost: --out at an existing 60-location dataset, in every failure mode -----------

# 60 distinct panoramas of the fake API's 0.05-degree lattice, and 20 more for the failing runs.
SIXTY = [(45.0 + 0.05 * i, 15.0 + 0.05 * j) for i in range(10) for j in range(6)]
MORE = [(44.0 + 0.05 * i, 16.0 + 0.05 * j) for i in range(4) for j in range(5)]


def silent(server):
    server.held.update({"metadata", "image"})


def views_held(server):
    # A location finishes only with its four views, and none is answered before the signal
    # (sent once the first view was asked for): no location can finish, however slow the
    # machine is to deliver the signal.
    server.held.add("image")


FAILURES = {
    "denied key": lambda s: setattr(s, "metadata_status", "REQUEST_DENIED"),
    "quota (OVER_QUERY_LIMIT)": lambda s: setattr(s, "metadata_status", "OVER_QUERY_LIMIT"),
    "quota (429)": lambda s: setattr(s, "always_429", True),
    "server error (500)": lambda s: s.failures.extend([500] * 50),
    "dead network": lambda s: s.stop(),
    "silent server": silent,
    "malformed answer (not JSON)": lambda s: setattr(s, "metadata_body", b"<html>oops"),
    "malformed answer (a list)": lambda s: setattr(s, "metadata_body", b"[1, 2]"),
    "malformed answer (location)": lambda s: setattr(
        s, "metadata_body", b'{"status": "OK", "pano_id": "p", "location": {"lat": "x"}}'
    ),
    "broken images": lambda s: setattr(s, "drop_images", 10**6),
    "Ctrl-C": views_held,
    "SIGKILL": views_held,
}
SIGNALS = {"Ctrl-C": signal.SIGINT, "SIGKILL": signal.SIGKILL}


def points_csv(path, points):
    pd.DataFrame(points, columns=["latitude", "longitude"]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def own_sixty(tmp_path_factory):
    """A 60-location dataset that the downloader made (from the fake API)."""
    fake = FakeStreetView()
    base_url = fake.start()
    root = tmp_path_factory.mktemp("own")
    settings = Settings(base_url=base_url, rate_per_s=None, backoff_s=0.01, progress=False)
    summary = download(points_csv(root / "sixty.csv", SIXTY), root / "ds", KEY, settings)
    fake.stop()
    assert summary.total_locations == 60 and validate([root / "ds"]).ok
    return root / "ds"


def as_from_a_terminal() -> None:
    """Ctrl-C as a terminal delivers it, whatever the test runner was started with.

    A process started in the background of a non-interactive shell (as CI may start the
    suite) inherits SIGINT ignored, and Python then never turns it into KeyboardInterrupt.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])


def run_failing_download(server, out, tmp_path, mode) -> tuple[int, str]:
    key_file = tmp_path / "key.txt"
    key_file.write_text(KEY)
    more = points_csv(tmp_path / "more.csv", MORE)
    args = ["download", str(more), "--out", str(out), "--key-file", str(key_file),
            "--base-url", server.base_url, "--no-rate-limit", "--retries", "0",
            "--timeout", "30" if mode in SIGNALS else "0.5"]  # fmt: skip
    FAILURES[mode](server)
    if mode not in SIGNALS:
        return main(args), ""
    process = subprocess.Popen(
        [sys.executable, "-m", "geoguesser.cli", *args],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_from_a_terminal,
    )
    while process.poll() is None and server.image_requests == 0:  # mid-download
        time.sleep(0.02)
    process.send_signal(SIGNALS[mode])
    _, err = process.communicate(timeout=60)
    return process.returncode, err


@pytest.mark.parametrize("mode", FAILURES)
def test_a_failing_download_leaves_its_own_60_location_dataset_as_it_was(
    server, own_sixty, tmp_path, mode, capsys
):
    out = tmp_path / "ds"
    shutil.copytree(own_sixty, out)
    before = tree_bytes(out, skip=(STATE_DIR,))
    code, err = run_failing_download(server, out, tmp_path, mode)
    err += capsys.readouterr().err
    assert tree_bytes(out, skip=(STATE_DIR,)) == before
    assert code == {"Ctrl-C": 130, "SIGKILL": -signal.SIGKILL}.get(mode, 2), err
    assert "Traceback" not in err
    if mode not in SIGNALS:
        assert len([line for line in err.splitlines() if line.startswith("geoguesser")]) == 1
    assert validate([out]).ok
    if mode == "dead network":
        server.start()  # for the fixture's stop


@pytest.mark.parametrize("mode", [m for m in FAILURES if m not in SIGNALS])
def test_another_60_location_dataset_is_refused_in_one_line_and_untouched(
    server, tmp_path, mode, capsys
):
    from helpers.datasets import make_dataset

    out = make_dataset(tmp_path / "theirs", points=SIXTY)
    before = tree_bytes(out)
    code, _ = run_failing_download(server, out, tmp_path, mode)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"geoguesser download: {out}: holds a dataset that the downloader")
    assert tree_bytes(out) == before and server.metadata_requests == 0
    if mode == "dead network":
        server.start()


@pytest.mark.parametrize(
    "content, held",
    [("images", "a dataset"), ("notes.txt", "files (notes.txt)")],
)
def test_any_folder_the_downloader_did_not_make_is_refused(server, coords, tmp_path, content, held):
    out = tmp_path / "out"
    out.mkdir()
    if content == "images":
        (out / content).mkdir()
    else:
        (out / content).write_text("mine")
    before = tree_bytes(out)
    with pytest.raises(UserError, match=f"{out}: holds {re.escape(held)} that the downloader"):
        download(coords, out, KEY, fast(server))
    assert tree_bytes(out) == before and server.metadata_requests == 0


def test_an_empty_folder_is_adopted(server, coords, tmp_path):
    (tmp_path / "out").mkdir()
    assert download(coords, tmp_path / "out", KEY, fast(server)).stopped is None


def test_its_own_data_csv_lists_only_what_it_holds(server, coords, tmp_path):
    out = tmp_path / "out"
    download(coords, out, KEY, fast(server))
    gone = pd.read_csv(out / "data.csv").uuid.iloc[0]
    shutil.rmtree(out / "images" / gone)  # a user removed a location
    summary = download(coords, out, KEY, fast(server))
    frame = pd.read_csv(out / "data.csv")
    assert gone not in set(frame.uuid) and summary.total_locations == len(frame)
    assert validate([out]).ok


def test_an_unchanged_data_csv_is_not_rewritten(server, coords, tmp_path):
    out = tmp_path / "out"
    download(coords, out, KEY, fast(server))
    before = (out / "data.csv").stat().st_mtime_ns
    server.metadata_status = "REQUEST_DENIED"
    assert download(coords, out, KEY, fast(server)).stopped is None  # nothing left to fetch
    assert (out / "data.csv").stat().st_mtime_ns == before


@pytest.mark.parametrize(
    "option, message",
    [
        (["--concurrency", "0"], "--concurrency 0: must be at least 1"),
        (["--retries", "-1"], "--retries -1: must be 0 or more"),
        (["--rate", "0"], "--rate 0: must be a number of requests per second above 0"),
        (["--rate", "nan"], "--rate nan: must be a number of requests per second above 0"),
        (["--timeout", "0"], "--timeout 0: must be a number of seconds above 0"),
        (["--radius", "0"], "--radius 0: must be at least 1 metre"),
    ],
)
def test_arguments_are_checked_before_any_request(
    server, coords, tmp_path, capsys, option, message
):
    out = tmp_path / "out"
    args = ["download", str(coords), "--out", str(out), "--base-url", server.base_url]
    assert main([*args, *option]) == 2
    assert capsys.readouterr().err.strip() == f"geoguesser download: {message}" + (
        " (or --no-rate-limit)" if option[0] == "--rate" else ""
    )
    assert not out.exists() and server.metadata_requests == 0


def test_no_rate_limit_is_asked_for_explicitly(server, coords, tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLE_MAPS_API_KEY", KEY)
    args = ["download", str(coords), "--out", str(tmp_path / "out"), "--base-url", server.base_url]
    assert main([*args, "--no-rate-limit"]) == 0
    assert validate([tmp_path / "out"]).ok


def test_timeout_is_a_setting(server, coords, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GOOGLE_MAPS_API_KEY", KEY)
    silent(server)  # never answers: only the timeout ends the wait (the default, 30 s, says so)
    code = main(["download", str(coords), "--out", str(tmp_path / "out"), "--retries", "0",
                 "--base-url", server.base_url, "--timeout", "0.3"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "network down: no answer from 127.0.0.1" in err and "within 0.3 s" in err
