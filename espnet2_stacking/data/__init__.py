"""Data preparation (recipe stage 1): Kaldi-style data dirs from LibriSpeech or espeak-ng."""
