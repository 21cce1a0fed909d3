import shutil
from pathlib import Path

import pandas as pd
import pytest

from geoguesser.data.layout import check_image, images_root, parse_coordinates, view_paths
from geoguesser.data.validate import load_locations, validate
from geoguesser.errors import UserError
from geoguesser.geo.borders import load_border
from helpers.datasets import CROATIAN_POINTS, make_dataset, write_jpeg
from helpers.images import declare_size, jpeg_bytes
from helpers.snapshots import tree_snapshot


def problems_of(*dirs, **kwargs) -> list[str]:
    return [str(p) for p in validate(list(dirs), border=load_border(), **kwargs).problems]


def edit_csv(root, edit):
    frame = pd.read_csv(root / "data.csv", index_col=0, dtype=str, keep_default_na=False)
    edit(frame)
    frame.to_csv(root / "data.csv")


def test_clean_dataset_loads_with_its_directory(dataset):
    frame, warnings = load_locations([dataset], border=load_border())
    assert list(frame.columns) == ["uuid", "latitude", "longitude", "dataset_dir"]
    assert len(frame) == len(CROATIAN_POINTS) and not warnings
    assert frame.latitude.tolist() == pytest.approx([p[0] for p in CROATIAN_POINTS])
    assert set(frame.dataset_dir) == {str(dataset.resolve())}


def test_view_order_is_north_east_south_west(dataset):
    assert [p.name for p in view_paths(dataset, "loc-0000")] == [
        "0.jpg",
        "90.jpg",
        "180.jpg",
        "270.jpg",
    ]


def test_several_datasets_merge_and_remember_their_origin(tmp_path):
    a = make_dataset(tmp_path / "a", prefix="a")
    b = make_dataset(tmp_path / "b", CROATIAN_POINTS[:2], prefix="b")
    frame, _ = load_locations([a, b])
    assert frame.groupby("dataset_dir").size().to_dict() == {
        str(a.resolve()): 6,
        str(b.resolve()): 2,
    }


def set_cell(row, column, value):
    return lambda root: edit_csv(
        root, lambda f: f.iat.__setitem__((row, f.columns.get_loc(column)), value)
    )


