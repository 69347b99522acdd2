"""Config: every field's rule, unknown keys with suggestions, overrides, TOML round trip, presets."""

from __future__ import annotations

from dataclasses import fields

import pytest

from tui_trainer.config import (
    SECTION_TYPES,
    ConfigError,
    RunConfig,
    apply_overrides,
    check_value,
    from_dict,
    list_presets,
    load_preset,
    parse_override,
    save_user_preset,
    to_toml,
)

REQUIRED_PRESETS = {"spirals-mlp", "moons-mlp", "circles-mlp", "xor-mlp", "regression-toy", "deep-sigmoid-spirals"}


def _bad_values(f) -> list:
    """Values that break a field's rule, derived from its metadata."""
    meta, kind = f.metadata, f.type if isinstance(f.type, str) else f.type.__name__
    bad: list = []
    if kind == "bool":
        bad += ["yes", 1]
    elif kind in ("int", "float"):
        bad.append("x")
        if "min" in meta:
            bad.append(meta["min"] - 1 if kind == "int" else meta["min"] - 0.5)
            if meta.get("min_open"):
                bad.append(meta["min"])
        if "max" in meta:
            bad.append(meta["max"] + 1)
            if meta.get("max_open"):
                bad.append(meta["max"])
        if kind == "int":
            bad.append(1.5)
        else:
            bad.append(float("nan"))
    elif kind == "str":
        bad.append(3)
        if "choices" in meta:
            bad.append("definitely-not-allowed")
        if meta.get("factory"):  # a factory: 'module:function' or 'file.py:function'
            bad += ["my_model.py", "not a module:build", "x.py:not-a-name"]
    elif kind == "dict":  # a factory's keyword arguments
        bad += [3, "[1, 2]", {"not a name": 1}]
    elif kind == "list":
        bad.append("64")
        bad.append(["zzz"] if "items" in meta else [0])
    elif kind == "float | list":
        bad += ["x", [0.1, "x"], [meta["max"]], meta["max"]]
    elif kind == "list[float]":
        bad += ["x", [float("nan")], [[1.0]]]
        if "min" in meta:
            bad.append([meta["min"]])
    elif kind == "list[list[float]]":
        bad += [[1.0], [[1.0, 2.0, 3.0]], [[1.0, "x"]], [], "x"]
    elif kind == "list[dict]":
        bad += [[[1.0]], [{"bias": [1.0]}], [{"weight": [[1.0]], "bias": [1.0, 2.0]}], [{"weight": [[1.0], [1.0, 2.0]]}],
                [{"weight": [[1.0], [2.0]]}, {"weight": [[1.0]]}]]
    return bad


ALL_FIELDS = [(s, f) for s, t in SECTION_TYPES.items() for f in fields(t)]


@pytest.mark.parametrize(("section", "f"), ALL_FIELDS, ids=[f"{s}.{f.name}" for s, f in ALL_FIELDS])
def test_every_field_rejects_bad_values_and_accepts_its_default(section, f):
    default = getattr(SECTION_TYPES[section](), f.name)
    assert check_value(section, f.name, default) == default
    bad_values = _bad_values(f)
    assert bad_values, f"no bad values derived for {section}.{f.name}"
    for bad in bad_values:
        with pytest.raises(ConfigError) as err:
            check_value(section, f.name, bad)
        msg = str(err.value)
        assert f"{section}.{f.name}" in msg and "\n" not in msg


def test_range_message_names_what_is_allowed():
    with pytest.raises(ConfigError, match=r"optimizer.lr = -1.0: must be > 0"):
        check_value("optimizer", "lr", -1.0)
    with pytest.raises(ConfigError, match=r"model.dropout = 1.0: must be >= 0 and < 1"):
        check_value("model", "dropout", 1.0)
    with pytest.raises(ConfigError, match=r"data.batch_size = 0: must be >= 1"):
        check_value("data", "batch_size", 0)


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown key optimizer.lrr \(did you mean 'lr'\?\); allowed: name, lr"):
        from_dict({"optimizer": {"lrr": 0.1}}, source="p.toml")
    with pytest.raises(ConfigError, match=r"p.toml: unknown key 'optimiser' \(did you mean 'optimizer'\?\)"):
        from_dict({"optimiser": {}}, source="p.toml")
    with pytest.raises(ConfigError, match=r"'adamm': not allowed \(did you mean 'adam'\?\)"):
        from_dict({"optimizer": {"name": "adamm"}})


def test_torchvision_arch_prefix():
    assert check_value("model", "arch", "torchvision:resnet18") == "torchvision:resnet18"
    with pytest.raises(ConfigError, match="did you mean 'resnet18'"):
        check_value("model", "arch", "torchvision:resnet81")


def test_cross_checks():
    with pytest.raises(ConfigError, match="data.root is empty"):
        from_dict({"data": {"dataset": "imagefolder"}})
    with pytest.raises(ConfigError, match="val_acc' has no meaning for regression"):
        from_dict({"data": {"dataset": "regression-toy"}, "regularization": {"monitor": "val_acc"}})
    with pytest.raises(ConfigError, match="needs images"):
        from_dict({"model": {"arch": "cnn"}})


def test_override_parsing_and_validation():
    assert parse_override("optimizer.lr=0.01") == ("optimizer", "lr", 0.01)
    assert parse_override("model.hidden=[8, 4]") == ("model", "hidden", [8, 4])
    assert parse_override("optimizer.name=sgd") == ("optimizer", "name", "sgd")
    assert parse_override("model.batch_norm=true") == ("model", "batch_norm", True)
    cfg = apply_overrides(RunConfig(), ["optimizer.lr=0.5", "model.hidden=[3]"])
    assert cfg.optimizer.lr == 0.5 and cfg.model.hidden == [3]
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_override("lr=0.1")
    with pytest.raises(ConfigError, match=r"--set optimizer.lrr=1: unknown key optimizer.lrr \(did you mean 'lr'"):
        apply_overrides(RunConfig(), ["optimizer.lrr=1"])
    with pytest.raises(ConfigError, match="must be > 0"):
        apply_overrides(RunConfig(), ["optimizer.lr=-3"])


def test_toml_round_trip_and_user_presets(tmp_path):
    cfg = apply_overrides(load_preset("xor-mlp"), ["data.augment=[]", 'data.target="a \\"quoted\\" one"'])
    assert cfg.data.target == 'a "quoted" one'
    text = to_toml(cfg)
    path = tmp_path / "x.toml"
    path.write_text(text)
    assert load_preset(str(path)).to_dict() == cfg.to_dict()
    saved = save_user_preset(cfg, "my-xor")
    assert saved.exists() and "my-xor" in list_presets()
    assert load_preset("my-xor").model.hidden == cfg.model.hidden
    with pytest.raises(ConfigError, match="letters, digits"):
        save_user_preset(cfg, "../evil")


def test_builtin_presets_all_load():
    names = set(list_presets())
    assert REQUIRED_PRESETS <= names
    for name in names:
        cfg = load_preset(name)
        assert cfg.name == name and cfg.description


def test_bad_preset_file_messages(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[optimizer]\nlr = -1\n")
    with pytest.raises(ConfigError, match=r"bad.toml: optimizer.lr = -1.0: must be > 0"):
        load_preset(str(bad))
    bad.write_text("[optimizer\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_preset(str(bad))
    with pytest.raises(ConfigError, match=r"unknown preset 'spirals-mpl' \(did you mean 'spirals-mlp'\?\)"):
        load_preset("spirals-mpl")
    with pytest.raises(ConfigError, match="preset file not found"):
        load_preset(str(tmp_path / "missing.toml"))
