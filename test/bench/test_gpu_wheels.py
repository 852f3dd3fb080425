"""bench/gpu_wheels.py: which of this package's requirements a GPU machine with PyTorch,
torchaudio and transformers lacks (pip's reports are faked here; no network)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
import gpu_wheels  # noqa: E402


def report(path: Path, packages: dict, local=("espnet2_stacking",)) -> Path:
    """A pip installation report of {name: (version, [requirement lines])}."""
    install = [{"metadata": {"name": name, "version": version, "requires_dist": requires},
                "download_info": {"url": "file:///x", "dir_info": {}} if name in local else
                {"url": f"https://files/{name}.whl", "archive_info": {}}}
               for name, (version, requires) in packages.items()]
    path.write_text(json.dumps({"version": "1", "install": install}))
    return path


FULL = {
    "espnet2_stacking": ("1.0", ["espnet[asr]>=202611", "torch>=2.11", "numpy", "Soundfile",
                                 "pytest>=8; extra == 'test'"]),
    "espnet": ("202611", ["setuptools<82,>=77", "sentencepiece==0.2.1", "torch<2.15,>=2.11",
                          "librosa>=0.10", "numpy>=2", "ctc-segmentation==1.7.5; extra == 'asr'",
                          "jiwer; extra == 'asr2'", "standard-aifc; python_version >= '4'"]),
    "librosa": ("1.0.0", ["numba>=0.61", "scipy>=1.15", "soxr>=1"]),
    "numba": ("0.68.1", ["llvmlite<0.51,>=0.50", "numpy<2.6"]),
    "soundfile": ("0.14.0", ["cffi>=1.0"]),
    "cffi": ("2.1.1", ["pycparser"]),
    "torch": ("2.11.0", ["nvidia-cublas==13.1; platform_system == 'Linux'", "filelock"]),
    **{name: ("1.0", []) for name in ("setuptools", "sentencepiece", "ctc-segmentation", "jiwer", "numpy",
                                      "scipy", "soxr", "llvmlite", "pycparser", "nvidia-cublas",
                                      "filelock", "standard-aifc", "pytest")},
}


def test_select_walks_what_the_gpu_machine_lacks(tmp_path):
    full = gpu_wheels.read_report(report(tmp_path / "full.json", FULL))
    # versions unknown (the image's list): present and unbounded is met, a pin or bound is not
    have = {name: None for name in ("numpy", "scipy", "numba", "llvmlite", "setuptools", "sentencepiece",
                                    "filelock")}
    chosen = gpu_wheels.select(full, ["espnet2_stacking"], have)
    assert chosen == ["cffi", "ctc-segmentation", "espnet", "librosa", "pycparser", "sentencepiece",
                      "setuptools", "soundfile", "soxr"]
    # never torch & co, nor the extras not asked for (asr2, test) or markers that do not hold
    assert not {"torch", "nvidia-cublas", "jiwer", "pytest", "standard-aifc"} & set(chosen)
    # known versions (a freeze of the GPU machine): exactly what does not satisfy
    have = {"numpy": "2.5.2", "scipy": "1.16", "numba": "0.68.1", "llvmlite": "0.50.1",
            "setuptools": "80.9.0", "sentencepiece": "0.2.2", "soxr": "1.1", "cffi": "2.0",
            "pycparser": "2.22", "soundfile": "0.13"}
    assert gpu_wheels.select(full, ["espnet2_stacking"], have) == [
        "ctc-segmentation", "espnet", "librosa", "sentencepiece"]


def test_main_prints_pins_of_the_resolved_versions(tmp_path, capsys):
    full = report(tmp_path / "full.json", FULL)
    base = report(tmp_path / "base.json", {"torch": ("2.11.0", []), "filelock": ("3.0", []),
                                           "numpy": ("2.5", [])})
    gpu_wheels.main(["--full", str(full), "--base", str(base)])
    lines = capsys.readouterr().out.split()
    assert "espnet==202611" in lines and "librosa==1.0.0" in lines
    assert not any(x.startswith(("numpy", "torch", "espnet2-stacking", "espnet2_stacking")) for x in lines)
    freeze = tmp_path / "freeze.txt"
    freeze.write_text("numpy==2.5.2\n-e git+https://x#egg=y\nlibrosa==1.0.0\nsoundfile==0.14.0\n")
    gpu_wheels.main(["--full", str(full), "--base", str(base), "--gpu_freeze", str(freeze)])
    lines = capsys.readouterr().out.split()
    assert "librosa==1.0.0" not in lines and "soundfile==0.14.0" not in lines and "espnet==202611" in lines
    # the editable install's build requirements always come: resolved, or the newest (wheel)
    assert {"setuptools==1.0", "wheel"} <= set(lines) and "packaging" in lines
