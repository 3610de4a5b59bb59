"""``python -m arkor_nb ...`` is the ``arkor-nb`` command."""

import sys

from arkor_nb.cli import main

sys.exit(main())
