"""docs/eto-fidelity.md: every rule row names at least one test, and every named test exists."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "eto-fidelity.md"
REF = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`")


def rule_rows() -> list[str]:
    rows = []
    for section in DOC.read_text().split("\n## ")[1:]:
        if section.startswith("Measured"):
            continue
        rows += [line for line in section.splitlines() if line.startswith("| ") and "`tests/" in line]
    return rows


def test_every_row_names_existing_tests():
    rows = rule_rows()
    assert len(rows) >= 30
    table_rows = [
        line
        for section in DOC.read_text().split("\n## ")[1:]
        if not section.startswith("Measured")
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith(("| rule", "|---"))
    ]
    assert len(table_rows) == len(rows), "a rule row names no test"
    for row in rows:
        for path, name in REF.findall(row):
            file = REPO / path
            assert file.is_file(), f"{path} (row: {row[:60]})"
            if name:
                assert re.search(rf"^def {name}\(", file.read_text(), re.M), f"{path}::{name}"
