import sys

from speakergmm.cli import main

sys.exit(main())
