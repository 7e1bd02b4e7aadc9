"""Policy files: TOML, JSON and YAML, relative ``extends``, cycles, errors,
and the registry of built-in policies."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from safepickle import policies
from safepickle.policy import Policy, PolicyFileError, coerce_policy, format_validation_error, load_policy

CONTRACT_EXAMPLE = """\
name = "my-service"
description = "Uploads of feature matrices"
extends = ["numpy-only"]            # built-in names or paths, merged in order
allow = [
  "collections:OrderedDict",        # module:qualname, exact
  "mypkg.features:FeatureSet",
  "mypkg.records:*",                # every class/function defined in that module
]
deny = ["mypkg.records:Loader"]     # always wins over allow

[limits]
max_input_bytes = 1_073_741_824
max_depth = 1000
"""


def test_contract_example_loads_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "service.toml"
    path.write_text(CONTRACT_EXAMPLE)
    policy = load_policy(path)
    assert policy.name == "my-service"
    assert policy.extends == ("numpy-only",)
    rt = policy.runtime()
    assert rt.check("collections", "OrderedDict", 4, True).allowed
    assert rt.check("numpy", "ndarray", 4, True).allowed
    assert rt.check("mypkg.records", "Record", 4, True).rule == "allow-wildcard"
    assert rt.check("mypkg.records", "Loader", 4, True).rule == "deny"
    assert rt.limits.max_depth == 1000
    # a str path works as well as a Path
    assert load_policy(str(path)).name == "my-service"


def test_json_and_yaml_give_the_same_policy(tmp_path: Path) -> None:
    data = {
        "name": "same",
        "extends": ["stdlib"],
        "allow": ["mypkg:Thing"],
        "limits": {"max_depth": 50, "max_seconds": 2.5},
        "extensions": {"7": "mypkg:Thing"},
    }
    (tmp_path / "p.json").write_text(json.dumps(data))
    yaml = pytest.importorskip("yaml")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "p.yml").write_text(yaml.safe_dump(data))
    toml = (
        'name = "same"\nextends = ["stdlib"]\nallow = ["mypkg:Thing"]\n'
        '[limits]\nmax_depth = 50\nmax_seconds = 2.5\n[extensions]\n7 = "mypkg:Thing"\n'
    )
    (tmp_path / "p.toml").write_text(toml)
    loaded = [load_policy(tmp_path / f"p.{ext}") for ext in ("json", "yaml", "yml", "toml")]
    dumps = {p.model_dump_json() for p in loaded}
    assert len(dumps) == 1
    assert dict(loaded[0].extensions) == {7: "mypkg:Thing"}


def test_relative_extends_resolve_against_the_naming_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "svc").mkdir()
    (tmp_path / "shared" / "base.toml").write_text('name = "base"\nallow = ["mypkg:Base"]\n')
    (tmp_path / "svc" / "child.toml").write_text(
        'name = "child"\nextends = ["../shared/base.toml", "data-only"]\nallow = ["mypkg:Child"]\n'
    )
    monkeypatch.chdir(tmp_path / "shared")  # cwd must not matter
    policy = load_policy(tmp_path / "svc" / "child.toml")
    assert policy.extends[0] == str((tmp_path / "shared" / "base.toml").resolve())
    assert policy.extends[1] == "data-only"
    allow = policy.effective().allow
    assert {"mypkg:Base", "mypkg:Child", "builtins:set"} <= allow


def test_extends_cycle_is_refused_with_the_chain(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('name = "a"\nextends = ["b.toml"]\n')
    (tmp_path / "b.toml").write_text('name = "b"\nextends = ["c.json"]\n')
    (tmp_path / "c.json").write_text(json.dumps({"name": "c", "extends": ["a.toml"]}))
    with pytest.raises(ValidationError) as exc:
        load_policy(tmp_path / "a.toml")
    text = str(exc.value)
    assert "extends cycle" in text
    a, b, c = (str((tmp_path / n).resolve()) for n in ("a.toml", "b.toml", "c.json"))
    assert f"{a} -> {b} -> {c} -> {a}" in text


def test_self_extension_is_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "self.toml").write_text('name = "self"\nextends = ["./self.toml"]\n')
    with pytest.raises(ValidationError) as exc:
        load_policy(tmp_path / "self.toml")
    assert "extends cycle" in str(exc.value)


def test_diamond_extends_is_not_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text('name = "base"\nallow = ["m:Base"]\n')
    (tmp_path / "left.toml").write_text('name = "left"\nextends = ["base.toml"]\n')
    (tmp_path / "right.toml").write_text('name = "right"\nextends = ["base.toml"]\n')
    (tmp_path / "top.toml").write_text('name = "top"\nextends = ["left.toml", "right.toml"]\n')
    assert "m:Base" in load_policy(tmp_path / "top.toml").effective().allow


def test_bad_parent_file_fails_the_child(tmp_path: Path) -> None:
    (tmp_path / "parent.toml").write_text('name = "parent"\nallow = ["os.system"]\n')
    (tmp_path / "child.toml").write_text('name = "child"\nextends = ["parent.toml"]\n')
    with pytest.raises(ValidationError) as exc:
        load_policy(tmp_path / "child.toml")
    text = str(exc.value)
    assert "extends.0" in text
    assert "'os.system' is not module:qualname" in text


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ('name = "x"\nallow = ["os.system"]\n', ["allow.0", "'os.system' is not module:qualname"]),
        ('name = "x"\nallowed = ["a:b"]\n', ["allowed", "Extra inputs are not permitted"]),
        ('name = "x"\n[limits]\nmax_depth = "10"\n', ["limits.max_depth", "valid integer"]),
        ('name = "x"\n[limits]\nmax_depth = 0\n', ["limits.max_depth", "greater than 0"]),
        ('name = "x"\n[limits]\nmax_dept = 10\n', ["limits.max_dept", "Extra inputs"]),
        ('name = "x"\nallow = ["subprocess:run"]\n', ["allow.0", "built-in deny list", "process"]),
        ('name = "x"\nallow = "a:b"\n', ["allow", "tuple"]),
    ],
)
def test_invalid_policy_files_fail_at_load_with_pointed_messages(
    tmp_path: Path, content: str, fragments: list[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(ValidationError) as exc:
        load_policy(path)
    text = str(exc.value) + "\n" + format_validation_error(exc.value)
    for fragment in fragments:
        assert fragment in text, (fragment, text)


def test_syntax_errors_name_the_file(tmp_path: Path) -> None:
    for name, content in (("bad.toml", "name = \n"), ("bad.json", "{"), ("bad.yaml", "a: [")):
        path = tmp_path / name
        path.write_text(content)
        with pytest.raises(PolicyFileError) as exc:
            load_policy(path)
        assert str(path) in str(exc.value)
        assert "syntax error" in str(exc.value)


def test_non_table_document_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(PolicyFileError, match="one table/object"):
        load_policy(path)


def test_missing_file_unknown_suffix_and_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match="no such policy file"):
        load_policy(tmp_path / "missing.toml")
    other = tmp_path / "p.ini"
    other.write_text("x")
    with pytest.raises(PolicyFileError, match="unsupported policy file type"):
        load_policy(other)
    with pytest.raises(PolicyFileError) as exc:
        load_policy("numpy-onyl")
    assert "unknown built-in policy 'numpy-onyl'" in str(exc.value)
    assert "numpy-only" in str(exc.value)  # lists the real ones
    with pytest.raises(TypeError):
        load_policy(42)  # type: ignore[arg-type]


def test_yaml_without_pyyaml_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml -> ImportError
    with pytest.raises(PolicyFileError) as exc:
        load_policy(path)
    assert "pip install 'safepickle[yaml]'" in str(exc.value)


def test_coerce_policy() -> None:
    default = coerce_policy(None)
    assert default.name == "data-only"
    assert coerce_policy("stdlib") is load_policy("stdlib")
    own = Policy.model_validate({"name": "own"})
    assert coerce_policy(own) is own
    with pytest.raises(TypeError):
        coerce_policy(3)  # type: ignore[arg-type]


def test_builtin_registry_lists_and_finds_every_file() -> None:
    names = policies.names()
    assert {"data-only", "stdlib", "numpy-only"} <= set(names)
    for name in names:
        path = policies.path(name)
        assert path.is_file() and path.suffix == ".toml"
        policy = load_policy(name)
        assert policy.name == name
        assert policy.description
    with pytest.raises(KeyError):
        policies.path("nope")


def test_builtin_policies_are_found_from_the_checkout_folder() -> None:
    folder = policies.folder()
    assert (folder / "data-only.toml").is_file()
    repo_policies = Path(__file__).resolve().parent.parent / "policies"
    if repo_policies.is_dir():
        assert sorted(p.stem for p in repo_policies.glob("*.toml")) == policies.names()


def test_builtin_policy_files_carry_comments_for_readers() -> None:
    for name in policies.names():
        text = policies.path(name).read_text()
        assert text.lstrip().startswith("#"), f"{name} has no header comment"
