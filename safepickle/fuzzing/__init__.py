"""The fuzz harness: hostile streams against the VM, with five oracles.

* generators: :mod:`.grammar` (opcode programs on the codec's encoder, also a
  hypothesis strategy: :func:`pickle_cases`), :mod:`.mutate` (byte-level
  mutations of a seed corpus), :mod:`.atheris_main` (coverage-guided);
* oracles: :mod:`.oracles` (exceptions, audit, differential against CPython's
  restricted unpickler, resources, scan agreement);
* :mod:`.runner` (the loop and its crash-proof supervisor), :mod:`.minimize`,
  :mod:`.findings` (reproducers and reports), :mod:`.replay`;
* :mod:`.cli`: ``python -m fuzz`` / ``safepickle fuzz``.

Nothing here is imported by ``import safepickle``.
"""

from __future__ import annotations

from .case import FuzzCase
from .findings import Finding
from .grammar import Grammar, pickle_cases
from .oracles import Checker
from .policyspec import FUZZ_CAPS, prepare
from .runner import FuzzConfig, RunResult, run, run_slot

__all__ = ["FUZZ_CAPS", "Checker", "Finding", "FuzzCase", "FuzzConfig", "Grammar", "RunResult", "pickle_cases",
           "prepare", "run", "run_slot"]
