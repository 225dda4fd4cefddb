"""docs/architecture.md's table from a config key to its code stays complete and true."""
from __future__ import annotations

import re

from conftest import ROOT

DOC = (ROOT / "docs" / "architecture.md").read_text()
TABLE = DOC[DOC.index("## From a config key to its code"):]
ROWS = [line for line in TABLE.splitlines() if line.startswith("| `")]


def test_every_config_group_has_a_row():
    groups = sorted(p.name for p in (ROOT / "conf").iterdir() if p.is_dir())
    keys = " ".join(row.split("|")[1] for row in ROWS)
    assert [g for g in groups if f"`{g}=" not in keys and f"`{g}." not in keys and f"`{g}/" not in keys] == []


def test_every_path_in_the_table_exists():
    paths = {p for row in ROWS for p in re.findall(r"`(covid_tl/[\w/]+\.py)`", row)}
    assert len(paths) > 20 and sorted(p for p in paths if not (ROOT / p).is_file()) == []


def test_every_named_symbol_is_defined_in_its_module():
    """`covid_tl/x.py` (`Name`): Name is defined (class or def) in x.py."""
    pairs = re.findall(r"`(covid_tl/[\w/]+\.py)` \(`(\w+)[.`]", TABLE)
    assert len(pairs) > 10
    missing = [f"{path}: {name}" for path, name in pairs
               if not re.search(rf"^\s*(class|def) {name}\b", (ROOT / path).read_text(), re.M)]
    assert missing == []


def test_the_layer_diagram_names_every_package():
    packages = sorted(p.name for p in (ROOT / "covid_tl").iterdir() if (p / "__init__.py").is_file())
    assert [p for p in packages if f"covid_tl/{p}/" not in DOC] == []
