"""Registry lookup, building and the errors users see."""
import sys

import pytest

from raytrainer.registry import (
    OPTIMIZERS,
    PARAM_SCHEDULERS,
    Registry,
    UnknownTypeError,
    build_from_cfg,
    import_modules_from_strings,
)


@pytest.fixture()
def models():
    reg = Registry("model")

    @reg.register_module()
    class Backbone:
        def __init__(self, depth=1, fail=False):
            if fail:
                raise ValueError("depth is broken")
            self.depth = depth

    @reg.register_module(name=["Net", "Network"])
    class Net:
        def __init__(self, backbone, width=2):
            self.backbone = reg.build(backbone)
            self.width = width

    return reg


def test_build_by_name_class_and_import_path(models):
    net = models.build(dict(type="Net", backbone=dict(type="Backbone", depth=3)))
    assert net.backbone.depth == 3 and net.width == 2
    assert models.build(dict(type="Network", backbone=dict(type="Backbone"))).width == 2
    backbone_cls = models.get("Backbone")
    assert models.build(dict(type=backbone_cls, depth=5)).depth == 5
    ordered = models.build(dict(type="collections.OrderedDict"))
    assert type(ordered).__name__ == "OrderedDict"


def test_default_args_fill_only_missing_keys(models):
    built = models.build(dict(type="Backbone", depth=4), depth=9)
    assert built.depth == 4
    assert models.build(dict(type="Backbone"), depth=9).depth == 9


def test_unknown_type_names_registry_key_path_and_close_match(models):
    with pytest.raises(UnknownTypeError) as info:
        models.build(dict(type="Net", backbone=dict(type="Backbon")))
    message = str(info.value)
    assert "'Backbon' is not registered in the model registry" in message
    assert "'model.backbone.type'" in message
    assert "did you mean 'Backbone'?" in message


def test_scheduler_typo_suggests_the_real_name():
    with pytest.raises(UnknownTypeError, match="did you mean 'CosineAnnealingLR'"):
        build_from_cfg(dict(type="CosineAnealingLR"), PARAM_SCHEDULERS,
                       key="param_scheduler.1")


def test_constructor_error_keeps_traceback_and_names_the_key(models):
    with pytest.raises(ValueError, match="depth is broken") as info:
        models.build(dict(type="Net", backbone=dict(type="Backbone", fail=True)))
    assert info.value.__notes__ == [
        "raised while building model 'Backbone' from config key 'model.backbone'"]
    frames = [frame.name for frame in info.traceback]
    assert "__init__" in frames  # the original frame inside the constructor is kept


def test_missing_type_is_a_clear_error(models):
    with pytest.raises(TypeError, match="config 'model' for the model registry has no 'type'"):
        models.build(dict(depth=3))


def test_duplicate_registration_needs_force(models):
    class Other:
        pass

    with pytest.raises(KeyError, match="'Backbone' is already registered"):
        models.register_module(name="Backbone", module=Other)
    models.register_module(name="Backbone", module=Other, force=True)
    assert models.get("Backbone") is Other


def test_every_torch_optimizer_is_registered():
    import torch

    for name in ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "LBFGS"):
        assert OPTIMIZERS.get(name) is getattr(torch.optim, name)


def test_custom_imports_load_user_modules(tmp_path, monkeypatch):
    package = tmp_path / "my_models"
    package.mkdir()
    (package / "__init__.py").write_text(
        "from raytrainer.registry import MODELS\n"
        "@MODELS.register_module(force=True)\n"
        "class UserNet:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import_modules_from_strings(["my_models"])
    from raytrainer.registry import MODELS

    assert type(MODELS.build(dict(type="UserNet"))).__name__ == "UserNet"
    with pytest.raises(ImportError, match="custom_imports: cannot import 'no_such_pkg'"):
        import_modules_from_strings(["no_such_pkg"])
    assert import_modules_from_strings(["no_such_pkg"], allow_failed_imports=True) == [None]
    sys.modules.pop("my_models", None)
