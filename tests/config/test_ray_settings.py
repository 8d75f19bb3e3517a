"""The ``ray`` config section: defaults, CLI overrides and the backend that follows the devices."""
import os

import pytest

from raytrainer.config import Config, ConfigError
from raytrainer.config.ray_settings import RaySettings


@pytest.fixture()
def digits_ray_section():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return Config.fromfile(os.path.join(root, "configs", "digits", "mlp.py")).get("ray")


def test_gpu_flag_switches_the_example_configs_to_nccl(digits_ray_section):
    assert RaySettings.from_config(digits_ray_section).torch_backend == "gloo"
    assert RaySettings.from_config(digits_ray_section, use_gpu=True).torch_backend == "nccl"


def test_an_explicit_backend_wins(digits_ray_section):
    section = dict(digits_ray_section, backend="gloo")
    assert RaySettings.from_config(section, use_gpu=True).torch_backend == "gloo"
    with pytest.raises(ConfigError, match="ray.backend='nccl' needs ray.use_gpu=True"):
        RaySettings.from_config(dict(digits_ray_section, backend="nccl"))


def test_unknown_keys_are_named(digits_ray_section):
    with pytest.raises(ConfigError, match=r"ray: unknown key\(s\) \['num_worker'\]"):
        RaySettings.from_config(dict(digits_ray_section, num_worker=4))


@pytest.mark.parametrize("resources", ["{'CPU':2}", {"CPU": "2"}, {"CPU": -1}])
def test_resources_per_worker_must_map_names_to_amounts(digits_ray_section, resources):
    with pytest.raises(ConfigError, match="ray.resources_per_worker must map resource names to "
                                          "amounts >= 0"):
        RaySettings.from_config(dict(digits_ray_section, resources_per_worker=resources))
