"""Parsing of list options and formatting of lists in messages."""

import argparse
from typing import List, Sequence, Union


def int_list(value: Union[str, int, Sequence[int]]) -> List[int]:
    """'4,8,12' (command line), 4 or [4, 8, 12] (YAML) -> [4, 8, 12].

    Raises argparse.ArgumentTypeError, which argparse reports as a usage error naming the option.
    """
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, int):
        items = [value]
    else:
        items = [v for v in str(value).split(",") if v.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{value}'")
    try:
        # int(1.5) would quietly give 1: a float or a bool in a YAML list is a mistake
        if any(isinstance(v, (float, bool)) for v in items):
            raise ValueError
        return [int(v) for v in items]
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{value}'")


def short_list(items: Sequence[str], n: int = 5) -> str:
    """The first ``n`` items joined, for error messages."""
    items = list(items)
    return ", ".join(items[:n]) + (f" ... ({len(items)} in all)" if len(items) > n else "")
