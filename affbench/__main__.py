"""`python -m affbench` (as torchrun launches it) runs the `affbench` command."""

import sys

from affbench.cli import main

sys.exit(main())
