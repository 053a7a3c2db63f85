"""Which values flag gates a rendered resource? A small, explainable reading of helm templates.

Helm tells us which template file produced a manifest (`# Source:`), not which `{{ if }}` it sat
in. This module reads that file: it tracks the Go-template blocks (`if`/`else`/`with`/`range`,
`define`) open at each top-level `kind: <Kind>` line, and keeps the conditions that mention
`.Values.<path>`. When a file holds several manifests of the same kind, the literal parts of each
`metadata.name` line are matched against the rendered name; if that still leaves several, only the
guards common to all of them are kept (never claim a gate that might not be there).

A static reading can be fooled (helpers, `include`d conditions), so the shell confirms it: it renders
the new chart again with the guard's boolean flags switched off (`disabling_settings`) and the rules
only call a resource gated when it really disappears.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from rollback_verifier.lint_chart.model import FlagSetting

_BLOCK_OPENERS = ("if", "with", "range", "define", "block")
_GUARDS = ("if", "with", "range")
_VALUES_REF = re.compile(r"(?P<not>\bnot\s+)?(?<![\w)])\$?[A-Za-z_]*\.Values(?P<path>(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
_TOP_KIND = re.compile(r"^kind:[ \t]*[\"']?(?P<kind>[A-Za-z0-9]*)[\"']?[ \t]*(?:#.*)?$", re.M)
_DOC_END = re.compile(r"^(?:---|kind:)", re.M)
_NAME_LINE = re.compile(r"^[ \t]+name:[ \t]*(?P<value>.*)$", re.M)


@dataclass(frozen=True)
class ValuesRef:
    """`.Values.a.b` in a condition; `negated` when it reads `not .Values.a.b`."""

    path: tuple[str, ...]
    negated: bool

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class Guard:
    """An enclosing block that decides whether the manifest renders.

    keyword: `if`, `with` or `range`; condition: its pipeline text; in_else: the manifest sits in the
    block's `{{ else }}` branch (so the condition must be false for it to render).
    """

    keyword: str
    condition: str
    in_else: bool = False

    @property
    def refs(self) -> tuple[ValuesRef, ...]:
        found = []
        for match in _VALUES_REF.finditer(self.condition):
            negated = bool(match.group("not")) != self.in_else
            found.append(ValuesRef(tuple(match.group("path").split(".")[1:]), negated))
        return tuple(found)

    def describe(self) -> str:
        text = f"{{{{ {self.keyword} {self.condition} }}}}"
        return f"the {{{{ else }}}} of {text}" if self.in_else else text


@dataclass(frozen=True)
class _Token:
    start: int
    end: int
    text: str
    is_action: bool


def _tokens(source: str) -> Iterator[_Token]:
    """Text and `{{ action }}` tokens; quotes and comments may contain `}}`."""
    pos = 0
    length = len(source)
    while pos < length:
        opening = source.find("{{", pos)
        if opening < 0:
            yield _Token(pos, length, source[pos:], False)
            return
        if opening > pos:
            yield _Token(pos, opening, source[pos:opening], False)
        cursor = opening + 2
        body_start = cursor
        if source.startswith("-", cursor) and source[cursor + 1 : cursor + 2].isspace():
            body_start = cursor + 1
        stripped = source[body_start:].lstrip()
        if stripped.startswith("/*"):
            close_comment = source.find("*/", body_start)
            cursor = length if close_comment < 0 else close_comment + 2
        while cursor < length:
            char = source[cursor]
            if char in "\"`'":
                closing = cursor + 1
                while closing < length and source[closing] != char:
                    closing += 2 if source[closing] == "\\" and char != "`" else 1
                cursor = closing + 1
                continue
            if source.startswith("}}", cursor):
                break
            cursor += 1
        body_end = cursor
        if body_end - 2 >= body_start and source[body_end - 1] == "-" and source[body_end - 2].isspace():
            body_end -= 1
        yield _Token(opening, min(cursor + 2, length), source[body_start:body_end].strip(), True)
        pos = min(cursor + 2, length)


@dataclass
class _Frame:
    keyword: str
    condition: str
    in_else: bool = False


def _split_keyword(action: str) -> tuple[str, str]:
    word, _, rest = action.partition(" ")
    return word.strip(), rest.strip()


def _guards_of(stack: list[_Frame]) -> tuple[Guard, ...] | None:
    """The guards of an open-block stack; None inside a `define` (a helper body, not this manifest)."""
    if any(frame.keyword in ("define", "block") for frame in stack):
        return None
    return tuple(Guard(f.keyword, f.condition, f.in_else) for f in stack if f.keyword in _GUARDS)


@dataclass(frozen=True)
class _KindSite:
    position: int
    guards: tuple[Guard, ...]


def _kind_sites(source: str, kind: str) -> list[_KindSite]:
    sites: list[_KindSite] = []
    templated: list[_KindSite] = []
    stack: list[_Frame] = []
    for token in _tokens(source):
        if not token.is_action:
            guards = _guards_of(stack)
            if guards is None:
                continue
            for match in _TOP_KIND.finditer(token.text):
                site = _KindSite(token.start + match.start(), guards)
                if match.group("kind") == kind:
                    sites.append(site)
                elif not match.group("kind"):  # `kind: {{ ... }}`: could be ours
                    templated.append(site)
            continue
        word, rest = _split_keyword(token.text)
        if word in _BLOCK_OPENERS:
            stack.append(_Frame(word, rest))
        elif word == "else" and stack:
            inner_word, inner_rest = _split_keyword(rest)
            top = stack[-1]
            if inner_word in ("if", "with"):
                # `else if B`: B must hold (and A must not); keep B, the flag this branch names.
                stack[-1] = _Frame(inner_word, inner_rest)
            else:
                stack[-1] = _Frame(top.keyword, top.condition, in_else=True)
        elif word == "end" and stack:
            stack.pop()
    return sites or templated


def _name_score(source: str, position: int, name: str) -> int | None:
    """How well the manifest starting at `position` matches the rendered `name`: the number of
    literal characters of its `name:` line found in it, in order (more is more specific);
    -1 when it cannot be that manifest, None when it has no `name:` line."""
    following = _DOC_END.search(source, position + 1)
    chunk = source[position : following.start() if following else len(source)]
    line = _NAME_LINE.search(chunk)
    if not line:
        return None
    value = line.group("value")
    pieces = [piece.strip().strip("\"'") for piece in re.split(r"\{\{.*?\}\}", value)]
    pieces = [piece for piece in pieces if piece]
    if "{{" not in value:
        return len(name) if pieces and pieces[0] == name else -1
    cursor = 0
    for piece in pieces:
        found = name.find(piece, cursor)
        if found < 0:
            return -1
        cursor = found + len(piece)
    return sum(len(piece) for piece in pieces)


def guards_for(source: str, kind: str, name: str) -> tuple[Guard, ...] | None:
    """The conditions around the manifest of `kind`/`name` in a template file, outermost first.

    Only guards that mention `.Values` are returned. None when the file has no top-level
    `kind:` line for it (it comes from a helper or another file): the guards are unknown.
    """
    sites = _kind_sites(source, kind)
    if not sites:
        return None
    scores = [_name_score(source, site.position, name) for site in sites]
    best = max((score for score in scores if score is not None), default=None)
    candidates = [site for site, score in zip(sites, scores, strict=True) if score is None or score == best]
    if best is None or best < 0:
        candidates = sites  # no name line matched: cannot tell them apart
    common = [guard for guard in candidates[0].guards if all(guard in s.guards for s in candidates[1:])]
    return tuple(guard for guard in common if guard.refs)


def lookup(values: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    """The value at `path`, or None when any segment is missing (helm's nil)."""
    node: Any = values
    for segment in path:
        if not isinstance(node, Mapping) or segment not in node:
            return None
        node = node[segment]
    return node


def is_set(values: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    node: Any = values
    for segment in path:
        if not isinstance(node, Mapping) or segment not in node:
            return False
        node = node[segment]
    return True


def boolean_refs(guards: tuple[Guard, ...], values: Mapping[str, Any]) -> tuple[ValuesRef, ...]:
    """The refs that are boolean flags in `values` (or unset: a flag nobody defaulted)."""
    refs: list[ValuesRef] = []
    for guard in guards:
        for ref in guard.refs:
            value = lookup(values, ref.path)
            if (value is None or isinstance(value, bool)) and ref not in refs:
                refs.append(ref)
    return tuple(refs)


def disabling_settings(refs: tuple[ValuesRef, ...]) -> tuple[FlagSetting, ...]:
    """The values that switch the guarded manifest off: `false` for a flag, `true` for a `not` flag."""
    return tuple(sorted({(ref.path, ref.negated) for ref in refs}))


def settings_to_values(settings: tuple[FlagSetting, ...]) -> dict[str, Any]:
    """A values document that sets each flag, for an extra `-f` file."""
    document: dict[str, Any] = {}
    for path, value in settings:
        node = document
        for segment in path[:-1]:
            child = node.get(segment)
            if not isinstance(child, dict):
                child = {}
                node[segment] = child
            node = child
        node[path[-1]] = value
    return document
