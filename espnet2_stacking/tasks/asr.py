"""ESPnet's ASR task with the plugin registered in every process that builds it.

ESPnet's multi-GPU mode spawns workers that unpickle ``Task.main_worker`` and so import only
the module defining the task class; with ``ASRTask`` itself that is espnet2.tasks.asr, where
``stacking_upstream`` is unknown. This subclass lives in the plugin and calls
:func:`~espnet2_stacking.tasks.register.register` wherever a parser or a model is built, so every
worker (and ``build_model_from_file``) knows the frontend.

With ``frontend: stacking_upstream`` and ``preencoder: linear``, a preencoder_conf without
``input_size`` gets the upstream's width (ESPnet's linear preencoder cannot know it), so one
ASR config serves upstreams of any width; config.yaml records the value used.
"""

import argparse

from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.tasks.asr import ASRTask
from typeguard import typechecked

from espnet2_stacking.tasks.register import register


class StackingASRTask(ASRTask):
    """``ASRTask`` plus the plugin's components (``--frontend stacking_upstream``)."""

    @classmethod
    def get_parser(cls) -> argparse.ArgumentParser:
        register()  # before ESPnet lists the --frontend choices
        parser = super().get_parser()
        # tensorboard is not among the plugin's requirements (tools/install.sh); --use_tensorboard
        # true still works where it is installed
        parser.set_defaults(use_tensorboard=False)
        return parser

    @classmethod
    @typechecked
    def build_model(cls, args: argparse.Namespace) -> ESPnetASRModel:
        register()  # a spawned worker gets here without any entry point having run
        fill_preencoder_input_size(args)
        return super().build_model(args)


def fill_preencoder_input_size(args: argparse.Namespace) -> None:
    """With ``frontend: stacking_upstream`` and ``preencoder: linear``, give a preencoder_conf
    without ``input_size`` the upstream's width (ESPnet saves args after build_model, so
    config.yaml keeps the value)."""
    if (args.input_size is None and args.frontend == "stacking_upstream"
            and getattr(args, "preencoder", None) == "linear"
            and "input_size" not in args.preencoder_conf and "upstream" in args.frontend_conf):
        from espnet2_stacking.upstreams.load import load_upstream

        width = load_upstream(args.frontend_conf["upstream"]).hidden_size
        args.preencoder_conf = {**args.preencoder_conf, "input_size": width}
