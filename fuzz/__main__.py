"""``python -m fuzz``: the fuzz harness's command line (safepickle.fuzzing.cli)."""

import sys

from safepickle.fuzzing.cli import main

sys.exit(main())
