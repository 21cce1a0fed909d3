import subprocess
import sys

from geoguesser.cli import main
from helpers.datasets import make_dataset


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "geoguesser.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_validate_ok_prints_a_summary_and_exits_0(dataset, capsys):
    assert main(["validate", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: 6 locations (24 images) in 1 dataset(s)")


def test_validate_problems_are_one_line_each_exit_2_no_traceback(dataset):
    (dataset / "images/loc-0001/90.jpg").unlink()
    (dataset / "images/loc-0002/0.jpg").write_bytes(b"junk")
    result = run_cli("validate", dataset)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3 and lines[-1] == "2 problem(s) found"
    assert "Traceback" not in result.stderr


def test_bad_border_file_is_one_line_and_exit_2(dataset, tmp_path):
    result = run_cli("validate", dataset, "--border", tmp_path / "nope.geojson")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"geoguesser validate: {tmp_path / 'nope.geojson'}: border file not found"
    )


def test_synth_writes_a_valid_dataset_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["synth", str(out), "--locations", "5", "--image-size", "16", "--seed", "3"]) == 0
    assert "SYNTHETIC" in capsys.readouterr().out
    assert main(["validate", str(out)]) == 0
    before = sorted(p.name for p in (out / "images").iterdir())
    assert main(["synth", str(out), "--locations", "2"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "images").iterdir()) == before


def test_validate_the_real_sample_layout_copy(tmp_path):
    # The same layout as the competition, made here: an unnamed index column first.
    root = make_dataset(tmp_path / "ds")
    assert (root / "data.csv").read_text().startswith(",uuid,latitude,longitude")
    assert run_cli("validate", root).returncode == 0


def test_validate_deep_names_a_forged_header_that_the_fast_check_passes(dataset):
    from helpers.images import declare_size, jpeg_bytes

    (dataset / "images/loc-0002/180.jpg").write_bytes(declare_size(jpeg_bytes(64), 640, 640))
    assert run_cli("validate", dataset).returncode == 0
    result = run_cli("validate", dataset, "--deep")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "loc-0002/180.jpg: pixels do not match the header" in result.stderr


def test_validate_max_image_px(dataset, capsys):
    assert main(["validate", str(dataset), "--max-image-px", "8"]) == 2
    assert "declares 16 x 16 pixels, over the limit of 8 px a side" in capsys.readouterr().err
    assert main(["validate", str(dataset), "--max-image-px", "0"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "geoguesser validate: --max-image-px 0: must be at least 1"
    )


def test_validate_says_unlabelled_folders_are_for_predict_only(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds", with_csv=False)
    assert main(["validate", str(root)]) == 0
    out = capsys.readouterr().out.strip()
    assert out.endswith("unlabelled: 6 locations, usable for predict only"), out