def truncate(relative):
    def cut(root):
        data = (root / relative).read_bytes()
        (root / relative).write_bytes(data[: len(data) * 3 // 4])  # header intact, scan cut short

    return cut


def swap_row(root):
    set_cell(3, "latitude", "14.4422")(root)
    set_cell(3, "longitude", "45.3271")(root)


BREAKAGES = {
    "missing-image": (
        lambda r: (r / "images/loc-0001/90.jpg").unlink(),
        "images/loc-0001/90.jpg: missing",
    ),
    "unreadable-image": (
        lambda r: (r / "images/loc-0002/0.jpg").write_bytes(b"not a jpeg"),
        "loc-0002/0.jpg: unreadable",
    ),
    "truncated-image": (
        truncate("images/loc-0003/180.jpg"),
        "loc-0003/180.jpg: unreadable (truncated JPEG",
    ),
    "missing-coordinate": (set_cell(0, "latitude", ""), "data.csv:2: latitude is missing"),
    "non-numeric": (
        set_cell(1, "longitude", "16,44"),
        "data.csv:3: longitude '16,44' is not a number",
    ),
    "out-of-range": (
        set_cell(2, "latitude", "145.5"),
        "data.csv:4: coordinates (145.5, 18.6955) are out of range",
    ),
    "swapped": (swap_row, "data.csv:5: latitude and longitude look swapped"),
    "duplicate-uuid": (
        set_cell(4, "uuid", "loc-0000"),
        "data.csv:6: uuid loc-0000 is listed twice",
    ),
    "unsafe-uuid": (
        set_cell(4, "uuid", "../etc"),
        "data.csv:6: uuid '../etc' is not a safe folder name",
    ),
    "row-without-folder": (
        lambda r: shutil.rmtree(r / "images/loc-0005"),
        "data.csv:7: uuid loc-0005 has no folder",
    ),
    "folder-without-row": (
        lambda r: write_jpeg(r / "images/stray/0.jpg", 1),
        "images/stray: folder has no row",
    ),
    "missing-columns": (
        lambda r: (r / "data.csv").write_text("uuid,lat,lon\nx,1,2\n"),
        "missing column(s) latitude, longitude",
    ),
}


@pytest.mark.parametrize("name", BREAKAGES)
def test_each_problem_is_named_with_its_place(dataset, name):
    break_it, expected = BREAKAGES[name]
    break_it(dataset)
    found = problems_of(dataset)
    assert any(expected in p for p in found), found


def test_all_problems_are_reported_not_just_the_first(dataset):
    (dataset / "images/loc-0001/90.jpg").unlink()
    (dataset / "images/loc-0002/0.jpg").write_bytes(b"junk")
    set_cell(0, "latitude", "north")(dataset)
    assert len(problems_of(dataset)) == 3


def test_duplicate_uuid_across_directories(tmp_path):
    a = make_dataset(tmp_path / "a", prefix="same")
    b = make_dataset(tmp_path / "b", CROATIAN_POINTS[:1], prefix="same")
    found = problems_of(a, b)
    assert any("b/data.csv:2: uuid same-0000 is listed twice (first at" in p for p in found), found


def test_outside_border_is_a_warning_and_the_location_is_kept(tmp_path):
    root = make_dataset(
        tmp_path / "ds", CROATIAN_POINTS + [(43.30, 15.90)]
    )  # open sea near Šibenik
    frame, warnings = load_locations([root], border=load_border())
    assert len(frame) == len(CROATIAN_POINTS) + 1
    assert (
        len(warnings) == 1
        and "data.csv:8" in str(warnings[0])
        and "outside the border" in str(warnings[0])
    )


def test_unlabelled_layouts_are_read_for_prediction(tmp_path):
    with_images = make_dataset(tmp_path / "a", with_csv=False)
    flat = tmp_path / "b"
    for heading in (0, 90, 180, 270):
        write_jpeg(flat / "u1" / f"{heading}.jpg", 3)
    report = validate([with_images, flat])
    assert report.ok, report.problems
    assert images_root(flat) == flat and images_root(with_images) == with_images / "images"
    assert (
        report.locations.latitude.isna().all() and len(report.locations) == len(CROATIAN_POINTS) + 1
    )


def test_training_on_an_unlabelled_folder_is_refused_in_one_line(tmp_path):
    root = make_dataset(tmp_path / "ds", with_csv=False)
    with pytest.raises(UserError) as error:
        load_locations([root], labelled=True)
    assert (
        str(error.value)
        == f"{root}: unlabelled (no data.csv): usable for predict only, not for training"
    )


def test_unlabelled_folders_say_so_in_the_summary(tmp_path):
    report = validate([make_dataset(tmp_path / "ds", with_csv=False)])
    assert report.ok and "unlabelled: 6 locations, usable for predict only" in report.summary()
    assert "unlabelled" not in validate([make_dataset(tmp_path / "lab")]).summary()


def test_validation_never_writes_into_the_dataset(dataset):
    (dataset / "images/loc-0002/0.jpg").write_bytes(b"junk")
    before = tree_snapshot(dataset)
    validate([dataset], border=load_border())
    with pytest.raises(UserError):
        load_locations([dataset])
    assert tree_snapshot(dataset) == before


@pytest.mark.parametrize("side", [12000, 30000])
def test_declared_sizes_over_the_limit_are_problems_not_crashes(dataset, side):
    (dataset / "images/loc-0001/0.jpg").write_bytes(declare_size(jpeg_bytes(64), side, side))
    (dataset / "images/loc-0002/0.jpg").write_bytes(b"junk")
    found = problems_of(dataset)
    assert any(
        f"loc-0001/0.jpg: declares {side} x {side} pixels, over the limit of 4096 px" in p
        for p in found
    ) or (side > 13000 and any("loc-0001/0.jpg: declares more pixels than PIL" in p for p in found))
    assert any("loc-0002/0.jpg: unreadable" in p for p in found)  # the other problems survive


def test_the_size_limit_is_configurable(dataset):
    (dataset / "images/loc-0001/0.jpg").write_bytes(jpeg_bytes(640))
    assert validate([dataset]).ok
    found = [str(p) for p in validate([dataset], max_px=600).problems]
    assert len(found) == 1 and "declares 640 x 640 pixels, over the limit of 600 px" in found[0]


def test_deep_decoding_catches_a_header_that_promises_more_than_the_data(dataset):
    (dataset / "images/loc-0003/90.jpg").write_bytes(declare_size(jpeg_bytes(64), 640, 640))
    assert validate([dataset]).ok  # the header is plausible and the file ends properly
    found = [str(p) for p in validate([dataset], deep=True).problems]
    assert len(found) == 1 and "loc-0003/90.jpg: pixels do not match the header" in found[0]


@pytest.mark.parametrize("deep", [False, True])
def test_deep_and_fast_agree_on_good_images(dataset, deep):
    assert validate([dataset], border=load_border(), deep=deep).ok


def test_data_csv_that_is_a_folder_is_a_problem(dataset):
    (dataset / "data.csv").unlink()
    (dataset / "data.csv").mkdir()
    assert problems_of(dataset) == [f"{dataset / 'data.csv'}: is a folder, not a CSV file"]


def test_unreadable_data_csv_is_a_problem(dataset, monkeypatch):
    # Tests run as root, whom no file mode stops: the refusal comes from the file system here.
    real = Path.read_bytes

    def refuse(path):
        if path.name == "data.csv":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    assert problems_of(dataset) == [f"{dataset / 'data.csv'}: cannot be read (Permission denied)"]


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "uuid;latitude;longitude\n",
            "missing column(s) uuid, latitude, longitude (separated by ';'?)",
        ),
        ("uuid,uuid,latitude,longitude\n", "column(s) uuid given more than once"),
        ("", "not a readable CSV"),
    ],
)
def test_csv_shapes_are_one_problem_each(dataset, text, expected):
    (dataset / "data.csv").write_text(text)
    found = problems_of(dataset)
    assert found[0] == f"{dataset / 'data.csv'}: {expected}" or expected in found[0], found


