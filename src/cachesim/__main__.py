import sys

from cachesim.cli import main

sys.exit(main())
