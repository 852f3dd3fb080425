"""Layer CKA and linear probes."""

import numpy as np
import pytest

from espnet2_stacking.pipelines.teacher_probe import (
    cka_matrix,
    format_table,
    linear_cka,
    plot_probe,
    probe_accuracy,
    split_utterances,
)


def rng(seed=0):
    return np.random.default_rng(seed)


def test_cka_of_identical_inputs_is_one():
    x = rng().standard_normal((500, 16))
    assert linear_cka(x, x) == pytest.approx(1.0)


def test_cka_is_invariant_to_orthogonal_transform_and_isotropic_scaling():
    r = rng(1)
    x = r.standard_normal((400, 12))
    y = np.tanh(x @ r.standard_normal((12, 20))) + 0.5 * r.standard_normal((400, 20))
    q, _ = np.linalg.qr(r.standard_normal((20, 20)))
    base = linear_cka(x, y)
    assert linear_cka(x, 3.7 * (y @ q)) == pytest.approx(base, rel=1e-9)
    assert linear_cka(0.01 * x, y) == pytest.approx(base, rel=1e-9)
    assert linear_cka(x + 5.0, y) == pytest.approx(base, rel=1e-9)  # centred
    assert linear_cka(y, x) == pytest.approx(base, rel=1e-9)


def test_cka_values_lie_in_unit_interval():
    r = rng(2)
    for d1, d2 in ((3, 5), (16, 16), (40, 2)):
        x, y = r.standard_normal((300, d1)), r.standard_normal((300, d2))
        assert 0.0 <= linear_cka(x, y) <= 1.0
        assert 0.0 <= linear_cka(x, x[:, :1] + 0.1 * y[:, :1]) <= 1.0
    assert linear_cka(r.standard_normal((20000, 4)), r.standard_normal((20000, 4))) < 0.01
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(x, y[:10])


def test_cka_matrix_is_symmetric_with_unit_diagonal():
    r = rng(3)
    a = r.standard_normal((200, 8))
    m = cka_matrix([a, a @ r.standard_normal((8, 8)), r.standard_normal((200, 4))])
    assert m.shape == (3, 3)
    np.testing.assert_allclose(m, m.T)
    np.testing.assert_allclose(np.diag(m), 1.0)
    assert m[0, 1] > 0.3 and m[0, 2] < 0.2


def test_probe_separates_separable_classes():
    r = rng(4)
    k, d = 6, 10
    means = 4.0 * r.standard_normal((k, d))

    def draw(n):
        y = r.integers(0, k, n)
        return means[y] + r.standard_normal((n, d)), y

    (xa, ya), (xb, yb) = draw(1200), draw(600)
    assert probe_accuracy(xa, ya, xb, yb, k) > 0.95


def test_probe_on_noise_is_at_chance():
    r = rng(5)
    k = 4
    xa, xb = r.standard_normal((2000, 8)), r.standard_normal((2000, 8))
    ya, yb = r.integers(0, k, 2000), r.integers(0, k, 2000)
    assert abs(probe_accuracy(xa, ya, xb, yb, k) - 1 / k) < 0.05


def test_utterance_split_is_disjoint_seeded_and_complete():
    ids = [f"u{i}" for i in range(11)]
    a, b = split_utterances(ids, seed=1)
    assert not set(a) & set(b) and sorted(a + b) == sorted(ids) and len(a) == 5
    assert split_utterances(list(reversed(ids)), seed=1) == (a, b)
    with pytest.raises(ValueError, match="at least 2"):
        split_utterances(["only"])


def test_table_and_png(tmp_path):
    result = {
        "trained": {"cka": np.eye(3).tolist(), "probe_accuracy": [0.2, 0.4, 0.3]},
        "random": {"cka": np.ones((3, 3)).tolist(), "probe_accuracy": [0.1, 0.1, 0.1]},
        "best_accuracy": {"trained": 0.4, "random": 0.1}, "majority_class_accuracy": 0.05,
        "trained_beats_random": True, "margin": 0.3, "num_classes": 8,
    }
    table = format_table(result)
    assert "h_1   |       0.400 |      0.100" in table and "trained_beats_random: True" in table
    plot_probe(result, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
