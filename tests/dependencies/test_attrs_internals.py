"""filterlang.ast.slot_maker fills attrs classes' slots directly: what it assumes still holds.

slot_maker builds frozen nodes by calling each slot's descriptor instead of attrs' ``__init__``
(bench/compile.py: 12% of the front end's CPU). That is right only while attrs makes these
classes with one slot per field, stores each argument unchanged, and keeps no other per-instance
state (a cached hash, say) that its ``__init__`` would set. This checks that for every class
slot_maker is used on, and that the fields still describe what slot_maker reads.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import attrs
import pytest
from dep_internals import changed

ROOT = Path(__file__).resolve().parents[2]
WHERE = "filterlang/ast.py (slot_maker)"


def _made_classes() -> list[tuple[str, type]]:
    """Every class that a module under filterlang/ passes to slot_maker."""
    found: list[tuple[str, type]] = []
    for path in sorted((ROOT / "filterlang").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        names = [node.args[0].id for node in ast.walk(tree)
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                 and node.func.id == "slot_maker" and node.args
                 and isinstance(node.args[0], ast.Name)]
        if names:
            module = importlib.import_module(f"filterlang.{path.stem}")
            found += [(f"{path.stem}.{name}", getattr(module, name)) for name in names]
    return found


CLASSES = _made_classes()


def test_the_classes_are_found() -> None:
    assert {"ast.Span", "build.String", "compile.CFilter"} <= {name for name, _ in CLASSES}


@pytest.mark.parametrize(("name", "cls"), CLASSES, ids=[name for name, _ in CLASSES])
def test_one_member_slot_per_field_and_no_other_state(name: str, cls: type) -> None:
    fields = [f.name for f in attrs.fields(cls)]
    slots = set(cls.__dict__.get("__slots__", ()))
    assert set(fields) <= slots, changed("attrs", attrs.__version__,
                                         f"the slots of {name}", WHERE)
    extra = slots - set(fields) - {"__weakref__"}
    assert not extra, changed("attrs", attrs.__version__,
                              f"extra per-instance state {sorted(extra)} in {name}", WHERE)
    for field in fields:
        descriptor = cls.__dict__[field]
        assert type(descriptor).__name__ == "member_descriptor", changed(
            "attrs", attrs.__version__, f"{name}.{field} is no plain slot", WHERE)


def test_the_field_facts_slot_maker_reads_are_there() -> None:
    for field in attrs.fields(CLASSES[0][1]):
        for fact in ("init", "validator", "converter", "alias", "kw_only"):
            assert hasattr(field, fact), changed("attrs", attrs.__version__,
                                                 f"Attribute.{fact}", WHERE)
