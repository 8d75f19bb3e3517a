# An MLP on scikit-learn's digits: reaches ~97% val accuracy in a few seconds on 2 CPU cores.
_base_ = [
    "../_base_/models/mlp.py",
    "../_base_/datasets/digits.py",
    "../_base_/schedules/sgd_20e.py",
    "../_base_/default_runtime.py",
]
work_dir = "./work_dirs/digits_mlp"
randomness = dict(seed=0, deterministic=False)
