"""docs/v1/calibration.md: every row names a calibration test that exists and measures it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "docs" / "v1" / "calibration.md"


def sections() -> list[tuple[str, Path, list[str]]]:
    """(environment, its calibration test file, the table rows) per section."""
    found = []
    for block in TABLE.read_text().split("\n## ")[1:]:
        env_id = block.splitlines()[0].strip()
        test_file = ROOT / re.search(r"Tests: `([^`]+)`", block).group(1)
        rows = [line for line in block.splitlines() if line.startswith("| ")][1:]
        found.append((env_id, test_file, rows))
    return found


def test_the_table_covers_every_v1_environment():
    from cardiosim_jax.registration import v1_envs

    assert [env_id for env_id, _, _ in sections()] == list(v1_envs)


@pytest.mark.parametrize("env_id, test_file, rows", sections(), ids=lambda v: str(v)[:30])
def test_every_row_names_a_calibration_test_in_its_file(env_id, test_file, rows):
    defined = set(re.findall(r"^def (test_calibration_\w+)", test_file.read_text(), re.M))
    assert rows, env_id
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 5, row
        named = re.findall(r"`(test_calibration_\w+)`", cells[-1])
        assert named, row
        assert set(named) <= defined, (row, sorted(defined))
