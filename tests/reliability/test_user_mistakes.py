"""User mistakes get a clear error before any work: build arguments, CSV data sets, `zoo train` options (one line on
the command line, a traceback only with --debug), a closed pipe, and saved files readable by others (0644)."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import zoo
from tests.training.conftest import colour_data, rgb_toy  # noqa: F401  (fixtures)
from zoo import plugins
from zoo.cli import main
from zoo.errors import DataError, ZooError
from zoo.training.data import ImageClassificationData

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_classes=-1), "num_classes must be a whole number >= 0, got -1"),
    (dict(num_classes=2.5), "num_classes must be a whole number >= 0, got 2.5 (float)"),
    (dict(num_classes="10"), "num_classes must be a whole number >= 0, got '10' (str)"),
    (dict(num_classes=True), "got True (bool)"),
    (dict(in_chans=0), "in_chans must be a whole number >= 1, got 0"),
    (dict(in_chans=-3), "in_chans must be a whole number >= 1, got -3"),
    (dict(in_chans=3.0), "in_chans must be a whole number >= 1, got 3.0 (float)"),
])
def test_bad_counts_are_refused_before_building(toy_family, monkeypatch, kwargs, message):
    def builder_must_not_run(**_):
        raise AssertionError("the builder was called")

    monkeypatch.setitem(plugins.get_family("toy").builders, "toy_net", builder_must_not_run)
    with pytest.raises(ZooError) as error:
        zoo.create("toynet-small", **kwargs)
    assert message in str(error.value)


def test_numpy_counts_are_accepted_as_ints(toy_family):
    model = zoo.create("toynet-small", num_classes=np.int64(5))
    assert model.get_classifier().out_features == 5 and type(model.pretrained_cfg["num_classes"]) is int


def test_finetune_refuses_a_zero_class_head(rgb_toy, colour_data):
    with pytest.raises(ZooError, match="num_classes must be a whole number >= 1, got 0"):
        zoo.finetune(rgb_toy, colour_data[0], num_classes=0, epochs=1, progress=False)


# -- CSV data sets --------------------------------------------------------------------------------------------------

@pytest.fixture
def csv_folder(tmp_path: Path) -> Path:
    for name in ("a", "b", "c"):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / f"{name}.png")
    return tmp_path


def _read(path: Path, **kwargs) -> ImageClassificationData:
    return ImageClassificationData(path, transform=lambda x: x, **kwargs)


@contextlib.contextmanager
def _memory_capped(extra_bytes: int = 1 << 30):
    """Cap this process's address space at its current size plus ``extra_bytes`` (Linux), so that a regression
    allocating per class id raises MemoryError here instead of waking the machine's OOM killer."""
    try:
        import resource

        size = next(int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith("VmSize:"))
    except (ImportError, OSError, StopIteration):
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size + extra_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_csv_with_a_huge_label_id_is_refused_not_a_memory_error(csv_folder):
    path = csv_folder / "labels.csv"
    path.write_text("path,label\na.png,0\nb.png,99999999999999\n")
    with _memory_capped(), pytest.raises(DataError, match=r"labels\.csv: label 99999999999999 in row 2 is not a plausible class id "
                                        r"\(expected 0 <= id < 100,000\)"):
        _read(path)


def test_csv_that_is_not_utf8_is_a_clear_error(csv_folder):
    path = csv_folder / "labels.csv"
    path.write_bytes("path,label\na.png,chat\nb.png,\u00e9t\u00e9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"labels\.csv: not UTF-8 text \(byte b'\\xe9' at offset 28\); save the CSV "
                                        r"as UTF-8"):
        _read(path)


@pytest.mark.parametrize("odd, row", [("cat", 3), ("-1", 3), ("1.0", 3)])
def test_csv_with_one_non_id_label_among_ids_is_refused_not_relabelled(csv_folder, odd, row):
    path = csv_folder / "labels.csv"
    path.write_text(f"path,label\na.png,2\nb.png,10\nc.png,{odd}\n")
    with pytest.raises(DataError, match=rf"all class ids .* or all class names; row {row} has '{odd}' among 2 ids"):
        _read(path)


