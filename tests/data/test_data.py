import gzip
import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import datasets

from pyrovae.data import Dataset, DatasetDownloadError, DatasetNotFoundError, cache_dir, load_dataset


def idx_images(path):
    """Independent reader of an IDX image file (not torchvision's) for checksums."""
    with gzip.open(path, "rb") as handle:
        raw = np.frombuffer(handle.read(), dtype=np.uint8)
    return raw[16:].reshape(-1, 784)


@pytest.mark.slow
@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_like_counts_shapes_and_checksums(data_dir, name, folder, tmp_path, monkeypatch):
    monkeypatch.setenv("PYROVAE_CACHE_DIR", str(tmp_path))  # decompression goes to a fresh cache
    for split, count, prefix in (("train", 60000, "train"), ("test", 10000, "t10k")):
        ds = load_dataset(name, split, root=data_dir)
        assert ds.x.shape == (count, 784) and ds.y.shape == (count,)
        assert ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64
        assert 0.0 <= ds.x.min() and ds.x.max() <= 1.0
        assert set(ds.y.unique().tolist()) == set(range(10))
        reference = idx_images(data_dir / folder / "raw" / f"{prefix}-images-idx3-ubyte.gz")
        for i in (0, 1, count - 1):
            assert torch.equal((ds.x[i] * 255).round().to(torch.int64), torch.from_numpy(reference[i].astype(np.int64)))
        assert int((ds.x.double() * 255).round().sum()) == int(reference.sum(dtype=np.int64))


