"""Running the user's own code: the function a factory names, imported from a module, a file or an installed
entry point, and called; whatever goes wrong comes back as one ``ConfigError`` line that names the user's own
file and line (``my_model.py:14: RuntimeError: mat1 and mat2 shapes cannot be multiplied ...``), never the
tool's traceback.

Naming code runs it, as running a script does: the module's top level runs when it is imported.

A file is imported as a module named after it, with its folder put first on ``sys.path`` (so a Dataset class
defined there pickles into DataLoader workers, which are spawned with the parent's ``sys.path``). No torch here;
the engine (models) and ``data/custom.py`` (datasets) call this.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import sys
import sysconfig
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tui_trainer.config.factories import installed, is_file, shown_factory, split_factory
from tui_trainer.config.schema import PLUGIN_PREFIX
from tui_trainer.errors import ConfigError, first_line

_TOOL = str(Path(__file__).resolve().parent)
_STDLIB = str(Path(sysconfig.get_paths()["stdlib"]).resolve())


def _foreign(filename: str) -> bool:
    """A frame of this tool, of Python itself or of torch: not the user's."""
    if filename.startswith("<"):
        return True
    path = str(Path(filename).resolve())
    if path.startswith(_TOOL) or (path.startswith(_STDLIB) and "site-packages" not in path):
        return True
    torch = sys.modules.get("torch")
    torch_dir = str(Path(torch.__file__).resolve().parent) if torch is not None and torch.__file__ else None
    return bool(torch_dir and path.startswith(torch_dir))


def user_line(exc: BaseException) -> str:
    """``file.py:LINE: Type: message`` at the user's deepest frame: their own file, not torch's, Python's or this
    tool's (an installed package's, such as a plugin's, only when no file of theirs is on the way)."""
    what = f"{type(exc).__name__}: {first_line(exc)}"
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{Path(exc.filename).name}:{exc.lineno}: SyntaxError: {exc.msg}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _foreign(f.filename)]
    own = [f for f in frames if "site-packages" not in f.filename]  # the user's files before installed libraries'
    if not frames:
        return what
    frame = (own or frames)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}: {what}"


def _import_file(path: Path) -> Any:
    """The module a .py file holds, imported by its name with its folder first on sys.path."""
    folder, name = str(path.parent), path.stem
    if folder not in sys.path:
        sys.path.insert(0, folder)
    loaded = sys.modules.get(name)
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() == path:
        return importlib.reload(loaded)  # asked again (the app's helper): the file as it is now
    if loaded is None and name.isidentifier():
        importlib.invalidate_caches()
        module = importlib.import_module(name)
        if Path(getattr(module, "__file__", "") or "").resolve() == path:
            return module
        del sys.modules[name]
    # a module of that name is another file: import this one under a name of its own
    spec = importlib.util.spec_from_file_location(f"tui_trainer_user_{abs(hash(str(path)))}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _import(target: str, label: str) -> Any:
    """The module a factory's target names; ConfigError with why it does not import."""
    if is_file(target):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"{label}: file not found: {path}")
        try:
            return _import_file(path)
        except Exception as exc:  # noqa: BLE001 - any failure of the user's module is theirs, said in one line
            raise ConfigError(f"{label}: {path.name} does not import: {user_line(exc)}") from None
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and target.startswith(exc.name):
            raise ConfigError(f"{label}: no module named {exc.name!r} (install it, or put its folder on PYTHONPATH; "
                              "or name a file: 'path/to/file.py:function')") from None
        raise ConfigError(f"{label}: {target} does not import: {user_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"{label}: {target} does not import: {user_line(exc)}") from None


def factory_spec(kind: str, choice: str, factory: str) -> tuple[str, str]:
    """(``module:function`` or ``file.py:function``, the label errors start with) of a config's choice: ``custom``
    with its factory, or ``plugin:NAME`` and its entry point."""
    if choice.startswith(PLUGIN_PREFIX):
        name = choice[len(PLUGIN_PREFIX):]
        ep = installed(kind).get(name)
        key = "model.arch" if kind == "model" else "data.dataset"
        if ep is None:
            raise ConfigError(f"{key} = {choice!r}: no installed package registers {name!r} any more")
        return ep.value, f"{key} = {choice!r} ({ep.value})"
    return factory, f"{kind}.factory = {shown_factory(factory)!r}"


def load_function(spec: str, label: str) -> Callable[..., Any]:
    """The function ``spec`` (``target:function``) names, imported; ConfigError if it cannot be had."""
    target, name = split_factory(spec)
    module = _import(target, label)
    fn = getattr(module, name, None)
    if fn is None:
        names = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                 and getattr(v, "__module__", None) == module.__name__]
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        where = Path(module.__file__).name if getattr(module, "__file__", None) else module.__name__
        raise ConfigError(f"{label}: {where} has no function {name!r}{hint}; it has: {', '.join(names) or 'none'}")
    if not callable(fn):
        raise ConfigError(f"{label}: {name} is a {type(fn).__name__}, not a function")
    return fn


def call(fn: Callable[..., Any], label: str, **kwargs: Any) -> Any:
    """``fn(**kwargs)``; its failure as one line at the user's file and line. Keyword arguments it does not take
    are said as such (a typo in ``model.args``)."""
    try:
        inspect.signature(fn).bind(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{label}: {exc} (check {label.split('.')[0]}.args)") from None
    except ValueError:
        pass  # no signature to read (a builtin): just call it
    try:
        return fn(**kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's error, said as theirs
        raise ConfigError(user_line(exc)) from None


def a_type(obj: object) -> str:
    """``a dict``, ``an int``: what an object is, for an error line."""
    name = type(obj).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def first_doc_line(obj: object) -> str:
    """The first line of an object's docstring ('' if none)."""
    doc = inspect.getdoc(obj) or ""
    return doc.splitlines()[0] if doc else ""


def doc_line(kind: str, name: str) -> str:
    """The first line of an installed entry point's docstring (loading it imports its package)."""
    try:
        obj = installed(kind)[name].load()
    except Exception as exc:  # noqa: BLE001
        return f"(does not load: {user_line(exc)})"
    return first_doc_line(obj)


def described(kind: str, choice: str, factory: str) -> str:
    """``model: my_cnn.py:build (A small CNN of my own ...)``: a factory and its docstring's first line."""
    spec, label = factory_spec(kind, choice, factory)
    doc = first_doc_line(load_function(spec, label))
    return f"{kind}: {choice if choice != 'custom' else shown_factory(spec)}" + (f" ({doc})" if doc else "")
