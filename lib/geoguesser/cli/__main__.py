"""`python -m geoguesser.cli`: the same command as the installed `geoguesser`."""

import sys

from geoguesser.cli.main import main

sys.exit(main())
