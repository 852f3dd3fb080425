"""Write-then-rename: complete output or the old one, never half of it."""

import pytest

from espnet2_stacking.data.atomic import atomic_output, atomic_write_text


def test_a_file_appears_only_complete_and_a_failure_leaves_the_old_one(tmp_path):
    path = tmp_path / "summary.json"
    atomic_write_text(path, "old\n")
    with pytest.raises(RuntimeError), atomic_output(path) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".json")  # the suffix is kept
        tmp.write_text("half")
        raise RuntimeError("killed half way")
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
    atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n"


def test_a_directory_is_replaced_whole(tmp_path):
    out = tmp_path / "student"
    out.mkdir()
    (out / "stale.pth").write_text("x")
    with atomic_output(out) as tmp:
        tmp.mkdir()
        (tmp / "model.pth").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == ["model.pth"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student"]
