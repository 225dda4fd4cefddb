"""The shortcut audit's table (audit.json's `tests`) as markdown: one row per test and set, the
number with its 95% interval over patients, what it means and the verdict; then the tests
the data could not support, each with why. audit.md and the model card show the same rows."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from covid_tl.core.formatting import markdown_table, number

HEADER = ["test", "set", "measure", "value [95% CI]", "n (patients)", "verdict", "what it means"]


def audit_rows(tests: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    return [[t["test"], t["set"], t["metric"], number(t["value"], t.get("ci95")), f"{t['n']} ({t['patients']})",
             f"**{t['verdict']}**" if t["verdict"] == "shortcut" else t["verdict"], t["meaning"]]
            for t in tests if "skipped" not in t]


def audit_lines(record: Mapping[str, Any]) -> list[str]:
    """The table, a line per caveat (which tests it concerns), then one line per skipped test."""
    tests = record.get("tests", [])
    lines = markdown_table(HEADER, audit_rows(tests)) if any("skipped" not in t for t in tests) else ["No test could run."]
    caveats = list(dict.fromkeys(t["caveat"] for t in tests if t.get("caveat")))
    for caveat in caveats:
        concerned = ", ".join(sorted({t["test"] for t in tests if t.get("caveat") == caveat}))
        lines += ["", f"Caveat ({concerned}): {caveat}."]
    left = [t for t in tests if "skipped" in t]
    if left:
        lines += ["", "Not run:", ""] + [f"- {t['test']} on {t['set']}: {t['skipped']}" for t in left]
    return lines
