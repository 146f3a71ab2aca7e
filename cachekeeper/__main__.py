"""`python -m cachekeeper --config FILE`: the keeper's process (cachekeeper/service.py)."""

import sys

from cachekeeper.service import main

sys.exit(main())
