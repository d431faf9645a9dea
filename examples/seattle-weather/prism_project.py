"""Settings of the Seattle weather demo; tasks read them with `import prism_project`."""

import logging
from pathlib import Path

NAME = "seattle-weather"
THREADS = 2
PRISM_LOGGER = logging.getLogger("PRISM_LOGGER")

WKDIR = Path(__file__).parent
DATA = WKDIR / "data" / "seattle-weather.csv"
OUTPUT = WKDIR / "output"

# The first and last year to report on; override with -v FIRST_YEAR=2014.
FIRST_YEAR = 2012
LAST_YEAR = 2015
