import sys

from kn_core.cli import main

sys.exit(main())
