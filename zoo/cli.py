"""The ``zoo`` command line: list, info, families, create (and train, from zoo.training)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence

from zoo.errors import ZooError


def _table(rows: List[Dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and value >= 10_000:
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value) if all(isinstance(v, int) for v in value) else ", ".join(map(str, value))
    return str(value)


def _emit(args: argparse.Namespace, payload: Any, text: Callable[[], str]) -> None:
    print(json.dumps(payload, indent=2, default=str) if args.json else text())


def cmd_list(args: argparse.Namespace) -> int:
    from zoo.api import list_models, model_info

    names = list_models(args.pattern, family=args.family, pretrained=args.pretrained)
    rows = []
    for n in names:
        e = model_info(n)
        rows.append({"name": n, "family": e.family, "task": e.task, "dataset": e.dataset,
                     "weights": "yes" if e.weights else "no"})
    hints = [] if args.json or args.pretrained or len(rows) >= FEW else grammar_hints(args.pattern, args.family)
    _emit(args, rows, lambda: "\n".join([_table(rows, ["name", "family", "task", "dataset", "weights"]),
                                         f"{len(rows)} model(s) in the registry", *hints]))
    return 0


FEW = 10
"""``zoo list PATTERN`` matching fewer registry names than this also shows the families' name grammars."""


def grammar_hints(pattern: str, family: Optional[str] = None) -> List[str]:
    """Lines saying which names beyond the registry a family builds: each pattern its plugin declares in
    ``Family(extras={"grammar": [{"pattern": ..., "example": {field: value}, "about": ...}]})`` with an example
    name, made to match ``pattern`` where the family's ``resolve`` accepts it (the pattern's leading literal
    text as the first field: ``resnet18*`` -> ``resnet18-mtt-7pct``), else the declared one."""
    import re

    from zoo import plugins
    from zoo.registry.resolve import find_entry

    prefix = re.split(r"[*?\[]", pattern, maxsplit=1)[0].rstrip("-_.")
    lines: List[str] = []
    for rec in plugins.records():
        if family is not None and rec.name != family:
            continue
        try:
            fam = plugins.get_family(rec.name)
        except Exception:  # noqa: BLE001 - a broken plugin is reported by zoo families, not here
            continue
        grammar = fam.extras.get("grammar") if fam.resolve is not None else None
        if not grammar:
            continue
        shown = []
        for form in grammar:
            text, example = str(form["pattern"]), {k: str(v) for k, v in dict(form["example"]).items()}
            name = _example_name(text, example, prefix, pattern, rec.name, find_entry) or text.format(**example)
            about = f"  ({form['about']})" if form.get("about") else ""
            shown.append((text, name, about))
        width = max(len(t) for t, _, _ in shown)
        lines.append(f"family {rec.name} also builds, on demand, names not listed here:")
        lines += [f"  {text.ljust(width)}  e.g. {name}{about}" for text, name, about in shown]
    return lines


def _example_name(text: str, example: Dict[str, str], prefix: str, pattern: str, family: str,
                  find_entry: Callable[[str], Any]) -> Optional[str]:
    """``text`` filled from ``example`` with ``prefix`` as its first field, when that name matches ``pattern``
    and is one ``family`` builds; else the plain example when it matches; else ``None``."""
    import fnmatch
    import string

    fields = [f for _, f, _, _ in string.Formatter().parse(text) if f]
    candidates = ([text.format(**{**example, fields[0]: prefix})] if prefix and fields else []) + [
        text.format(**example)]
    for name in candidates:
        if not fnmatch.fnmatchcase(name, pattern):
            continue
        try:
            if find_entry(name).family == family:
                return name
        except ZooError:
            continue
    return None


def cmd_info(args: argparse.Namespace) -> int:
    from zoo.api import model_info

    entry = model_info(args.name)
    payload = entry.model_dump()
    _emit(args, payload, lambda: "\n".join(f"{k:12} {json.dumps(v, default=str)}" for k, v in payload.items()))
    return 0


def cmd_families(args: argparse.Namespace) -> int:
    from zoo.api import list_families

    rows = list_families()
    _emit(args, rows, lambda: _table(rows, ["name", "distribution", "version", "status", "models", "error"]))
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    from zoo.api import create
    from zoo.model_config import ModelConfig
    from zoo.summary import count_parameters, summarize

    model = create(args.name, pretrained=args.pretrained, num_classes=args.num_classes)
    rows = summarize(model, flops=not args.no_flops) if args.summary else {
        "name": args.name, "parameters": count_parameters(model)}
    rows["weights_source"] = ModelConfig.of(model).weights_source
    _emit(args, rows, lambda: _key_values(rows))
    return 0


def _key_values(rows: Dict[str, Any], indent: str = "") -> str:
    """``key  value`` lines; a nested mapping becomes an indented block under its key."""
    width = max((len(k) for k in rows), default=0) + 2
    lines = []
    for key, value in rows.items():
        if isinstance(value, dict):
            lines += [f"{indent}{key}:", _key_values(value, indent + "  ")]
        else:
            lines.append(f"{indent}{key.ljust(width)}{_cell(value)}")
    return "\n".join(lines)


def add_debug_flag(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """``--debug`` (before or after the command): show the traceback of an error instead of one line."""
    parser.add_argument("--debug", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="show the full traceback of an error")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description="The spectral model zoo.")
    add_debug_flag(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        add_debug_flag(p)
        p.set_defaults(fn=fn)
        return p

    p = add("list", cmd_list, "list registry models")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'resnet50-*'")
    p.add_argument("--family")
    p.add_argument("--pretrained", action="store_true", help="only models with published weights")
    p = add("info", cmd_info, "show a model's registry entry")
    p.add_argument("name")
    add("families", cmd_families, "list installed family plugins")
    p = add("create", cmd_create, "build a model and print its summary")
    p.add_argument("name")
    p.add_argument("--pretrained", action="store_true")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--summary", action="store_true", help="parameters, compression, FLOPs")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    try:
        from zoo.training.cli import add_train_parser
    except ImportError:
        pass
    else:
        add_debug_flag(add_train_parser(sub))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command. A mistake is one ``zoo: error:`` line (exit 2), an unexpected failure one line naming
    its type (exit 1); ``--debug`` shows the traceback. A closed pipe (``| head``) ends quietly (exit 141);
    Ctrl-C: ``zoo train`` saves its checkpoint and says how to resume (exit 130); other commands propagate it."""
    args = build_parser().parse_args(argv)
    try:
        code = args.fn(args)
        sys.stdout.flush()  # here, so that a closed pipe is reported below and not at exit
        return code
    except BrokenPipeError:
        _silence_stdout()
        return 141  # 128 + SIGPIPE, as a shell reports a command cut off by its pipe
    except ZooError as exc:
        if args.debug:
            raise
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if args.debug:
            raise
        print(f"zoo: error: {type(exc).__name__}: {exc} (unexpected: run again with --debug for the traceback)",
              file=sys.stderr)
        return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null after its reader went away, so the interpreter's last flush stays quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (e.g. captured)
        pass
    finally:
        os.close(devnull)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
