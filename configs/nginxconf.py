"""A tiny nginx configuration serializer: directives and blocks as data, text out.

Renderers build a tree of `Directive` and `Block` values and call `serialize`; every
argument is quoted by one rule here, so a value holding a space, `;`, `{`, `}`, a quote or
a backslash cannot end a directive early or open a block. nginx expands `$variables` in
quoted and bare arguments alike, so quoting never changes what a variable means.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# what nginx reads as one bare word; anything else is double-quoted
_BARE = re.compile(r"[A-Za-z0-9_./:=$@%+,*?|^~()\[\]-]+")
# a `{` followed by digits is nginx's regex quantifier only inside quotes; `#` starts a
# comment in a bare word; both force quoting, which _BARE already does by excluding them


@dataclass(frozen=True)
class Directive:
    name: str
    args: tuple[str, ...] = ()

    def __init__(self, name: str, *args: str | int) -> None:
        object.__setattr__(self, "name", _name(name))
        object.__setattr__(self, "args", tuple(str(a) for a in args))


@dataclass(frozen=True)
class Block:
    name: str
    args: tuple[str, ...] = ()
    children: tuple[Node, ...] = field(default=())

    def __init__(self, name: str, *args: str | int, children: Iterable[Node | None] = ()) -> None:
        object.__setattr__(self, "name", _name(name))
        object.__setattr__(self, "args", tuple(str(a) for a in args))
        object.__setattr__(self, "children", tuple(c for c in children if c is not None))


@dataclass(frozen=True)
class Comment:
    text: str


@dataclass(frozen=True)
class MapEntry:
    """One `source value;` line of a `map` block: both quoted by the one rule (a source may be
    `""` or a regular expression, which no directive name could hold)."""

    key: str
    value: str


Node = Directive | Block | Comment | MapEntry


def _name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*|@[A-Za-z0-9_]+", name):
        raise ValueError(f"not an nginx directive name: {name!r}")
    return name


def quote(arg: str) -> str:
    """One nginx argument: bare when nginx reads it as one word, else double-quoted."""
    if arg and _BARE.fullmatch(arg):
        return arg
    if "\n" in arg or "\r" in arg:
        raise ValueError(f"an nginx argument cannot hold a line break: {arg!r}")
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def serialize(nodes: Sequence[Node], indent: int = 0) -> str:
    pad = "    " * indent
    lines: list[str] = []
    for node in nodes:
        if isinstance(node, Comment):
            for line in node.text.splitlines():
                lines.append(f"{pad}# {line}".rstrip())
        elif isinstance(node, Directive):
            lines.append(pad + " ".join([node.name, *(quote(a) for a in node.args)]) + ";")
        elif isinstance(node, MapEntry):
            lines.append(f"{pad}{quote(node.key)} {quote(node.value)};")
        else:
            header = " ".join([node.name, *(quote(a) for a in node.args)])
            lines.append(f"{pad}{header} {{")
            body = serialize(node.children, indent + 1)
            if body:
                lines.append(body.rstrip("\n"))
            lines.append(f"{pad}}}")
    return "\n".join(lines) + ("\n" if lines else "")


def find(nodes: Sequence[Node], name: str, *args: str) -> list[Node]:
    """Children named `name` whose arguments start with `args` (for tests and mapping)."""
    return [n for n in nodes if isinstance(n, Directive | Block) and n.name == name and n.args[: len(args)] == args]