def test_mnist_labels_match_known_values(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PYROVAE_CACHE_DIR", str(tmp_path))
    test = load_dataset("mnist", "test", root=data_dir)
    assert test.y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert torch.bincount(test.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_binarized_mnist_splits(data_dir):
    sizes = {"train": 50000, "valid": 10000, "test": 10000}
    for split, count in sizes.items():
        ds = load_dataset("binarized-mnist", split, root=data_dir)
        assert ds.x.shape == (count, 784)
        assert set(ds.x.unique().tolist()) == {0.0, 1.0}
        assert ds.y is None
    with (data_dir / "binarized_mnist" / "binarized_mnist_test.amat").open() as handle:
        first_row = handle.readline().split()
    assert ds.x[0].tolist() == [float(v) for v in first_row]


def test_omniglot_is_downsampled_with_strokes_as_ones(data_dir):
    train = load_dataset("omniglot", "train", root=data_dir)
    test = load_dataset("omniglot", "test", root=data_dir)
    assert train.x.shape == (964 * 20, 784) and test.x.shape == (659 * 20, 784)
    assert train.num_classes == 964 and train.y.max() == 963
    assert 0.0 <= train.x.min() and train.x.max() <= 1.0
    # Strokes are a small fraction of each image; background (white) must map to 0.
    assert 0.02 < train.x.mean() < 0.2
    original = np.load(data_dir / "omniglot" / "images_background.npz")["images"][0, 0]
    expected = torch.as_tensor(~original, dtype=torch.float32).mean()
    # Adaptive area pooling (105 -> 28 is not an integer factor) keeps the ink to within ~1%.
    assert train.x[0].mean() == pytest.approx(expected.item(), rel=0.02)


def test_digits_works_offline_with_stratified_split():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert len(train) + len(test) == 1797 and len(test) == 360
    assert train.x.shape[1] == 64 and train.image_shape == (8, 8)
    assert train.x.max() == 1.0 and train.x.min() == 0.0
    assert torch.bincount(test.y).min() >= 35


def test_representations():
    static = load_dataset("digits", "train", binarize="static", seed=3)
    again = load_dataset("digits", "train", binarize="static", seed=3)
    other = load_dataset("digits", "train", binarize="static", seed=4)
    assert torch.equal(static.x, again.x) and not torch.equal(static.x, other.x)
    assert set(static.x.unique().tolist()) == {0.0, 1.0}
    threshold = load_dataset("digits", "train", binarize="threshold")
    intensity = load_dataset("digits", "train")
    assert torch.equal(threshold.x, (intensity.x > 0.5).float())

    dynamic = load_dataset("digits", "train", binarize="dynamic")
    g = torch.Generator().manual_seed(0)
    first = torch.cat([x for x, _ in dynamic.batches(100, g, shuffle=False)])
    second = torch.cat([x for x, _ in dynamic.batches(100, g, shuffle=False)])
    assert set(first.unique().tolist()) == {0.0, 1.0} and not torch.equal(first, second)
    # A fresh Bernoulli draw each time: the average of many draws approaches the intensities.
    assert (first.mean(0) - intensity.x.mean(0)).abs().max() < 0.1

    deq = load_dataset("digits", "train", dequantize=True)
    x = torch.cat([x for x, _ in deq.batches(100, g, shuffle=False)])
    levels = intensity.x * 16
    assert torch.all(x * 17 >= levels) and torch.all(x * 17 < levels + 1)


def test_batches_cover_every_example_once_and_are_seeded():
    ds = load_dataset("digits", "test")
    batches = list(ds.batches(64, torch.Generator().manual_seed(1)))
    assert [len(x) for x, _ in batches] == [64] * 5 + [40]
    seen = torch.cat([y for _, y in batches])
    assert torch.equal(torch.bincount(seen, minlength=10), torch.bincount(ds.y, minlength=10))
    again = list(ds.batches(64, torch.Generator().manual_seed(1)))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    assert len(list(ds.batches(64, drop_last=True))) == 5


def test_labels_one_hot_and_sequences():
    ds = load_dataset("digits", "test")
    one_hot = ds.one_hot()
    assert one_hot.shape == (360, 10) and torch.equal(one_hot.argmax(1), ds.y)
    assert ds.sequences().shape == (360, 8, 8)
    assert torch.equal(ds.sequences()[5, 2], ds.x[5, 16:24])


def test_realize_fixes_dynamic_binarization():
    ds = load_dataset("digits", "test", binarize="dynamic")
    a, b = ds.realize(seed=2), ds.realize(seed=2)
    assert torch.equal(a.x, b.x) and a.binarize == "static"
    assert set(a.x.unique().tolist()) == {0.0, 1.0}


def test_missing_dataset_names_every_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PYROVAE_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("PYROVAE_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", "train", root=tmp_path / "arg")
    message = str(info.value)
    for path in ("arg/MNIST/raw", "env/MNIST/raw", "cache/MNIST/raw"):
        assert path in message
    assert "PYROVAE_DATA_DIR" in message and "Pass root=..." in message and "pass download=True" in message
    assert "--download" not in message and "--data-dir" not in message  # a Python caller has no flags
    cli_message = info.value.for_cli()
    assert "Pass --data-dir DIR" in cli_message and "pass --download" in cli_message
    assert "download=True" not in cli_message and "root=" not in cli_message
    with pytest.raises(DatasetNotFoundError, match="binarized_mnist_test.amat"):
        load_dataset("binarized-mnist", "test", root=tmp_path / "arg")


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="splits"):
        load_dataset("digits", "valid")
    with pytest.raises(ValueError, match="binarize"):
        load_dataset("digits", binarize="always")
    with pytest.raises(ValueError, match="cannot be combined"):
        load_dataset("digits", binarize="static", dequantize=True)
    with pytest.raises(ValueError, match="batch_size"):
        next(load_dataset("digits").batches(0))


def test_tests_keep_the_cache_out_of_the_home_folder():
    # tests/conftest.py points $PYROVAE_CACHE_DIR at a temporary folder unless it is set.
    assert os.environ.get("PYROVAE_CACHE_DIR")
    assert not cache_dir().resolve().is_relative_to((Path.home() / ".cache").resolve())


def test_a_gz_file_with_the_wrong_md5_is_reported_and_not_decompressed(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    monkeypatch.setenv("PYROVAE_CACHE_DIR", str(tmp_path / "cache"))
    raw = tmp_path / "root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for filename, _ in MNIST.resources:
        with gzip.open(raw / filename, "wb") as handle:
            handle.write(b"not an IDX file")
    first = MNIST.resources[0][0]
    with pytest.raises(ValueError, match=rf"{first}.*md5.*corrupt"):
        load_dataset("mnist", "train", root=tmp_path / "root")
    assert not list((tmp_path / "cache").rglob("*-ubyte"))


@pytest.mark.parametrize("content,match", [
    (b"0 1 0 1\n", "not a binarized-MNIST .amat file"),
    (b"2 " * 783 + b"2\n", "values other than 0 and 1"),
])
def test_malformed_amat_is_rejected(tmp_path, content, match):
    folder = tmp_path / "binarized_mnist"
    folder.mkdir()
    (folder / "binarized_mnist_test.amat").write_bytes(content)
    with pytest.raises(ValueError, match=match):
        load_dataset("binarized-mnist", "test", root=tmp_path)


def test_one_hot_needs_labels():
    with pytest.raises(ValueError, match="no labels"):
        Dataset.from_tensor(torch.rand(4, 3)).one_hot()


@pytest.mark.parametrize("x,y,options,error,match", [
    (torch.zeros(4, 3, dtype=torch.int64), None, {}, TypeError, "floating-point"),
    ([[0.0, 1.0]], None, {}, TypeError, "floating-point"),
    (torch.zeros(4), None, {}, ValueError, r"shape \(N, ...\)"),
    (torch.zeros(0, 3), None, {}, ValueError, "N >= 1"),
    (torch.tensor([[0.0, float("inf")]]), None, {}, ValueError, "1 NaN or infinite"),
    (torch.zeros(4, 3), torch.zeros(4), {}, TypeError, "integer tensor of labels"),
    (torch.zeros(4, 3), torch.zeros(4, dtype=torch.bool), {}, TypeError, "integer tensor of labels"),
    (torch.zeros(4, 3), torch.zeros(3, dtype=torch.int64), {}, ValueError, r"shape \(4,\)"),
    (torch.zeros(4, 3), torch.tensor([0, 1, -1, 0]), {}, ValueError, "negative label"),
    (torch.zeros(4, 3), torch.tensor([0, 1, 5, 0]), {"num_classes": 5}, ValueError, "label 5.*num_classes=5"),
    (torch.zeros(4, 6), None, {"image_shape": (2, 2)}, ValueError, r"image_shape \(2, 2\).*6 values"),
])
def test_from_tensor_rejects_bad_inputs(x, y, options, error, match):
    with pytest.raises(error, match=match):
        Dataset.from_tensor(x, y, **options)


def test_from_tensor_stores_examples_flat_with_their_shape():
    images = torch.rand(5, 3, 4)
    ds = Dataset.from_tensor(images, torch.tensor([0, 2, 1, 2, 0], dtype=torch.int32))
    assert ds.x.shape == (5, 12) and ds.image_shape == (3, 4) and torch.equal(ds.sequences(), images)
    assert ds.y.dtype == torch.int64 and ds.num_classes == 3 and ds.one_hot().shape == (5, 3)
    assert Dataset.from_tensor(torch.rand(2, 1, 3, 4)).image_shape == (1, 3, 4)
    assert Dataset.from_tensor(torch.rand(2, 16)).image_shape == (4, 4)
    assert Dataset.from_tensor(torch.rand(2, 5)).image_shape == (1, 5)
    assert Dataset.from_tensor(torch.rand(2, 5), torch.tensor([0, 1]), num_classes=10).num_classes == 10


def test_dequantization_adds_fresh_uniform_noise_within_each_level():
    intensity = load_dataset("digits", "train")
    deq = load_dataset("digits", "train", dequantize=True)
    levels = deq.levels
    generator = torch.Generator().manual_seed(0)
    passes = [torch.cat([x for x, _ in deq.batches(500, generator, shuffle=False)]) for _ in range(2)]
    # (k + u) / L with k = x (L - 1): the offset from k / L is u / L, u ~ U(0, 1).
    offsets = [(x - intensity.x * (levels - 1) / levels) * levels for x in passes]
    for u in offsets:
        assert u.min() >= 0 and u.max() < 1
        # mean 1/2 and variance 1/12, to within 5 standard errors of ~92k draws
        standard_error = (1 / 12) ** 0.5 / u.numel() ** 0.5
        assert abs(u.mean().item() - 0.5) < 5 * standard_error
        assert abs(u.var().item() - 1 / 12) < 0.002
    assert (passes[0] != passes[1]).float().mean() > 0.999  # fresh noise on every pass
    assert torch.equal(deq.realize(seed=3).x, deq.realize(seed=3).x)


def _download_that_fails_on_the_second_file(url, download_root, filename, md5):
    """torchvision's per-file download, offline: the first file arrives (and is extracted), the second
    is cut off after a few bytes, then the connection fails."""
    raw = Path(download_root)
    if filename == datasets.MNIST.resources[0][0]:
        (raw / filename).write_bytes(b"gz")
        (raw / os.path.splitext(filename)[0]).write_bytes(b"idx")
        return
    (raw / filename).write_bytes(b"partial")
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


@pytest.mark.parametrize("existing", [False, True], ids=["fresh-cache", "existing-folder"])
def test_a_failed_download_names_the_url_and_the_offline_way_and_leaves_nothing(tmp_path, monkeypatch, existing):
    monkeypatch.delenv("PYROVAE_DATA_DIR", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("PYROVAE_CACHE_DIR", str(cache))
    monkeypatch.setattr("torchvision.datasets.mnist.download_and_extract_archive", _download_that_fails_on_the_second_file)
    if existing:  # a folder of the user's, with a file of theirs: both stay
        (cache / "MNIST" / "raw").mkdir(parents=True)
        (cache / "MNIST" / "raw" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetDownloadError) as info:
        load_dataset("mnist", "train", download=True)
    message = str(info.value)
    second = datasets.MNIST.resources[1][0]
    assert f"could not download 'mnist' from {datasets.MNIST.mirrors[0]}{second}" in message, message
    assert "Temporary failure in name resolution" in message
    assert "pass root=..." in message and "PYROVAE_DATA_DIR" in message and "--data-dir" not in message
    assert "pass --data-dir DIR" in info.value.for_cli() and "root=" not in info.value.for_cli()
    assert "\n" not in message
    if existing:
        assert [p.name for p in (cache / "MNIST" / "raw").iterdir()] == ["notes.txt"]
    else:
        assert not cache.exists()


def test_a_download_from_an_unreachable_mirror_is_one_error_and_prints_nothing(tmp_path, monkeypatch, capsys):
    # Port 9 (discard) on this machine: the connection is refused at once, no network is involved.
    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    monkeypatch.delenv("PYROVAE_DATA_DIR", raising=False)
    monkeypatch.setenv("PYROVAE_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DatasetDownloadError, match="from http://127.0.0.1:9/train-images-idx3-ubyte.gz"):
        load_dataset("mnist", "test", root=tmp_path / "data", download=True)
    assert not (tmp_path / "data").exists()
    assert capsys.readouterr().out == ""
