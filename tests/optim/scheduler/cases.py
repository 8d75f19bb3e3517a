"""Scheduler configurations the parity and resume tests run: every class, windows, chains and
epoch → iteration conversions. Each case is ``(optimizer kind, [spec, ...], steps)``; specs
are described in :mod:`.helpers`."""
from __future__ import annotations

WARMUP = ("LinearLR", dict(start_factor=0.1, by_epoch=False, begin=0, end=5))

LR_CASES = {
    "step": ("sgd", [("StepLR", dict(step_size=3, gamma=0.5))], 20),
    "step-window": ("sgd", [("StepLR", dict(step_size=3, gamma=0.5, begin=2, end=12))], 20),
    "multistep": ("sgd", [("MultiStepLR", dict(milestones=[3, 6, 6, 10], gamma=0.3))], 15),
    "multistep-window": ("sgd", [("MultiStepLR", dict(milestones=[2, 5], begin=4, end=15))],
                         20),
    "constant": ("sgd", [("ConstantLR", dict(factor=0.25, end=6))], 12),
    "constant-window": ("sgd", [("ConstantLR", dict(factor=0.5, begin=3, end=9))], 12),
    "exponential": ("sgd", [("ExponentialLR", dict(gamma=0.8, begin=2, end=10))], 14),
    "cosine": ("sgd", [("CosineAnnealingLR", dict(T_max=8, eta_min=0.001))], 30),
    "cosine-default-tmax": ("sgd", [("CosineAnnealingLR", dict(eta_min_ratio=0.1, begin=2,
                                                               end=12))], 16),
    "cosine-zero-min": ("sgd", [("CosineAnnealingLR", dict(T_max=5))], 12),
    "linear": ("sgd", [("LinearLR", dict(start_factor=0.1, end=7))], 10),
    "linear-decay-window": ("sgd", [("LinearLR", dict(start_factor=0.5, end_factor=0.1,
                                                      begin=3, end=10))], 14),
    "poly": ("sgd", [("PolyLR", dict(eta_min=0.001, power=2.0, end=12))], 15),
    "poly-window": ("sgd", [("PolyLR", dict(power=1.0, begin=2, end=10))], 12),
    "onecycle": ("sgd", [("OneCycleLR", dict(eta_max=0.1, total_steps=20))], 20),
    "onecycle-3phase-linear": ("sgd", [("OneCycleLR", dict(
        eta_max=[0.1, 0.02], total_steps=30, pct_start=0.25, anneal_strategy="linear",
        three_phase=True))], 30),
    "onecycle-window": ("sgd", [("OneCycleLR", dict(eta_max=0.1, begin=2, end=22))], 25),
    "restart": ("sgd", [("CosineRestartLR", dict(periods=[5, 7, 4],
                                                 restart_weights=[1, 0.5, 0.25],
                                                 eta_min=0.001))], 20),
    "restart-ratio-window": ("sgd", [("CosineRestartLR", dict(
        periods=[6, 6], restart_weights=[1, 0.8], eta_min_ratio=0.05, begin=3))], 18),
    "warmup-cosine": ("sgd", [WARMUP, ("CosineAnnealingLR", dict(
        T_max=15, begin=5, end=20, by_epoch=False))], 25),
    "warmup-cosine-ratio": ("adam", [WARMUP, ("CosineAnnealingLR", dict(
        eta_min_ratio=0.01, begin=5, end=40, by_epoch=False))], 45),
    "warmup-multistep": ("sgd", [WARMUP, ("MultiStepLR", dict(milestones=[8, 12],
                                                              by_epoch=False))], 16),
    "warmup-poly": ("sgd", [WARMUP, ("PolyLR", dict(eta_min=1e-4, power=0.9, begin=5,
                                                    end=20, by_epoch=False))], 22),
    "overlapping-step-exp": ("sgd", [("StepLR", dict(step_size=2)),
                                     ("ExponentialLR", dict(gamma=0.9, begin=3, end=9))], 12),
    "wrapper": ("wrapper", [WARMUP, ("CosineAnnealingLR", dict(T_max=10, begin=5, end=15,
                                                               by_epoch=False))], 16),
}

MOMENTUM_SPECS = {
    "linear": ("LinearMomentum", dict(start_factor=0.5, end=6)),
    "constant": ("ConstantMomentum", dict(factor=0.5, end=5)),
    "step": ("StepMomentum", dict(step_size=2, gamma=0.9)),
    "multistep": ("MultiStepMomentum", dict(milestones=[2, 5], gamma=0.9)),
    "exponential": ("ExponentialMomentum", dict(gamma=0.95)),
    "cosine": ("CosineAnnealingMomentum", dict(T_max=10, eta_min=0.5)),
    "poly": ("PolyMomentum", dict(eta_min=0.5, power=2.0, end=10)),
    "restart": ("CosineRestartMomentum", dict(periods=[4, 6], restart_weights=[1, 0.9],
                                              eta_min=0.5)),
}
MOMENTUM_CASES = {f"{name}-{kind}": (kind, [spec], 12)
                  for name, spec in MOMENTUM_SPECS.items() for kind in ("sgd", "adam")}

