"""Visualization: the Visualizer and the backends that store scalars and the config."""
from .mlflow_backend import MLflowVisBackend
from .vis_backend import BaseVisBackend, LocalVisBackend, TensorboardVisBackend
from .visualizer import Visualizer

__all__ = ["BaseVisBackend", "LocalVisBackend", "MLflowVisBackend", "TensorboardVisBackend",
           "Visualizer"]
