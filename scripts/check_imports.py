#!/usr/bin/env python3
"""Fails when the top-level modules of src/ import each other in a cycle.

A module is a file or directory directly under src/ (`settings`, `event`, `ingest`, ...); it
depends on another when any of its files names `crate::<other>` (in a `use`, a path, or a `use
crate::{a, b::c}` group). Test code counts too. Prints the cycles found, exit 1; or one line, exit 0.

    python3 scripts/check_imports.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
ROOTS = {"lib.rs", "main.rs"}


def modules() -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for path in SRC.iterdir():
        if path.is_dir():
            out[path.name] = sorted(path.rglob("*.rs"))
        elif path.suffix == ".rs" and path.name not in ROOTS:
            out.setdefault(path.stem, []).append(path)
    return out


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def group_heads(body: str) -> list[str]:
    """The first segment of each path in a `{...}` use group (`a::{x, y}, b` -> a, b)."""
    flat = body
    while (inner := re.sub(r"\{[^{}]*\}", "", flat)) != flat:
        flat = inner
    return [re.split(r"::|\s", item.strip(), maxsplit=1)[0] for item in flat.split(",") if item.strip()]


def dependencies(files: list[Path], names: set[str]) -> set[str]:
    deps: set[str] = set()
    for path in files:
        text = strip_comments(path.read_text())
        deps.update(re.findall(r"\bcrate::([a-z_][a-z0-9_]*)\b", text))
        for group in re.finditer(r"\bcrate::\{", text):
            depth, start = 1, group.end()
            end = start
            while depth and end < len(text):
                depth += {"{": 1, "}": -1}.get(text[end], 0)
                end += 1
            deps.update(group_heads(text[start : end - 1]))
    return deps & names


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main() -> int:
    mods = modules()
    names = set(mods)
    graph = {name: dependencies(files, names) - {name} for name, files in mods.items()}
    found = cycles(graph)
    if found:
        for component in found:
            edges = [f"{a} -> {b}" for a in component for b in sorted(graph[a]) if b in component]
            print(f"import cycle among {', '.join(component)}: {'; '.join(edges)}")
        return 1
    print(f"imports: {len(graph)} top-level modules of src/, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
