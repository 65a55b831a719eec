"""CSV as report.py writes it for the CLI's --csv and the admin API: text that a spreadsheet would run
as a formula is kept as text; numbers, negative ones too, are left as they are."""

from __future__ import annotations

import csv
import io

import pytest

from tokenbridge.report import SUM_FIELDS, USAGE_FIELDS, csv_text, sum_csv, usage_csv


@pytest.mark.parametrize("text", ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
@pytest.mark.parametrize("column", ["key", "model", "channel", "upstream_model", "route", "error", "end_reason"])
def test_csv_gives_formula_like_text_a_leading_quote(column: str, text: str) -> None:
    [row] = csv.DictReader(io.StringIO(csv_text([{column: text}], [column]), newline=""))
    assert row[column] == "'" + text


@pytest.mark.parametrize(("column", "value"), [("cost_usd", "-0.25"), ("cost_nano_usd", -250_000_000),
                                               ("status", 200), ("key", "alice"), ("error", None)])  # fmt: skip
def test_csv_leaves_numbers_and_plain_text_alone(column: str, value: object) -> None:
    [row] = csv.DictReader(io.StringIO(csv_text([{column: value}], [column])))
    assert row[column] == ("" if value is None else str(value))


def test_usage_and_sum_csv_have_one_column_list_each() -> None:
    assert usage_csv([]).strip().split(",") == list(USAGE_FIELDS)
    assert sum_csv([], "day").strip().split(",") == ["day", *SUM_FIELDS]


def test_csv_quotes_line_breaks_inside_a_cell() -> None:
    # With "\n" line ends a lone "\r" inside an upstream error was written bare and split the row in two.
    text = csv_text([{"error": "a\rb", "key": "k"}, {"error": "c\nd", "key": "k"}], ["key", "error"])
    assert [r["error"] for r in csv.DictReader(io.StringIO(text, newline=""))] == ["a\rb", "c\nd"]
