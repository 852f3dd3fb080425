"""espnet2_stacking: fast distillation of speech foundation models with interleaved stacking."""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = (here / "espnet2_stacking" / "version.txt").read_text().strip()

install_requires = [
    "espnet[asr]>=202611",
    "torch>=2.11",
    "torchaudio>=2.11",
    "sentencepiece",
    "humanfriendly",
    "typeguard>=4",
    "soundfile",
    "numpy",
    "pyyaml",
    "matplotlib",  # PNGs of the teacher probe, layer similarity and benchmark curves
    # the recipe's parallel jobs run through espnet3.parallel, which needs these two (ESPnet's
    # `train` extra has them, with lightning, wandb, datasets... that we do not need)
    "dask[distributed]",
    "dask-jobqueue",
    "torcheval",  # ESPnet's classification task (speaker ID downstream) computes its metrics with it
    "faiss-cpu",  # the teacher dump's pq codec: OPQ rotation and product-quantiser k-means
]

extras_require = {
    # transformers is only needed to read Hugging Face teacher directories, and
    # by the tests that check our loaders against it.
    "hf": ["transformers>=4.40", "safetensors"],
    "test": [
        "pytest>=8",
        "pytest-timeout",
        "hypothesis",
        "ruff",  # tools/test.sh lints before testing
        "transformers>=4.40",
        "safetensors",
    ],
}

setup(
    name="espnet2_stacking",
    version=version,
    description=(
        "ESPnet plugin: distil speech foundation models into compact students, "
        "fast, with interleaved stacking"
    ),
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.12",
    packages=find_packages(include=["espnet2_stacking", "espnet2_stacking.*"]),
    package_data={"espnet2_stacking": ["version.txt", "data/*.txt"]},
    install_requires=install_requires,
    extras_require=extras_require,
    license="Apache-2.0",
)
