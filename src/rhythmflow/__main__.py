import sys

from rhythmflow.cli import main

sys.exit(main())
