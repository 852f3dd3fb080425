#!/usr/bin/env python3
"""Which wheels a GPU machine without network needs for bench/run_gpu.sh: the selection step of
bench/prepare_gpu_wheels.sh (which resolves, calls this, then downloads what it prints).

The GPU machines this project is measured on have PyTorch, torchaudio and transformers (and a
large scientific stack) but no ESPnet. Given pip's installation reports (`pip install --dry-run
--ignore-installed --report`) of
    --full: this package (espnet[asr]==202611 and the rest of its requirements), resolved for the
            GPU machine's Python (3.12, Linux x86-64) with torch pinned to the GPU's version;
    --base: torch, torchaudio and transformers alone (what the GPU machine has, with their deps),
it walks the requirement graph from this package and prints, one `name==version` a line, every
package the GPU machine lacks. A requirement is taken as met by the GPU machine when its package
 - is torch, torchaudio, transformers, triton, nvidia-* or cuda-* (never downloaded), or
 - is installed there: with --gpu_freeze (`python3 -m pip freeze` run there) when its installed
   version satisfies the requirement; otherwise (versions unknown) when it is in --base or in
   the GPU image's package list below and the requirement has no upper bound or pin (a
   `setuptools<82` or `sentencepiece==0.2.1` is downloaded: the installed one may not fit).
setuptools, wheel and packaging are always downloaded: run_gpu.sh's editable install of the
checkout builds with them, offline, in an isolated environment.
"""

import argparse
import fnmatch
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

NEVER = ("torch", "torchaudio", "transformers", "triton", "nvidia-*", "cuda-*")
# run_gpu.sh's offline editable install builds this checkout in an isolated env from .whl/
BUILD = ("setuptools", "wheel", "packaging")
BOUNDING = ("==", "===", "<", "<=", "~=")

# The nvidia-h200 image's Python packages, as last listed on 2026-11-17 (versions not listed):
# PyTorch 2.11, torchaudio 2.11, transformers 5.x and a scientific stack, no ESPnet.
GPU_IMAGE = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops
equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio
h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio iniconfig
interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py
nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime
onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint
packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache
protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions
pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore
threadpoolctl tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric
torchmetrics torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect
urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split()


def read_report(path: Path) -> Dict[str, dict]:
    """pip's installation report: {canonical name: {version, requires, local}}."""
    report = json.loads(Path(path).read_text())
    packages = {}
    for item in report["install"]:
        meta = item["metadata"]
        packages[canonicalize_name(meta["name"])] = {
            "version": meta["version"],
            "requires": meta.get("requires_dist") or [],
            "local": "dir_info" in item.get("download_info", {}),
        }
    return packages


def read_freeze(path: Path) -> Dict[str, str]:
    """`pip freeze` lines (name==version; editable and URL lines are skipped)."""
    have = {}
    for line in Path(path).read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and not name.startswith(("#", "-")):
            have[canonicalize_name(name)] = version.strip()
    return have


def never(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in NEVER)


def met_there(req: Requirement, have: Dict[str, Optional[str]]) -> bool:
    """Whether the GPU machine's own package meets the requirement (version None: unknown)."""
    name = canonicalize_name(req.name)
    if never(name):
        return True
    if name not in have:
        return False
    version = have[name]
    if version is None:
        return not any(s.operator in BOUNDING for s in req.specifier)
    return req.specifier.contains(version, prereleases=True)


def select(full: Dict[str, dict], roots: List[str], have: Dict[str, Optional[str]]) -> List[str]:
    """The packages of `full` reached from `roots` through requirements the GPU machine does not
    meet itself (markers evaluated for this interpreter: run it with the GPU's Python)."""
    wanted, todo = set(), [(canonicalize_name(r), frozenset()) for r in roots]
    seen = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for line in full[name]["requires"]:
            req = Requirement(line)
            if req.marker is not None and not any(
                    req.marker.evaluate({"extra": e}) for e in (extras or {""})):
                continue
            target = canonicalize_name(req.name)
            if target not in full or met_there(req, have):
                continue
            wanted.add(target)
            todo.append((target, frozenset(req.extras)))
    return sorted(n for n in wanted if not full[n]["local"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", type=Path, required=True, help="pip's report of this package's install")
    p.add_argument("--base", type=Path, required=True, help="pip's report of torch, torchaudio, transformers")
    p.add_argument("--root", default="espnet2_stacking", help="The package whose needs are walked")
    p.add_argument("--gpu_freeze", type=Path, default=None,
                   help="`python3 -m pip freeze` of the GPU machine: exact versions instead of "
                        "--base and the image list")
    args = p.parse_args(argv)
    full = read_report(args.full)
    if canonicalize_name(args.root) not in full:
        sys.exit(f"{args.full} does not install {args.root}")
    if args.gpu_freeze is not None:
        have: Dict[str, Optional[str]] = dict(read_freeze(args.gpu_freeze))
    else:
        have = {canonicalize_name(n): None for n in [*read_report(args.base), *GPU_IMAGE]}
    wanted = select(full, [args.root], have)
    for name in sorted(set(wanted) | {canonicalize_name(n) for n in BUILD}):
        # a build requirement outside this install (wheel) comes at its newest version
        print(f"{name}=={full[name]['version']}" if name in full else name)


if __name__ == "__main__":
    main()
