"""Coverage-guided fuzzing entry point for atheris (``pip install atheris``).

    python fuzz/atheris_entry.py --policy stdlib --artifacts fuzz-artifacts -- -max_total_time=60 -seed=1 fuzz/corpus

Arguments before ``--`` are ours (policy, artifacts, --no-differential,
--no-minimize, --keep-limits); the rest go to libFuzzer.  The same oracles as
``python -m fuzz`` judge every input; ``python -m fuzz --generator atheris``
runs this for each policy within the run's time budget.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from safepickle.fuzzing.atheris_main import main

if __name__ == "__main__":
    main(sys.argv[1:])
