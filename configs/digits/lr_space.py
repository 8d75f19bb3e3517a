# Search space for `raytrainer tune configs/digits/mlp.py --space configs/digits/lr_space.py`:
# dotted config keys -> Ray Tune distributions (or constants).
from ray import tune

space = {
    "optim_wrapper.optimizer.lr": tune.loguniform(1e-3, 3e-1),
    "train_dataloader.batch_size": tune.choice([16, 32, 64]),
}
