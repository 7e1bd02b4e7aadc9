"""Runnable examples of safepickle (not part of the installed package)."""
