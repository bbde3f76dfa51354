"""``NAME[:key=value,...]`` wrapper/callback spec strings (critwrap.zoo.specs)."""

from __future__ import annotations

import pytest

from critwrap.zoo.specs import (
    SpecSyntaxError,
    format_spec,
    normalize_spec,
    normalize_specs,
    parse_spec_string,
    split_top_level,
)


def test_name_only_and_trailing_colon() -> None:
    assert parse_spec_string("record-episodes") == ("record-episodes", {})
    assert parse_spec_string("  record-episodes:  ") == ("record-episodes", {})


def test_values_are_yaml_numbers_bools_null_lists_mappings() -> None:
    name, kwargs = parse_spec_string(
        "subgoal-reward:scale=0.5,steps=[3, 7],flag=true,off=False,none=null,n=12,opts={a: 1, b: [1,2]},lr=1e-3"
    )
    assert name == "subgoal-reward"
    assert kwargs == {
        "scale": 0.5,
        "steps": [3, 7],
        "flag": True,
        "off": False,
        "none": None,
        "n": 12,
        "opts": {"a": 1, "b": [1, 2]},
        "lr": 0.001,
    }
    assert isinstance(kwargs["lr"], float)


def test_commas_inside_quotes_brackets_do_not_split() -> None:
    _, kwargs = parse_spec_string("w:tag='a,b',other=\"c,d\",xs=[1,2,3],m={k: [4,5]},path=runs/x")
    assert kwargs == {"tag": "a,b", "other": "c,d", "xs": [1, 2, 3], "m": {"k": [4, 5]}, "path": "runs/x"}


def test_import_paths_as_names() -> None:
    assert parse_spec_string("my_pkg.wrappers:Shaping") == ("my_pkg.wrappers:Shaping", {})
    assert parse_spec_string("my_pkg.wrappers.Shaping:k=1") == ("my_pkg.wrappers.Shaping", {"k": 1})
    assert parse_spec_string("my_pkg.wrappers:Shaping:k=1,j=[a, b]") == (
        "my_pkg.wrappers:Shaping",
        {"k": 1, "j": ["a", "b"]},
    )
    # a value containing ':' stays in the value
    assert parse_spec_string("w:path=C:/data,n=2") == ("w", {"path": "C:/data", "n": 2})


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("record-episodes:store", "not a list of key=value pairs"),
        ("w:a=1,,b=2", "empty argument"),
        ("w:a=1,", "empty argument"),
        ("w:a=[1,2", "unclosed bracket"),
        ("w:a=1]", "unbalanced"),
        ("w:a='x", "unclosed quote"),
        ("w:1a=3", "not a valid argument name"),
        ("w:a=", "has no value"),
        ("w:a=1,a=2", "given twice"),
        ("w:a=1,b", "has no '='"),
        ("", "empty"),
        (":a=1", "NAME before ':' is missing"),
        ("bad name:a=1", "not a valid name"),
        ("w:a={x: [1}", "unbalanced"),
    ],
)
def test_malformed_specs_show_syntax_and_example(spec: str, problem: str) -> None:
    with pytest.raises(SpecSyntaxError) as info:
        parse_spec_string(spec, what="--wrapper")
    msg = str(info.value)
    assert problem in msg
    assert "NAME[:key=value,key=value,...]" in msg
    assert "record-episodes:store=" in msg  # the example
    assert "--wrapper" in msg


def test_invalid_yaml_value_is_reported_with_key() -> None:
    with pytest.raises(SpecSyntaxError, match=r"value of 'a'.*not valid YAML"):
        parse_spec_string("w:a=@foo")


def test_split_top_level() -> None:
    assert split_top_level("a=1,b=[1,2],c='x,y'") == ["a=1", "b=[1,2]", "c='x,y'"]
    with pytest.raises(ValueError):
        split_top_level("a=(1,2")


def test_normalize_yaml_forms() -> None:
    assert normalize_spec("record-episodes") == ("record-episodes", {})
    assert normalize_spec({"record-episodes": {"store": "x", "lr": "1e-4"}}) == (
        "record-episodes",
        {"store": "x", "lr": 1e-4},
    )
    assert normalize_spec({"name": "w", "kwargs": {"a": 1}}) == ("w", {"a": 1})
    assert normalize_spec({"w": None}) == ("w", {})
    assert normalize_spec(("w", {"a": 2})) == ("w", {"a": 2})
    assert normalize_specs(None) == []
    assert normalize_specs("a:x=1") == [("a", {"x": 1})]
    assert normalize_specs(["a", {"b": {"y": 2}}]) == [("a", {}), ("b", {"y": 2})]
    with pytest.raises(SpecSyntaxError, match="must be a mapping"):
        normalize_spec({"w": [1, 2]})
    with pytest.raises(SpecSyntaxError, match="cannot read"):
        normalize_spec(42)


def test_format_spec_round_trips() -> None:
    kwargs = {"store": "runs/eps", "steps": [3, 7], "flag": True, "scale": 0.25, "tag": "a,b", "m": {"k": 1}}
    text = format_spec("record-episodes", kwargs)
    assert parse_spec_string(text) == ("record-episodes", kwargs)
    assert format_spec("w", {}) == "w"


def test_parse_value_reads_scientific_notation_inside_lists_and_mappings() -> None:
    from critwrap.zoo.specs import parse_value

    assert parse_value("1e-5") == pytest.approx(1e-5)
    value = parse_value("{learning_rate: 3e-4, betas: [9e-1, 1E0], name: '1e-3x'}")
    assert value == {"learning_rate": pytest.approx(3e-4), "betas": [0.9, 1.0], "name": "1e-3x"}
    assert isinstance(value["learning_rate"], float) and isinstance(value["betas"][0], float)
