"""Moving-MNIST-2 generator, MNIST IDX reader, frame-folder and KTH loaders."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from PIL import Image

from zoo_convttlstm.data.frames import FrameSequenceFolder
from zoo_convttlstm.data.kth import KTHClips, kth_folders, parse_kth_name
from zoo_convttlstm.data.mnist_idx import default_mnist_images, read_idx_images
from zoo_convttlstm.data.moving_mnist import (MovingMNISTConfig, bounce_trajectory, generate, load_frames,
                                              save_npz, split_digits)


@pytest.fixture(scope="module")
def mnist():
    return read_idx_images(default_mnist_images())


def test_real_mnist_test_digits(mnist):
    assert mnist.shape == (10000, 28, 28) and mnist.dtype == np.uint8
    assert abs(float(mnist.mean()) - 33.79) < 0.01  # PROVENANCE.md


def test_idx_reader_rejects_malformed(tmp_path):
    labels = tmp_path / "labels.gz"
    with gzip.open(labels, "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + b"\x01\x02\x03")
    with pytest.raises(ValueError, match=r"1-D array \(3,\), expected \(N, rows, cols\)"):
        read_idx_images(labels)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 10)
    with pytest.raises(ValueError, match=r"header declares shape \(2, 28, 28\)"):
        read_idx_images(short)


def test_digits_stay_inside_canvas_and_bounce(mnist):
    cfg = MovingMNISTConfig(length=40, speed=(3.0, 4.5))
    out = generate(mnist[:50], 12, cfg, seed=3)
    frames, pos = out["frames"], out["positions"]
    assert frames.shape == (12, 40, 64, 64) and frames.dtype == np.uint8
    assert pos.min() >= 0 and pos.max() <= 64 - 28
    rounded = np.rint(pos).astype(int)
    for s in range(12):
        for t in range(40):
            mask = np.zeros((64, 64), bool)
            for j in range(2):
                r, c = rounded[s, t, j]
                mask[r : r + 28, c : c + 28] = True
            assert frames[s, t][~mask].max() == 0  # ink only inside the digits' boxes
            expected = np.zeros((64, 64), np.uint8)
            for j in range(2):
                r, c = rounded[s, t, j]
                view = expected[r : r + 28, c : c + 28]
                np.maximum(view, mnist[:50][out["digit_index"][s, j]], out=view)
            assert np.array_equal(frames[s, t], expected)
    # closed form of reflection in [0, L]: the triangle wave of the free motion x0 + v t
    lim, t = 64 - 28, np.arange(40)[None, :, None, None]
    free = pos[:, :1] + out["velocities"][:, None] * t
    assert np.allclose(pos, lim - np.abs(np.mod(free, 2 * lim) - lim))
    speed = np.linalg.norm(out["velocities"], axis=-1)
    assert speed.min() >= 3.0 and speed.max() <= 4.5
    assert (np.diff(np.sign(np.diff(pos, axis=1)), axis=1) != 0).any()  # some digits bounced in 40 frames


def test_bounce_is_a_mirror_reflection():
    traj = bounce_trajectory(np.array([1.0, 30.0]), np.array([-3.0, 4.0]), 4, 36.0)
    assert np.allclose(traj, [[1, 30], [2, 34], [5, 36 - 2], [8, 30]])


def test_generator_is_seeded_and_configurable(mnist):
    a = generate(mnist[:20], 3, MovingMNISTConfig(length=5, num_digits=3, canvas=48), seed=1)["frames"]
    b = generate(mnist[:20], 3, MovingMNISTConfig(length=5, num_digits=3, canvas=48), seed=1)["frames"]
    c = generate(mnist[:20], 3, MovingMNISTConfig(length=5, num_digits=3, canvas=48), seed=2)["frames"]
    assert a.shape == (3, 5, 48, 48) and np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ValueError, match="speed"):
        generate(mnist[:5], 1, MovingMNISTConfig(speed=(5.0, 40.0)))
    with pytest.raises(ValueError, match=r"\(N, size, size\)"):
        generate(mnist[:5].reshape(5, -1), 1)


def test_disjoint_digit_split_and_npz_roundtrip(mnist, tmp_path):
    train, test = split_digits(10000, seed=0)
    assert len(train) == len(test) == 5000 and not set(train) & set(test)
    data = generate(mnist[test], 2, MovingMNISTConfig(length=6), seed=0)
    path = save_npz(tmp_path / "mm.npz", data, seed=0)
    assert np.array_equal(load_frames(path), data["frames"])
    np.savez(tmp_path / "bad.npz", video=data["frames"])
    with pytest.raises(ValueError, match="'frames'"):
        load_frames(tmp_path / "bad.npz")


def _write_sequence(folder, n, size=(10, 12), value=0):
    folder.mkdir(parents=True)
    for i in range(n):
        arr = np.full(size, (value + 10 * i) % 256, np.uint8)
        Image.fromarray(arr).save(folder / f"{i:04d}.png")


def test_frame_folder_clips(tmp_path):
    _write_sequence(tmp_path / "a", 7)
    _write_sequence(tmp_path / "b", 9, value=5)
    ds = FrameSequenceFolder(tmp_path, input_frames=2, future_frames=3, random_clips=False)
    x, y = ds[1]
    assert x.shape == (2, 1, 10, 12) and y.shape == (3, 1, 10, 12)
    assert torch.allclose(x[:, 0, 0, 0] * 255, torch.tensor([5.0, 15.0]))
    ds = FrameSequenceFolder(tmp_path, input_frames=2, future_frames=3, size=(8, 8), seed=0)
    starts = {int(round(float(ds[1][0][0, 0, 0, 0]) * 255 - 5)) // 10 for _ in range(30)}
    assert starts <= set(range(5)) and len(starts) > 1  # random contiguous clips


def test_frame_folder_rejects_malformed(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        FrameSequenceFolder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no sequence folders"):
        FrameSequenceFolder(tmp_path / "empty")
    _write_sequence(tmp_path / "short" / "s", 3)
    with pytest.raises(ValueError, match="3 frames, a clip needs 20"):
        FrameSequenceFolder(tmp_path / "short")
    _write_sequence(tmp_path / "mixed" / "s", 2)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "mixed" / "s" / "0009.png")
    with pytest.raises(ValueError, match="differ in size"):
        FrameSequenceFolder(tmp_path / "mixed", 2, 1, random_clips=False)[0]
    (tmp_path / "broken" / "s").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "broken" / "s" / f"{i}.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="not a readable image"):
        FrameSequenceFolder(tmp_path / "broken", 2, 1)[0]


def test_kth_person_split(tmp_path):
    for p in (1, 16, 17, 25):
        _write_sequence(tmp_path / "frames" / f"person{p:02d}_walking_d1_uncomp", 4, size=(12, 16))
    _write_sequence(tmp_path / "frames" / "readme_folder", 4)
    train = KTHClips(tmp_path, "train", input_frames=2, future_frames=2, size=(8, 8))
    test = KTHClips(tmp_path, "test", input_frames=2, future_frames=2, size=(8, 8))
    assert [parse_kth_name(f.name)[0] for f in train.folders] == [1, 16]
    assert [parse_kth_name(f.name)[0] for f in test.folders] == [17, 25]
    assert train.random_clips and not test.random_clips
    x, y = train[0]
    assert x.shape == (2, 1, 8, 8) and y.shape == (2, 1, 8, 8)


def test_kth_rejects_malformed(tmp_path):
    with pytest.raises(ValueError, match="is not a KTH sequence name"):
        parse_kth_name("person1_boxing_d1")
    with pytest.raises(ValueError, match="persons are 1..25"):
        parse_kth_name("person26_boxing_d1")
    with pytest.raises(ValueError, match="split must be"):
        kth_folders(tmp_path, "val")
    with pytest.raises(ValueError, match="no KTH frame folders"):
        kth_folders(tmp_path, "train")
