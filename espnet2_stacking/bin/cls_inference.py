#!/usr/bin/env python3
"""ESPnet's classification inference for models that use the plugin's components (recipe
stage 6, task ``sid``): writes ``<output_dir>/prediction/text`` (utterance id, speaker).

Example:
    python -m espnet2_stacking.bin.cls_inference \\
        --classification_train_config exp/sid_student/config.yaml \\
        --classification_model_file exp/sid_student/valid.acc.best.pth \\
        --data_path_and_name_and_type data/sid_test/wav.scp,speech,sound \\
        --output_dir exp/sid_student/decode_sid_test
"""

from espnet2_stacking.tasks.register import register_classification

register_classification()

from espnet2.bin import cls_inference  # noqa: E402


def get_parser():
    return cls_inference.get_parser()


def main(cmd=None):
    cls_inference.main(cmd=cmd)


if __name__ == "__main__":
    main()
