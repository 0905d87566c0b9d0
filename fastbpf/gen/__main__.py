"""``python3 -m fastbpf.gen skeleton OBJ -o OUT``."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())
