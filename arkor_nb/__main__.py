"""``python -m arkor_nb ...`` is the ``arkor-nb`` command."""

import sys

from .cli import main

sys.exit(main())
