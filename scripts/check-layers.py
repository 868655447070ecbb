#!/usr/bin/env python3
"""Check that the engine's modules import one way: no cycle between them.

Reads every `use crate::…` / `crate::…::` / `super::…` path in engine/src,
maps each file to its top-level module (`run/plan.rs` → `run`, and, inside
`run/`, `store/` and `format/`, to its submodule too, e.g. `run::plan`), and
fails when the graph of top-level modules has a cycle, or when a file
imports a module listed after it in the layer order below (the order
lib.rs documents). Prints the graph with --graph.

It also holds the CLI to the engine's facade: cli/src names the engine's
items from the crate root (`sealpipe::encrypt`, `sealpipe::Stores`, …),
the services' documents (`sealpipe::format::{jobs, policy, deploy}`), and
nothing deeper.
"""
import os, re, sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "engine", "src")
# Bottom to top: a module may import only modules before it in this list.
LAYERS = ["error", "events", "retry", "size", "format", "aws", "keys", "cipher", "store", "pipeline", "run"]

def module_of(rel):
    parts = rel[:-3].split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    return parts  # e.g. ["run", "plan"]

def targets(text, mod):
    found = set()
    text = re.sub(r"//[^\n]*", "", text)  # comments and doc links do not count
    for m in re.finditer(r"\bcrate::([a-z_][a-z0-9_]*)(?:::([a-z_][a-z0-9_]*))?", text):
        found.add((m.group(1), m.group(2)))
    for m in re.finditer(r"\bsuper::([a-z_][a-z0-9_]*)", text):
        if len(mod) >= 2:
            found.add((mod[0], m.group(1)))
    return found

def rust_files(root):
    """(path, path relative to root) of every .rs file below root."""
    for dirpath, _, files in os.walk(root):
        for f in sorted(files):
            if f.endswith(".rs"):
                path = os.path.join(dirpath, f)
                yield path, os.path.relpath(path, root)

def main():
    edges = defaultdict(set)      # top-level graph
    sub = defaultdict(set)        # within a folder: submodule graph
    problems = []
    for path, rel in rust_files(ROOT):
        mod = module_of(rel)
        if mod in (["lib"], ["main"]):
            continue
        text = open(path, encoding="utf-8").read()
        # Unit tests may reach anywhere.
        text = text.split("#[cfg(test)]\nmod tests", 1)[0]
        for top, second in targets(text, mod):
            if top not in LAYERS:
                continue
            if top != mod[0]:
                edges[mod[0]].add(top)
                if LAYERS.index(top) > LAYERS.index(mod[0]):
                    problems.append(f"{rel}: imports {top}, which is above {mod[0]} in the layers")
            elif len(mod) >= 2 and second and second != mod[1]:
                sub[(mod[0], mod[1])].add((top, second))
    # Cycles among submodules of one folder.
    def cycle(graph):
        state = {}
        def visit(n, stack):
            state[n] = 1
            for m in sorted(graph.get(n, ())):
                if state.get(m) == 1:
                    return stack + [n, m]
                if m not in state:
                    c = visit(m, stack + [n])
                    if c:
                        return c
            state[n] = 2
            return None
        for n in sorted(graph):
            if n not in state:
                c = visit(n, [])
                if c:
                    return c
        return None
    c = cycle(edges)
    if c:
        problems.append("import cycle between modules: " + " -> ".join(c))
    c = cycle(sub)
    if c:
        problems.append("import cycle inside a folder: " + " -> ".join("::".join(x) for x in c))
    problems += facade_problems()
    if "--graph" in sys.argv:
        for m in LAYERS:
            print(f"{m:9} -> {', '.join(sorted(edges.get(m, ()), key=LAYERS.index)) or '(nothing)'}")
        for (a, b), ts in sorted(sub.items()):
            print(f"  {a}::{b} -> {', '.join(sorted('::'.join(t) for t in ts))}")
    if problems:
        for p in problems:
            print("check-layers:", p, file=sys.stderr)
        return 1
    print(f"check-layers: {len(LAYERS)} layers, imports point one way, no cycles; the CLI names the engine through its facade")
    return 0

CLI = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cli", "src")
# What the CLI may name besides the crate root: the services' documents.
CLI_MAY_REACH = {("format", "jobs"), ("format", "policy"), ("format", "deploy")}

def facade_problems():
    """Paths `sealpipe::module::…` in the CLI that go past the facade."""
    found = []
    for path, rel in rust_files(CLI):
        text = re.sub(r"//[^\n]*", "", open(path, encoding="utf-8").read())
        for n, line in enumerate(text.split("\n"), 1):
            for m in re.finditer(r"\bsealpipe::([a-z_][a-z0-9_]*)::(\{)?([a-z_][a-z0-9_]*)?", line):
                top, second = m.group(1), m.group(3)
                if (top, second) not in CLI_MAY_REACH:
                    found.append(f"cli/src/{rel}:{n}: sealpipe::{top}::… goes past the engine's facade (name it from the crate root, lib.rs)")
    return found

sys.exit(main())
