"""Coverage-guided fuzzing entry point for atheris (``pip install atheris``).

    python fuzz/atheris_entry.py --policy stdlib --artifacts fuzz-artifacts -- -max_total_time=60 -seed=1 fuzz/corpus

Arguments before ``--`` are ours (--policy, --artifacts, --setup,
--no-differential, --no-minimize, --keep-limits); the rest go to libFuzzer
(give it ``-artifact_prefix=DIR/`` too, or its crash files land in the
working directory).  The same oracles as ``python -m fuzz`` judge every input;
``python -m fuzz --generator atheris`` runs this for each policy within the
run's budget and collects the findings.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if __name__ == "__main__":
    import atheris

    with atheris.instrument_imports(include=["safepickle"]):
        from safepickle.fuzzing.atheris_main import import_all

        import_all()
    from safepickle.fuzzing.atheris_main import main

    main(sys.argv[1:], instrumented=True)
