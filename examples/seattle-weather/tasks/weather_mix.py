"""Count the days of each kind of weather per year."""

from collections import Counter, defaultdict

import prism_project

import prism.target
from prism.decorators import target, task


@task(
    targets=[
        target(
            type=prism.target.JSON,
            loc=prism_project.OUTPUT / "weather_mix.json",
            indent=2,
        )
    ]
)
def weather_mix(tasks, hooks):
    counts = defaultdict(Counter)
    for day in tasks.ref("extract"):
        counts[day["date"][:4]][day["weather"]] += 1
    return {year: dict(sorted(kinds.items())) for year, kinds in sorted(counts.items())}
