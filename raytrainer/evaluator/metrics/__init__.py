from .accuracy import Accuracy
from .perplexity import Perplexity

__all__ = ["Accuracy", "Perplexity"]
