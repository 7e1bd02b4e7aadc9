"""Policy and Limits as pydantic models: fields, defaults, validation
messages, immutability and the merge of ``extends``."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from safepickle.policy import Limits, Policy, load_policy
from safepickle.policy.model import GiB


def _error_text(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return str(exc.value)


# -- Limits -------------------------------------------------------------------


def test_limit_defaults_are_documented_sizes() -> None:
    limits = Limits()
    assert limits.max_input_bytes == GiB
    assert limits.max_depth == 1000
    assert limits.max_memo == 2**24
    assert limits.max_container == 100_000_000
    assert limits.max_alloc_bytes == 2 * GiB
    assert limits.max_ops == 2**31
    assert limits.max_seconds == 60.0
    for name, field in Limits.model_fields.items():
        assert field.description, f"limit {name} has no description"


@pytest.mark.parametrize("field", sorted(Limits.model_fields))
@pytest.mark.parametrize("bad", [0, -1])
def test_limits_must_be_positive(field: str, bad: int) -> None:
    with pytest.raises(ValidationError) as exc:
        Limits(**{field: bad})
    assert field in _error_text(exc)


@pytest.mark.parametrize("field", ["max_depth", "max_input_bytes", "max_ops"])
@pytest.mark.parametrize("bad", ["10", 1.5, True, None])
def test_integer_limits_refuse_other_types(field: str, bad: object) -> None:
    with pytest.raises(ValidationError) as exc:
        Limits.model_validate({field: bad})
    assert field in _error_text(exc)


def test_max_seconds_accepts_int_and_float_but_not_text_or_infinity() -> None:
    assert Limits(max_seconds=5).max_seconds == 5.0
    assert Limits(max_seconds=0.25).max_seconds == 0.25
    for bad in ("5", float("inf"), float("nan"), True):
        with pytest.raises(ValidationError):
            Limits.model_validate({"max_seconds": bad})


def test_limits_refuse_unknown_fields_and_are_frozen() -> None:
    with pytest.raises(ValidationError) as exc:
        Limits.model_validate({"max_deepth": 5})
    assert "max_deepth" in _error_text(exc)
    limits = Limits()
    with pytest.raises(ValidationError):
        limits.max_depth = 5  # type: ignore[misc]


# -- Policy fields and messages -----------------------------------------------


def test_minimal_policy_and_defaults() -> None:
    policy = Policy.model_validate({"name": "p", "allow": ["collections:OrderedDict"]})
    assert policy.allow == ("collections:OrderedDict",)
    assert policy.deny == ()
    assert policy.extends == ()
    assert policy.persistent_ids is False
    assert dict(policy.extensions) == {}
    assert policy.limits == Limits()


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("os.system", "is not module:qualname"),
        ("a:b:c", "is not module:qualname"),
        (":x", "empty module"),
        ("m:", "empty qualname"),
        ("m..n:x", "empty part"),
        ("m:A..B", "empty part"),
        ("m:f.<locals>.g", "<locals>"),
        ("m:A.__dict__.x", "dunder part"),
        ("m:1abc", "not an identifier"),
        ("m-x:y", "not an identifier"),
        ("__main__:*", "dunder module"),
    ],
)
def test_bad_allow_entry_names_its_index_and_value(entry: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Policy.model_validate({"name": "p", "allow": ["builtins:set", "builtins:frozenset", entry]})
    text = _error_text(exc)
    assert "allow.2" in text
    assert repr(entry) in text
    assert fragment in text


def test_bad_deny_entry_is_refused_too() -> None:
    with pytest.raises(ValidationError) as exc:
        Policy.model_validate({"name": "p", "deny": ["nocolon"]})
    assert "deny.0" in _error_text(exc)


def test_good_entries_are_accepted() -> None:
    policy = Policy.model_validate(
        {
            "name": "p",
            "allow": [
                "mypkg.records:*",
                "mypkg.features:FeatureSet",
                "mypkg.features:Outer.Inner",
                "copyreg:__newobj__",
                "__main__:Point",
            ],
            "deny": ["mypkg.records:Loader"],
        }
    )
    assert len(policy.allow) == 5


def test_unknown_field_is_refused_with_its_name() -> None:
    with pytest.raises(ValidationError) as exc:
        Policy.model_validate({"name": "p", "allow_list": ["a:b"]})
    assert "allow_list" in _error_text(exc)
    assert "Extra inputs are not permitted" in _error_text(exc)


def test_bad_limit_inside_policy_points_at_limits_field() -> None:
    with pytest.raises(ValidationError) as exc:
        Policy.model_validate({"name": "p", "limits": {"max_depth": "deep"}})
    assert "limits.max_depth" in _error_text(exc)


@pytest.mark.parametrize(
    "entry",
    ["builtins:eval", "os:system", "subprocess:Popen", "subprocess:*", "os.path:join", "pickle:loads",
     "functools:partial", "operator:attrgetter", "builtins:getattr", "numpy:load", "safepickle:loads"],
)
def test_allowing_a_denylisted_global_fails_loudly(entry: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Policy.model_validate({"name": "p", "allow": [entry]})
    text = _error_text(exc)
    assert "allow.0" in text
    assert "built-in deny list" in text


def test_unsafe_override_needs_exact_listing_in_both_places() -> None:
    ok = Policy.model_validate(
        {"name": "p", "allow": ["builtins:getattr"], "unsafe_override_denylist": ["builtins:getattr"]}
    )
    assert ok.unsafe_override_denylist == ("builtins:getattr",)
    with pytest.raises(ValidationError) as exc:
        Policy.model_validate({"name": "p", "unsafe_override_denylist": ["builtins:getattr"]})
    assert "must also be listed exactly in allow" in _error_text(exc)
    with pytest.raises(ValidationError) as exc:
        Policy.model_validate(
            {"name": "p", "allow": ["collections:OrderedDict"], "unsafe_override_denylist": ["collections:OrderedDict"]}
        )
    assert "is not on the built-in deny list" in _error_text(exc)
    with pytest.raises(ValidationError) as exc:
        Policy.model_validate({"name": "p", "allow": ["os:*"], "unsafe_override_denylist": ["os:*"]})
    assert "wildcard is not accepted" in _error_text(exc)


def test_extensions_validate_codes_and_targets() -> None:
    policy = Policy.model_validate({"name": "p", "extensions": {"1": "collections:OrderedDict", 255: "a:b"}})
    assert dict(policy.extensions) == {1: "collections:OrderedDict", 255: "a:b"}
    for bad in ({0: "a:b"}, {2**31: "a:b"}, {-3: "a:b"}):
        with pytest.raises(ValidationError) as exc:
            Policy.model_validate({"name": "p", "extensions": bad})
        assert "outside 1..2147483647" in _error_text(exc)
    with pytest.raises(ValidationError) as exc:
        Policy.model_validate({"name": "p", "extensions": {5: "a.b"}})
    assert "extension 5" in _error_text(exc)
    with pytest.raises(ValidationError):
        Policy.model_validate({"name": "p", "extensions": {5: "m:*"}})


def test_persistent_ids_must_be_a_real_bool() -> None:
    assert Policy.model_validate({"persistent_ids": True}).persistent_ids is True
    with pytest.raises(ValidationError):
        Policy.model_validate({"persistent_ids": "yes"})


def test_name_must_be_printable_text() -> None:
    for bad in ("", "a\nb", "x\x00"):
        with pytest.raises(ValidationError) as exc:
            Policy.model_validate({"name": bad})
        assert "name" in _error_text(exc)


# -- immutability ------------------------------------------------------------


def test_policy_is_deeply_immutable() -> None:
    policy = Policy.model_validate({"name": "p", "allow": ["a:b"], "extensions": {1: "a:b"}})
    with pytest.raises(ValidationError):
        policy.allow = ("os:system",)  # type: ignore[misc]
    with pytest.raises(ValidationError):
        policy.name = "other"  # type: ignore[misc]
    assert isinstance(policy.allow, tuple)
    with pytest.raises(AttributeError):
        policy.allow.append("os:system")  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        policy.extensions[2] = "os:system"  # type: ignore[index]
    with pytest.raises(ValidationError):
        policy.limits.max_depth = 10**9  # type: ignore[misc]
    runtime = policy.runtime()
    with pytest.raises(AttributeError):
        runtime._allow.add("os:system")  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        runtime.extensions[3] = "os:system"  # type: ignore[index]


def test_dump_round_trips_through_json() -> None:
    policy = Policy.model_validate(
        {"name": "p", "allow": ["a:b"], "extensions": {7: "a:b"}, "limits": {"max_depth": 5}}
    )
    again = Policy.model_validate_json(policy.model_dump_json())
    assert again == policy
    assert again.runtime().limits.max_depth == 5


def test_policies_hash_and_compare_by_value() -> None:
    a = Policy.model_validate({"name": "p", "allow": ["a:b"], "extensions": {1: "a:b"}})
    b = Policy.model_validate({"name": "p", "allow": ["a:b"], "extensions": {1: "a:b"}})
    c = Policy.model_validate({"name": "p", "allow": ["a:c"]})
    assert a == b and hash(a) == hash(b)
    assert a != c
    assert len({a, b, c, load_policy("stdlib")}) == 3


def test_runtime_is_built_once_per_policy_object() -> None:
    policy = Policy.model_validate({"name": "p"})
    assert policy.runtime() is policy.runtime()
    assert load_policy("data-only").runtime() is load_policy("data-only").runtime()


# -- extends merge ------------------------------------------------------------


def test_extends_builtin_merges_allow_and_keeps_own_name() -> None:
    child = Policy.model_validate({"name": "child", "extends": ["stdlib"], "allow": ["mypkg:Thing"]})
    eff = child.effective()
    assert eff.name == "child"
    assert "mypkg:Thing" in eff.allow
    assert "datetime:date" in eff.allow  # from stdlib
    assert "builtins:set" in eff.allow  # from data-only through stdlib
    assert [p.name for p in child.parents] == ["stdlib"]


def test_extends_merges_in_order_and_child_limits_override() -> None:
    a = {"name": "a", "limits": {"max_depth": 10, "max_ops": 100}}
    b = {"name": "b", "limits": {"max_depth": 20}}
    import json
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "a.json").write_text(json.dumps(a))
        Path(tmp, "b.json").write_text(json.dumps(b))
        child = Policy.model_validate(
            {"name": "c", "extends": ["a.json", "b.json"], "limits": {"max_memo": 7}},
            context={"base_dir": tmp},
        )
        limits = child.runtime().limits
        assert limits.max_depth == 20  # b came later than a
        assert limits.max_ops == 100  # only a set it
        assert limits.max_memo == 7  # the child's own
        assert limits.max_seconds == 60.0  # nobody set it
        override = Policy.model_validate(
            {"name": "d", "extends": ["a.json"], "limits": {"max_depth": 3}}, context={"base_dir": tmp}
        )
        assert override.runtime().limits.max_depth == 3


def test_deny_from_a_parent_still_wins_over_child_allow() -> None:
    import json
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "base.json").write_text(json.dumps({"name": "base", "deny": ["collections:OrderedDict"]}))
        child = Policy.model_validate(
            {"name": "c", "extends": ["base.json"], "allow": ["collections:OrderedDict"]}, context={"base_dir": tmp}
        )
        verdict = child.runtime().check("collections", "OrderedDict", 4, True)
        assert not verdict.allowed
        assert verdict.rule == "deny"


def test_persistent_ids_inherit_unless_child_sets_them() -> None:
    import json
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "pid.json").write_text(json.dumps({"name": "pid", "persistent_ids": True}))
        inherit = Policy.model_validate({"name": "c", "extends": ["pid.json"]}, context={"base_dir": tmp})
        assert inherit.runtime().persistent_ids is True
        off = Policy.model_validate(
            {"name": "c", "extends": ["pid.json"], "persistent_ids": False}, context={"base_dir": tmp}
        )
        assert off.runtime().persistent_ids is False


def test_unknown_builtin_parent_fails_validation() -> None:
    with pytest.raises(ValidationError) as exc:
        Policy.model_validate({"name": "c", "extends": ["no-such-policy"]})
    text = _error_text(exc)
    assert "extends.0" in text
    assert "unknown built-in policy 'no-such-policy'" in text
