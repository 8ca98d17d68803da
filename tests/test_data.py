"""fastgan.train.data: the image dataset, the resumable infinite sampler, the loader and grid selection,
checked against the training spec (§1.11, §1.12, §5.1-5.3) and direct reimplementations written here."""
import io
import json
import pickle
import zipfile

import numpy as np
import pytest
import torch

pytest.importorskip("PIL", reason="reading image files needs Pillow")
from PIL import Image  # noqa: E402

from fastgan.train.data import (ImageFolderDataset, InfiniteSampler, grid_indices,  # noqa: E402
                                make_loader)


def _pixels(n, h=8, w=8, channels=3, seed=0):
    shape = (n, h, w) if channels == 1 else (n, h, w, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _folder(root, names, pixels, labels=None):
    """Write ``pixels[i]`` as PNG ``root/names[i]``; ``labels`` (any JSON value) go to dataset.json."""
    for name, px in zip(names, pixels):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(px).save(root / name)
    if labels is not None:
        (root / "dataset.json").write_text(json.dumps({"labels": labels}))
    return root


def _zip_of(folder, dest):
    with zipfile.ZipFile(dest, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
    return dest


def _chw(px):
    return px[None] if px.ndim == 2 else px.transpose(2, 0, 1)


NAMES = ["b/2.png", "a.png", "b/10.png", "c.jpeg.png", "b/1.png"]
SORTED = sorted(NAMES)          # relative paths sorted as strings: a, b/1, b/10, b/2, c


@pytest.fixture
def rgb_folder(tmp_path):
    px = _pixels(len(NAMES))
    root = _folder(tmp_path / "rgb", NAMES, px)
    (root / "notes.txt").write_text("not an image")
    return root, {n: p for n, p in zip(NAMES, px)}


def test_folder_and_zip_read_sorted_images(rgb_folder, tmp_path):
    root, by_name = rgb_folder
    for path in (root, _zip_of(root, tmp_path / "Rgb.ZIP")):
        ds = ImageFolderDataset(path)
        assert len(ds) == 5 and ds.image_shape == [3, 8, 8] and ds.resolution == 8 and ds.num_channels == 3
        assert ds.name == path.stem and not ds.has_labels and ds.label_shape == [0]
        for i, name in enumerate(SORTED):
            img, label = ds[i]
            assert img.dtype == np.uint8 and np.array_equal(img, _chw(by_name[name]))
            assert label.dtype == np.float32 and label.shape == (0,)
        with pytest.raises(IndexError):
            ds[5]
        ds.close()


def test_grayscale_stays_one_channel(tmp_path):
    px = _pixels(3, channels=1)
    ds = ImageFolderDataset(_folder(tmp_path / "g", ["0.png", "1.png", "2.png"], px))
    assert ds.image_shape == [1, 8, 8]
    assert np.array_equal(ds[2][0], px[2][None])


def test_integer_labels_become_onehot_over_the_whole_source(tmp_path):
    names = [f"{i}.png" for i in range(6)]
    classes = [0, 5, 1, 1, 0, 2]
    root = _folder(tmp_path / "l", names, _pixels(6), labels=[[n, c] for n, c in zip(names, classes)])
    ds = ImageFolderDataset(root, use_labels=True, max_size=3, random_seed=4)
    keep = np.arange(6)
    np.random.RandomState(4).shuffle(keep)
    keep = np.sort(keep[:3])
    assert ds.label_shape == [6] and ds.label_dim == 6 and ds.has_onehot_labels and ds.has_labels
    assert np.array_equal(ds.raw_labels, np.array(classes)[keep])
    for i, raw in enumerate(keep):
        assert np.array_equal(ds.get_label(i), np.eye(6, dtype=np.float32)[classes[raw]])
        assert np.array_equal(ds[i][1], ds.get_label(i))


def test_vector_labels_from_dict_form_with_backslashes(tmp_path):
    names = ["x/0.png", "x/1.png", "2.png"]
    vectors = {"x\\0.png": [0.5, -1.0], "x\\1.png": [2.0, 0.25], "2.png": [0.0, 3.0]}
    root = _folder(tmp_path / "v", names, _pixels(3), labels=vectors)
    ds = ImageFolderDataset(_zip_of(root, tmp_path / "v.zip"), use_labels=True)
    assert ds.label_shape == [2] and not ds.has_onehot_labels
    expect = [vectors["2.png"], vectors["x\\0.png"], vectors["x\\1.png"]]     # sorted: 2.png, x/0, x/1
    assert np.array_equal(ds.raw_labels, np.array(expect, dtype=np.float32))
    assert ds.get_label(1).dtype == np.float32 and np.array_equal(ds.get_label(1), expect[1])


def test_label_errors_name_the_problem(tmp_path):
    root = _folder(tmp_path / "n", ["0.png", "1.png"], _pixels(2))
    assert ImageFolderDataset(root).label_dim == 0
    with pytest.raises(ValueError, match="use_labels"):
        ImageFolderDataset(root, use_labels=True)
    (root / "dataset.json").write_text(json.dumps({"labels": None}))
    with pytest.raises(ValueError, match="use_labels"):
        ImageFolderDataset(root, use_labels=True)
    (root / "dataset.json").write_text(json.dumps({"labels": [["0.png", 1]]}))
    with pytest.raises(ValueError, match="no label .*1.png"):
        ImageFolderDataset(root, use_labels=True)
    (root / "dataset.json").write_text(json.dumps({"labels": [["0.png", 1], ["1.png", -2]]}))
    with pytest.raises(ValueError, match="integers >= 0"):
        ImageFolderDataset(root, use_labels=True)
    (root / "dataset.json").write_text(json.dumps({"labels": [["0.png", [1]], ["1.png", [1, 2]]]}))
    with pytest.raises(ValueError, match="one length"):
        ImageFolderDataset(root, use_labels=True)


def test_resolution_and_shape_checks(tmp_path):
    root = _folder(tmp_path / "r", ["0.png", "1.png"], _pixels(2))
    assert ImageFolderDataset(root, resolution=8).resolution == 8
    with pytest.raises(ValueError, match="resolution=16"):
        ImageFolderDataset(root, resolution=16)
    with pytest.raises(ValueError, match="power of two"):
        ImageFolderDataset(root, resolution=6)
    with pytest.raises(TypeError, match="resolution"):
        ImageFolderDataset(root, resolution="8")
    Image.fromarray(_pixels(1, h=16, w=16)[0]).save(root / "2.png")
    with pytest.raises(ValueError, match="2.png.*first image"):
        ImageFolderDataset(root)[2]
    wide = ImageFolderDataset(_folder(tmp_path / "w", ["0.png"], _pixels(1, h=4, w=8)))
    assert wide.image_shape == [3, 4, 8]
    with pytest.raises(ValueError, match="not square"):
        wide.resolution
    rgba = _folder(tmp_path / "a", ["0.png"], _pixels(1, channels=4))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        ImageFolderDataset(rgba)


def test_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="path"):
        ImageFolderDataset(tmp_path / "missing")
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(ValueError, match="folder or a .zip"):
        ImageFolderDataset(tmp_path / "data.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        ImageFolderDataset(tmp_path / "empty")
    (tmp_path / "t" / "x.png").parent.mkdir()
    (tmp_path / "t" / "x.png").write_text("text, not a PNG")
    with pytest.raises(ValueError, match="cannot read image .*x.png"):
        ImageFolderDataset(tmp_path / "t")


def test_max_size_subset_follows_the_seeded_formula(tmp_path):
    px = _pixels(9, h=4, w=4)
    root = _folder(tmp_path / "s", [f"{i}.png" for i in range(9)], px)
    for seed in (0, 7):
        keep = np.arange(9)
        np.random.RandomState(seed).shuffle(keep)
        keep = sorted(keep[:4])
        ds = ImageFolderDataset(root, max_size=4, random_seed=seed)
        assert len(ds) == 4
        assert all(np.array_equal(ds[i][0], _chw(px[k])) for i, k in enumerate(keep))
    assert len(ImageFolderDataset(root, max_size=100)) == 9
    with pytest.raises(ValueError, match="max_size"):
        ImageFolderDataset(root, max_size=0)


def test_xflip_doubles_with_mirrored_copies(tmp_path):
    px = _pixels(3, h=4, w=8)
    names = [f"{i}.png" for i in range(3)]
    root = _folder(tmp_path / "f", names, px, labels=[[n, i] for i, n in enumerate(names)])
    ds = ImageFolderDataset(root, use_labels=True, xflip=True)
    assert len(ds) == 6 and ds.raw_labels.tolist() == [0, 1, 2, 0, 1, 2]
    for i in range(3):
        flipped, label = ds[i + 3]
        assert np.array_equal(flipped, _chw(px[i])[:, :, ::-1]) and flipped.flags.c_contiguous
        assert np.array_equal(label, ds[i][1])


def test_zip_dataset_pickles_without_its_handle(rgb_folder, tmp_path):
    ds = ImageFolderDataset(_zip_of(rgb_folder[0], tmp_path / "p.zip"))
    first = ds[0][0]
    copy = pickle.loads(pickle.dumps(ds))
    assert np.array_equal(copy[0][0], first) and np.array_equal(copy[4][0], ds[4][0])


# ---- InfiniteSampler ---------------------------------------------------------------------------------


def _spec_stream(n, seed=0, window_size=0.5, shuffle=True, rank=0, replicas=1):
    """Training-spec §1.12 step by step: emit order[idx % n] on idx % replicas == rank, then maybe swap."""
    order = list(range(n))
    rnd = np.random.RandomState(seed)
    window = 0
    if shuffle:
        rnd.shuffle(order)
        window = int(np.rint(n * window_size))
    idx = 0
    while True:
        i = idx % n
        if idx % replicas == rank:
            yield order[i]
        if window >= 2:
            j = (i - rnd.randint(window)) % n
            order[i], order[j] = order[j], order[i]
        idx += 1


def _take(iterable, k):
    it = iter(iterable)
    return [next(it) for _ in range(k)]


@pytest.mark.parametrize("n,seed,window_size", [(1, 0, 0.5), (2, 3, 0.5), (7, 1, 1.0), (100, 5, 0.5),
                                                (10, 2, 0.05), (33, 9, 0.0)])
def test_sampler_matches_the_spec_algorithm(n, seed, window_size):
    sampler = InfiniteSampler(range(n), seed=seed, window_size=window_size)
    assert _take(sampler, 5 * n + 3) == _take(_spec_stream(n, seed, window_size), 5 * n + 3)


def test_sampler_without_shuffle_is_sequential():
    assert _take(InfiniteSampler(range(4), shuffle=False), 10) == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]


def test_sampler_resume_continues_the_exact_stream(tmp_path):
    reference = _take(_spec_stream(50, seed=11), 400)
    for k in (0, 1, 37, 150):
        sampler = InfiniteSampler(range(50), seed=11)
        assert _take(sampler, k) == reference[:k]
        torch.save(sampler.state_dict(), tmp_path / "s.pt")
        resumed = InfiniteSampler(range(50), seed=999)          # its own seed must not matter after loading
        resumed.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
        assert _take(resumed, 200) == reference[k:k + 200]
        assert _take(sampler, 200) == reference[k:k + 200]


def test_rank_striding_covers_the_shared_stream_and_one_state_resumes_all_ranks():
    n, g, rounds = 23, 3, 40
    full = _take(_spec_stream(n, seed=2), g * rounds)
    samplers = [InfiniteSampler(range(n), rank=r, num_replicas=g, seed=2) for r in range(g)]
    parts = [_take(s, rounds // 2) for s in samplers]
    for r in range(g):
        assert parts[r] == _take(_spec_stream(n, seed=2, rank=r, replicas=g), rounds // 2)
        assert parts[r] == full[r:g * rounds // 2:g]
    states = [s.state_dict() for s in samplers]
    assert all(states[0]["step"] == s["step"] and torch.equal(states[0]["order"], s["order"]) for s in states)
    for r in range(g):
        resumed = InfiniteSampler(range(n), rank=r, num_replicas=g, seed=2)
        resumed.load_state_dict(states[0])
        assert _take(resumed, rounds // 2) == full[g * rounds // 2 + r::g]


def test_sampler_argument_errors():
    with pytest.raises(ValueError, match="rank"):
        InfiniteSampler(range(4), rank=2, num_replicas=2)
    with pytest.raises(ValueError, match="window_size"):
        InfiniteSampler(range(4), window_size=1.5)
    with pytest.raises(ValueError, match="len\\(dataset\\)"):
        InfiniteSampler([])
    with pytest.raises(ValueError, match="num_items"):
        InfiniteSampler(range(5)).load_state_dict(InfiniteSampler(range(4)).state_dict())
    bad = InfiniteSampler(range(4)).state_dict()
    bad["order"] = torch.tensor([0, 0, 1, 2])
    with pytest.raises(ValueError, match="permutation"):
        InfiniteSampler(range(4)).load_state_dict(bad)


# ---- make_loader -------------------------------------------------------------------------------------


@pytest.fixture
def labelled_zip(tmp_path):
    names = [f"{i:02d}.png" for i in range(11)]
    root = _folder(tmp_path / "z", names, _pixels(11, h=4, w=4), labels=[[n, i % 3] for i, n in enumerate(names)])
    return _zip_of(root, tmp_path / "z.zip")


def _expected_batches(ds, seed, batch, count):
    order = _take(_spec_stream(len(ds), seed), batch * count)
    return [(np.stack([ds[i][0] for i in order[b * batch:(b + 1) * batch]]),
             np.stack([ds.get_label(i) for i in order[b * batch:(b + 1) * batch]])) for b in range(count)]


def test_loader_batches_follow_the_sampler(labelled_zip):
    ds = ImageFolderDataset(labelled_zip, use_labels=True, xflip=True)
    stream = make_loader(ds, InfiniteSampler(ds, seed=3), batch_size=4, num_workers=0, pin_memory=False)
    for want_img, want_lab in _expected_batches(ds, 3, 4, 8):
        img, lab = next(stream)
        assert img.dtype == torch.uint8 and img.shape == (4, 1 + 2, 4, 4) and lab.dtype == torch.float32
        assert np.array_equal(img.numpy(), want_img) and np.array_equal(lab.numpy(), want_lab)


def test_loader_with_workers_matches_and_resumes_after_consumed_batches(labelled_zip):
    ds = ImageFolderDataset(labelled_zip, use_labels=True)
    expected = _expected_batches(ds, 5, 3, 9)
    stream = make_loader(ds, InfiniteSampler(ds, seed=5), batch_size=3, num_workers=2, pin_memory=False)
    for want_img, _ in expected[:4]:
        assert np.array_equal(next(stream)[0].numpy(), want_img)
    state = stream.state_dict()
    del stream
    sampler = InfiniteSampler(ds, seed=5)
    sampler.load_state_dict(state)
    resumed = make_loader(ds, sampler, batch_size=3, num_workers=0)
    for want_img, want_lab in expected[4:]:
        img, lab = next(resumed)
        assert np.array_equal(img.numpy(), want_img) and np.array_equal(lab.numpy(), want_lab)


def test_loader_without_labels_and_argument_errors(rgb_folder):
    ds = ImageFolderDataset(rgb_folder[0])
    img, lab = next(make_loader(ds, InfiniteSampler(ds), batch_size=2))
    assert img.shape == (2, 3, 8, 8) and lab.shape == (2, 0) and lab.dtype == torch.float32
    with pytest.raises(TypeError, match="sampler"):
        make_loader(ds, range(5), batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(ds, InfiniteSampler(ds), batch_size=0)


# ---- grid_indices ------------------------------------------------------------------------------------


def _spec_grid_unlabelled(n, gw, gh):
    perm = np.arange(n)
    np.random.RandomState(0).shuffle(perm)
    return [int(perm[k % n]) for k in range(gw * gh)]


def _spec_grid_classes(classes, gw, gh):
    """§1.11 with integer class keys (ascending classes = the one-hot key order)."""
    rnd = np.random.RandomState(0)
    kinds = sorted(set(classes))
    pools = {c: np.array([i for i, k in enumerate(classes) if k == c]) for c in kinds}
    for c in kinds:
        rnd.shuffle(pools[c])
    out = []
    for y in range(gh):
        c = kinds[y % len(kinds)]
        out += [int(pools[c][x % len(pools[c])]) for x in range(gw)]
        pools[c] = np.roll(pools[c], -gw)
    return out


def test_grid_indices_unlabelled_shuffle_and_cycle(rgb_folder):
    ds = ImageFolderDataset(rgb_folder[0], xflip=True)
    assert grid_indices(ds, 3, 2) == _spec_grid_unlabelled(10, 3, 2)
    assert grid_indices(ds, 7, 4) == _spec_grid_unlabelled(10, 7, 4)        # 28 > 10 items: cycles


def test_grid_indices_labelled_rows_per_class(tmp_path):
    classes = [2, 0, 0, 1, 2, 2, 0, 1, 0, 2, 2]
    names = [f"{i:02d}.png" for i in range(len(classes))]
    root = _folder(tmp_path / "c", names, _pixels(len(classes), h=4, w=4),
                   labels=[[n, c] for n, c in zip(names, classes)])
    ds = ImageFolderDataset(root, use_labels=True, xflip=True)
    doubled = classes + classes
    for gw, gh in ((7, 4), (3, 5), (32, 32)):
        got = grid_indices(ds, gw, gh)
        assert got == _spec_grid_classes(doubled, gw, gh)
        assert [doubled[i] for i in got[:gw]] == [0] * gw and [doubled[i] for i in got[gw:2 * gw]] == [1] * gw
    with pytest.raises(ValueError, match="gw"):
        grid_indices(ds, 0, 4)


def test_grid_indices_with_vector_labels_sort_reversed_keys(tmp_path):
    vecs = [[1.0, 0.0], [0.0, 1.0], [0.0, 0.5], [1.0, 0.0]]
    names = [f"{i}.png" for i in range(4)]
    root = _folder(tmp_path / "vv", names, _pixels(4, h=4, w=4), labels=[[n, v] for n, v in zip(names, vecs)])
    ds = ImageFolderDataset(root, use_labels=True)
    rows = grid_indices(ds, 2, 3)
    # keys read last to first: (0,1) < (0.5,0) < (1,0) -> rows show [1,0]-labelled, then [0,0.5], then [0,1]
    assert sorted(rows[:2]) == [0, 3] and rows[2:4] == [2, 2] and rows[4:] == [1, 1]


def test_jpeg_in_zip_decodes_like_pillow(tmp_path):
    """A JPEG in a zip decodes through Pillow exactly like Image.open does."""
    buf = io.BytesIO()
    Image.fromarray(_pixels(1)[0]).save(buf, format="jpeg")
    with zipfile.ZipFile(tmp_path / "j.zip", "w") as zf:
        zf.writestr("0.jpg", buf.getvalue())
    ds = ImageFolderDataset(tmp_path / "j.zip")
    assert np.array_equal(ds[0][0], np.asarray(Image.open(io.BytesIO(buf.getvalue()))).transpose(2, 0, 1))
