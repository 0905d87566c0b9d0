"""``python -m fastbpf.cli``: the same as the ``fastbpf`` command."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())
