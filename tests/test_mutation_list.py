"""The mutants `python mutation/check.py` must see killed still apply to the code as it is: a change that moves a
snippet fails here, in the fast tier, instead of leaving the list to rot until someone runs the check."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _check_module():
    spec = importlib.util.spec_from_file_location("mutation_check", ROOT / "mutation" / "check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


check = _check_module()
MUTANTS = check.load_mutants()


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_each_mutant_changes_exactly_one_place_of_the_code_and_names_tests_that_exist(mutant, tmp_path):
    (tmp_path / mutant.file).parent.mkdir(parents=True)
    shutil.copy2(ROOT / mutant.file, tmp_path / mutant.file)
    check.apply(mutant, tmp_path)  # ValueError unless its snippet occurs exactly once
    assert (tmp_path / mutant.file).read_text(encoding="utf-8") != (ROOT / mutant.file).read_text(encoding="utf-8")
    for test in mutant.tests:
        path, _, name = test.partition("::")
        assert (ROOT / path).is_file(), test
        if name:
            assert f"def {name.split('[')[0]}(" in (ROOT / path).read_text(encoding="utf-8"), test
