"""ESPnet's classification task with the plugin registered: SUPERB-style speaker ID (SID).

The same pattern as :class:`~espnet2_stacking.tasks.asr.StackingASRTask`: ESPnet's
``CLSTask`` (frontend -> normalize -> preencoder -> encoder -> pooled linear decoder, cross
entropy) with ``--frontend stacking_upstream`` known in every process that builds a parser or a
model, and the linear preencoder's ``input_size`` filled in from the upstream's width.

Labels: a Kaldi-style ``utt2spk`` read as ``label`` (``--train_data_path_and_name_and_type
data/sid_train/utt2spk,label,text``) against a token list of the speakers with ``<unk>`` last
(ESPnet's classifier has ``len(token_list) - 1`` classes).
"""

import argparse

from espnet2.cls.espnet_model import ESPnetClassificationModel
from espnet2.tasks.cls import CLSTask
from typeguard import typechecked

from espnet2_stacking.tasks.asr import fill_preencoder_input_size
from espnet2_stacking.tasks.register import register_classification


class StackingCLSTask(CLSTask):
    """``CLSTask`` plus the plugin's components (``--frontend stacking_upstream``)."""

    @classmethod
    def get_parser(cls) -> argparse.ArgumentParser:
        register_classification()
        parser = super().get_parser()
        parser.set_defaults(use_tensorboard=False)  # as StackingASRTask
        return parser

    @classmethod
    @typechecked
    def build_model(cls, args: argparse.Namespace) -> ESPnetClassificationModel:
        register_classification()
        fill_preencoder_input_size(args)
        return super().build_model(args)
