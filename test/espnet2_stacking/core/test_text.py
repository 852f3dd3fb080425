import argparse

import pytest

from espnet2_stacking.core.text import int_list, short_list


@pytest.mark.parametrize("value,expected", [("4,8,12", [4, 8, 12]), ("4, 8,", [4, 8]), ([3, 6], [3, 6]),
                                            ((1,), [1]), (5, [5]), (["2", "4"], [2, 4])])
def test_int_list_takes_command_line_and_yaml_forms(value, expected):
    assert int_list(value) == expected


@pytest.mark.parametrize("value", ["3,x", "", ",", [1.5], ["a"]])
def test_int_list_refuses_what_is_not_integers(value):
    with pytest.raises(argparse.ArgumentTypeError, match="comma-separated integers"):
        int_list(value)


def test_short_list():
    assert short_list(["a", "b"]) == "a, b"
    assert short_list([str(i) for i in range(8)], n=3) == "0, 1, 2 ... (8 in all)"
