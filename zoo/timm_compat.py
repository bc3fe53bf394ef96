"""zoo names in timm's model registry (timm's config fields and feature wrappers: :mod:`zoo.timm_adapters`).

``import zoo`` installs a one-shot import hook (:func:`install_import_hook`): when ``timm`` is imported (or right
away, if it already is), every zoo registry name is registered as a timm model, so ``timm.create_model(
"resnet50-mtt-1pct")`` and ``timm.create_model("local-dir:DIR")`` / ``"hf-hub:ORG/NAME"`` on a folder written by
:func:`zoo.save_pretrained` build the model through :func:`zoo.create` (same checks, same weights). Names made
by a family's grammar only (``resnet50-mtt-3pct``) are registered on demand with :func:`register_timm`; a folder
saved from one records timm architecture :data:`~zoo.timm_adapters.FOLDER_ARCHITECTURE`, a generic entrypoint
registered with the registry names, so timm loads such folders without a registration.
Set ``ZOO_NO_TIMM_HOOK=1`` to keep timm's registry untouched.

timm reads a name's text after the first ``.`` as a pretrained tag, so ``resnet50-mtt-0.5pct`` reaches timm as
architecture ``resnet50-mtt-0`` with tag ``5pct``; those names are registered under that head and dispatched
on the tag, which makes ``timm.create_model("resnet50-mtt-0.5pct")`` work too.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any, Callable, Dict, Iterable, Optional

from zoo.import_hooks import call_after_import
from zoo.timm_adapters import FOLDER_ARCHITECTURE, folder_source

_registered: Dict[str, Dict[str, str]] = {}
"""timm architecture name -> {pretrained tag: zoo name} of every name this process registered."""


def is_zoo_name(name: str) -> bool:
    """Whether ``name`` (a timm architecture, tag excluded) was registered in timm by the zoo."""
    return name.split(".", 1)[0] in _registered


def register_timm(names: Optional[Iterable[str]] = None) -> list[str]:
    """Register zoo model names in timm's registry (default: every registry name); returns the timm names added.

    timm's own model names are never overridden; a zoo name equal to one of them is skipped."""
    import timm
    from timm.models import register_model

    added = []
    if names is None:
        from zoo.registry.resolve import entries

        names = list(entries())
        if not timm.is_model(FOLDER_ARCHITECTURE):
            register_model(_folder_entrypoint())
            added.append(FOLDER_ARCHITECTURE)
    for name in names:
        arch, _, tag = name.partition(".")
        if arch not in _registered and timm.is_model(arch):
            continue  # timm's own model
        tags = _registered.setdefault(arch, {})
        if tag in tags:
            continue
        tags[tag] = name
        if len(tags) == 1:
            register_model(_entrypoint(arch))
            added.append(arch)
    return added


def _folder_entrypoint() -> Callable[..., Any]:
    """The timm entrypoint :data:`FOLDER_ARCHITECTURE`: builds the zoo folder timm read the config from."""

    def create(pretrained: bool = False, pretrained_cfg: Any = None, pretrained_cfg_overlay: Any = None,
               cache_dir: Any = None, pretrained_model_args: Any = None, **kwargs: Any) -> Any:
        from zoo.api import create as zoo_create
        from zoo.errors import ZooError

        source = folder_source(pretrained_cfg)
        if source is None:
            raise ZooError(f"timm.create_model({FOLDER_ARCHITECTURE!r}) builds a folder saved by zoo.save_pretrained: "
                           f"use timm.create_model('local-dir:DIR') or 'hf-hub:ORG/NAME' (or zoo.create(NAME))")
        return zoo_create(source, pretrained=pretrained, **kwargs)

    create.__name__ = create.__qualname__ = FOLDER_ARCHITECTURE
    create.__module__ = __name__
    create.__doc__ = "A folder written by zoo.save_pretrained whose model name timm's registry does not hold."
    return create


def _entrypoint(arch: str) -> Callable[..., Any]:
    """A timm entrypoint for ``arch`` that builds with :func:`zoo.create`."""

    def create(pretrained: bool = False, pretrained_cfg: Any = None, pretrained_cfg_overlay: Any = None,
               cache_dir: Any = None, pretrained_model_args: Any = None, **kwargs: Any) -> Any:
        from zoo.api import create as zoo_create
        from zoo.errors import ZooError

        if pretrained_cfg_overlay:
            raise ZooError(f"timm.create_model({arch!r}): pretrained_cfg_overlay is not supported for zoo models; "
                           f"their weights and config come from the zoo registry or a saved folder")
        source = folder_source(pretrained_cfg)
        if source is None:
            tag = pretrained_cfg if isinstance(pretrained_cfg, str) else ""
            tags = _registered[arch]
            if tag not in tags:
                known = ", ".join(repr(f"{arch}.{t}" if t else arch) for t in sorted(tags))
                raise ZooError(f"timm.create_model: no zoo model {arch + ('.' + tag if tag else '')!r}; "
                               f"registered under this name: {known}")
            source = tags[tag]
        return zoo_create(source, pretrained=pretrained, **kwargs)

    create.__name__ = create.__qualname__ = arch
    create.__module__ = __name__
    create.__doc__ = f"The zoo model {arch!r}, built by zoo.create."
    return create


def _register_quietly() -> None:
    try:
        register_timm()
    except Exception as exc:  # a broken registry must not break `import timm`
        warnings.warn(f"zoo: could not register zoo models in timm ({type(exc).__name__}: {exc}); "
                      f"timm.create_model will not know zoo names", RuntimeWarning, stacklevel=2)


def install_import_hook() -> None:
    """Register zoo names in timm now if timm is imported, else right after it is (``ZOO_NO_TIMM_HOOK=1``: never)."""
    if os.environ.get("ZOO_NO_TIMM_HOOK", "") not in ("", "0"):
        return
    if "timm" not in sys.modules or not _registered:
        call_after_import("timm", _register_quietly)
