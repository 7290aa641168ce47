"""``python -m unitscope ...`` is ``unitscope ...`` (also under ``torchrun -m unitscope``)."""

import sys

from unitscope.cli import main

sys.exit(main())
