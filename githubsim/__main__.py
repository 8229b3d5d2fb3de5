"""Entry point: ``python -m githubsim serve|ctl ...``."""

from __future__ import annotations

import sys

from githubsim.cli import main

sys.exit(main())
