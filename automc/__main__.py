import sys

from automc.cli import main

sys.exit(main())
