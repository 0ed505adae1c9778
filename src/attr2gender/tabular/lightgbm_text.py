"""LightGBM's text model, checked before LightGBM reads it.

LightGBM's own parser trusts what it reads: a child index past the node arrays makes it read outside memory
(or crash the process), a node that is its own child makes every prediction loop forever, a split feature
past the row reads a value from outside the row, ``leaf_value=nan`` makes every probability NaN, and the
``tree_sizes`` header tells it where each tree starts. A bundle whose files were edited and every hash
recomputed gets that far, so :func:`check_lightgbm_text` reads the text first, with nothing but string
splitting, and refuses anything but a well-formed binary tree ensemble over the stage-two columns:

* the header: a binary objective, one tree per iteration, ``max_feature_idx`` = the columns - 1, a
  ``tree_sizes`` entry per tree that lands exactly on the next tree;
* each tree: ``num_leaves`` within bounds, no categorical or linear trees, array lengths that match
  ``num_leaves``, split features under the column count, finite thresholds, leaf and internal values and a
  finite shrinkage, valid decision types;
* each tree is a tree: from the root every internal node and every leaf is reached exactly once (no cycle,
  no shared child, no index out of range).
"""

from __future__ import annotations

import math

MAX_TREES = 100_000
MAX_LEAVES = 1 << 17
_INT_ARRAYS = ("split_feature", "decision_type", "left_child", "right_child")
_FLOAT_ARRAYS = ("threshold", "leaf_value", "internal_value")


class LightGBMTextError(ValueError):
    """The text model is not one LightGBM can read safely; the message says where."""


def _fields(lines: list[str], where: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in lines:
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise LightGBMTextError(f"{where}: line {line[:40]!r} is not key=value")
        if key in fields:
            raise LightGBMTextError(f"{where}: {key} is given twice")
        fields[key] = value
    return fields


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise LightGBMTextError(f"{what} must be an integer, got {text[:40]!r}") from None


def _numbers(fields: dict, key: str, n: int, where: str, integer: bool) -> list:
    text = fields.get(key)
    if text is None:
        raise LightGBMTextError(f"{where}: {key} is missing")
    parts = text.split()
    if len(parts) != n:
        raise LightGBMTextError(f"{where}: {key} has {len(parts)} values, num_leaves says {n}")
    if integer:
        return [_int(p, f"{where}: {key}") for p in parts]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise LightGBMTextError(f"{where}: {key} holds a value that is not a number") from None
    if not all(math.isfinite(v) for v in values):
        raise LightGBMTextError(f"{where}: {key} holds a value that is not finite (nan or inf)")
    return values


def _check_tree(fields: dict, n_features: int, where: str) -> None:
    leaves = _int(fields.get("num_leaves", ""), f"{where}: num_leaves")
    if not 1 <= leaves <= MAX_LEAVES:
        raise LightGBMTextError(f"{where}: num_leaves {leaves} is not from 1 to {MAX_LEAVES}")
    if _int(fields.get("num_cat", "0"), f"{where}: num_cat") != 0:
        raise LightGBMTextError(f"{where}: categorical splits are not part of a stage two")
    if fields.get("is_linear", "0") != "0":
        raise LightGBMTextError(f"{where}: linear trees are not part of a stage two")
    shrinkage = fields.get("shrinkage", "1")
    try:
        finite = math.isfinite(float(shrinkage))
    except ValueError:
        finite = False
    if not finite:
        raise LightGBMTextError(f"{where}: shrinkage {shrinkage[:20]!r} is not a finite number")
    _numbers(fields, "leaf_value", leaves, where, integer=False)
    if leaves == 1:
        return
    internal = leaves - 1
    features = _numbers(fields, "split_feature", internal, where, integer=True)
    _numbers(fields, "threshold", internal, where, integer=False)
    if "internal_value" in fields:
        _numbers(fields, "internal_value", internal, where, integer=False)
    decisions = _numbers(fields, "decision_type", internal, where, integer=True)
    left = _numbers(fields, "left_child", internal, where, integer=True)
    right = _numbers(fields, "right_child", internal, where, integer=True)
    bad = next((f for f in features if not 0 <= f < n_features), None)
    if bad is not None:
        raise LightGBMTextError(f"{where}: split_feature {bad} is not a column (the model has {n_features})")
    for d in decisions:
        # bit 0: categorical (never here); bit 1: default left; bits 2-3: missing type (none, zero, NaN)
        if not 0 <= d <= 15 or d & 1 or (d >> 2) & 3 == 3:
            raise LightGBMTextError(f"{where}: decision_type {d} is not a numerical split LightGBM writes")
    # A tree: from the root, each internal node and each leaf reached exactly once.
    seen_nodes, seen_leaves, stack = {0}, set(), [0]
    while stack:
        node = stack.pop()
        for child in (left[node], right[node]):
            if child >= 0:
                if child >= internal or child in seen_nodes:
                    raise LightGBMTextError(
                        f"{where}: node {node} points to node {child}, "
                        + (
                            "which is not in the tree"
                            if child >= internal
                            else "which is reached twice (a cycle)"
                        )
                    )
                seen_nodes.add(child)
                stack.append(child)
            else:
                leaf = ~child
                if leaf >= leaves or leaf in seen_leaves:
                    raise LightGBMTextError(
                        f"{where}: node {node} points to leaf {leaf}, "
                        + ("which is not in the tree" if leaf >= leaves else "which is reached twice")
                    )
                seen_leaves.add(leaf)
    if len(seen_nodes) != internal or len(seen_leaves) != leaves:
        raise LightGBMTextError(f"{where}: some nodes or leaves are not reached from the root")


def check_lightgbm_text(model_str: str, n_features: int) -> None:
    """Refuse (:class:`LightGBMTextError`, naming the tree and field) a LightGBM text model that is not a
    well-formed binary ensemble over ``n_features`` columns; see the module docstring."""
    if not model_str.startswith("tree\n"):
        raise LightGBMTextError("the text model does not start with LightGBM's 'tree' line")
    first = model_str.find("\nTree=")
    if first < 0:
        raise LightGBMTextError("the text model holds no tree")
    header = _fields(model_str[5:first].split("\n"), "header")
    if header.get("num_class") != "1" or header.get("num_tree_per_iteration") != "1":
        raise LightGBMTextError("header: not a binary model (num_class and num_tree_per_iteration must be 1)")
    if not header.get("objective", "").startswith("binary"):
        raise LightGBMTextError("header: the objective is not binary")
    if _int(header.get("max_feature_idx", ""), "header: max_feature_idx") != n_features - 1:
        raise LightGBMTextError(f"header: max_feature_idx must be {n_features - 1} ({n_features} columns)")
    sizes = [_int(s, "header: tree_sizes") for s in header.get("tree_sizes", "").split()]
    if not 1 <= len(sizes) <= MAX_TREES:
        raise LightGBMTextError(f"header: tree_sizes lists {len(sizes)} trees (1 to {MAX_TREES} expected)")
    position = first + 1
    for i, size in enumerate(sizes):
        where = f"tree {i}"
        block = model_str[position : position + size] if size > 0 else ""
        if not block.startswith(f"Tree={i}\n") or len(block) != size:
            raise LightGBMTextError(f"{where}: tree_sizes does not land on the tree (the header was edited)")
        _check_tree(_fields(block.split("\n")[1:], where), n_features, where)
        position += size
    if not model_str.startswith("end of trees", position):
        raise LightGBMTextError("the trees do not end where tree_sizes says (more trees than it lists)")