def test_csv_with_bom_and_crlf_reads_like_plain_csv(dataset):
    text = (dataset / "data.csv").read_text()
    (dataset / "data.csv").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert validate([dataset], border=load_border()).ok


def test_utf16_csv_is_named_as_not_utf8(dataset):
    (dataset / "data.csv").write_bytes((dataset / "data.csv").read_text().encode("utf-16"))
    assert problems_of(dataset) == [
        f"{dataset / 'data.csv'}: not UTF-8 text (byte 0xff at offset 0)"
    ]


@pytest.mark.parametrize(
    "lat, lon, problem",
    [
        ("45.1", "15.2", None),
        (" 45.1 ", "1e1", None),
        ("nan", "15", "latitude 'nan' is not a number"),
        ("1e400", "15", "latitude '1e400' is not a number"),
        ("45", "-inf", "longitude '-inf' is not a number"),
        ("4_5", "15", "latitude '4_5' is not a number"),
        ("", "", "latitude is missing; longitude is missing"),
        ("91", "15", "coordinates (91.0, 15.0) are out of range"),
    ],
)
def test_one_coordinate_parser(lat, lon, problem):
    assert parse_coordinates(lat, lon)[2] == problem


def test_one_image_check_for_files_and_downloaded_bytes(tmp_path):
    good, cut = jpeg_bytes(32), jpeg_bytes(32)[:-300]
    (tmp_path / "good.jpg").write_bytes(good)
    (tmp_path / "cut.jpg").write_bytes(cut)
    assert check_image(good) is None and check_image(tmp_path / "good.jpg") is None
    assert check_image(cut) == check_image(tmp_path / "cut.jpg") is not None
    assert check_image(tmp_path) == "not a regular file"
