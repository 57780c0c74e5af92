"""``python -m workers`` is the ``saga`` command."""

import sys

from workers._cli import main

sys.exit(main())