def test_csv_with_a_byte_order_mark_and_class_names_reads(csv_folder):
    path = csv_folder / "labels.csv"
    path.write_bytes("path,label\na.png,cat\nb.png,dog\nc.png,cat\n".encode("utf-8-sig"))
    data = _read(path)
    assert data.classes == ["cat", "dog"] and [y for _, y in data.samples] == [0, 1, 0]


def test_csv_with_a_nul_byte_or_a_short_row_is_a_clear_error(csv_folder):
    path = csv_folder / "labels.csv"
    path.write_text("path,label\na.png,0\nb.png\n")
    with pytest.raises(DataError, match=r"two columns path,label \(row 2 has 1\)"):
        _read(path)


# -- zoo train: one line per mistake, before the first epoch --------------------------------------------------------

@pytest.fixture
def train_cli(rgb_toy, colour_data, tmp_path, monkeypatch):
    """``train_cli(*flags)`` runs ``zoo train`` on the colour data; the training loop must never start."""
    from zoo.training.trainer import Trainer

    def no_training(self):
        raise AssertionError("training started")

    monkeypatch.setattr(Trainer, "_loop", no_training)

    def run(*flags: str, output: str = str(tmp_path / "out")) -> int:
        return main(["train", rgb_toy, "--data", str(colour_data[0]), "--output", output, "--epochs", "1",
                     "--no-augment", *flags])

    return run


