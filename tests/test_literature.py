"""lslib.literature: every quoted number carries its source and what was read there; the
strongest attack of a source never leaves more than its baseline (a swapped quote would)."""

from __future__ import annotations

from lslib.literature import LITERATURE, literature_table


def test_every_quote_has_a_source_and_what_was_checked():
    for entry in LITERATURE:
        assert entry["source"] and entry["checked"] and entry["defence"]
        for key in ("clean", "baseline", "strongest"):
            value = entry[key]
            assert value is None or 0 <= value <= 100, (entry, key)
        if entry["baseline"] is not None and entry["strongest"] is not None:
            assert entry["strongest"] <= entry["baseline"], entry


def test_the_table_keeps_every_entry_and_names_its_source():
    table = literature_table()
    assert len(table) == len(LITERATURE)
    assert "source" in table.columns and table["source"].str.len().min() > 0
