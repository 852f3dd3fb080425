"""ESPnet's ASR task with the plugin registered in every process that builds it.

ESPnet's multi-GPU mode spawns workers that unpickle ``Task.main_worker`` and so import only
the module defining the task class; with ``ASRTask`` itself that is espnet2.tasks.asr, where
``stacking_upstream`` is unknown. This subclass lives in the plugin and calls
:func:`~espnet2_stacking.register.register` wherever a parser or a model is built, so every
worker (and ``build_model_from_file``) knows the frontend.
"""

import argparse

from typeguard import typechecked

from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.tasks.asr import ASRTask
from espnet2_stacking.register import register


class StackingASRTask(ASRTask):
    """``ASRTask`` plus the plugin's components (``--frontend stacking_upstream``)."""

    @classmethod
    def get_parser(cls) -> argparse.ArgumentParser:
        register()  # before ESPnet lists the --frontend choices
        return super().get_parser()

    @classmethod
    @typechecked
    def build_model(cls, args: argparse.Namespace) -> ESPnetASRModel:
        register()  # a spawned worker gets here without any entry point having run
        return super().build_model(args)
