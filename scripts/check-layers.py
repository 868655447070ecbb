#!/usr/bin/env python3
"""Check that the engine's modules import one way: no cycle between them.

Reads every `use crate::…` / `crate::…::` / `super::…` path in engine/src,
maps each file to its top-level module (`run/plan.rs` → `run`, and, inside
`run/`, `store/` and `format/`, to its submodule too, e.g. `run::plan`), and
fails when the graph of top-level modules has a cycle, or when a file
imports a module listed after it in the layer order below (the order
lib.rs documents). Prints the graph with --graph.
"""
import os, re, sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "engine", "src")
# Bottom to top: a module may import only modules before it in this list.
LAYERS = ["error", "retry", "size", "format", "aws", "keys", "cipher", "store", "pipeline", "run"]

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

def main():
    edges = defaultdict(set)      # top-level graph
    sub = defaultdict(set)        # within a folder: submodule graph
    problems = []
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, ROOT)
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
    if "--graph" in sys.argv:
        for m in LAYERS:
            print(f"{m:9} -> {', '.join(sorted(edges.get(m, ()), key=LAYERS.index)) or '(nothing)'}")
        for (a, b), ts in sorted(sub.items()):
            print(f"  {a}::{b} -> {', '.join(sorted('::'.join(t) for t in ts))}")
    if problems:
        for p in problems:
            print("check-layers:", p, file=sys.stderr)
        return 1
    print(f"check-layers: {len(LAYERS)} layers, imports point one way, no cycles")
    return 0

sys.exit(main())
