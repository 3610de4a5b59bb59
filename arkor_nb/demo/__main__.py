"""``python -m arkor_nb.demo`` (what ``make demo`` runs)."""

import sys

from arkor_nb.demo import main

sys.exit(main())
