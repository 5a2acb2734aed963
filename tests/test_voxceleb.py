"""VoxCeleb trees, Kaldi lists, trial lists and the generated-corpus layout, on tiny fixtures."""
from __future__ import annotations

import numpy as np
import pytest

from tfadvq.audio import SAMPLE_RATE, save_wav
from tfadvq.cli import main
from tfadvq.errors import DataError
from tfadvq.voxceleb import (
    Trials,
    Utterance,
    load_corpus,
    read_kaldi_lists,
    read_trials,
    scan_tree,
    write_kaldi_lists,
    write_trials,
)

VOX_KEYS = [
    "id10270/x6uYqmx31kE/00001.wav",
    "id10270/8jEAjG6SegY/00008.wav",
    "id10270/8jEAjG6SegY/00009.wav",
    "id10300/ize_eiCFEg0/00003.wav",
]


def _write_tree(root, keys, suffix=".wav"):
    rng = np.random.default_rng(0)
    for key in keys:
        path = root / key.replace(".wav", suffix)
        if suffix == ".wav":
            save_wav(path, 0.1 * rng.standard_normal(SAMPLE_RATE // 4))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"\x00\x00\x00\x20ftypM4A ")


def test_scan_voxceleb1_tree(tmp_path):
    _write_tree(tmp_path / "wav", VOX_KEYS)
    (tmp_path / "wav" / "id10270" / "notes.txt").write_text("not audio")
    utts = scan_tree(tmp_path / "wav")
    assert [u.key for u in utts] == sorted(VOX_KEYS)
    assert [u.speaker for u in utts] == ["id10270"] * 3 + ["id10300"]
    assert all(u.path == str(tmp_path / "wav" / u.key) for u in utts)


def test_voxceleb2_aac_tree_explains_conversion(tmp_path):
    aac = tmp_path / "dev" / "aac"
    _write_tree(aac, VOX_KEYS, suffix=".m4a")
    with pytest.raises(DataError, match="ffmpeg") as info:
        scan_tree(aac)
    assert "4 m4a/aac files" in str(info.value) and str(aac) in str(info.value)
    _write_tree(aac, VOX_KEYS)  # once converted beside the m4a files, the tree loads
    assert len(scan_tree(aac)) == 4


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_scan_rejects_missing_or_empty_roots(tmp_path, make):
    root = tmp_path / "wav"
    if make == "empty":
        root.mkdir()
    with pytest.raises(DataError, match=str(root)):
        scan_tree(root)


def test_official_trial_format_round_trips(tmp_path):
    path = tmp_path / "veri_test2.txt"
    path.write_text(
        "1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav\n"
        "0 id10270/x6uYqmx31kE/00001.wav id10300/ize_eiCFEg0/00003.wav\n\n"
    )
    trials = read_trials(path, known_keys=set(VOX_KEYS))
    assert trials.labels.dtype == np.int8 and trials.labels.tolist() == [1, 0]
    assert trials.enroll == [VOX_KEYS[0]] * 2
    assert trials.keys() == {VOX_KEYS[0], VOX_KEYS[1], VOX_KEYS[3]}
    write_trials(trials, tmp_path / "out" / "copy.txt")
    assert (tmp_path / "out" / "copy.txt").read_text() == path.read_text().rstrip() + "\n"


def test_kaldi_trial_format(tmp_path):
    path = tmp_path / "trials"
    path.write_text("a b target\na c nontarget\n")
    trials = read_trials(path)
    assert trials.labels.tolist() == [1, 0] and trials.test == ["b", "c"]


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("", None, "empty"),
        ("1 a b\n2 a c\n", 2, "label"),
        ("1 a b\n\n1 a\n", 3, "got 2 fields"),
        ("1 a b\n0 a zzz\n", 2, "'zzz' is not in"),
    ],
)
def test_bad_trial_lists_name_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "trials.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        read_trials(path, known_keys={"a", "b", "c"})
    where = f"{path}:{line}:" if line else f"{path}:"
    assert str(info.value).startswith(where)


