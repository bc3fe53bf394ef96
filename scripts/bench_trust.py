"""Adversarial battery for issue 19: what a new user or an attacker would feed the zoo, and how each input is handled.

Each case feeds one bad input (a weights file, a ``config.json``, a plugin, a name, a ``create`` argument, training
data, a ``zoo`` command line, a save or push) and is classified:

- **good**: a ``ZooError`` (or subclass) whose message names the problem (the case's keywords), a one-line
  ``zoo: error:`` on the command line (no traceback, non-zero exit), the documented warning, or correct behaviour;
- **bad**: any other exception (a raw traceback for a user), an accepted input that should be refused (silent
  wrong behaviour), a message that does not name the problem, changed or lost data, a hang (timeout), or code
  execution (a payload that would create a canary file; checked after every case).

Cases run in this process (with an alarm as timeout; command lines through ``zoo.cli.main`` with captured output) or
as ``python -m zoo`` subprocesses (pipes, a memory cap, a few command lines end to end; with a timeout), in a
temporary folder, offline (``HF_HUB_OFFLINE=1``), on LeNet-5 and the throwaway ``toy`` plugin of the tests. Prints a
table by category, writes ``benchmarks/trust.json`` and ``benchmarks/trust.md``.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_trust.py [--label after] [--only CATEGORY]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import zoo  # noqa: E402
import zoo.registry  # noqa: E402
from zoo.errors import ZooError  # noqa: E402

torch.set_num_threads(1)
OUT = REPO / "benchmarks"
CASE_TIMEOUT_S = 90
Words = Sequence[Union[str, Tuple[str, ...]]]  # every item must appear in the message; a tuple: any one of them


@dataclass
class Result:
    """One case: its category and name, ``good`` or ``bad``, and what happened (the message or the failure)."""

    category: str
    case: str
    verdict: str
    detail: str
    seconds: float


class CaseTimeout(BaseException):
    """Raised by the alarm when an in-process case runs past ``CASE_TIMEOUT_S``."""


class Verdict(Exception):
    """A case's outcome, raised by the checks below."""

    def __init__(self, good: bool, detail: str):
        super().__init__(detail)
        self.good, self.detail = good, detail


def short(text: str, limit: int = 240) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + " ..."


def _missing(message: str, words: Words) -> List[str]:
    low = message.lower()
    out = []
    for word in words:
        options = word if isinstance(word, tuple) else (word,)
        if not any(o.lower() in low for o in options):
            out.append("|".join(options))
    return out


def expect_error(fn: Callable[[], Any], words: Words, kinds: Tuple[type, ...] = (ZooError,)) -> str:
    """Good when ``fn`` raises one of ``kinds`` whose message holds ``words``."""
    try:
        fn()
    except kinds as exc:
        missing = _missing(str(exc), words)
        if missing:
            raise Verdict(False, f"{type(exc).__name__} without {missing}: {short(exc)}")
        return f"{type(exc).__name__}: {short(exc)}"
    except (CaseTimeout, KeyboardInterrupt):
        raise
    except BaseException as exc:  # noqa: B036 - SystemExit from a plugin is a finding too
        raise Verdict(False, f"raw {type(exc).__name__}: {short(exc)}")
    raise Verdict(False, "accepted silently (no error)")


def expect_ok(fn: Callable[[], Any], check: Callable[[Any], Optional[str]] = lambda _: None) -> str:
    """Good when ``fn`` returns and ``check(value)`` finds nothing wrong (returns ``None``)."""
    try:
        value = fn()
    except (CaseTimeout, KeyboardInterrupt):
        raise
    except BaseException as exc:  # noqa: B036
        raise Verdict(False, f"raised {type(exc).__name__}: {short(exc)}")
    problem = check(value)
    if problem:
        raise Verdict(False, problem)
    return "correct behaviour"


