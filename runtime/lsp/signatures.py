"""The signature table as an editor shows it: hover text and completion snippets.

The text is the table's own, as ``docs/language.md`` prints it (the same signature line, the
same columns), so the editor and the guide never disagree.
"""

from __future__ import annotations

from filterlang import builtins as b
from filterlang._docgen import signature

# Parameter types whose values are quoted strings in the source.
_UNQUOTED = frozenset({b.T.INT, b.T.DECIMAL, b.T.SIZE, b.T.FLAG01, b.T.LIST})

#: Parameter type -> the configured kind of name it takes (the keys of ``ResourceNames``).
RESOURCE_KINDS: dict[b.T, str] = {
    b.T.QUARANTINE: "quarantines",
    b.T.PROFILE: "profiles",
    b.T.ENCRYPTION_PROFILE: "encryption_profiles",
    b.T.DICTIONARY: "dictionaries",
    b.T.LISTENER: "listeners",
    b.T.TEXT_RESOURCE: "text_resources",
}


def rule_doc(sig: b.RuleSig) -> str:
    """Markdown for a rule: its signature, meaning, form and example."""
    form = sig.form.value + (f" ({sig.operand})" if sig.operand else "")
    if sig.multi_valued:
        form += ", several values"
    lines = [
        f"```filterlang\n{signature(sig.name, sig.params)}\n```",
        sig.description,
        "",
        f"- form: {form}",
        f"- comparators: {' '.join(sig.comparators) or '—'}",
        f"- service: {sig.dep or '—'}",
        f"- content filter: {sig.cf or '—'}",
        f"- example: `{sig.example}`",
    ]
    return "\n".join(lines)


def action_doc(sig: b.ActionSig) -> str:
    """Markdown for an action: its signature, effect, finality and example."""
    var = ", ".join(p.name for p in sig.params if p.expands_vars) or "—"
    lines = [
        f"```filterlang\n{signature(sig.name, sig.params)};\n```",
        sig.description,
        "",
        f"- final: {'yes' if sig.final else 'no'}",
        f"- repeat: {sig.repeat.value if sig.repeat else '—'}",
        f"- variables in: {var}",
        f"- content filter: {sig.cf or '—'}",
        f"- example: `{sig.example}`",
    ]
    return "\n".join(lines)


def variable_doc(name: str) -> str | None:
    """Markdown for an action variable (any case), or None when there is no such variable."""
    text = b.VARIABLES.get(name.lower())
    return None if text is None else f"`${name}`: {text}"


def _placeholder(number: int, param: b.Param) -> str:
    inner = "${" + f"{number}:{param.name}" + "}"
    return inner if param.type in _UNQUOTED else f"'{inner}'"


def _args(params: tuple[b.Param, ...]) -> str:
    required = [p for p in params if p.required]
    return ", ".join(_placeholder(i, p) for i, p in enumerate(required, 1))


def rule_snippet(sig: b.RuleSig) -> str:
    """A snippet that writes the rule with its required arguments and, if it needs one, a
    comparison."""
    text = sig.name
    if any(p.required for p in sig.params):
        text += f"({_args(sig.params)})"
    if sig.form is b.Form.COMPARISON and sig.operand is not None:
        n = sum(p.required for p in sig.params) + 1
        # A list operand is written as one string ('Pass, SoftFail').
        operand = b.Param("value", b.T.STRING if sig.operand is b.T.LIST else sig.operand)
        text += f" {sig.comparators[0]} {_placeholder(n, operand)}"
    return text


def action_snippet(sig: b.ActionSig) -> str:
    """A snippet that writes the action call with its required arguments and the ';'."""
    return f"{sig.name}({_args(sig.params)});"


def param_type(owner: str | None, index: int) -> b.T | None:
    """The type of argument ``index`` of rule or action ``owner`` (-1: a rule's operand)."""
    if owner is None:
        return None
    rule = b.lookup_rule(owner)
    if rule is not None:
        if index < 0:
            return rule.operand
        return rule.params[index].type if index < len(rule.params) else None
    action = b.lookup_action(owner)
    if action is not None and 0 <= index < len(action.params):
        return action.params[index].type
    return None
