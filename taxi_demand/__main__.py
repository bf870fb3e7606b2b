"""`python -m taxi_demand` runs the same CLI as the `taxi-demand` script."""

import sys

from taxi_demand.cli import main

sys.exit(main())
