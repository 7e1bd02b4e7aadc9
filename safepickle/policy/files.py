"""Loading policies from files and built-in names.

Formats are chosen by suffix: ``.toml`` (stdlib :mod:`tomllib`), ``.json``,
``.yaml``/``.yml`` (needs PyYAML: ``pip install safepickle[yaml]``).  The file
holds one table/object whose keys are the fields of
:class:`~safepickle.policy.model.Policy`; anything else is a
:class:`pydantic.ValidationError` at load time.

Built-in policies are loaded once per process and shared: they are immutable.
Policy files are read on every :func:`load_policy` call.
"""

from __future__ import annotations

import json
import os
import re
import threading
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .model import Policy

__all__ = [
    "PolicyFileError",
    "SUFFIXES",
    "coerce_policy",
    "is_builtin_name",
    "load_policy",
    "load_parent",
]

SUFFIXES = (".toml", ".json", ".yaml", ".yml")
DEFAULT_POLICY = "data-only"
_BUILTIN_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

_builtin_cache: dict[str, Policy] = {}
_builtin_lock = threading.Lock()


class PolicyFileError(ValueError):
    """A policy could not be read: unknown built-in name, unsupported suffix,
    missing file, syntax error, missing optional parser.  (A file that parses
    but does not describe a valid policy raises pydantic's ValidationError.)"""


def is_builtin_name(text: str) -> bool:
    """A bare name like ``numpy-only`` (no folder, no suffix) names a built-in."""
    return bool(_BUILTIN_NAME.match(text)) and not text.endswith(SUFFIXES)


def _read(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise PolicyFileError(f"{path}: unsupported policy file type {suffix!r} (use {', '.join(SUFFIXES)})")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PolicyFileError(f"{path}: no such policy file") from None
    except OSError as exc:
        raise PolicyFileError(f"{path}: cannot read policy file: {exc}") from exc
    try:
        if suffix == ".toml":
            return tomllib.loads(raw.decode("utf-8"))
        if suffix == ".json":
            return json.loads(raw.decode("utf-8"))
        try:
            import yaml
        except ImportError:
            raise PolicyFileError(
                f"{path}: YAML policy files need PyYAML: pip install 'safepickle[yaml]'"
            ) from None
        return yaml.safe_load(raw.decode("utf-8"))
    except PolicyFileError:
        raise
    except UnicodeDecodeError as exc:
        raise PolicyFileError(f"{path}: not UTF-8 text: {exc}") from exc
    except Exception as exc:  # tomllib/json/yaml syntax errors
        raise PolicyFileError(f"{path}: syntax error: {exc}") from exc


def _load_file(path: Path, chain: tuple[str, ...]) -> Policy:
    path = path.expanduser().resolve()
    key = str(path)
    if key in chain:
        raise PolicyFileError("extends cycle: " + " -> ".join((*chain, key)))
    data = _read(path)
    if not isinstance(data, dict):
        raise PolicyFileError(f"{path}: a policy file must hold one table/object, not {type(data).__name__}")
    return Policy.model_validate(data, context={"base_dir": str(path.parent), "chain": (*chain, key)})


def _builtin(name: str, chain: tuple[str, ...]) -> Policy:
    cached = _builtin_cache.get(name)
    if cached is not None:
        return cached
    from .. import policies

    try:
        path = policies.path(name)
    except KeyError:
        raise PolicyFileError(
            f"unknown built-in policy {name!r} (built-in: {', '.join(policies.names())}); "
            f"to load a file give a path ending in {'/'.join(SUFFIXES)}"
        ) from None
    policy = _load_file(Path(path), chain)
    with _builtin_lock:
        return _builtin_cache.setdefault(name, policy)


def load_policy(name_or_path: str | os.PathLike[str]) -> Policy:
    """Load a built-in policy by name (``"numpy-only"``) or a policy file.

    Raises :class:`pydantic.ValidationError` when the file does not describe a
    valid policy and :class:`PolicyFileError` when it cannot be read at all.
    """
    if isinstance(name_or_path, str) and is_builtin_name(name_or_path):
        return _builtin(name_or_path, ())
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"load_policy() takes a name or a path, not {type(name_or_path).__name__}")
    return _load_file(Path(name_or_path), ())


def load_parent(entry: str, chain: tuple[str, ...]) -> Policy:
    """Load one ``extends`` entry (already made absolute by the model)."""
    if is_builtin_name(entry):
        return _builtin(entry, chain)
    return _load_file(Path(entry), chain)


def coerce_policy(policy: str | os.PathLike[str] | Policy | None) -> Policy:
    """What ``loads(..., policy=...)`` accepts: None (the default policy,
    ``data-only``), a built-in name, a path, or a Policy."""
    if policy is None:
        return load_policy(DEFAULT_POLICY)
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, (str, os.PathLike)):
        return load_policy(policy)
    raise TypeError(f"policy must be a name, a path or a safepickle.Policy, not {type(policy).__name__}")


def format_validation_error(exc: ValidationError) -> str:
    """One line per error, ``field.path: message``, for CLI output."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        lines.append(f"{where}: {err['msg']}" if where else err["msg"])
    return "\n".join(lines)
