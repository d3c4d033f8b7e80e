"""Rebuild this folder from the Free Spoken Digit Dataset (how it was made).

    python data/fsdd/prepare.py /path/to/free-spoken-digit-dataset/recordings

Copies repetitions 0-9 of every digit of the six speakers (600 recordings, the original
8 kHz 16-bit wav files, names unchanged) to ``recordings/`` and writes two Kaldi data
directories and a trial list:

- ``train/``: repetitions 5-9 (50 per speaker): the UBM and the speaker models;
- ``test/``: repetitions 0-4 (50 per speaker, FSDD's conventional test part);
- ``trials``: every test utterance against every speaker (300 x 6 = 1800 trials).

``wav.scp`` paths are relative to each data directory.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")


def main(source: str) -> None:
    src = Path(source)
    (HERE / "recordings").mkdir(exist_ok=True)
    rows = {"train": [], "test": []}
    for speaker in SPEAKERS:
        for digit in range(10):
            for index in range(10):
                name = f"{digit}_{speaker}_{index}"
                shutil.copyfile(src / f"{name}.wav", HERE / "recordings" / f"{name}.wav")
                part = "test" if index < 5 else "train"
                rows[part].append((f"{speaker}-{name}", speaker, name, digit, index))
    for part, items in rows.items():
        out = HERE / part
        out.mkdir(exist_ok=True)
        items.sort()
        (out / "wav.scp").write_text("".join(f"{u} ../recordings/{n}.wav\n" for u, _, n, _, _ in items))
        (out / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s, *_ in items))
        (out / "spk2utt").write_text("".join(
            f"{s} {' '.join(u for u, t, *_ in items if t == s)}\n" for s in SPEAKERS))
        (out / "utt2digit").write_text("".join(f"{u} {d}\n" for u, _, _, d, _ in items))
        (out / "utt2index").write_text("".join(f"{u} {i}\n" for u, _, _, _, i in items))
        (out / "spk2gender").write_text("".join(f"{s} m\n" for s in SPEAKERS))
    (HERE / "trials").write_text("".join(
        f"{model} {u} {'target' if s == model else 'nontarget'}\n"
        for u, s, *_ in rows["test"] for model in SPEAKERS))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(HERE.parents[2] / "shared" / "data" / "fsdd" / "recordings"))
