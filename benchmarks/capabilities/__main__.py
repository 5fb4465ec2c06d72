import sys

from benchmarks.capabilities.suite import main

sys.exit(main())
