"""run_jobs' command line: what it says when the jobs or the config are wrong, its exit status
when a job fails, and its dry run of a scheduler class."""

import pytest
import yaml

from espnet2_stacking.bin.run_jobs import main


def test_a_failed_job_exits_nonzero_naming_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "jobs").write_text("tiny job\tlogs/tiny.log\techo oops >&2; exit 5\n")
    with pytest.raises(SystemExit) as e:
        main(["--jobs", "jobs", "--max_jobs", "2"])
    assert "run_jobs: 1 of 1 job(s) failed: tiny job (log: logs/tiny.log)" in str(e.value.code)
    assert "oops" in (tmp_path / "logs/tiny.log").read_text()


def test_bad_input_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit, match="--jobs is required"):
        main([])
    (tmp_path / "jobs").write_text("")
    with pytest.raises(SystemExit, match="no jobs"):
        main(["--jobs", str(tmp_path / "jobs")])
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"gpu": {"env": "local"}}))
    with pytest.raises(SystemExit, match="runs on env 'local': no job script"):
        main(["--print_job_script", "gpu", "--parallel_config", str(tmp_path / "p.yaml")])
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"gpu": {"env": "pbs", "options": {
        "queue": "gpuq", "cores": 2, "memory": "4GB", "resource_spec": "select=1:ngpus=1"}}}))
    main(["--print_job_script", "gpu", "--parallel_config", str(tmp_path / "p.yaml")])
    script = capsys.readouterr().out
    assert "#PBS -q gpuq" in script and "#PBS -l select=1:ngpus=1" in script
