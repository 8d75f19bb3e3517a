"""``copy_to_cpu``: the snapshot an asynchronous save writes shares nothing training changes."""
from __future__ import annotations

from collections import namedtuple

import torch

from raytrainer.checkpoint.async_save import copy_to_cpu

Pair = namedtuple("Pair", "a b")


def test_scalar_lists_are_copied_and_tensors_cloned():
    history = [0.5, 1.0, 2]
    state = {"hub": {"log_history": history, "names": ["loss", None, True]},
             "mixed": [1, [2, 3], torch.ones(2)], "weights": torch.zeros(3)}
    snapshot = copy_to_cpu(state)
    assert snapshot["hub"] == {"log_history": [0.5, 1.0, 2], "names": ["loss", None, True]}
    assert snapshot["hub"]["log_history"] is not history
    history.append(3.0)
    state["mixed"][1].append(4)
    state["mixed"][2].add_(1)
    state["weights"].add_(1)
    assert snapshot["hub"]["log_history"] == [0.5, 1.0, 2]
    assert snapshot["mixed"][:2] == [1, [2, 3]]
    assert torch.equal(snapshot["mixed"][2], torch.ones(2))
    assert torch.equal(snapshot["weights"], torch.zeros(3))


def test_tuples_keep_their_type_and_mutable_items_are_copied():
    plain, pair, nested = (1, "x", 2.5), Pair(1, 2), (1, [2])
    snapshot = copy_to_cpu({"plain": plain, "pair": pair, "nested": nested,
                            "tensors": Pair(torch.ones(1), 3)})
    assert snapshot["plain"] == plain and type(snapshot["plain"]) is tuple
    assert snapshot["pair"] == pair and type(snapshot["pair"]) is Pair
    assert snapshot["nested"] == (1, [2]) and snapshot["nested"][1] is not nested[1]
    assert type(snapshot["tensors"]) is Pair and torch.equal(snapshot["tensors"].a, torch.ones(1))


def test_subclassed_scalars_are_deep_copied():
    class Tagged(float):
        pass

    value = Tagged(1.5)
    value.tag = ["a"]
    snapshot = copy_to_cpu([value, 2.0])
    assert snapshot == [1.5, 2.0] and snapshot[0] is not value
    value.tag.append("b")
    assert snapshot[0].tag == ["a"]
