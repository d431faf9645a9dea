"""Read the daily observations and check every row."""

import csv
from datetime import date

import prism_project

import prism.task


class Extract(prism.task.PrismTask):
    def run(self, tasks, hooks):
        first, last = int(prism_project.FIRST_YEAR), int(prism_project.LAST_YEAR)
        days = []
        with open(prism_project.DATA, newline="", encoding="utf-8") as stream:
            for line, row in enumerate(csv.DictReader(stream), start=2):
                day = date.fromisoformat(row["date"].replace("/", "-"))
                if not first <= day.year <= last:
                    continue
                low, high = float(row["temp_min"]), float(row["temp_max"])
                if low > high:
                    raise ValueError(
                        f"{prism_project.DATA}:{line}: temp_min > temp_max"
                    )
                days.append(
                    {
                        "date": day.isoformat(),
                        "precipitation": float(row["precipitation"]),
                        "temp_max": high,
                        "temp_min": low,
                        "wind": float(row["wind"]),
                        "weather": row["weather"],
                    }
                )
        prism_project.PRISM_LOGGER.info("Read %d days (%d-%d)", len(days), first, last)
        return days