@pytest.mark.parametrize("flags, message", [
    (["--lr", "-0.1"], "lr must be a finite number > 0, got -0.1"),
    (["--lr", "nan"], "lr must be a finite number > 0, got nan"),
    (["--optimizer", "adamx"], "unknown optimizer 'adamx'"),
    (["--scheduler", "cosin"], "scheduler 'cosin': Unknown scheduler 'cosin'"),
    (["--device", "gpu"], "device must be cpu, cuda, cuda:N or mps, got 'gpu'"),
    (["--input-size", "0"], "input_size must be a whole number >= 1, got 0"),
    (["--batch-size", "0"], "batch_size must be a whole number >= 1, got 0"),
    (["--weight-decay", "-1"], "weight_decay must be a finite number >= 0, got -1.0"),
])
def test_cli_mistakes_are_one_line_before_the_first_epoch(train_cli, capsys, flags, message):
    assert train_cli(*flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: ") and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_refuses_a_missing_gpu(train_cli, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert train_cli("--device", "cuda") == 2
    assert "device 'cuda': CUDA is not available here" in capsys.readouterr().err


def test_cli_refuses_an_unwritable_output(train_cli, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert train_cli(output=str(blocker / "out")) == 2
    err = capsys.readouterr().err
    assert f"output folder {blocker / 'out'} is not writable" in err and err.count("\n") == 1


def test_debug_shows_the_traceback(train_cli):
    with pytest.raises(ZooError, match="unknown optimizer 'adamx'"):
        train_cli("--optimizer", "adamx", "--debug")


def test_unexpected_errors_are_one_line_unless_debug(toy_family, monkeypatch, capsys):
    import zoo.api

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(zoo.api, "create", broken)
    assert main(["create", "toynet-small"]) == 1
    err = capsys.readouterr().err
    assert err == "zoo: error: RuntimeError: disk on fire (unexpected: run again with --debug for the traceback)\n"
    with pytest.raises(RuntimeError, match="disk on fire"):
        main(["--debug", "create", "toynet-small"])


def test_a_closed_pipe_ends_quietly():
    """``zoo info NAME --json | head -c 10``: the reader goes away before the output is written."""
    process = subprocess.Popen([sys.executable, "-m", "zoo", "list", "--json"], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()  # before the child has imported zoo, so its first write meets a closed pipe
    err = process.stderr.read().decode()
    process.wait(timeout=120)
    assert err == "" and process.returncode == 141


# -- saved files ----------------------------------------------------------------------------------------------------

def test_saved_files_have_normal_permissions(rgb_toy, colour_data, tmp_path):
    previous = os.umask(0o022)
    try:
        zoo.save_pretrained(zoo.create(rgb_toy), tmp_path / "saved")
        zoo.finetune(rgb_toy, colour_data[0], epochs=1, batch_size=16, progress=False,
                     output_dir=str(tmp_path / "run"))
    finally:
        os.umask(previous)
    files = [p for p in [*(tmp_path / "saved").rglob("*"), *(tmp_path / "run").rglob("*")] if p.is_file()]
    modes = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files
             if p.name != ".zoo-train.lock"}
    assert "run/checkpoint.pt" in modes and "saved/model.safetensors" in modes
    assert set(modes.values()) == {"0o644"}, modes


# -- in_chans adaptation --------------------------------------------------------------------------------------------

def test_grayscale_weights_adapt_to_rgb_and_the_adapted_model_saves_and_loads(tmp_path):
    import torch

    gray = zoo.create("lenet5", pretrained=True).eval()
    rgb = zoo.create("lenet5", pretrained=True, in_chans=3).eval()
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(rgb(x.repeat(1, 3, 1, 1)), gray(x), atol=1e-5)  # a gray image gives the same answer
    zoo.save_pretrained(rgb, tmp_path / "rgb")
    again = zoo.create(f"local-dir:{tmp_path / 'rgb'}", pretrained=True).eval()
    assert again.conv1.weight.shape[1] == 3 and torch.equal(again(x.repeat(1, 3, 1, 1)), rgb(x.repeat(1, 3, 1, 1)))


def test_in_chans_without_a_declared_first_conv_is_a_clear_error(toy_family):
    toy_family("""
    models:
      toynet-noconv:
        family: toy
        builder: toy_net
        dataset: noise
        input: {shape: [2, 8, 8], num_classes: 3, classifier: head}
    """)
    from safetensors.torch import save_file

    weights = toy_family.site / "w.safetensors"
    save_file(zoo.create("toynet-noconv").state_dict(), weights)
    with pytest.raises(ZooError, match=r"'toynet-noconv' declares no first convolution \(input.first_conv\), so its "
                                       r"pretrained weights for 2 input channel\(s\) cannot be adapted to in_chans=3"):
        zoo.create("toynet-noconv", in_chans=3, checkpoint_path=weights)


def test_cli_refuses_a_bad_push_repo_id_before_training(train_cli, capsys):
    assert train_cli("--push-to-hub", "not a repo") == 2
    assert "'not a repo' is not a Hugging Face repository id (expected ORG/NAME)" in capsys.readouterr().err


def test_an_input_size_the_network_cannot_take_is_refused_before_the_data_is_read(tmp_path):
    with pytest.raises(ZooError, match=r"input_size 2 does not fit 'lenet5' \(its images are 28x28\): "
                                       r".*[Kk]ernel size"):
        zoo.finetune("lenet5", tmp_path / "never-read", input_size=2, epochs=1, progress=False)


def test_info_reads_folders_and_a_malformed_hub_id_is_a_typo_not_a_network_error(toy_family, tmp_path, capsys):
    zoo.save_pretrained(zoo.create("toynet-small"), tmp_path / "saved")
    assert zoo.model_info(f"local-dir:{tmp_path / 'saved'}").name == "toynet-small"
    assert main(["info", f"local-dir:{tmp_path / 'missing'}"]) == 2
    assert "is not a folder (expected one written by zoo.save_pretrained)" in capsys.readouterr().err
    with pytest.raises(ZooError, match=r"'\.\./\.\./etc' is not a Hugging Face repository id \(expected ORG/NAME\)"):
        zoo.create("hf-hub:../../etc")
