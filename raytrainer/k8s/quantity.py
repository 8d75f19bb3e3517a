"""Kubernetes resource quantities (``"500m"``, ``"4Gi"``, ``2``) as numbers."""
from __future__ import annotations

import re
from decimal import Decimal

_SUFFIX = {"": 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
           "P": 10**15, "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
           "Pi": 2**50, "Ei": 2**60}
_QUANTITY = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi"
                       r"|Ti|Pi|Ei)?$")


def parse_quantity(value: int | float | str) -> Decimal:
    """``"500m"`` → 0.5, ``"4Gi"`` → 4294967296, ``2`` → 2.

    Raises:
        ValueError: ``value`` is not a Kubernetes quantity.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (expected e.g. '2', '500m', "
                         "'4Gi')")
    return Decimal(match[1]) * _SUFFIX[match[2] or ""]