GENERIC_CASES = {
    "param-step": ("sgd", [("StepParamScheduler", dict(param_name="weight_decay",
                                                       step_size=2))], 8),
    "param-multistep": ("sgd", [("MultiStepParamScheduler", dict(
        param_name="weight_decay", milestones=[1, 4]))], 8),
    "param-constant": ("sgd", [("ConstantParamScheduler", dict(param_name="weight_decay",
                                                               factor=0.5, end=4))], 8),
    "param-exponential": ("sgd", [("ExponentialParamScheduler", dict(
        param_name="weight_decay", gamma=0.5))], 8),
    "param-cosine": ("sgd", [("CosineAnnealingParamScheduler", dict(
        param_name="weight_decay", T_max=6, eta_min_ratio=0.1))], 14),
    "param-linear": ("sgd", [("LinearParamScheduler", dict(param_name="weight_decay",
                                                           start_factor=0.2, end=5))], 8),
    "param-poly": ("sgd", [("PolyParamScheduler", dict(param_name="weight_decay",
                                                       power=3.0, end=7))], 8),
    "param-onecycle": ("sgd", [("OneCycleParamScheduler", dict(param_name="lr",
                                                               eta_max=0.2, end=10))], 9),
    "param-restart": ("sgd", [("CosineRestartParamScheduler", dict(
        param_name="weight_decay", periods=[3, 3], restart_weights=[1, 0.5], eta_min=0.0))], 8),
}

EPOCH_LENGTH = 3
CONVERTED_CASES = {
    "conv-step": ("sgd", [("StepLR", dict(step_size=2, begin=1, end=5), EPOCH_LENGTH)], 18),
    "conv-multistep": ("sgd", [("MultiStepLR", dict(milestones=[1, 3]), EPOCH_LENGTH)], 14),
    "conv-constant": ("sgd", [("ConstantLR", dict(factor=0.5, end=2), EPOCH_LENGTH)], 9),
    "conv-exponential": ("sgd", [("ExponentialLR", dict(gamma=0.9, begin=1, end=3),
                                  EPOCH_LENGTH)], 12),
    "conv-cosine": ("sgd", [("CosineAnnealingLR", dict(T_max=4, eta_min=0.001),
                             EPOCH_LENGTH)], 16),
    "conv-cosine-window": ("sgd", [("CosineAnnealingLR", dict(begin=1, end=4),
                                    EPOCH_LENGTH)], 14),
    "conv-linear": ("sgd", [("LinearLR", dict(start_factor=0.25, end=2), EPOCH_LENGTH)], 9),
    "conv-poly": ("sgd", [("PolyLR", dict(power=2.0, end=4), EPOCH_LENGTH)], 14),
    "conv-onecycle": ("sgd", [("OneCycleLR", dict(eta_max=0.1, total_steps=4),
                               EPOCH_LENGTH)], 12),
    "conv-onecycle-window": ("sgd", [("OneCycleLR", dict(eta_max=0.1, end=4),
                                      EPOCH_LENGTH)], 12),
    "conv-restart": ("sgd", [("CosineRestartLR", dict(periods=[2, 3], restart_weights=[1, 0.5],
                                                      eta_min=0.0), EPOCH_LENGTH)], 18),
    "conv-momentum-adam": ("adam", [("CosineAnnealingMomentum", dict(T_max=3, eta_min=0.5),
                                     EPOCH_LENGTH)], 12),
    "conv-param": ("sgd", [("StepParamScheduler", dict(param_name="weight_decay",
                                                       step_size=1), EPOCH_LENGTH)], 9),
}

ALL_CASES = {**LR_CASES, **{f"momentum-{k}": v for k, v in MOMENTUM_CASES.items()},
             **GENERIC_CASES, **CONVERTED_CASES}

PLATEAU_METRICS = [1.0, 0.9, 0.95, 0.93, 0.92, 0.91, 0.91, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95,
                   0.99, 1.0, 0.4, 0.41, 0.42]
PLATEAU_CASES = {
    "less-rel": ("sgd", ("ReduceOnPlateauLR", dict(monitor="loss", patience=1, factor=0.5))),
    "less-abs-cooldown": ("sgd", ("ReduceOnPlateauLR", dict(
        monitor="loss", patience=0, threshold=0.05, threshold_rule="abs", cooldown=2,
        factor=0.5, min_value=[0.02, 0.004]))),
    "greater-rel": ("sgd", ("ReduceOnPlateauLR", dict(monitor="loss", rule="greater",
                                                      patience=2, factor=0.3))),
    "greater-abs-window": ("sgd", ("ReduceOnPlateauLR", dict(
        monitor="loss", rule="greater", threshold_rule="abs", threshold=0.02, patience=0,
        begin=3, end=12, factor=0.7))),
    "min-value-eps": ("sgd", ("ReduceOnPlateauLR", dict(monitor="loss", patience=0,
                                                        min_value=0.03, factor=0.5))),
    "momentum-sgd": ("sgd", ("ReduceOnPlateauMomentum", dict(monitor="loss", patience=1,
                                                             factor=0.9))),
    "momentum-adam": ("adam", ("ReduceOnPlateauMomentum", dict(monitor="loss", patience=1,
                                                               factor=0.9))),
    "param": ("sgd", ("ReduceOnPlateauParamScheduler", dict(
        param_name="weight_decay", monitor="loss", patience=1, factor=0.5))),
    "wrapper-min-list": ("wrapper", ("ReduceOnPlateauLR", dict(
        monitor="loss", patience=0, factor=0.5, min_value=[0.03, 0.001]))),
}
