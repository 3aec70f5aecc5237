import sys

from floe.cli import main

sys.exit(main())
