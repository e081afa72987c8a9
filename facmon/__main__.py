import sys

from facmon.cli import main

sys.exit(main())