def test_exact_duplicate_trials_are_dropped_counted_and_warned(tmp_path):
    path = tmp_path / "trials.txt"
    path.write_text("1 a b\n0 a c\n1 a b\n1 b a\n0 a c\n1 a b\n")
    with pytest.warns(UserWarning, match=r"dropped 3 duplicate trial line\(s\) \(e.g. line 3 repeats line 1\)"):
        trials = read_trials(path)
    assert trials.duplicates == 3
    assert list(zip(trials.labels.tolist(), trials.enroll, trials.test)) == [
        (1, "a", "b"), (0, "a", "c"), (1, "b", "a")]  # the reversed pair is another trial: kept
    assert trials.select(np.array([True, False, True])).duplicates == 3


@pytest.mark.parametrize("text, line, message", [
    ("1 a b\n0 a c\n0 a b\n", 3, "labelled 0, but 1 on line 1"),
    ("a b target\nb a nontarget\n", 2, "labelled 0, but 1 on line 1"),  # a match is symmetric
    ("1 a b\n1 c c\n", 2, "compares 'c' with itself"),
])
def test_contradictory_and_self_trials_are_errors(tmp_path, text, line, message):
    path = tmp_path / "trials.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        read_trials(path)
    assert str(info.value).startswith(f"{path}:{line}:")


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_label(tmp_path):
    for text in ("1 a b\n0 a c\n", "a b target\na c nontarget\n"):
        path = tmp_path / "bom.txt"
        path.write_bytes(b"\xef\xbb\xbf" + text.encode())
        assert read_trials(path).labels.tolist() == [1, 0]
    save_wav(tmp_path / "wav" / "a.wav", np.zeros(SAMPLE_RATE // 4))
    (tmp_path / "wav.scp").write_bytes(b"\xef\xbb\xbfu1 wav/a.wav\n")
    (tmp_path / "utt2spk").write_bytes(b"\xef\xbb\xbfu1 s\n")
    assert [u.key for u in read_kaldi_lists(tmp_path / "wav.scp", tmp_path / "utt2spk")] == ["u1"]
    (tmp_path / "latin1.txt").write_bytes(b"1 caf\xe9 b\n")
    with pytest.raises(DataError, match="not a text file"):
        read_trials(tmp_path / "latin1.txt")


def _write_lists(tmp_path, scp: str, u2s: str):
    (tmp_path / "wav.scp").write_text(scp)
    (tmp_path / "utt2spk").write_text(u2s)
    return tmp_path / "wav.scp", tmp_path / "utt2spk"


def test_kaldi_lists_with_relative_and_absolute_paths(tmp_path):
    _write_tree(tmp_path / "wav", VOX_KEYS[:2])
    absolute = tmp_path / "wav" / VOX_KEYS[1]
    scp, u2s = _write_lists(tmp_path, f"u1 wav/{VOX_KEYS[0]}\nu2 {absolute}\n", "u2 spkB\nu1 spkA\n")
    utts = read_kaldi_lists(scp, u2s)
    assert utts == [
        Utterance("u1", str(tmp_path / "wav" / VOX_KEYS[0]), "spkA"),
        Utterance("u2", str(absolute), "spkB"),
    ]


@pytest.mark.parametrize(
    "scp, u2s, bad_file, line, message",
    [
        ("u1 wav/a.wav\nu2\n", "u1 s\n", "wav.scp", 2, "expected '<key> <path>'"),
        ("u1 wav/a.wav\nu1 wav/a.wav\n", "u1 s\n", "wav.scp", 2, "duplicate key"),
        ("u1 wav/a.wav\nu2 wav/a.wav\n", "u1 s\n", "wav.scp", 2, "has no speaker"),
        ("u1 wav/a.wav\n", "u1 s\nu9 s\n", "utt2spk", 2, "is not in"),
        ("u1 wav/missing.wav\n", "u1 s\n", "wav.scp", 1, "does not exist"),
        ("u1 sox a.flac -t wav - |\n", "u1 s\n", "wav.scp", 1, "piped"),
        ("\n\n", "u1 s\n", "wav.scp", None, "empty"),
    ],
)
def test_bad_kaldi_lists_name_file_and_line(tmp_path, scp, u2s, bad_file, line, message):
    save_wav(tmp_path / "wav" / "a.wav", np.zeros(SAMPLE_RATE // 4))
    paths = _write_lists(tmp_path, scp, u2s)
    with pytest.raises(DataError, match=message) as info:
        read_kaldi_lists(*paths)
    where = tmp_path / bad_file
    assert str(info.value).startswith(f"{where}:{line}:" if line else f"{where}:")


def _write_corpus(root, test_keys_in_trials=None):
    dev = ["s1/a/00001.wav", "s1/a/00002.wav", "s2/b/00001.wav"]
    test = ["t1/c/00001.wav", "t1/d/00002.wav", "t2/e/00001.wav"]
    _write_tree(root / "dev" / "wav", dev)
    _write_tree(root / "test" / "wav", test)
    lists = root / "lists"
    lists.mkdir()
    for split, keys in [("dev", dev), ("test", test)]:
        (lists / f"{split}_wav.scp").write_text("".join(f"{k} {split}/wav/{k}\n" for k in keys))
        (lists / f"{split}_utt2spk").write_text("".join(f"{k} {k.split('/')[0]}\n" for k in keys))
    enroll, target, other = test_keys_in_trials or test
    write_trials(Trials(np.array([1, 0], np.int8), [enroll, enroll], [target, other]),
                 root / "trials" / "test.txt")


def test_load_generated_corpus(tmp_path):
    _write_corpus(tmp_path)
    corpus = load_corpus(tmp_path)
    assert [u.speaker for u in corpus.train] == ["s1", "s1", "s2"]
    assert corpus.test[2] == Utterance("t2/e/00001.wav", str(tmp_path / "test/wav/t2/e/00001.wav"), "t2")
    assert corpus.trials.labels.tolist() == [1, 0]
    assert corpus.trials.keys() <= {u.key for u in corpus.test}


def test_corpus_trials_must_use_test_keys(tmp_path):
    _write_corpus(tmp_path, ["t1/c/00001.wav", "t1/d/00002.wav", "s1/a/00001.wav"])
    with pytest.raises(DataError, match=r"test\.txt:2: utterance 's1/a/00001.wav'"):
        load_corpus(tmp_path)


def test_corpus_speakers_must_be_disjoint(tmp_path):
    _write_corpus(tmp_path)
    scp = tmp_path / "lists" / "test_utt2spk"
    scp.write_text(scp.read_text().replace(" t2\n", " s2\n"))
    with pytest.raises(DataError, match="disjoint"):
        load_corpus(tmp_path)


def test_kaldi_lists_round_trip(tmp_path):
    _write_tree(tmp_path / "wav", VOX_KEYS)
    utts = scan_tree(tmp_path / "wav")
    write_kaldi_lists(utts, tmp_path / "l" / "wav.scp", tmp_path / "l" / "utt2spk")
    assert read_kaldi_lists(tmp_path / "l" / "wav.scp", tmp_path / "l" / "utt2spk") == utts


def test_lists_command_skips_and_reports_bad_files(tmp_path, capsys):
    """The data-preparation run: bad files are listed with reasons, nothing else is lost."""
    root = tmp_path / "wav"
    _write_tree(root, VOX_KEYS)
    (root / VOX_KEYS[3]).write_bytes(b"RIFF\x00\x00")  # corrupt header
    trials = tmp_path / "trials.txt"
    trials.write_text(f"1 {VOX_KEYS[1]} {VOX_KEYS[2]}\n0 {VOX_KEYS[1]} {VOX_KEYS[3]}\n")
    out = tmp_path / "out"
    code = main(["lists", "--wav-root", str(root), "--trials", str(trials),
                 "--min-seconds", "0.2", "--out", str(out)])
    assert code == 0
    kept = read_kaldi_lists(out / "wav.scp", out / "utt2spk")
    assert [u.key for u in kept] == sorted(VOX_KEYS[:3])
    bad = (out / "bad.txt").read_text().splitlines()
    assert len(bad) == 1 and bad[0].startswith(str(root / VOX_KEYS[3]) + "\t")
    assert read_trials(out / "trials.txt").test == [VOX_KEYS[2]]
    assert "trials_kept" in capsys.readouterr().out
    listed = (out / "wav.scp").read_bytes()
    assert main(["lists", "--wav-root", str(root), "--out", str(out)]) == 2  # not replaced without --force
    assert "holds lists already" in capsys.readouterr().err and (out / "wav.scp").read_bytes() == listed
    assert main(["lists", "--wav-root", str(root), "--out", str(out), "--force"]) == 0  # default 0.5 s
    reasons = [line.split("\t")[1] for line in (out / "bad.txt").read_text().splitlines()]
    assert len(reasons) == 4 and sum("at least 0.5 s" in r for r in reasons) == 3  # 0.25 s files
