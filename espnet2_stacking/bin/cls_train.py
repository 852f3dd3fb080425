#!/usr/bin/env python3
"""ESPnet's classification training with the plugin's components: speaker ID on a frozen
upstream (recipe stage 5, task ``sid``).

Example:
    python -m espnet2_stacking.bin.cls_train --config conf/sid_demo.yaml \\
        --frontend_conf upstream=exp/student_interleaved_eql/model.pth \\
        --token_list data/token_list/sid/tokens.txt \\
        --train_data_path_and_name_and_type data/sid_train/wav.scp,speech,sound \\
        --train_data_path_and_name_and_type data/sid_train/utt2spk,label,text ... \\
        --output_dir exp/sid_student
"""

from espnet2_stacking.tasks.register import register_classification

register_classification()

from espnet2_stacking.tasks.cls import StackingCLSTask  # noqa: E402


def get_parser():
    return StackingCLSTask.get_parser()


def main(cmd=None):
    StackingCLSTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
