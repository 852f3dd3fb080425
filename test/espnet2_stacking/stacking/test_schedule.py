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
        ("prop:1", 7, 1, [7], []),
        ("prop:0", 1000, 4, [250, 250, 250, 250], [250, 500, 750]),  # alpha 0 is EQL
        ("prop:-1", 25, 2, [17, 8], [17]),  # 2/3 * 25 = 16.67 -> 17
        ("0.25,0.25,0.25,0.2500004", 1000, 4, [250, 250, 250, 250], [250, 500, 750]),  # 1e-6
        ("1/3, 2/3", 9, 2, [3, 6], [3]),
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
        ("0.5,0.500002", 100, 2, "sum to"),  # beyond 1e-6
        ("0.5,,0.5", 100, 2, "not eql"),
        ("nan,1", 100, 2, "not eql"),
        ([0.5, float("nan")], 100, 2, "not eql"),
        ("0,1", 100, 2, "positive"),
        ("prop:inf", 100, 2, "needs a number"),
        ("prop:1000", 100, 2, "within -64..64"),
        ("prop:63.5", 100, 10**6, "overflows"),
        ("eql", 3, 4, "too few"),
        ("prop:2", 10, 4, "too few"),  # stage 1 gets 1/30 of 10 -> 0
        ("eql", 0, 1, "positive"),
        ("eql", 10.0, 1, "positive integer"),
        ("eql", 10, 0, "at least one stage"),
    ],
)
def test_bad_schedules(schedule, total, stages, match):
    with pytest.raises(StackingConfigError, match=match):
        stage_lengths(schedule, total, stages)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["eql", "prop:1", "prop:2", "prop:0.5"]), st.integers(1, 8),
       st.integers(0, 10**6))
def test_lengths_sum_exactly(schedule, stages, extra):
    total = 8 * stages * 4 + extra  # enough updates for every stage to get one
    lengths = stage_lengths(schedule, total, stages)
    assert sum(lengths) == total and all(n > 0 for n in lengths)
    bounds = stage_boundaries(schedule, total, stages)
    assert len(bounds) == stages - 1
    assert bounds == [sum(lengths[: i + 1]) for i in range(stages - 1)]
    alpha = {"eql": 0.0, "prop:1": 1.0, "prop:2": 2.0, "prop:0.5": 0.5}[schedule]
    weights = [s ** alpha for s in range(1, stages + 1)]
    for i, b in enumerate(bounds):  # each boundary is its exact share, rounded: off by <= 1/2
        assert abs(b - total * sum(weights[: i + 1]) / sum(weights)) <= 0.5 + 1e-6
