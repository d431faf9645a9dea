"""Settings of this Prism project; tasks read them with `import prism_project`."""

import logging
from pathlib import Path

NAME = ""
THREADS = 1
PRISM_LOGGER = logging.getLogger("PRISM_LOGGER")
OUTPUT = Path(__file__).parent / "output"
