"""Settings of this Prism project; tasks read them with `import prism_project`.

Values given on the command line with `-v KEY=VALUE` or `--context JSON` replace
the ones set here.
"""

import logging
from pathlib import Path

from prism.admin import generate_run_id, generate_run_slug

NAME = ""
RUN_ID = generate_run_id()
SLUG = generate_run_slug()

# Folders put at the front of sys.path, so tasks can import modules from them.
SYS_PATH_CONF = [Path(__file__).parent]

# How many tasks may run at once.
THREADS = 1

# Database and Spark adapters for `hooks`.
PROFILE_YML_PATH = Path(__file__).parent / "profile.yml"
PROFILE = "default"

# Messages logged here appear in Prism's output, with the task that logged them.
PRISM_LOGGER = logging.getLogger("PRISM_LOGGER")

# Functions from triggers.yml to call after the run.
TRIGGERS_YML_PATH = Path(__file__).parent / "triggers.yml"
TRIGGERS = {"on_success": [], "on_failure": []}

WKDIR = Path(__file__).parent
DATA = WKDIR / "data"
OUTPUT = WKDIR / "output"
