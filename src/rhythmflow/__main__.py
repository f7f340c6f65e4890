import sys

from rhythmflow.cli.main import main

sys.exit(main())
