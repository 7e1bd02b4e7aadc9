"""The repository's fuzz harness: ``python -m fuzz`` (see fuzz/README.md).

The code lives in the installed package :mod:`safepickle.fuzzing` (so that
``safepickle fuzz`` works where the repository is not checked out); this
folder holds the entry points and the seed corpus.
"""
