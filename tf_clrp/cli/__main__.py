"""``python -m tf_clrp.cli``."""

import sys

from tf_clrp.cli import main

sys.exit(main())
