import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from espnet2_stacking.stacking import StackingConfigError, stage_boundaries, stage_lengths


@pytest.mark.parametrize(
    "schedule,total,stages,lengths,boundaries",
    [
        ("prop:1", 1000, 4, [100, 200, 300, 400], [100, 300, 600]),
        ("eql", 1000, 4, [250, 250, 250, 250], [250, 500, 750]),
        ("eql", 10, 3, [3, 4, 3], [3, 7]),  # 3.33 -> 3, 6.67 -> 7, 10
        ("prop:2", 30, 4, [1, 4, 9, 16], [1, 5, 14]),
        ("0.1,0.2,0.3,0.4", 1000, 4, [100, 200, 300, 400], [100, 300, 600]),
        ([0.5, 0.5], 7, 2, [4, 3], [4]),  # 3.5 rounds half up
        ("eql", 5, 1, [5], []),
    ],
)
def test_schedules(schedule, total, stages, lengths, boundaries):
    assert stage_lengths(schedule, total, stages) == lengths
    assert stage_boundaries(schedule, total, stages) == boundaries


@pytest.mark.parametrize(
    "schedule,total,stages,match",
    [
        ("0.1,0.2", 100, 4, "2 fractions for 4 stages"),
        ("0.5,0.6", 100, 2, "sum to"),
        ("0.5,-0.5,1", 100, 3, "positive"),
        ("fast", 100, 2, "not eql"),
        ("prop:x", 100, 2, "needs a number"),
        ("eql", 3, 4, "too few"),
        ("eql", 0, 1, "positive"),
    ],
)
def test_bad_schedules(schedule, total, stages, match):
    with pytest.raises(StackingConfigError, match=match):
        stage_lengths(schedule, total, stages)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["eql", "prop:1", "prop:2", "prop:0.5"]), st.integers(1, 8), st.integers(0, 10**6))
def test_lengths_sum_exactly(schedule, stages, extra):
    total = 8 * stages * 4 + extra  # enough updates for every stage to get one
    lengths = stage_lengths(schedule, total, stages)
    assert sum(lengths) == total and all(n > 0 for n in lengths)
    if schedule.startswith("prop"):
        assert lengths[:-1] == sorted(lengths[:-1])  # later stages never shorter (but rounding)
