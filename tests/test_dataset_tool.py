"""fastgan.train.dataset_tool and ``fastgan dataset``: NVlabs output layout (training-spec §5.4), labels,
skipped files, transforms, atomic output; plus the scikit-learn digits demo folder."""
import io
import json
import os
import zipfile

import numpy as np
import pytest

pytest.importorskip("PIL", reason="the dataset tool needs Pillow")
from PIL import Image  # noqa: E402

from fastgan.cli import main  # noqa: E402
from fastgan.train.data import ImageFolderDataset  # noqa: E402
from fastgan.train.dataset_tool import convert_dataset, parse_resolution  # noqa: E402


def _pixels(h, w, channels=3, seed=0):
    shape = (h, w) if channels == 1 else (h, w, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _save(path, px, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(px).save(path, format=fmt)
    return px


def _zip_images(path):
    """{member: uint8 HWC/HW array} and dataset.json of an output zip (also checks members are stored)."""
    with zipfile.ZipFile(path) as zf:
        assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())
        images = {n: np.asarray(Image.open(io.BytesIO(zf.read(n)))) for n in zf.namelist() if n.endswith(".png")}
        return images, json.loads(zf.read("dataset.json"))


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_folder_to_zip_with_subfolder_labels(tmp_path):
    src = tmp_path / "src"
    px = {name: _save(src / name, _pixels(8, 8, seed=i))
          for i, name in enumerate(["dog/b.png", "cat/x/a.png", "dog/a.png", "ant/z.png"])}
    report = convert_dataset(src, tmp_path / "out.zip")
    order = ["ant/z.png", "cat/x/a.png", "dog/a.png", "dog/b.png"]
    images, doc = _zip_images(tmp_path / "out.zip")
    assert sorted(images) == [f"00000/img{i:08d}.png" for i in range(4)]
    for i, name in enumerate(order):
        assert np.array_equal(images[f"00000/img{i:08d}.png"], px[name])
    assert doc["labels"] == [["00000/img00000000.png", 0], ["00000/img00000001.png", 1],
                             ["00000/img00000002.png", 2], ["00000/img00000003.png", 2]]
    assert doc["class_names"] == report.class_names == ["ant", "cat", "dog"]
    assert (report.images, report.width, report.height, report.channels) == (4, 8, 8, 3)
    assert report.labels == "sub-folders" and report.skipped == [] and report.dropped == []
    assert report.report_path == str(tmp_path / "out-report.txt")
    assert "3 classes from sub-folder names: 0=ant, 1=cat, 2=dog" in (tmp_path / "out-report.txt").read_text()
    ds = ImageFolderDataset(tmp_path / "out.zip", use_labels=True)
    assert ds.label_shape == [3] and ds.get_label(1).tolist() == [0, 1, 0]
    assert _leftovers(tmp_path) == []


def test_labels_from_source_dataset_json_into_a_folder(tmp_path):
    src = tmp_path / "src"
    a, b, c = (_save(src / n, _pixels(4, 4, channels=1, seed=i)) for i, n in enumerate(["k/1.png", "k/0.png", "2.png"]))
    (src / "dataset.json").write_text(json.dumps({"labels": [["k/0.png", 4], ["k/1.png", 7], ["2.png", 1]]}))
    src_zip = tmp_path / "src.zip"
    with zipfile.ZipFile(src_zip, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(src.rglob("*")):
            zf.write(p, p.relative_to(src).as_posix())
    for source, dest in ((src, tmp_path / "out"), (src_zip, tmp_path / "out2")):
        report = convert_dataset(source, dest)
        assert report.labels == "dataset.json" and report.channels == 1
        doc = json.loads((dest / "dataset.json").read_text())
        # path order: 2.png, k/0.png, k/1.png
        assert doc == {"labels": [["00000/img00000000.png", 1], ["00000/img00000001.png", 4],
                                  ["00000/img00000002.png", 7]]}
        for i, want in enumerate([c, b, a]):
            got = Image.open(dest / f"00000/img{i:08d}.png")
            assert got.mode == "L" and np.array_equal(np.asarray(got), want)
        assert (tmp_path / f"{dest.name}-report.txt").is_file()


def test_labels_are_all_or_nothing(tmp_path):
    src = tmp_path / "mixed"
    for i, name in enumerate(["a/0.png", "b/1.png", "2.png"]):
        _save(src / name, _pixels(4, 4, seed=i))
    report = convert_dataset(src, tmp_path / "mixed.zip")
    assert report.labels == "none" and _zip_images(tmp_path / "mixed.zip")[1] == {"labels": None}
    (src / "dataset.json").write_text(json.dumps({"labels": [["a/0.png", 0], ["b/1.png", 1]]}))
    report = convert_dataset(src, tmp_path / "partial.zip")
    assert report.labels == "none" and _zip_images(tmp_path / "partial.zip")[1] == {"labels": None}
    assert any("no entry in dataset.json" in n for n in report.notes)


def test_unreadable_files_are_skipped_and_reported(tmp_path, capsys):
    src = tmp_path / "src"
    good = [_save(src / f"{i}.png", _pixels(8, 8, seed=i)) for i in (0, 2, 5)]
    buf = io.BytesIO()
    Image.fromarray(_pixels(8, 8, seed=9)).save(buf, format="png")
    (src / "1.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])        # truncated PNG
    (src / "3.png").write_text("this is text, not an image")                          # wrong content
    os.symlink(src / "no-such-file.png", src / "4.png")                               # unreadable
    assert main(["dataset", "--source", str(src), "--dest", str(tmp_path / "d.zip")]) == 0
    out = capsys.readouterr().out
    assert "skipped (unreadable): 3" in out and all(f"{i}.png" in out for i in (1, 3, 4))
    report_text = (tmp_path / "d-report.txt").read_text()
    assert all(f"  {i}.png: " in report_text for i in (1, 3, 4))
    images, doc = _zip_images(tmp_path / "d.zip")
    # numbering follows the input index: the skipped inputs leave gaps
    assert sorted(images) == ["00000/img00000000.png", "00000/img00000002.png", "00000/img00000005.png"]
    for want, name in zip(good, sorted(images)):
        assert np.array_equal(images[name], want)


def test_size_mismatch_is_an_error_naming_resolution_and_writes_nothing(tmp_path):
    src = tmp_path / "src"
    _save(src / "0.png", _pixels(8, 8))
    _save(src / "1.png", _pixels(16, 16))
    with pytest.raises(ValueError, match="1.png becomes 16x16 .*--resolution"):
        convert_dataset(src, tmp_path / "bad.zip")
    with pytest.raises(ValueError, match="--resolution"):
        convert_dataset(src, tmp_path / "badfolder")
    assert not (tmp_path / "bad.zip").exists() and not (tmp_path / "badfolder").exists()
    assert _leftovers(tmp_path) == []
    _save(src / "2.png", _pixels(8, 8, channels=1))
    with pytest.raises(ValueError, match="channel"):
        convert_dataset(src, tmp_path / "ch.zip", resolution=8)


def test_first_image_must_be_square_power_of_two_without_alpha(tmp_path):
    for name, px, msg in (("wide", _pixels(8, 16), "square"), ("odd", _pixels(12, 12), "power-of-two"),
                          ("rgba", _pixels(8, 8, channels=4), "alpha")):
        _save(tmp_path / name / "0.png", px)
        with pytest.raises(ValueError, match=msg):
            convert_dataset(tmp_path / name, tmp_path / f"{name}.zip")


def test_resize_uses_lanczos_and_palette_becomes_rgb(tmp_path):
    src = tmp_path / "src"
    big = _save(src / "0.png", _pixels(12, 20, seed=1))
    pal = Image.fromarray(_pixels(16, 16, seed=2)).convert("P")
    pal.save(src / "1.png")
    report = convert_dataset(src, tmp_path / "r.zip", resolution="16x16")
    images, _ = _zip_images(tmp_path / "r.zip")
    assert report.width == report.height == 16
    want = np.asarray(Image.fromarray(big).resize((16, 16), Image.LANCZOS))
    assert np.array_equal(images["00000/img00000000.png"], want)
    assert np.array_equal(images["00000/img00000001.png"], np.asarray(pal.convert("RGB")))


def test_max_images_counts_input_files(tmp_path):
    src = tmp_path / "src"
    for i in range(5):
        _save(src / f"{i}.png", _pixels(4, 4, seed=i))
    (src / "1.png").write_text("broken")
    report = convert_dataset(src, tmp_path / "m.zip", max_images=3)
    assert sorted(_zip_images(tmp_path / "m.zip")[0]) == ["00000/img00000000.png", "00000/img00000002.png"]
    assert report.images == 2 and [s[0] for s in report.skipped] == ["1.png"]


def test_center_crop_output_and_content(tmp_path):
    src = tmp_path / "src"
    px = _save(src / "0.png", _pixels(8, 12))           # h=8, w=12
    convert_dataset(src, tmp_path / "cc.zip", resolution=4, transform="center-crop")
    got = _zip_images(tmp_path / "cc.zip")[0]["00000/img00000000.png"]
    want = np.asarray(Image.fromarray(px[:, 2:10]).resize((4, 4), Image.LANCZOS))
    assert got.shape == (4, 4, 3) and np.array_equal(got, want)


def test_center_crop_wide_letterboxes_and_drops_small_images(tmp_path):
    src = tmp_path / "src"
    px = _save(src / "0.png", _pixels(12, 16))          # h=12, w=16 -> band round(8*12/16) = 6 rows
    _save(src / "1.png", _pixels(4, 4))                 # narrower than W=8: dropped
    report = convert_dataset(src, tmp_path / "w.zip", resolution="8x4", transform="center-crop-wide")
    images, _ = _zip_images(tmp_path / "w.zip")
    got = images["00000/img00000000.png"]
    strip = np.asarray(Image.fromarray(px[3:9]).resize((8, 4), Image.LANCZOS))
    assert got.shape == (8, 8, 3)
    assert np.array_equal(got[2:6], strip) and not got[:2].any() and not got[6:].any()
    assert sorted(images) == ["00000/img00000000.png"] and [d[0] for d in report.dropped] == ["1.png"]


def test_thousand_images_per_folder_naming(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    data = io.BytesIO()
    Image.fromarray(_pixels(4, 4, channels=1)).save(data, format="png")
    for i in range(1001):
        (src / f"{i:04d}.png").write_bytes(data.getvalue())
    convert_dataset(src, tmp_path / "k.zip")
    names = sorted(_zip_images(tmp_path / "k.zip")[0])
    assert names[999] == "00000/img00000999.png" and names[1000] == "00001/img00001000.png"


def test_argument_errors(tmp_path):
    src = tmp_path / "src"
    _save(src / "0.png", _pixels(4, 4))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ValueError, match="dest"):
        convert_dataset(src, tmp_path / "full")
    with pytest.raises(ValueError, match="needs resolution"):
        convert_dataset(src, tmp_path / "a.zip", transform="center-crop")
    with pytest.raises(ValueError, match="transform"):
        convert_dataset(src, tmp_path / "a.zip", resolution=4, transform="crop")
    with pytest.raises(ValueError, match="max_images"):
        convert_dataset(src, tmp_path / "a.zip", max_images=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert_dataset(tmp_path / "nope", tmp_path / "a.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        convert_dataset(tmp_path / "empty", tmp_path / "a.zip")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "0.png").write_text("junk")
    with pytest.raises(ValueError, match="1 unreadable"):
        convert_dataset(tmp_path / "junk", tmp_path / "a.zip")
    assert not (tmp_path / "a.zip").exists()


def test_parse_resolution_forms():
    assert parse_resolution(None) is None
    assert parse_resolution(64) == (64, 64) and parse_resolution("64") == (64, 64)
    assert parse_resolution("256x128") == (256, 128) and parse_resolution("256,128") == (256, 128)
    assert parse_resolution((32, 16)) == (32, 16)
    for bad in ("abc", "0x4", "1x2x3"):
        with pytest.raises(ValueError, match="resolution"):
            parse_resolution(bad)
    with pytest.raises(TypeError, match="resolution"):
        parse_resolution(True)


def test_cli_reports_bad_options(tmp_path, capsys):
    src = tmp_path / "src"
    _save(src / "0.png", _pixels(8, 8))
    dest = str(tmp_path / "o.zip")
    assert main(["dataset", "--source", str(src), "--dest", dest, "--resolution", "big"]) == 2
    assert "fastgan dataset: error: resolution" in capsys.readouterr().err
    assert main(["dataset", "--source", str(src), "--dest", dest, "--transform", "center-crop"]) == 2
    assert "needs resolution" in capsys.readouterr().err
    assert main(["dataset", "--source", str(src), "--dest", dest, "--max-images", "0"]) == 2
    assert "max_images" in capsys.readouterr().err
    assert main(["dataset", "--source", str(tmp_path / "nope"), "--dest", dest]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["dataset", "--source", str(src), "--dest", dest, "--transform", "squash"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert main(["dataset", "--source", str(src), "--dest", dest, "--resolution", "4x4", "--max-images", "1"]) == 0
    assert "images written: 1 (4x4, 3 channel(s))" in capsys.readouterr().out


def test_digits_demo_folder(tmp_path):
    datasets = pytest.importorskip("sklearn.datasets", reason="the digits demo data ships with scikit-learn")
    from fastgan.train.demo_data import write_digits_folder

    digits = datasets.load_digits()
    root = write_digits_folder(tmp_path / "digits", resolution=16)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [str(c) for c in range(10)]
    files = sorted(root.rglob("*.png"))
    assert len(files) == 1797
    for idx in (0, 5, 1796):
        cls = int(digits.target[idx])
        got = Image.open(root / str(cls) / f"img{idx:05d}.png")
        small = np.rint(digits.images[idx] * 255 / 16).astype(np.uint8)
        want = np.asarray(Image.fromarray(small).resize((16, 16), Image.LANCZOS))
        assert got.mode == "L" and np.array_equal(np.asarray(got), want)
    ds = ImageFolderDataset(root, use_labels=True)
    assert ds.label_shape == [10] and ds.image_shape == [1, 16, 16]
    report = convert_dataset(root, tmp_path / "digits.zip")
    assert report.images == 1797 and report.labels == "dataset.json"
    zipped = ImageFolderDataset(tmp_path / "digits.zip", use_labels=True)
    assert np.array_equal(zipped.raw_labels, ds.raw_labels)
    with pytest.raises(ValueError, match="dest"):
        write_digits_folder(root)
    with pytest.raises(ValueError, match="power of two"):
        write_digits_folder(tmp_path / "x", resolution=12)
