import sys

from hedgeflow.cli import main

sys.exit(main())
