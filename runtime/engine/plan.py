"""The action plan of one message (reference 4.2-4.6): what the filters decided.

``REPEAT`` is the one table of override classes (reference 4.5): *slot* actions keep the last
value, *flag* actions are idempotent, *list* actions accumulate every execution.
"""

from __future__ import annotations

from typing import Literal

from attrs import define, field, frozen

from filterlang.builtins import ACTIONS

Repeat = Literal["slot", "flag", "list"]

# Both come from the one signature table: final actions, and the override class of the others.
FINAL = frozenset(sig.name for sig in ACTIONS if sig.final)

REPEAT: dict[str, Repeat] = {sig.name: sig.repeat.value
                             for sig in ACTIONS if sig.repeat is not None}


def repeat_class(action: str) -> Repeat:
    return REPEAT.get(action, "list")


@frozen
class PlannedAction:
    """One executed action with its expanded arguments and the filter that ran it."""

    name: str
    args: tuple[str, ...]
    filter: str

    def render(self) -> str:
        return f"{self.name}({', '.join(repr(a) for a in self.args)})"


@frozen
class Copy:
    """A copy taken when the action ran (bcc, notify, archive, duplicate-quarantine ...)."""

    kind: str
    target: str
    data: bytes = field(repr=False)
    subject: str = ""
    return_path: str = ""


@define
class ActionPlan:
    actions: list[PlannedAction] = field(factory=list)
    slots: dict[str, PlannedAction] = field(factory=dict)
    flags: set[str] = field(factory=set)
    final: PlannedAction | None = None
    copies: list[Copy] = field(factory=list)
    log: list[str] = field(factory=list)
    tags: list[str] = field(factory=list)
    header_changes: list[str] = field(factory=list)
    errors: list[str] = field(factory=list)
    pending: str = ""  # the action being executed, for actions shared by several names

    def record(self, action: PlannedAction) -> None:
        self.actions.append(action)
        kind = repeat_class(action.name)
        if action.name in FINAL:
            self.final = action
        elif kind == "slot":
            self.slots[action.name] = action  # later one wins (reference 4.5)
        elif kind == "flag":
            self.flags.add(action.name)

    def slot(self, name: str) -> str | None:
        a = self.slots.get(name)
        return a.args[0] if a and a.args else None

    def disposition(self) -> str:
        """The outcome of the stage: final action, else quarantine, else deliver (4.4, 4.6)."""
        q = self.slot("quarantine")
        if self.final is not None:
            name = self.final.name
            if name in ("drop", "bounce"):
                return name
            if name in ("encrypt", "smime-gateway"):
                base = f"{name}({self.final.args[0] if self.final.args else ''})"
                return f"quarantine({q}) then {base}" if q else base
        if q:
            return f"quarantine({q})"
        return "deliver"
