"""Build script: compiles the VM's and the scanner's hot modules with Cython, or falls back to them interpreted.

All metadata lives in ``pyproject.toml``; this file only adds the optional
extension modules.  ``safepickle/vm/engine.py`` is plain Python with Cython
pure-mode annotations.  The build compiles a copy of it under another module
name, ``safepickle.vm._engine_c``, so the interpreted module stays importable
beside the compiled one (``SAFEPICKLE_PURE_PYTHON=1`` selects it at run time,
see ``safepickle/vm/_engine_select.py``).  ``safepickle/vm/actions.py`` is
compiled the same way as ``safepickle.vm._actions_c`` (the compiled engine
takes its per-container fills from there), typed by ``actions.pxd`` beside it
(an augmenting .pxd: the .py stays untouched).  The scanner's
``scan/static.py``, ``values.py`` and ``containers.py`` become ``_static_c``,
``_values_c`` and ``_containers_c`` (chosen together by
``safepickle/scan/_scanner_select.py``).  Each copy carries the SHA-256 of the
source it was compiled from; at import the selector compares it with the
source next to it and refuses a stale build.

When Cython is missing, or cythonizing or the C compiler fails, the install
still succeeds with the interpreted modules, and the build log says so.

Environment switches (for CI and for debugging the build):

* ``SAFEPICKLE_NO_COMPILE=1``: do not try to compile at all.
* ``SAFEPICKLE_REQUIRE_COMPILED=1``: a failed compilation fails the build
  instead of falling back (CI uses it to be sure it tests the compiled VM).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
GENERATED = Path("build") / "cython-src"  # relative: setuptools wants relative source paths

# module name of the extension -> the pure-Python source it is compiled from
COMPILED_MODULES = {
    "safepickle.vm._engine_c": "safepickle/vm/engine.py",
    "safepickle.vm._actions_c": "safepickle/vm/actions.py",
    "safepickle.scan._static_c": "safepickle/scan/static.py",
    "safepickle.scan._values_c": "safepickle/scan/values.py",
    "safepickle.scan._containers_c": "safepickle/scan/containers.py",
}

# Per-module Cython directives, written as a header line into the copy.
# actions.py is typed by its .pxd alone: its Python annotations (``start: int``)
# would otherwise clash with the C types declared there.
MODULE_DIRECTIVES = {
    "safepickle.vm._actions_c": "# cython: annotation_typing=False\n",
    # Plain Python compiled as it is: its annotations are hints, never C types
    # or run-time type checks.
    "safepickle.scan._values_c": "# cython: annotation_typing=False\n",
    "safepickle.scan._containers_c": "# cython: annotation_typing=False\n",
}

DIRECTIVES = {
    "language_level": 3,
    "binding": False,
    "embedsignature": False,
    # Cython's defaults, spelled out: indexing stays checked everywhere
    # unless a function opts out with a comment saying why it may.
    "boundscheck": True,
    "wraparound": True,
    "initializedcheck": True,
    "cdivision": False,
}


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def _log(message: str) -> None:
    print(f"safepickle build: {message}", file=sys.stderr, flush=True)


def _write_if_changed(path: Path, text: bytes) -> None:
    if not path.exists() or path.read_bytes() != text:
        path.write_bytes(text)


def _generated_copy(module: str, source: str) -> str:
    """Write the source under the extension's module name, with the SHA-256 of
    the original appended (and its augmenting .pxd, if any, beside it), and
    return its path (relative to this folder)."""
    original = (HERE / source).read_bytes()
    digest = hashlib.sha256(original).hexdigest()
    target = GENERATED.joinpath(*module.split(".")).with_suffix(".py")
    (HERE / target).parent.mkdir(parents=True, exist_ok=True)
    text = MODULE_DIRECTIVES.get(module, "").encode() + original + (
        b"\n\n# Added by setup.py: the SHA-256 of the source this module was compiled from.\n"
        + f'_COMPILED_FROM_SHA256 = "{digest}"\n'.encode()
    )
    _write_if_changed(HERE / target, text)
    pxd = (HERE / source).with_suffix(".pxd")
    if pxd.exists():
        _write_if_changed((HERE / target).with_suffix(".pxd"), pxd.read_bytes())
    return target.as_posix()


def _extensions() -> list[Extension]:
    if _flag("SAFEPICKLE_NO_COMPILE"):
        _log("SAFEPICKLE_NO_COMPILE is set: installing the interpreted VM only")
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if _flag("SAFEPICKLE_REQUIRE_COMPILED"):
            raise
        _log("Cython is not installed: installing the interpreted VM only (slower, same behaviour)")
        return []
    # Cython deep-copies parts of the syntax tree, recursively: the scanner's
    # walk (one long if/elif chain over the opcodes) needs more than the
    # default 1000 frames when setuptools' own frames are below it.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    exts = [
        Extension(module, [_generated_copy(module, source)])
        for module, source in COMPILED_MODULES.items()
    ]
    try:
        # include_path: where Cython finds each copy's .pxd by its module name
        return cythonize(exts, compiler_directives=DIRECTIVES, include_path=[str(GENERATED)], quiet=True)
    except Exception as e:  # a Cython error must not make the package uninstallable
        if _flag("SAFEPICKLE_REQUIRE_COMPILED"):
            raise
        _log(f"cythonize failed ({type(e).__name__}: {e}): installing the interpreted VM only")
        return []


class OptionalBuildExt(build_ext):
    """build_ext that reports a failed compilation and carries on without it."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:
            self._fallback(None, e)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:
            self._fallback(ext, e)
        else:
            _log(f"compiled {ext.name}")

    def _fallback(self, ext: Extension | None, error: Exception) -> None:
        if _flag("SAFEPICKLE_REQUIRE_COMPILED"):
            raise error
        what = ext.name if ext is not None else "the extension modules"
        _log(f"could not compile {what} ({type(error).__name__}: {error}); "
             "installing the interpreted VM only (slower, same behaviour)")


# The packages are listed here rather than by [tool.setuptools.packages.find]:
# find() cannot see ``safepickle._policies``, which package-dir maps onto the
# top-level policies/ folder, and a wheel without the built-in policies is
# unusable (pyproject's setting would override this one).
PACKAGES = [*find_packages(include=["safepickle", "safepickle.*"]), "safepickle._policies"]

setup(packages=PACKAGES, ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
