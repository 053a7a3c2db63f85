import pytest

from rollback_verifier.core.plain import format_time, parse_time, parse_time_or_none, type_name


def test_a_kubernetes_timestamp_round_trips() -> None:
    assert format_time(parse_time("2026-01-02T03:04:05Z")) == "2026-01-02T03:04:05Z"


def test_fractions_offsets_and_naive_times_are_read_as_rfc3339_with_utc_by_default() -> None:
    assert parse_time("2026-01-02T03:04:05.5Z") == parse_time("2026-01-02T03:04:05Z") + 0.5
    assert parse_time("2026-01-02T05:04:05+02:00") == parse_time("2026-01-02T03:04:05Z")
    assert parse_time("2026-01-02T03:04:05") == parse_time("2026-01-02T03:04:05Z")


def test_a_value_that_is_not_a_timestamp_is_an_error_or_none() -> None:
    with pytest.raises(ValueError):
        parse_time("yesterday")
    assert parse_time_or_none("yesterday") is None
    assert parse_time_or_none(1700000000) is None
    assert parse_time_or_none("2026-01-02T03:04:05Z") == parse_time("2026-01-02T03:04:05Z")


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (True, "boolean"),
        ({}, "mapping"),
        ("x", "string"),
        (1, "number"),
        (1.5, "number"),
        ([], "list"),
        (None, "NoneType"),
    ],
)
def test_type_names_are_yaml_words(value: object, name: str) -> None:
    assert type_name(value) == name
