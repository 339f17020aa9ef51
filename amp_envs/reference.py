"""Plain-Python reference answers, one question at a time, computed from the facts alone.

This is deliberately the naive way: parse the visible facts into dicts, then iterate the
permutation k times, evaluate the program recursively, search the graph, enumerate the matching
strings. It shares nothing with the engine's precomputed tables, so the tests use it as an
independent check of the engine's ground truth (and of what the facts actually say), and the
benchmark uses it as the same-run speed reference for one-question-at-a-time code.
"""

from __future__ import annotations

from collections import deque
from itertools import product

import numpy as np

from amp_envs.tasks.base import PAD, UNKNOWN, Task


def reference_answer(task: Task, facts: np.ndarray, question: np.ndarray) -> int:
    """The answer token to `question` given `facts` (F, fact_len), or `?` if it is malformed."""
    rows = [tuple(int(t) for t in row) for row in facts if any(row)]
    q = [int(t) for t in question]
    solver = _SOLVERS[task.name]
    try:
        return solver(task, rows, q)
    except (KeyError, ValueError, IndexError):
        return UNKNOWN


def _permutation_power(task: Task, rows: list[tuple[int, ...]], q: list[int]) -> int:
    v = task.vocab
    s = {x: y for x, y in rows}
    if q[0] != v.sym("pow") or any(b not in (v.sym("0"), v.sym("1")) for b in q[1:-1]):
        return UNKNOWN
    k = int("".join("1" if b == v.sym("1") else "0" for b in q[1:-1]), 2)
    x = q[-1]
    if k < 1 or x not in s:
        return UNKNOWN
    for _ in range(k):
        x = s[x]
    return x


def _sequential_assignment(task: Task, rows: list[tuple[int, ...]], q: list[int]) -> int:
    v = task.vocab
    defs, table = {}, {}
    for row in rows:
        if row[0] == v.sym("f"):
            table[row[1], row[2]] = row[3]
        else:
            defs[row[0]] = row[2:] if row[3] != PAD else (row[2],)
    eval_sum = task.name == "EvalSum"

    def f(a: int, b: int) -> int:
        if eval_sum:
            (x, ok_a), (y, ok_b) = v.number_value(a), v.number_value(b)
            if not (ok_a and ok_b and 0 <= x < 8 and 0 <= y < 8):
                raise ValueError
            return int(v.number((x + y) % 8))
        return table[a, b]

    def value(x: int) -> int:
        d = defs[x]
        return d[0] if len(d) == 1 else f(value(d[0]), value(d[1]))

    kind = v.decode(q[0])
    if kind in ("value", "arg1", "arg2") and q[2] != PAD:
        return UNKNOWN
    if kind == "value":
        return value(q[1])
    if kind in ("arg1", "arg2"):
        d = defs[q[1]]
        return d[0] if len(d) == 1 else d[0 if kind == "arg1" else 1]
    if kind == "f":
        return f(q[1], q[2])
    return UNKNOWN


def _union_find(task: Task, rows: list[tuple[int, ...]], q: list[int]) -> int:
    v = task.vocab
    given, nbrs = {}, {}
    for x, rel, y in rows:
        nbrs.setdefault(x, [])
        if rel == v.sym("="):
            given[x] = y
        else:
            nbrs.setdefault(y, [])
            nbrs[x].append(y)
            nbrs[y].append(x)
    kind, x = v.decode(q[0]), q[1]
    if x not in nbrs or (kind != "adjacent" and q[2] != PAD):
        return UNKNOWN
    # search from x to its class's root: the path gives depth, parent and value
    prev, frontier, root = {x: x}, deque([x]), None
    while frontier:
        u = frontier.popleft()
        if u in given:
            root = u
            break
        for w in nbrs[u]:
            if w not in prev:
                prev[w] = u
                frontier.append(w)
    path = [root]
    while path[-1] != x:
        path.append(prev[path[-1]])
    if kind == "value":
        return given[root]
    if kind == "depth":
        return int(v.number(len(path) - 1))
    if kind == "parent":
        return path[-2] if len(path) > 1 else x
    if kind == "given":
        return given.get(x, v.sym("no"))
    if kind == "adjacent":
        return v.sym("yes") if q[2] in nbrs[x] else v.sym("no")
    return UNKNOWN


def _wildcard_search(task: Task, rows: list[tuple[int, ...]], q: list[int]) -> int:
    v = task.vocab
    table = {row[:-1]: int(v.number_value(row[-1])[0]) for row in rows}
    if q[0] != v.sym("sum"):
        return UNKNOWN
    options = {v.sym("0"): (v.sym("0"),), v.sym("1"): (v.sym("1"),), v.sym("*"): (v.sym("0"), v.sym("1"))}
    choices = [options[p] for p in q[1:]]
    return int(v.number(sum(table.get(s, 0) for s in product(*choices))))


def _shortest_path(task: Task, rows: list[tuple[int, ...]], q: list[int]) -> int:
    v = task.vocab
    cap = task.max_distance  # type: ignore[attr-defined]
    out = {}
    for a, _, b in rows:
        out.setdefault(a, []).append(b)
        out.setdefault(b, [])
    kind, a, b = v.decode(q[0]), q[1], q[2]
    if a not in out or (kind != "out" and b not in out) or (kind in ("dist", "step") and a == b):
        return UNKNOWN

    def dist(src: int) -> int:
        seen, frontier = {src: 0}, deque([src])
        while frontier:
            u = frontier.popleft()
            for w in out[u]:
                if w not in seen:
                    seen[w] = seen[u] + 1
                    frontier.append(w)
        return seen.get(b, cap + 1)

    if kind == "edge":
        return v.sym("yes") if b in out[a] else v.sym("no")
    d = dist(a)
    if kind == "dist":
        return int(v.number(d)) if d <= cap else v.sym("far")
    if kind == "step":
        if d > cap:
            return v.sym("far")
        return min(c for c in out[a] if dist(c) == d - 1)
    return UNKNOWN


_SOLVERS = {
    "PermutationPower": _permutation_power,
    "SequentialAssignment": _sequential_assignment,
    "EvalSum": _sequential_assignment,
    "UnionFind": _union_find,
    "WildcardSearch": _wildcard_search,
    "ShortestPath": _shortest_path,
}
