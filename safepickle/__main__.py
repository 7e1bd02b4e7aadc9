"""``python -m safepickle``: the ``safepickle`` command."""

import sys

from .cli import main

sys.exit(main())
