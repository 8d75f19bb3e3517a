"""Every scheduler against MMEngine 0.10.7 run side by side: per-step values must agree."""
from __future__ import annotations

import pytest
import torch

import raytrainer.optim.scheduler as ours

from .cases import ALL_CASES, PLATEAU_CASES, PLATEAU_METRICS
from .helpers import (
    DuckWrapper,
    build,
    make_optimizer,
    max_abs_diff,
    plateau_trajectory,
    trajectory,
)

mm_scheduler = pytest.importorskip("mmengine.optim.scheduler")

TOL = 1e-10


def run_case(kind, specs, steps, module):
    optimizer = make_optimizer(kind)
    schedulers = [build(spec, optimizer, module) for spec in specs]
    return trajectory(optimizer, schedulers, steps), optimizer, schedulers


@pytest.mark.parametrize("case", sorted(ALL_CASES))
def test_matches_mmengine_step_by_step(case):
    kind, specs, steps = ALL_CASES[case]
    mine, _, our_schedulers = run_case(kind, specs, steps, ours)
    theirs, _, their_schedulers = run_case(kind, specs, steps, mm_scheduler)
    assert max_abs_diff(mine, theirs) <= TOL
    for mine, ref in zip(our_schedulers, their_schedulers):
        assert (mine.begin, mine.end, mine.by_epoch, mine.last_step) == \
               (ref.begin, ref.end, ref.by_epoch, ref.last_step)


@pytest.mark.parametrize("case", sorted(PLATEAU_CASES))
def test_reduce_on_plateau_matches_mmengine(case):
    kind, spec = PLATEAU_CASES[case]
    results = []
    for module in (ours, mm_scheduler):
        optimizer = make_optimizer(kind)
        scheduler = build(spec, optimizer, module)
        results.append(plateau_trajectory(optimizer, scheduler, PLATEAU_METRICS))
    assert max_abs_diff(*results) <= TOL
    assert results[0][-1] != results[0][0]  # the case really reduced something


def test_reduce_on_plateau_tensor_metrics_match_mmengine():
    spec = ("ReduceOnPlateauLR", dict(monitor="acc", rule="greater", patience=0, factor=0.5))
    results = []
    for module in (ours, mm_scheduler):
        optimizer = make_optimizer("sgd")
        scheduler = build(spec, optimizer, module)
        metrics = [torch.tensor(v, dtype=torch.float64) for v in (0.5, 0.6, 0.6, 0.7, 0.65)]
        results.append(plateau_trajectory(optimizer, scheduler, metrics, key="acc"))
    assert max_abs_diff(*results) <= TOL


@pytest.mark.parametrize("case", ["warmup-cosine", "onecycle", "momentum-cosine-adam"])
def test_duck_typed_wrapper_matches_mmengine_on_raw_optimizer(case):
    kind, specs, steps = ALL_CASES[case]
    wrapper = DuckWrapper(make_optimizer(kind))
    mine = trajectory(wrapper, [build(s, wrapper, ours) for s in specs], steps)
    theirs, _, _ = run_case(kind, specs, steps, mm_scheduler)
    assert max_abs_diff(mine, theirs) <= TOL


@pytest.mark.parametrize("case", ["warmup-cosine", "multistep", "onecycle-3phase-linear",
                                  "restart", "momentum-linear-adam", "conv-step"])
def test_mmengine_state_dict_resumes_in_raytrainer(case):
    """A scheduler state saved by MMEngine continues the same schedule in raytrainer."""
    kind, specs, steps = ALL_CASES[case]
    reference, _, _ = run_case(kind, specs, steps, mm_scheduler)
    split = steps // 2
    mm_optimizer = make_optimizer(kind)
    mm_schedulers = [build(spec, mm_optimizer, mm_scheduler) for spec in specs]
    trajectory(mm_optimizer, mm_schedulers, split)

    optimizer = make_optimizer(kind)
    schedulers = [build(spec, optimizer, ours) for spec in specs]
    optimizer.load_state_dict(mm_optimizer.state_dict())
    for mine, theirs in zip(schedulers, mm_schedulers):
        mine.load_state_dict(theirs.state_dict())
    resumed = trajectory(optimizer, schedulers, steps - split)
    assert max_abs_diff(resumed, reference[split:]) <= TOL
