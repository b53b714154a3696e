"""``python -m opentranscribe_pipeline.cli``: the ``opentranscribe`` console script."""

import sys

from . import main

sys.exit(main())
