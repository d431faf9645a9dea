"""Write a Markdown report from the monthly summary and the weather mix."""

import prism_project

import prism.decorators
import prism.target
import prism.task


class Report(prism.task.PrismTask):
    @prism.decorators.target(
        type=prism.target.Txt, loc=prism_project.OUTPUT / "report.md"
    )
    def run(self, tasks, hooks):
        months = tasks.ref("monthly")
        mix = tasks.ref("weather_mix")
        wettest = max(months, key=lambda m: m["precipitation_mm"])
        warmest = max(months, key=lambda m: m["temp_max_mean"])
        kinds = sorted({kind for counts in mix.values() for kind in counts})
        lines = [
            "# Seattle weather",
            "",
            f"Wettest month: {wettest['month']} ({wettest['precipitation_mm']} mm).",
            f"Warmest month: {warmest['month']} "
            f"(mean daily maximum {warmest['temp_max_mean']} °C).",
            "",
            "| year | " + " | ".join(kinds) + " |",
            "|---" * (len(kinds) + 1) + "|",
        ]
        for year, counts in mix.items():
            cells = " | ".join(str(counts.get(kind, 0)) for kind in kinds)
            lines.append(f"| {year} | {cells} |")
        print(f"Wettest month: {wettest['month']}, warmest: {warmest['month']}")
        return "\n".join(lines) + "\n"
