"""`python -m app.cli ...`: the `conveyor` command, as tests and `conveyor worker` start it."""

import sys

from app.cli import main

sys.exit(main())