def expect_warning(fn: Callable[[], Any], words: Words, check: Callable[[Any], Optional[str]] = lambda _: None) -> str:
    """Good when ``fn`` returns, warns once with ``words`` and ``check(value)`` finds nothing wrong."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detail = expect_ok(fn, check)
    found = [str(w.message) for w in caught if not _missing(str(w.message), words)]
    if not found:
        raise Verdict(False, f"no warning naming {list(words)} (got {[short(w.message, 80) for w in caught][:3]})")
    return f"{detail}; warned: {short(found[0])}"


# -- the command line -----------------------------------------------------------------------------------------------

def run_cli(args: Sequence[str], timeout: float = 120, shell_pipe: Optional[str] = None,
            memory_gib: Optional[float] = None) -> subprocess.CompletedProcess:
    """``python -m zoo ARGS`` (optionally piped into ``shell_pipe``; optionally with an address-space cap)."""
    cmd = [sys.executable, "-m", "zoo", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    limit: Optional[Callable[[], None]] = None
    if memory_gib is not None:
        import resource

        size = int(memory_gib * (1 << 30))

        def cap() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (size, size))

        limit = cap
    if shell_pipe is not None:
        line = " ".join(_quote(a) for a in cmd) + " | " + shell_pipe + "; exit ${PIPESTATUS[0]}"
        return subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=REPO, preexec_fn=limit)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, preexec_fn=limit)


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def main_in_process(args: Sequence[str]) -> subprocess.CompletedProcess:
    """``zoo.cli.main(args)`` here, with stdout and stderr captured (argparse's exit is its return code)."""
    import io

    from zoo.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception:  # what a user would see: the interpreter's traceback
            traceback.print_exc(file=err)
            code = 1
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def cli_error(args: Sequence[str], words: Words, subprocess_run: bool = False, **kwargs: Any) -> str:
    """Good when the command fails with a short error naming ``words`` on stderr: no traceback, not the
    "unexpected" fallback, non-zero exit. Runs ``zoo.cli.main`` in this process unless ``subprocess_run``
    (``python -m zoo``, for pipes and memory caps)."""
    try:
        done = run_cli(args, **kwargs) if subprocess_run else main_in_process(args)
    except subprocess.TimeoutExpired:
        raise Verdict(False, "hang: the command ran past its timeout")
    err = done.stderr.strip()
    last = err.splitlines()[-1] if err else ""
    if done.returncode == 0:
        raise Verdict(False, f"exit 0 (accepted); stdout: {short(done.stdout, 120)}")
    if "Traceback" in err:
        raise Verdict(False, f"traceback (exit {done.returncode}): {short(last)}")
    if "unexpected" in last:
        raise Verdict(False, f"non-zoo exception reached the CLI (exit {done.returncode}): {short(last)}")
    missing = _missing(err, words)
    if missing:
        raise Verdict(False, f"message lacks {missing} (exit {done.returncode}): {short(last)}")
    return f"exit {done.returncode}: {short(last)}"


# -- fixtures ---------------------------------------------------------------------------------------------------------

class Env:
    """The temporary folder, the canary a payload would create, a saved LeNet-5 folder and its weights."""

    def __init__(self, root: Path):
        self.root = root
        self.canary = root / "CANARY-code-ran"
        self.n = 0
        self.lenet = zoo.create("lenet5", pretrained=True)
        self.good_dir = root / "lenet5-saved"
        zoo.save_pretrained(self.lenet, self.good_dir)
        self.state = {k: v.clone() for k, v in self.lenet.state_dict().items()}
        self.config = json.loads((self.good_dir / "config.json").read_text())

    def path(self, name: str) -> Path:
        """A fresh path under the root."""
        self.n += 1
        folder = self.root / f"c{self.n:03d}"
        folder.mkdir()
        return folder / name

    def weights(self, state: Dict[str, torch.Tensor]) -> Path:
        path = self.path("w.safetensors")
        save_file(state, str(path))
        return path

    def raw(self, data: bytes, name: str = "w.safetensors") -> Path:
        path = self.path(name)
        path.write_bytes(data)
        return path

    def payload(self) -> Any:
        """An object whose unpickling creates the canary file."""
        return _Payload(str(self.canary))

    def folder(self, config: Any = None, text: Optional[Union[str, bytes]] = None) -> str:
        """A copy of the saved LeNet-5 folder with ``config.json`` replaced; its ``local-dir:`` name."""
        import shutil

        folder = self.path("model")
        shutil.copytree(self.good_dir, folder)
        if text is None:
            text = json.dumps(config, allow_nan=True)
        data = text.encode() if isinstance(text, str) else text
        (folder / "config.json").write_bytes(data)
        return f"local-dir:{folder}"

    def config_with(self, **changes: Any) -> Dict[str, Any]:
        cfg = json.loads(json.dumps(self.config))
        for dotted, value in changes.items():
            keys = dotted.split("__")
            node = cfg
            for key in keys[:-1]:
                node = node.setdefault(key, {})
            node[keys[-1]] = value
        return cfg


class _Payload:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _gray_images(folder: Path, n: int = 4, size: int = 28, classes: Sequence[str] = ("a", "b")) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        (folder / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(folder / c / f"{i}.png")
    return folder


def _csv(env: Env, rows: Union[str, bytes], images: int = 3) -> Path:
    path = env.path("data.csv")
    for i in range(images):
        Image.fromarray(np.full((28, 28), 40 * i, np.uint8)).save(path.parent / f"{i}.png")
    path.write_bytes(rows.encode() if isinstance(rows, str) else rows)
    return path


def _npz(env: Env, **arrays: Any) -> Path:
    path = env.path("part.npz")
    np.savez(path, **arrays)
    return path.parent


def train_kwargs(env: Env, **extra: Any) -> Dict[str, Any]:
    return dict(epochs=1, batch_size=4, progress=False, num_workers=0, output_dir=str(env.path("run")),
                device="cpu", **extra)


# -- the cases --------------------------------------------------------------------------------------------------------

Case = Tuple[str, str, Callable[[], str]]


def weights_cases(env: Env) -> List[Case]:
    s = env.state
    header = lambda obj: struct.pack("<Q", len(json.dumps(obj))) + json.dumps(obj).encode()  # noqa: E731
    good_bytes = Path(env.weights(s)).read_bytes()
    load = lambda path, **kw: (lambda: zoo.create("lenet5", checkpoint_path=path, **kw))  # noqa: E731
    first = next(iter(s))
    conv = "conv1.weight" if "conv1.weight" in s else first
    cases: List[Case] = [
        ("truncated file (half)", lambda: expect_error(load(env.raw(good_bytes[: len(good_bytes) // 2])),
                                                       [("safetensors", "truncated")])),
        ("truncated header", lambda: expect_error(load(env.raw(good_bytes[:12])), ["safetensors"])),
        ("zero-byte file", lambda: expect_error(load(env.raw(b"")), ["safetensors"])),
        ("random bytes", lambda: expect_error(load(env.raw(os.urandom(4096))), ["safetensors"])),
        ("huge header length (2**60)", lambda: expect_error(load(env.raw(struct.pack("<Q", 1 << 60) + b"{}")),
                                                            ["safetensors"])),
        ("header longer than the file", lambda: expect_error(load(env.raw(struct.pack("<Q", 10_000) + b"{}")),
                                                             ["safetensors"])),
        ("header not JSON", lambda: expect_error(load(env.raw(struct.pack("<Q", 8) + b"notjson!")), ["safetensors"])),
        ("tensor offsets past the data", lambda: expect_error(load(env.raw(header(
            {conv: {"dtype": "F32", "shape": [6, 1, 5, 5], "data_offsets": [0, 600]}}) + b"\0" * 8)),
            ["safetensors"])),
        ("overlapping tensor offsets", lambda: expect_error(load(env.raw(header(
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
             "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}) + b"\0" * 8)), ["safetensors"])),
        ("unknown dtype in header", lambda: expect_error(load(env.raw(header(
            {conv: {"dtype": "Q99", "shape": [1], "data_offsets": [0, 4]}}) + b"\0" * 4)), ["safetensors"])),
        ("pickle disguised as .safetensors", lambda: expect_error(
            load(_torch_save(env, {"w": env.payload()}, "w.safetensors")), ["safetensors"])),
        ("pickle with .pt suffix", lambda: expect_error(load(_torch_save(env, {"w": env.payload()}, "w.pt")),
                                                        [".safetensors"])),
        ("plain state dict .bin", lambda: expect_error(load(_torch_save(env, s, "pytorch_model.bin")),
                                                       [".safetensors"])),
        ("weights file does not exist", lambda: expect_error(load(env.root / "nope.safetensors"), ["does not exist"])),
        ("checkpoint_path is a folder", lambda: expect_error(load(env.path("d.safetensors").parent),
                                                             [("does not exist", "not a file", "folder")])),
        ("empty state dict", lambda: expect_error(load(env.weights({})), ["missing keys"])),
        ("one key missing", lambda: expect_error(load(env.weights({k: v for k, v in s.items() if k != conv})),
                                                 ["missing", conv])),
        ("one extra key", lambda: expect_error(load(env.weights({**s, "evil.weight": torch.zeros(2)})),
                                               ["unexpected", "evil.weight"])),
        ("wrong shape", lambda: expect_error(load(env.weights({**s, conv: torch.zeros(3, 1, 5, 5)})),
                                             [conv, "shape"])),
        ("wrong shape of a bias", lambda: expect_error(
            load(env.weights({**s, first.replace("weight", "bias") if first.endswith("weight") else first:
                              torch.zeros(1)})), ["size", ("shape", "fit")])),
        ("int64 weights", lambda: expect_error(load(env.weights({k: v.long() for k, v in s.items()})),
                                               ["dtype", "int64"])),
        ("bool weights", lambda: expect_error(load(env.weights({k: v > 0 for k, v in s.items()})),
                                              ["dtype", "bool"])),
        ("uint8 weights", lambda: expect_error(load(env.weights({k: v.to(torch.uint8) for k, v in s.items()})),
                                               ["dtype", "uint8"])),
        ("float16 weights load as float32", lambda: expect_ok(
            load(env.weights({k: v.half() for k, v in s.items()})),
            lambda m: None if next(m.parameters()).dtype == torch.float32 and torch.allclose(
                m.state_dict()[conv], s[conv].half().float()) else "float16 weights did not load as float32")),
        ("float64 weights load as float32", lambda: expect_ok(
            load(env.weights({k: v.double() for k, v in s.items()})),
            lambda m: None if next(m.parameters()).dtype == torch.float32 else "dtype changed")),
        ("NaN in the weights", lambda: expect_error(
            load(env.weights({**s, conv: torch.full_like(s[conv], float("nan"))})), [("nan", "finite"), conv])),
        ("Inf in the weights", lambda: expect_error(
            load(env.weights({**s, conv: torch.full_like(s[conv], float("inf"))})), [("inf", "finite"), conv])),
        ("DDP 'module.' prefix", lambda: expect_error(load(env.weights({"module." + k: v for k, v in s.items()})),
                                                      ["module."])),
        ("bad weights with num_classes=5", lambda: expect_error(load(env.raw(b"xx"), num_classes=5),
                                                                ["safetensors"])),
        ("local-dir weights replaced (sha256)", lambda: expect_error(
            lambda: zoo.create(_folder_with_weights(env, {**s, conv: s[conv] * 0}), pretrained=True),
            ["sha256"])),
        ("local-dir weights pickled", lambda: expect_error(
            lambda: zoo.create(_folder_with_raw(env, _torch_save(env, {"w": env.payload()}, "x").read_bytes()),
                               pretrained=True), ["sha256"])),
        ("local-dir without model.safetensors", lambda: expect_error(
            lambda: zoo.create(_folder_without_weights(env), pretrained=True), ["model.safetensors"])),
        ("training checkpoint with a payload (--resume)", lambda: expect_error(
            lambda: _resume_with(env, {"model": env.payload()}), ["refusing", "checkpoint"])),
        ("training checkpoint truncated (--resume)", lambda: expect_error(
            lambda: _resume_with(env, None), ["checkpoint"])),
    ]
    return [("weights", name, fn) for name, fn in cases]


def _torch_save(env: Env, obj: Any, name: str) -> Path:
    path = env.path(name)
    torch.save(obj, path)
    return path


def _folder_with_weights(env: Env, state: Dict[str, torch.Tensor]) -> str:
    name = env.folder(env.config)
    save_file(state, str(Path(name[len("local-dir:"):]) / "model.safetensors"))
    return name


def _folder_with_raw(env: Env, data: bytes) -> str:
    name = env.folder(env.config)
    (Path(name[len("local-dir:"):]) / "model.safetensors").write_bytes(data)
    return name


def _folder_without_weights(env: Env) -> str:
    name = env.folder(env.config)
    (Path(name[len("local-dir:"):]) / "model.safetensors").unlink()
    return name


def _resume_with(env: Env, payload: Any) -> Any:
    data = _gray_images(env.path("data"))
    kwargs = train_kwargs(env, resume=True)
    out = Path(kwargs["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    if payload is None:
        (out / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    else:
        torch.save(payload, out / "checkpoint.pt")
    return zoo.finetune("lenet5", data, **kwargs)


def config_cases(env: Env) -> List[Case]:
    create = lambda name, **kw: (lambda: zoo.create(name, **kw))  # noqa: E731
    cfg = env.config
    deep = json.dumps(cfg)[:-1] + ', "data": ' + "[" * 5000 + "1" + "]" * 5000 + "}"
    cases: List[Case] = [
        ("a list, not an object", lambda: expect_error(create(env.folder([cfg])), ["config.json", "object"])),
        ("a string", lambda: expect_error(create(env.folder("lenet5")), ["config.json", "object"])),
        ("null", lambda: expect_error(create(env.folder(None, "null")), ["config.json", "object"])),
        ("empty file", lambda: expect_error(create(env.folder(None, "")), ["config.json"])),
        ("not UTF-8", lambda: expect_error(create(env.folder(None, b"\xff\xfe{\x00}")), ["config.json", "UTF-8"])),
        ("latin-1 string value", lambda: expect_error(
            create(env.folder(None, json.dumps({**cfg, "data": "caf\u00e9"}, ensure_ascii=False).encode().replace(
                b"\xc3\xa9", b"\xe9"))),
            ["config.json", "UTF-8"])),
        ("UTF-8 byte-order mark", lambda: expect_error(
            create(env.folder(None, b"\xef\xbb\xbf" + json.dumps(cfg).encode())), ["config.json", "BOM"])),
        ("deeply nested (5000 levels)", lambda: expect_error(
            create(env.folder(None, deep)), ["config.json", ("deep", "nested", "levels")])),
        ("NaN value", lambda: expect_error(create(env.folder(None, json.dumps(cfg)[:-1] + ', "x": NaN}')),
                                           ["config.json", "NaN"])),
        ("Infinity value", lambda: expect_error(
            create(env.folder(None, json.dumps(cfg)[:-1] + ', "x": Infinity}')), ["config.json", "Infinity"])),
        ("number that overflows (1e999)", lambda: expect_error(
            create(env.folder(None, json.dumps(cfg)[:-1] + ', "x": 1e999}')), ["config.json", ("1e999", "finite")])),
        ("huge file (3 MiB)", lambda: expect_error(create(env.folder({**cfg, "data": "x" * (3 << 20)})),
                                                   ["config.json", ("MiB", "large", "big")])),
        ("invalid JSON", lambda: expect_error(create(env.folder(None, "{'name': 'lenet5'}")),
                                              ["config.json", "JSON"])),
        ("duplicate keys", lambda: expect_error(
            create(env.folder(None, json.dumps(cfg)[:-1] + ', "name": "lenet5"}')), ["config.json", "name"])),
        ("config.json missing", lambda: expect_error(create(_no_config(env)), ["config.json"])),
        ("config.json is a folder", lambda: expect_error(create(_config_folder(env)), ["config.json"])),
        ("unknown top-level key", lambda: expect_error(create(env.folder({**cfg, "weights": "x"})), ["weights"])),
        ("name not a string", lambda: expect_error(create(env.folder({**cfg, "name": 5})), ["name"])),
        ("unknown family", lambda: expect_error(create(env.folder({**cfg, "family": "nosuchfam"})), ["nosuchfam"])),
        ("unknown builder", lambda: expect_error(create(env.folder({**cfg, "builder": "nosuchb"})), ["nosuchb"])),
        ("build arg pretrained_file", lambda: expect_error(
            create(env.folder(env.config_with(build_kwargs__pretrained_file="/etc/passwd"))), ["pretrained_file"])),
        ("build arg checkpoint_path", lambda: expect_error(
            create(env.folder(env.config_with(build_kwargs__checkpoint_path="/etc/passwd"))), ["checkpoint_path"])),
        ("build arg pretrained=True", lambda: expect_error(
            create(env.folder(env.config_with(build_kwargs__pretrained=True))), ["pretrained"])),
        ("build arg pretrained_cfg_overlay", lambda: expect_error(
            create(env.folder(env.config_with(build_kwargs__pretrained_cfg_overlay={"file": "/etc/passwd"}))),
            ["pretrained_cfg_overlay"])),
        ("nested backbone_args.pretrained_file", lambda: expect_error(
            create(env.folder(env.config_with(build_kwargs__backbone_args={"pretrained_file": "/x"}))),
            ["pretrained_file"])),
        ("args.url", lambda: expect_error(create(env.folder(env.config_with(args__url="http://evil/x"))), ["url"])),
        ("args.cache_dir", lambda: expect_error(create(env.folder(env.config_with(args__cache_dir="/tmp"))),
                                                ["cache_dir"])),
        ("unknown build arg", lambda: expect_error(create(env.folder(env.config_with(build_kwargs__frobnicate=1))),
                                                   ["frobnicate"])),
        ("pretrained_cfg.url", lambda: expect_error(
            create(env.folder(env.config_with(pretrained_cfg__url="http://evil/w.pth"))), ["url"])),
        ("pretrained_cfg.file", lambda: expect_error(
            create(env.folder(env.config_with(pretrained_cfg__file="/etc/passwd"))), ["file"])),
        ("pretrained_cfg.hf_hub_id", lambda: expect_error(
            create(env.folder(env.config_with(pretrained_cfg__hf_hub_id="evil/repo"))), ["hf_hub_id"])),
        ("pretrained_cfg.state_dict", lambda: expect_error(
            create(env.folder(env.config_with(pretrained_cfg__state_dict={"a": 1}))), ["state_dict"])),
        ("model_args.checkpoint_path", lambda: expect_error(
            create(env.folder(env.config_with(model_args__checkpoint_path="/x"))), ["checkpoint_path"])),
        ("absolute path value", lambda: expect_error(
            create(env.folder(env.config_with(build_kwargs__backbone="/etc/passwd"))), ["/etc/passwd"])),
        ("relative path value", lambda: expect_error(
            create(env.folder(env.config_with(build_kwargs__backbone="../../secret"))), ["../../secret"])),
        ("home path value", lambda: expect_error(
            create(env.folder(env.config_with(build_kwargs__backbone="~root"))), ["~root"])),
        ("URL value", lambda: expect_error(
            create(env.folder(env.config_with(build_kwargs__backbone="https://evil.example/x"))), ["https"])),
        ("hf-hub: value", lambda: expect_error(
            create(env.folder(env.config_with(build_kwargs__backbone="hf-hub:evil/x"))), ["hf-hub"])),
        ("very long string value", lambda: expect_error(
            create(env.folder(env.config_with(build_kwargs__backbone="a" * 5000))), [("256", "long")])),
        ("architecture differs from name", lambda: expect_error(
            create(env.folder(env.config_with(architecture="resnet50"))), ["architecture"])),
        ("num_classes disagrees", lambda: expect_error(create(env.folder(env.config_with(num_classes=7))),
                                                      ["num_classes"])),
        ("input.num_classes negative", lambda: expect_error(
            create(env.folder(env.config_with(input__num_classes=-4, num_classes=-4))), ["num_classes"])),
        ("input.num_classes a string", lambda: expect_error(
            create(env.folder(env.config_with(input__num_classes="ten", num_classes="ten"))), ["num_classes"])),
        ("input.num_classes huge (10**12)", lambda: expect_error(
            create(env.folder(env.config_with(input__num_classes=10 ** 12, num_classes=10 ** 12))),
            ["num_classes"])),
        ("input.shape negative", lambda: expect_error(
            create(env.folder(env.config_with(input__shape=[1, -28, 28]))), ["shape"])),
        ("input.shape not a list", lambda: expect_error(
            create(env.folder(env.config_with(input__shape="28x28"))), ["shape"])),
        ("weights_sha256 not hex", lambda: expect_error(
            create(env.folder(env.config_with(weights_sha256="zz" * 32)), pretrained=True), ["weights_sha256"])),
        ("weights_sha256 wrong", lambda: expect_error(
            create(env.folder(env.config_with(weights_sha256="0" * 64)), pretrained=True), ["sha256"])),
        ("label_names wrong length", lambda: expect_error(
            create(env.folder(env.config_with(label_names=["a", "b"]))), ["label_names"])),
        ("args is a list", lambda: expect_error(create(env.folder(env.config_with(args=[1, 2]))), ["args"])),
        ("metrics NaN", lambda: expect_error(
            create(env.folder(None, json.dumps(env.config_with(metrics={"top1": 1.0})).replace("1.0", "NaN", 1))),
            ["NaN"])),
        ("folder does not exist", lambda: expect_error(create(f"local-dir:{env.root}/nope"), ["not a folder"])),
        ("local-dir: with no path", lambda: expect_error(create("local-dir:"), [("folder", "local-dir")])),
        ("symlinked weights to /etc/passwd", lambda: expect_error(
            lambda: zoo.create(_symlinked_weights(env), pretrained=True), ["sha256"])),
        ("model_info of a malicious folder", lambda: expect_error(
            lambda: zoo.model_info(env.folder(env.config_with(build_kwargs__pretrained_file="/etc/passwd"))),
            ["pretrained_file"])),
        ("good folder still loads", lambda: expect_ok(
            create(f"local-dir:{env.good_dir}", pretrained=True),
            lambda m: None if torch.equal(m.state_dict()[next(iter(env.state))], env.state[next(iter(env.state))])
            else "weights differ")),
    ]
    return [("config.json", name, fn) for name, fn in cases]


def _config_folder(env: Env) -> str:
    name = env.folder(env.config)
    path = Path(name[len("local-dir:"):]) / "config.json"
    path.unlink()
    path.mkdir()
    return name


def _no_config(env: Env) -> str:
    name = env.folder(env.config)
    (Path(name[len("local-dir:"):]) / "config.json").unlink()
    return name


def _symlinked_weights(env: Env) -> str:
    name = env.folder(env.config)
    path = Path(name[len("local-dir:"):]) / "model.safetensors"
    path.unlink()
    path.symlink_to("/etc/passwd")
    return name


# -- plugins ----------------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def plugin_site(env: Env) -> Iterator[Path]:
    """A folder on ``sys.path`` with the tests' ``toy`` family installed; removed afterwards."""
    from tests.conftest import TOY_FAMILY, TOY_REGISTRY, install_dist

    site = env.path("site")
    site.mkdir()
    install_dist(site, "toy-family", "toyfam", {"__init__.py": "", "family.py": TOY_FAMILY,
                                                "registry.yaml": TOY_REGISTRY}, "[zoo.families]\ntoy = toyfam.family:FAMILY\n")
    sys.path.insert(0, str(site))
    zoo.registry.refresh()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        for name in [m for m in sys.modules if m.split(".")[0].startswith("toy")]:
            del sys.modules[name]
        zoo.registry.refresh()


def add_family(site: Path, package: str, name: str, body: str = "", registry: Optional[str] = None,
               resolve: str = "None", family_py: Optional[str] = None, target: str = "FAMILY") -> None:
    from tests.conftest import OTHER_FAMILY, install_dist

    files = {"__init__.py": "", "family.py": family_py if family_py is not None else OTHER_FAMILY.format(
        body=body, name=name, resolve=resolve,
        registry='Path(__file__).parent / "registry.yaml"' if registry is not None else "None")}
    if registry is not None:
        files["registry.yaml"] = registry
    install_dist(site, f"{package}-dist", package, files, f"[zoo.families]\n{name} = {package}.family:{target}\n")
    zoo.registry.refresh()


def others_work() -> Callable[[Any], Optional[str]]:
    """A check that the toy family and a core family still serve their models (list_models, create, zoo list)."""
    def check(_: Any) -> Optional[str]:
        names = zoo.list_models()
        if "toynet-small" not in names or "lenet5" not in names:
            return f"other families' models lost ({len(names)} listed)"
        zoo.create("toynet-small")
        zoo.create("lenet5")
        from zoo.cli import main

        with contextlib.redirect_stdout(open(os.devnull, "w")):
            if main(["list", "toynet-*"]) != 0:
                return "zoo list failed"
        return None
    return check


def plugin_case(env: Env, setup: Callable[[Path], None], run: Callable[[Path], str]) -> Callable[[], str]:
    def case() -> str:
        with plugin_site(env) as site:
            setup(site)
            return run(site)
    return case


def plugin_cases(env: Env) -> List[Case]:
    from tests.conftest import OTHER_REGISTRY as reg2
    listing = lambda: zoo.list_models()  # noqa: E731

    def frag(fragment: str, words: Words) -> Callable[[], str]:
        return plugin_case(env, lambda site: add_family(site, "toytwo", "toytwo", registry=fragment),
                           lambda site: expect_warning(listing, ["toytwo", *words], others_work()))

    def famfile(text: str, words: Words, target: str = "FAMILY") -> Callable[[], str]:
        return plugin_case(env, lambda site: add_family(site, "toybad", "toybad", family_py=text, target=target),
                           lambda site: expect_warning(listing, ["toybad", *words], others_work()))

    def grammar(body: str, words: Words) -> Callable[[], str]:
        return plugin_case(env, lambda site: add_family(site, "toyg", "atoy", body=body, resolve="resolve"),
                           lambda site: expect_warning(lambda: zoo.model_info("toynet-w5"), ["atoy", *words],
                                                       lambda e: None if e.family == "toy" else "hijacked"))

    def built(body: str, words: Words) -> Callable[[], str]:
        return plugin_case(env, lambda site: add_family(site, "toyb", "toyb", body=body,
                                                        registry=reg2.replace("toytwo", "toyb")),
                           lambda site: expect_error(lambda: zoo.create("toyb-a"), ["toyb", *words]))

    cases: List[Case] = [
        ("fragment: bad YAML", frag("models: [unclosed", ["YAML"])),
        ("fragment: tabs / not YAML", frag("models:\n\t- x: [", ["YAML"])),
        ("fragment: schema error (unknown field)", frag(reg2.replace("dataset: noise", "dataset: noise\n    task: "
                                                                         "dancing"), ["task"])),
        ("fragment: shape a string", frag(reg2.replace("shape: [2, 8, 8]", "shape: big"), ["shape"])),
        ("fragment: unknown family", frag(reg2.replace("family: toytwo", "family: nosuch"), ["nosuch"])),
        ("fragment: entry of another family", frag(reg2.replace("family: toytwo", "family: toy"), ["'toy'"])),
        ("fragment: top level a list", frag("- a\n- b\n", [("models", "mapping", "dict", "object")])),
        ("fragment: models a list", frag("models: [a, b]\n", ["models"])),
        ("fragment: a python tag", frag("models: !!python/object/apply:os.system ['touch x']\n", [("YAML", "tag")])),
        ("fragment: file missing", plugin_case(env, lambda site: (add_family(site, "toytwo", "toytwo", registry=reg2),
                                                                  (site / "toytwo" / "registry.yaml").unlink(),
                                                                  zoo.registry.refresh()),
                                               lambda site: expect_warning(listing, ["toytwo", "registry"],
                                                                           others_work()))),
        ("fragment: duplicate name", plugin_case(
            env, lambda site: add_family(site, "toytwo", "toytwo",
                                         registry=reg2 + reg2.split("models:")[1].replace("toytwo-a", "toynet-small")),
            lambda site: expect_warning(listing, ["toynet-small", "twice"], others_work()))),
        ("fragment: duplicate of a core model", plugin_case(
            env, lambda site: add_family(site, "toytwo", "toytwo",
                                         registry=reg2 + reg2.split("models:")[1].replace("toytwo-a", "lenet5")),
            lambda site: expect_warning(listing, ["lenet5", "twice"],
                                        lambda _: None if zoo.model_info("lenet5").family == "tnn" else "shadowed"))),
        ("entry point: import error", famfile("import nosuchmodule_xyz\n", ["nosuchmodule_xyz"])),
        ("entry point: SystemExit at import", famfile("raise SystemExit(7)\n", ["SystemExit"])),
        ("entry point: KeyError at import", famfile("raise KeyError('boom')\n", ["KeyError"])),
        ("entry point: missing attribute", famfile("X = 1\n", ["FAMILY"])),
        ("entry point: not a Family", famfile("FAMILY = 42\n", [("Family", "int")])),
        ("entry point: shadows family 'tnn'", plugin_case(
            env, lambda site: add_family(site, "toyimp", "tnn", registry="models: {}\n"),
            lambda site: expect_warning(lambda: zoo.list_families(), ["tnn", "twice", "toyimp-dist", "zoo-tnn"]))),
        ("entry point: shadows family 'toy'", plugin_case(
            env, lambda site: add_family(_later_site(env), "toyimpostor", "toy", registry="models: {}\n"),
            lambda site: expect_warning(lambda: zoo.list_families(), ["toy", "twice"],
                                        lambda _: None if "toynet-small" in zoo.list_models() else "shadowed"))),
        ("grammar raises RuntimeError", grammar("def resolve(name):\n    raise RuntimeError('boom')\n", ["raised"])),
        ("grammar raises SystemExit", grammar("def resolve(name):\n    raise SystemExit(3)\n", ["SystemExit"])),
        ("grammar claims every name", grammar(
            'def resolve(name):\n    return dict(builder="toy_net", dataset="noise", input={"shape": [2, 8, 8], '
            '"num_classes": 3})\n', ["claims"])),
        ("grammar returns garbage", grammar("def resolve(name):\n    return 42\n", [("int", "42", "entry")])),
        ("greedy grammar and a typo", plugin_case(
            env, lambda site: add_family(site, "toyg", "atoy", resolve="resolve", body=(
                'def resolve(name):\n    return dict(builder="toy_net", dataset="noise", input={"shape": [2, 8, 8], '
                '"num_classes": 3})\n')),
            lambda site: expect_error(lambda: zoo.model_info("lenet"), ["lenet"]))),
        ("builder calls exit()", built("def toy_net(**kwargs):\n    raise SystemExit(9)\n", ["exit(9)"])),
        ("builder returns a non-Module", built("def toy_net(**kwargs):\n    return 42\n", ["int"])),
        ("builder raises", built("def toy_net(**kwargs):\n    raise ValueError('width too big')\n",
                                 ["width too big"])),
        ("builder crashes with a KeyError", built("def toy_net(**kwargs):\n    return {}['width']\n",
                                                  ["failed while building", "KeyError"])),
        ("builder crashes with a RuntimeError", built("def toy_net(**kwargs):\n    raise RuntimeError('no kernel')\n",
                                                      ["failed while building", "no kernel"])),
        ("builder name missing", plugin_case(
            env, lambda site: add_family(site, "toyb", "toyb", registry=reg2.replace("toytwo", "toyb").replace(
                "builder: toy_net", "builder: nosuch_b")),
            lambda site: expect_error(lambda: zoo.create("toyb-a"), ["nosuch_b"]))),
        ("broken plugin, zoo list still works", plugin_case(
            env, lambda site: add_family(site, "toybad", "toybad", family_py="raise RuntimeError('x')\n"),
            lambda site: _cli_in_process(["list", "lenet*"], "lenet5"))),
        ("broken plugin, zoo families shows it", plugin_case(
            env, lambda site: add_family(site, "toytwo", "toytwo", registry="models: [unclosed"),
            lambda site: _cli_in_process(["families"], "registry error"))),
    ]
    return [("plugins", name, fn) for name, fn in cases]


def _later_site(env: Env) -> Path:
    later = env.path("later-site")
    later.mkdir()
    sys.path.append(str(later))
    return later


def _cli_in_process(argv: List[str], needle: str) -> str:
    import io

    from zoo.cli import main

    out = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            code = main(argv)
    if code != 0 or needle not in out.getvalue():
        raise Verdict(False, f"zoo {' '.join(argv)}: exit {code}, {needle!r} not shown")
    return "correct behaviour"


# -- names and create() -----------------------------------------------------------------------------------------------

def name_cases(env: Env) -> List[Case]:
    create = lambda name: (lambda: zoo.create(name))  # noqa: E731
    cases: List[Case] = [
        ("typo lenet", lambda: expect_error(create("lenet"), ["lenet5"])),
        ("typo lenet55", lambda: expect_error(create("lenet55"), ["lenet5"])),
        ("typo lent5", lambda: expect_error(create("lent5"), ["lenet5"])),
        ("upper case LENET5", lambda: expect_error(create("LENET5"), ["lenet5"])),
        ("leading space", lambda: expect_error(create(" lenet5"), ["lenet5"])),
        ("trailing newline", lambda: expect_error(create("lenet5\n"), ["lenet5"])),
        ("cyrillic look-alike", lambda: expect_error(create("l\u0435net5"), [("unknown", "ascii")])),
        ("emoji", lambda: expect_error(create("\U0001F600"), ["unknown"])),
        ("empty string", lambda: expect_error(create(""), [("empty", "unknown")])),
        ("10,000 characters", lambda: expect_error(create("a" * 10_000), ["unknown"])),
        ("NUL byte", lambda: expect_error(create("lenet5\0"), [("unknown", "NUL")])),
        ("absolute path", lambda: expect_error(create("/etc/passwd"), ["path"])),
        ("relative path", lambda: expect_error(create("../lenet5"), ["path"])),
        ("a .safetensors file name", lambda: expect_error(create("model.safetensors"), ["checkpoint_path"])),
        ("a glob", lambda: expect_error(create("lenet*"), ["unknown"])),
        ("timm: prefix", lambda: expect_error(create("timm:resnet18"), ["unknown"])),
        ("hf-hub: empty", lambda: expect_error(create("hf-hub:"), [("repository", "repo")])),
        ("hf-hub: path traversal", lambda: expect_error(create("hf-hub:../../etc"), [("repository", "repo")])),
        ("hf-hub: offline", lambda: expect_error(create("hf-hub:someone/model"), [("offline", "reach", "download")])),
        ("hf-hub: bad revision", lambda: expect_error(create("hf-hub:a/b@../../x"), [("revision", "repo")])),
        ("None", lambda: expect_error(create(None), [("str", "name")])),
        ("an int", lambda: expect_error(create(5), [("str", "name")])),
        ("bytes", lambda: expect_error(create(b"lenet5"), [("str", "name")])),
        ("a list", lambda: expect_error(create(["lenet5"]), [("str", "name")])),
        ("model_info typo", lambda: expect_error(lambda: zoo.model_info("lenet"), ["lenet5"])),
        ("model_info None", lambda: expect_error(lambda: zoo.model_info(None), [("str", "name")])),
        ("list_models bad pattern '['", lambda: expect_ok(lambda: zoo.list_models("["),
                                                          lambda v: None if v == [] else f"matched {v[:3]}")),
        ("list_models unknown family", lambda: expect_error(lambda: zoo.list_models(family="nosuch"), ["nosuch"])),
        ("list_models filter an int", lambda: expect_error(lambda: zoo.list_models(5), [("str", "filter")])),
    ]
    return [("names", name, fn) for name, fn in cases]


def create_cases(env: Env) -> List[Case]:
    c = lambda **kw: (lambda: zoo.create("lenet5", **kw))  # noqa: E731
    cases: List[Case] = [
        ("num_classes=-1", lambda: expect_error(c(num_classes=-1), ["num_classes", "-1"])),
        ("num_classes=2.5", lambda: expect_error(c(num_classes=2.5), ["num_classes", "2.5"])),
        ("num_classes=True", lambda: expect_error(c(num_classes=True), ["num_classes", "True"])),
        ("num_classes='10'", lambda: expect_error(c(num_classes="10"), ["num_classes", "'10'"])),
        ("num_classes=float('nan')", lambda: expect_error(c(num_classes=float("nan")), ["num_classes", "nan"])),
        ("num_classes=10**12", lambda: expect_error(c(num_classes=10 ** 12), ["num_classes"])),
        ("num_classes=5 pretrained", lambda: expect_ok(c(num_classes=5, pretrained=True),
                                                       lambda m: None if m.get_classifier().out_features == 5
                                                       else "wrong head")),
        ("num_classes=np.int64(4)", lambda: expect_ok(c(num_classes=np.int64(4)))),
        ("in_chans=0", lambda: expect_error(c(in_chans=0), ["in_chans", "0"])),
        ("in_chans=-3", lambda: expect_error(c(in_chans=-3), ["in_chans", "-3"])),
        ("in_chans=3.0", lambda: expect_error(c(in_chans=3.0), ["in_chans", "3.0"])),
        ("in_chans='3'", lambda: expect_error(c(in_chans="3"), ["in_chans", "'3'"])),
        ("in_chans=False", lambda: expect_error(c(in_chans=False), ["in_chans", "False"])),
        ("in_chans=10**9", lambda: expect_error(c(in_chans=10 ** 9), ["in_chans"])),
        ("in_chans=3 pretrained", lambda: expect_ok(c(in_chans=3, pretrained=True),
                                                    lambda m: None if m(torch.zeros(1, 3, 28, 28)).shape == (1, 10)
                                                    else "wrong output")),
        ("unknown kwarg", lambda: expect_error(c(frobnicate=1), ["frobnicate"])),
        ("unknown kwarg with a typo of num_classes", lambda: expect_error(c(num_class=5), ["num_class"])),
        ("drop_rate a string", lambda: expect_error(c(drop_rate="x"), ["drop_rate"])),
        ("pretrained='no' (a truthy string)", lambda: expect_error(c(pretrained="no"), ["pretrained"])),
        ("checkpoint_path=123", lambda: expect_error(c(checkpoint_path=123), ["checkpoint_path"])),
        ("out_indices without features_only", lambda: expect_error(c(out_indices=[0]), ["features_only"])),
        ("features_only=True", lambda: expect_ok(c(features_only=True),
                                                 lambda m: None if isinstance(m(torch.zeros(1, 1, 28, 28)), list)
                                                 else "not a feature list")),
        ("features_only out_indices out of range", lambda: expect_error(c(features_only=True, out_indices=[9]),
                                                                        ["out_indices"])),
        ("num_classes on a segmentation model", lambda: expect_error(
            lambda: zoo.create("armaunet-isic-small", num_classes=3), ["num_classes", "segmentation"])),
        *in_chans_cases(),
    ]
    return [("create()", name, fn) for name, fn in cases]


def in_chans_cases() -> List[Tuple[str, Callable[[], str]]]:
    """``in_chans`` on the pretrained weights of every registry model that has them (3 channels, or 1 for
    3-channel models): good when the adapted model runs on an input of the new channel count, or for a flow (whose
    density has no meaning on other channels) when the refusal says why."""
    cases = []
    for name in zoo.list_models(pretrained=True):
        spec = zoo.model_info(name).input
        chans = 1 if spec.channels == 3 else 3

        def run(name: str = name, chans: int = chans) -> str:
            if zoo.model_info(name).task == "generative":
                return expect_error(lambda: zoo.create(name, pretrained=True, in_chans=chans), ["flow", "in_chans"])
            return expect_ok(lambda: zoo.create(name, pretrained=True, in_chans=chans).eval(),
                             lambda m: _runs_on(m, chans))
        cases.append((f"in_chans={chans} pretrained on {name}", run))
    return cases


def _runs_on(model: Any, chans: int) -> Optional[str]:
    """``None`` when ``model`` takes a batch of two inputs of its recorded size with ``chans`` channels."""
    spec = zoo.ModelConfig.of(model).entry.input
    if spec.channels != chans:
        return f"its config records {spec.channels} channels, not {chans}"
    with torch.no_grad():
        model(torch.rand(2, *spec.shape))
    return None


# -- training data ------------------------------------------------------------------------------------------------------

def data_cases(env: Env) -> List[Case]:
    def fit(data: Callable[[], Any], words: Words, val: Optional[Callable[[], Any]] = None, **kw: Any) -> Callable[[], str]:
        return lambda: expect_error(lambda: zoo.finetune("lenet5", data(), val() if val else None,
                                                         **train_kwargs(env, **kw)), words)

    def fit_ok(data: Callable[[], Any], check: Callable[[Any], Optional[str]] = lambda _: None) -> Callable[[], str]:
        return lambda: expect_ok(lambda: zoo.finetune("lenet5", data(), **train_kwargs(env)), check)

    def corrupt_folder(content: bytes, all_bad: bool = False) -> Path:
        folder = _gray_images(env.path("data"))
        for c in ("a", "b"):
            (folder / c / "bad.png").write_bytes(content)
            if all_bad:
                for p in (folder / c).glob("[0-9].png"):
                    p.unlink()
        return folder

    def bomb() -> Path:
        folder = _gray_images(env.path("data"))
        Image.new("1", (20000, 20000)).save(folder / "a" / "bomb.png")
        return folder

    imgs = lambda n=4: np.zeros((n, 1, 28, 28), np.uint8)  # noqa: E731
    labels = lambda n=4: np.array([0, 1] * (n // 2))  # noqa: E731
    cases: List[Case] = [
        ("csv: huge label id", fit(lambda: _csv(env, "0.png,0\n1.png,99999999999\n"), ["99999999999"])),
        ("csv: not UTF-8", fit(lambda: _csv(env, b"0.png,chat\n1.png,\xe9t\xe9\n"), ["UTF-8"])),
        ("csv: one non-numeric label", fit(lambda: _csv(env, "0.png,0\n1.png,1\n2.png,cat\n"), ["cat"])),
        ("csv: negative label", fit(lambda: _csv(env, "0.png,0\n1.png,-1\n"), ["-1"])),
        ("csv: float label", fit(lambda: _csv(env, "0.png,0\n1.png,1.0\n"), ["1.0"])),
        ("csv: missing image file reported", fit_ok(lambda: _csv(env, "0.png,0\n1.png,1\nnope.png,1\n"),
                                                    lambda r: None if any("nope.png" in f for f in r.skipped_files)
                                                    else f"not reported: {r.skipped_files}")),
        ("csv: empty", fit(lambda: _csv(env, ""), [("empty", "no rows", "no images")])),
        ("csv: one column", fit(lambda: _csv(env, "0.png\n1.png\n"), [("column", "path,label")])),
        ("csv: header row skipped", fit_ok(lambda: _csv(env, "path,label\n0.png,0\n1.png,1\n"),
                                           lambda r: None if r.history else "no epoch")),
        ("csv: NUL byte", fit(lambda: _csv(env, b"0.png,0\n1.png,1\x00\n"), [("NUL", "CSV")])),
        ("csv: a corrupt image", fit_ok(lambda: _write_in(_csv(env, "0.png,0\n1.png,1\nbad.png,1\n").parent,
                                                          "bad.png", b"xx") / "data.csv",
                                        lambda r: None if r.skipped_files else "corrupt file not reported")),
        ("folder: a corrupt image skipped", fit_ok(lambda: corrupt_folder(b"not an image"),
                                                   lambda r: None if len(r.skipped_files) == 2 else
                                                   f"skipped {r.skipped_files}")),
        ("folder: zero-byte image skipped", fit_ok(lambda: corrupt_folder(b""),
                                                   lambda r: None if len(r.skipped_files) == 2 else "not reported")),
        ("folder: every image corrupt", fit(lambda: corrupt_folder(b"xx", all_bad=True), [("no readable", "image")])),
        ("folder: decompression bomb", fit_ok(bomb, lambda r: None if any("bomb" in f for f in r.skipped_files)
                                              else f"bomb not skipped: {r.skipped_files}")),
        ("folder: empty", fit(lambda: env.path("empty").parent, [("class folders", "no images", "empty")])),
        ("folder: one class", fit(lambda: _gray_images(env.path("data"), classes=("a",)), [("class", "one")])),
        ("folder: truncated PNG", fit_ok(lambda: corrupt_folder(
            (_gray_images(env.path("x")) / "a" / "0.png").read_bytes()[:60]),
            lambda r: None if len(r.skipped_files) == 2 else f"skipped {r.skipped_files}")),
        ("data path does not exist", fit(lambda: env.root / "nope", ["nope"])),
        ("data path an unknown file type", fit(lambda: _write(env, "data.txt", b"hello"), ["data.txt"])),
        ("val data does not exist", fit(lambda: _gray_images(env.path("data")), ["nope"], val=lambda: env.root / "nope")),
        ("val data with other classes", fit(lambda: _gray_images(env.path("data")), [("class", "classes")],
                                           val=lambda: _gray_images(env.path("val"), classes=("x", "y", "z")))),
        ("npz: float images", fit(lambda: _npz(env, images=imgs().astype(np.float32), labels=labels()),
                                  ["uint8", "float32"])),
        ("npz: 3-d images", fit(lambda: _npz(env, images=imgs()[:, 0], labels=labels()), ["uint8"])),
        ("npz: float labels", fit(lambda: _npz(env, images=imgs(), labels=labels().astype(np.float32)),
                                  ["labels", "float32"])),
        ("npz: labels wrong length", fit(lambda: _npz(env, images=imgs(), labels=labels(2)), ["labels"])),
        ("npz: object (pickled) labels", fit(lambda: _npz(env, images=imgs(), labels=np.array(
            [env.payload()] * 4, dtype=object)), [("pickle", "object")])),
        ("npz: object (pickled) images", fit(lambda: _npz(env, images=np.array([env.payload()] * 4, dtype=object),
                                                          labels=labels()), [("pickle", "object")])),
        ("npz: missing labels", fit(lambda: _npz(env, images=imgs()), ["labels"])),
        ("npz: not a zip", fit(lambda: _write(env, "x.npz", b"garbage").parent, ["x.npz"])),
        ("npz: negative labels", fit(lambda: _npz(env, images=imgs(), labels=np.array([0, -1, 0, 1])), ["-1"])),
        ("npz: huge label", fit(lambda: _npz(env, images=imgs(), labels=np.array([0, 1, 0, 10 ** 9])),
                                ["1000000000"])),
        ("npz: empty arrays", fit(lambda: _npz(env, images=imgs(0), labels=np.zeros(0, np.int64)),
                                  [("empty", "no ")])),
        ("npz: two files of other shapes", fit(lambda: _two_npz(env), ["shapes"])),
        ("npz: small images resized", fit_ok(lambda: _npz(env, images=np.zeros((4, 1, 5, 5), np.uint8),
                                                          labels=labels()), lambda r: None if r.history else "no epoch")),
    ]
    return [("training data", name, fn) for name, fn in cases]


def _write(env: Env, name: str, data: bytes) -> Path:
    path = env.path(name)
    path.write_bytes(data)
    return path


def _write_in(folder: Path, name: str, data: bytes) -> Path:
    (folder / name).write_bytes(data)
    return folder


def _two_npz(env: Env) -> Path:
    folder = env.path("x").parent
    np.savez(folder / "a.npz", images=np.zeros((2, 1, 28, 28), np.uint8), labels=np.array([0, 1]))
    np.savez(folder / "b.npz", images=np.zeros((2, 1, 14, 14), np.uint8), labels=np.array([0, 1]))
    return folder


# -- the command line ---------------------------------------------------------------------------------------------------

def cli_cases(env: Env) -> List[Case]:
    data = _gray_images(env.root / "cli-data")

    def train(*extra: str, words: Words, output: Optional[str] = None, **kw: Any) -> Callable[[], str]:
        return lambda: cli_error(["train", "lenet5", "--data", str(data), "--output",
                                  output or str(env.path("run")), "--epochs", "1", "--no-progress", *extra],
                                 words, **kw)

    def nonempty() -> str:
        out = env.path("run")
        out.mkdir()
        (out / "metrics.jsonl").write_text('{"epoch": 1}\n')
        before = (out / "metrics.jsonl").read_text()
        detail = cli_error(["train", "lenet5", "--data", str(data), "--output", str(out), "--epochs", "1"],
                           [("--resume", "--overwrite")])
        if (out / "metrics.jsonl").read_text() != before:
            raise Verdict(False, "metrics.jsonl changed")
        return detail

    def under_file() -> str:
        blocker = _write(env, "a-file", b"x")
        return cli_error(["train", "lenet5", "--data", str(data), "--output", str(blocker / "run"), "--epochs", "1"],
                         [str(blocker)])

    def piped(args: List[str]) -> Callable[[], str]:
        def case() -> str:
            done = run_cli(args, shell_pipe="head -c 10 >/dev/null")
            if "Traceback" in done.stderr or "Error" in done.stderr:
                raise Verdict(False, f"exit {done.returncode}: {short(done.stderr.strip().splitlines()[-1])}")
            return f"quiet, exit {done.returncode}"
        return case

    def debug_traceback() -> str:
        done = run_cli(["--debug", "info", "lenet"])
        if "Traceback" not in done.stderr:
            raise Verdict(False, "--debug showed no traceback")
        return "traceback with --debug"

    cases: List[Case] = [
        ("--lr -1", train("--lr", "-1", words=["lr"])),
        ("--lr 0", train("--lr", "0", words=["lr"])),
        ("--lr nan", train("--lr", "nan", words=["lr"])),
        ("--lr inf", train("--lr", "inf", words=["lr"])),
        ("--lr abc", train("--lr", "abc", words=["--lr", "abc"])),
        ("--optimizer nosuch", train("--optimizer", "nosuch", words=["nosuch"])),
        ("--scheduler nosuch", train("--scheduler", "nosuch", words=["nosuch"])),
        ("--device cuda (no GPU)", train("--device", "cuda", words=["cuda"])),
        ("--device cuda:7", train("--device", "cuda:7", words=["cuda:7"])),
        ("--device banana", train("--device", "banana", words=["banana"])),
        ("--device cpu:x", train("--device", "cpu:x", words=["cpu:x"])),
        ("--input-size 0", train("--input-size", "0", words=["input_size"])),
        ("--input-size 4 (too small)", train("--input-size", "4", words=["input_size", "4"])),
        ("--input-size 100000 (huge)", train("--input-size", "100000", words=["input_size"], subprocess_run=True,
                                             memory_gib=6)),
        ("--epochs 0", train("--epochs", "0", words=["epochs"])),
        ("--batch-size -2", train("--batch-size", "-2", words=["batch_size"])),
        ("--weight-decay -1", train("--weight-decay", "-1", words=["weight_decay"])),
        ("--num-classes -1", train("--num-classes", "-1", words=["num_classes"])),
        ("--num-classes 1", train("--num-classes", "1", words=["num_classes"])),
        ("--freeze everything", train("--freeze", "everything", words=["freeze"])),
        ("--precision fp8", train("--precision", "fp8", words=["precision"])),
        ("--grad-clip -1", train("--grad-clip", "-1", words=["grad_clip"])),
        ("--push-to-hub 'bad id!!'", train("--push-to-hub", "bad id!!", words=["bad id!!"])),
        ("--resume with nothing to resume", train("--resume", words=["checkpoint"])),
        ("--resume and --overwrite", train("--resume", "--overwrite", words=["--resume", "--overwrite"])),
        ("unwritable output (under a file)", under_file),
        ("zoo train typo (subprocess)", lambda: cli_error(["train", "lenet", "--data", str(data), "--output",
                                                           str(env.path("r"))], ["lenet5"], subprocess_run=True)),
        ("non-empty output without --resume", nonempty),
        ("--data missing", lambda: cli_error(["train", "lenet5", "--data", str(env.root / "nope"), "--output",
                                              str(env.path("r"))], ["nope"])),
        ("unknown model", lambda: cli_error(["train", "lenett5", "--data", str(data), "--output", str(env.path("r"))],
                                            ["lenet5"])),
        ("zoo info typo", lambda: cli_error(["info", "lenet"], ["lenet5"])),
        ("zoo info ''", lambda: cli_error(["info", ""], ["unknown"])),
        ("zoo create with a path", lambda: cli_error(["create", "/etc/passwd"], ["path"], subprocess_run=True)),
        ("zoo info --json | head -c 10", piped(["info", "lenet5", "--json"])),
        ("zoo list --json | head -c 10", piped(["list", "--json"])),
        ("zoo families | head -c 10", piped(["families"])),
        ("zoo --debug shows the traceback", debug_traceback),
        ("zoo nosuchcommand", lambda: cli_error(["nosuchcommand"], ["nosuchcommand"])),
    ]
    return [("command line", name, fn) for name, fn in cases]


# -- save and push -------------------------------------------------------------------------------------------------------

def save_cases(env: Env) -> List[Case]:
    from torch import nn

    lenet = env.lenet

    def overwrites_file() -> str:
        target = _write(env, "precious.txt", b"keep me")
        detail = expect_error(lambda: zoo.save_pretrained(lenet, target), [str(target)])
        if target.read_bytes() != b"keep me":
            raise Verdict(False, "the file was overwritten")
        return detail

    def push(repo: str, words: Words, model: Any = lenet) -> Callable[[], str]:
        return lambda: expect_error(lambda: zoo.push_to_hub(model, repo), words)

    def push_folder(folder: Any, repo: str, words: Words) -> Callable[[], str]:
        from zoo.hub.pretrained import push_folder_to_hub

        return lambda: expect_error(lambda: push_folder_to_hub(folder, repo), words)

    def roundtrip() -> str:
        folder = env.path("rt")
        zoo.save_pretrained(lenet, folder)
        again = zoo.create(f"local-dir:{folder}", pretrained=True)
        mode = (folder / "model.safetensors").stat().st_mode & 0o777
        if mode & 0o044 != 0o044:
            raise Verdict(False, f"mode {oct(mode)}")
        return expect_ok(lambda: again, lambda m: None if all(torch.equal(a, b) for a, b in zip(
            m.state_dict().values(), lenet.state_dict().values())) else "weights differ")

    cases: List[Case] = [
        ("save under a file", lambda: expect_error(lambda: zoo.save_pretrained(
            lenet, _write(env, "f", b"x") / "out"), [("directory", "folder", "Not a directory")])),
        ("save onto an existing file", overwrites_file),
        ("save into /proc", lambda: expect_error(lambda: zoo.save_pretrained(lenet, "/proc/zoo-x"), ["/proc/zoo-x"])),
        ("save a plain nn.Module", lambda: expect_error(lambda: zoo.save_pretrained(nn.Linear(2, 2), env.path("o")),
                                                        [("zoo.create", "zoo model", "pretrained_cfg")])),
        ("save with NaN metrics (left out, warned)", lambda: expect_warning(
            lambda: zoo.save_pretrained(lenet, env.path("o"), metrics={"top1": float("nan"), "top5": 99.0}),
            ["top1", "not finite"], lambda d: None if json.loads((d / "config.json").read_text())["metrics"] ==
            {"top5": 99.0} else "metrics not as documented")),
        ("save with string metrics", lambda: expect_error(lambda: zoo.save_pretrained(
            lenet, env.path("o"), metrics={"top1": "high"}), ["top1"])),
        ("save directory=None", lambda: expect_error(lambda: zoo.save_pretrained(lenet, None), ["directory"])),
        ("save and load back (0644)", roundtrip),
        ("push: repo id with spaces", push("bad id!!", ["bad id!!"])),
        ("push: empty repo id", push("", ["repository id"])),
        ("push: three parts", push("a/b/c", ["a/b/c"])),
        ("push: path traversal", push("../etc", ["../etc"])),
        ("push: 200 characters", push("a/" + "b" * 200, ["repository id"])),
        ("push: offline", push("someone/model", [("offline", "reach", "online")])),
        ("push: a plain nn.Module", push("someone/model", [("zoo.create", "zoo model", "pretrained_cfg")],
                                         model=nn.Linear(2, 2))),
        ("push_folder: missing folder", push_folder(env.root / "nope", "a/b", ["model.safetensors"])),
        ("push_folder: repo id None", push_folder(env.good_dir, None, ["repository id"])),
    ]
    return [("save/push", name, fn) for name, fn in cases]


# -- running ----------------------------------------------------------------------------------------------------------

def _alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout()


def run_case(env: Env, category: str, name: str, fn: Callable[[], str]) -> Result:
    start = time.perf_counter()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_TIMEOUT_S)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            detail, good = fn(), True
    except Verdict as v:
        detail, good = v.detail, v.good
    except CaseTimeout:
        detail, good = f"hang: ran past {CASE_TIMEOUT_S} s", False
    except Exception as exc:  # a failure of the battery's own set-up is reported, not hidden
        detail, good = f"battery set-up failed: {type(exc).__name__}: {short(exc)} " \
                       f"{short(traceback.format_exc().splitlines()[-3])}", False
    finally:
        signal.alarm(0)
    if env.canary.exists():
        env.canary.unlink()
        detail, good = f"CODE EXECUTION: the payload created its canary; {detail}", False
    for extra in [p for p in sys.path if "later-site" in p]:
        sys.path.remove(extra)
    return Result(category, name, "good" if good else "bad", detail, round(time.perf_counter() - start, 2))


CATEGORIES: Dict[str, Callable[[Env], List[Case]]] = {
    "weights": weights_cases, "config.json": config_cases, "plugins": plugin_cases, "names": name_cases,
    "create()": create_cases, "training data": data_cases, "command line": cli_cases, "save/push": save_cases,
}


def summary(results: List[Result]) -> List[Dict[str, Any]]:
    rows = []
    for cat in CATEGORIES:
        mine = [r for r in results if r.category == cat]
        if mine:
            good = sum(r.verdict == "good" for r in mine)
            rows.append({"category": cat, "cases": len(mine), "good": good, "bad": len(mine) - good,
                         "percent": round(100 * good / len(mine), 1)})
    good = sum(r.verdict == "good" for r in results)
    rows.append({"category": "all", "cases": len(results), "good": good, "bad": len(results) - good,
                 "percent": round(100 * good / max(len(results), 1), 1)})
    return rows


def write_reports(results: List[Result], label: str, seconds: float, only: Optional[List[str]],
                  note: Optional[str] = None) -> None:
    """Record this run under ``label``; a run of ``only`` some categories replaces just those of an earlier run of
    the same label (its seconds are added)."""
    path = OUT / "trust.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    runs = previous.get("runs", {})
    if only and label in runs:
        kept = [Result(**c) for c in runs[label]["cases"] if c["category"] not in only]
        order = list(CATEGORIES)
        results = sorted(kept + results, key=lambda r: order.index(r.category))
        seconds += runs[label]["seconds"]
        note = note or runs[label].get("note")
    runs[label] = {"summary": summary(results), "cases": [asdict(r) for r in results], "seconds": round(seconds, 1),
                   "torch": torch.__version__, "zoo": zoo.__version__,
                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "note": note}
    path.write_text(json.dumps({"command": COMMAND, "runs": runs}, indent=2) + "\n")
    (OUT / "trust.md").write_text(markdown(runs))


COMMAND = "OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_trust.py --label LABEL"


def markdown(runs: Dict[str, Any]) -> str:
    lines = ["# Trust battery (issue 19)", "",
             "Adversarial inputs a new user or an attacker would try, each classified as handled well (a `ZooError` "
             "naming the problem, a one-line CLI error, the documented warning, or correct behaviour) or bad (raw "
             "exception, silent acceptance, a message that does not name the problem, lost data, hang, code "
             "execution). Made by `scripts/bench_trust.py` (see its docstring for the rules):", "",
             f"    {COMMAND}", ""]
    labels = list(runs)
    lines += ["| category | " + " | ".join(f"{lab} (good / cases)" for lab in labels) + " |",
              "|---|" + "---|" * len(labels)]
    cats = [row["category"] for row in runs[labels[-1]]["summary"]]
    for cat in cats:
        cells = []
        for lab in labels:
            row = next((r for r in runs[lab]["summary"] if r["category"] == cat), None)
            cells.append(f"{row['good']} / {row['cases']} ({row['percent']} %)" if row else "-")
        lines.append(f"| {cat} | " + " | ".join(cells) + " |")
    lines += ["", "Runs (one CPU thread, `HF_HUB_OFFLINE=1`):", ""]
    lines += [f"- `{lab}`: {runs[lab]['date']}, {runs[lab]['seconds']} s, torch {runs[lab]['torch']}, zoo "
              f"{runs[lab]['zoo']}" + (f". {runs[lab]['note']}" if runs[lab].get("note") else "") for lab in labels]
    lines.append("")
    for lab in labels:
        bad = [c for c in runs[lab]["cases"] if c["verdict"] == "bad"]
        lines += [f"## Bad cases of `{lab}` ({len(bad)})", ""]
        lines += [f"- **{c['category']}: {c['case']}**: {c['detail'].replace('|', '/')}" for c in bad] or ["none"]
        lines.append("")
    last = runs[labels[-1]]["cases"]
    lines += [f"## Every case of `{labels[-1]}`", "", "| category | case | verdict | what happened |", "|---|---|---|---|"]
    lines += [f"| {c['category']} | {c['case']} | {c['verdict']} | {c['detail'].replace('|', '/')} |" for c in last]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", default="run", help="name of this run in trust.json / trust.md (e.g. before)")
    parser.add_argument("--only", action="append", choices=list(CATEGORIES), help="run only these categories")
    parser.add_argument("--note", help="what this run measured (e.g. the commit), shown in trust.md")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    start = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="zoo-trust-") as tmp:
        env = Env(Path(tmp))
        for cat, make in CATEGORIES.items():
            if args.only and cat not in args.only:
                continue
            for category, name, fn in make(env):
                result = run_case(env, category, name, fn)
                results.append(result)
                mark = "ok " if result.verdict == "good" else "BAD"
                print(f"{mark} {category:14s} {name:45s} {result.seconds:6.2f}s  {short(result.detail, 150)}",
                      flush=True)
    seconds = time.perf_counter() - start
    print()
    print(f"{'category':16s} {'cases':>5s} {'good':>5s} {'bad':>5s} {'%':>6s}")
    for row in summary(results):
        print(f"{row['category']:16s} {row['cases']:5d} {row['good']:5d} {row['bad']:5d} {row['percent']:6.1f}")
    print(f"({seconds:.0f} s)")
    if not args.no_write:
        write_reports(results, args.label, seconds, args.only, args.note)


if __name__ == "__main__":
    main()
