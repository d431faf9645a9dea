"""Summarise each month: mean temperatures, total rain and rainy days."""

from collections import defaultdict
from statistics import mean

import prism_project

import prism.target
from prism.decorators import target, task


@task(
    targets=[
        target(
            type=prism.target.JSON, loc=prism_project.OUTPUT / "monthly.json", indent=2
        )
    ]
)
def monthly(tasks, hooks):
    by_month = defaultdict(list)
    for day in tasks.ref("extract"):
        by_month[day["date"][:7]].append(day)
    return [
        {
            "month": month,
            "temp_max_mean": round(mean(d["temp_max"] for d in days), 1),
            "temp_min_mean": round(mean(d["temp_min"] for d in days), 1),
            "precipitation_mm": round(sum(d["precipitation"] for d in days), 1),
            "rainy_days": sum(1 for d in days if d["precipitation"] > 0),
        }
        for month, days in sorted(by_month.items())
    ]
