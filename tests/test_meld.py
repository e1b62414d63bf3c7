"""MELD: the CSVs and clip folders read back exactly (labels, speakers, official splits),
MELD's text quirks, bad inputs listed once each while setup survives, and the realistic
layout's quirks and MELD.Raw's known defects, each read or reported as it should be."""

from __future__ import annotations

import csv
import io
import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.corpora import MELD, shared_corpus
from trainers.data.av_dataset import RavdessDataModule
from trainers.data.config import DataConfig, DataError
from trainers.data.meld import CLASSES, CSV_NAMES, MeldIndex, fix_c1, index_meld, parse_time
from trainers.data.synth import CorpusManifest, Recording
from trainers.data.synth import meld as synth_meld
from trainers.data.synth.meld import FOLDERS, speaker_name

SPLIT_OF = {"train": "train", "dev": "val", "test": "test"}


class Bad:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def __call__(self, path: str, reason: str) -> None:
        self.items.append((path, reason))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """4 speakers; train 3 dialogues, dev 1, test 1; 6 utterances each (30 clips)."""
    return shared_corpus(tmp_path_factory, "meld", **MELD)


def test_round_trip_reads_back_labels_speakers_and_official_splits(corpus: Path) -> None:
    manifest = CorpusManifest.load(corpus)
    bad = Bad()
    index = index_meld(str(corpus), bad)
    assert bad.items == [] and index.bad_times == 0
    assert manifest.classes == CLASSES
    assert [r.key for r in index.recordings] == [r.key for r in manifest.recordings]
    for rec, truth in zip(index.recordings, manifest.recordings, strict=True):
        assert rec.label == truth.label and CLASSES[rec.label] == truth.emotion
        assert rec.actor == speaker_name(truth.actor)
        split = truth.key.split("/")[0]
        assert index.split_of[rec.key] == SPLIT_OF[split]
        assert [str(Path(p).relative_to(corpus)) for p in rec.files] == list(truth.files)
        row = index.rows[rec.key]
        assert (row.dialogue, row.utterance) == (truth.statement, truth.repetition)
        assert row.csv_seconds is not None and row.csv_seconds > 0
    counts = Counter((index.split_of[r.key], CLASSES[r.label]) for r in index.recordings)
    assert counts == Counter(
        (SPLIT_OF[r.key.split("/")[0]], r.emotion) for r in manifest.recordings
    )
    assert Counter(index.split_of.values()) == {"train": 18, "val": 6, "test": 6}
    train = Counter(CLASSES[r.label] for r in index.recordings if index.split_of[r.key] == "train")
    assert set(train) == set(CLASSES) and train.most_common(1)[0][0] == "neutral"
    # Clip lengths vary (held frames and silence after the speech): masks matter.
    assert len({r.n_frames for r in manifest.recordings}) >= 5


def test_csvs_carry_melds_quirks(corpus: Path) -> None:
    text = (corpus / CSV_NAMES["train"]).read_text(encoding="utf-8")
    assert text.splitlines()[0] == (
        "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,"
        "StartTime,EndTime"
    )
    assert "’" in text and "“" in text
    assert '"0:0' in text and '"00:0' in text  # one- and two-digit hours side by side


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0:00:01,234", 1.234),
        ("00:00:01,234", 1.234),
        ("1:02:03,5", 3723.5),
        ("00:16:16.059", 976.059),
        ("0:00:07", 7.0),
    ],
)
def test_parse_time_accepts_both_hour_spellings(text: str, seconds: float) -> None:
    assert parse_time(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1:2:3,4", "0:61:00,000", "00:00:01;234", "abc"])
def test_parse_time_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


def test_bom_and_nested_melds_raw_folders_read_the_same(corpus: Path, tmp_path: Path) -> None:
    """MELD.Raw's archives unpack to train/train_splits/...; a CSV may start with a BOM."""
    nested = tmp_path / "MELD.Raw"
    for split, folder in FOLDERS.items():
        shutil.copytree(corpus / folder, nested / split / folder)
        data = (corpus / CSV_NAMES[split]).read_bytes()
        (nested / CSV_NAMES[split]).write_bytes(b"\xef\xbb\xbf" + data)
    bad = Bad()
    got = index_meld(str(tmp_path), bad)
    assert bad.items == []
    want = index_meld(str(corpus), Bad())
    assert [(r.key, r.label, r.actor) for r in got.recordings] == [
        (r.key, r.label, r.actor) for r in want.recordings
    ]


def test_missing_csv_or_folder_is_a_clear_error(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no MELD CSVs"):
        index_meld(str(tmp_path), Bad())
    shutil.copytree(corpus, tmp_path / "m")
    shutil.rmtree(tmp_path / "m" / FOLDERS["dev"])
    with pytest.raises(DataError, match="dev_splits_complete"):
        index_meld(str(tmp_path / "m"), Bad())


def test_bad_inputs_are_listed_once_each_and_setup_survives(corpus: Path, tmp_path: Path) -> None:
    data = tmp_path / "MELD.Raw"
    shutil.copytree(corpus, data)
    train = data / FOLDERS["train"]
    missing = train / "dia0_utt1.mp4"
    missing.unlink()
    truncated = train / "dia1_utt0.mp4"
    blob = truncated.read_bytes()
    truncated.write_bytes(blob[: len(blob) // 3])
    garbage = data / FOLDERS["test"] / "dia0_utt2.mp4"
    garbage.write_bytes(bytes(range(256)) * 40)
    stray = train / "final_videos_train_dia0.mp4"
    shutil.copy(train / "dia0_utt0.mp4", stray)
    csv_path = data / CSV_NAMES["train"]
    lines = csv_path.read_text(encoding="utf-8").splitlines()
    n = len(lines)
    lines.append(f'{n},“Hi”,Joey,happiness,positive,9,0,1,1,"0:00:01,000","0:00:02,000"')
    lines.append(f'{n + 1},Hey,Joey,joy,positive,x,0,1,1,"0:00:01,000","0:00:02,000"')
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    cfg = DataConfig(
        root=str(data), layout="meld", face_size=32, max_frames=16, max_audio_frames=100,
        prepare_workers=2, cache_dir=str(tmp_path / "cache"), face_detector="haar",
    )  # fmt: skip
    module = RavdessDataModule(cfg)
    assert module.classes == list(CLASSES)
    bad = Bad()
    module.setup(bad)
    paths = [p for p, _ in bad.items]
    assert len(paths) == len(set(paths)), "an input was reported twice"
    reasons = dict(bad.items)
    assert reasons.pop(str(missing)) == "listed in train_sent_emo.csv (Sr No. 2) but missing"
    assert reasons.pop(str(stray)).startswith("not a MELD clip name")
    assert "emotion 'happiness'" in reasons.pop(f"{csv_path}:{n + 1}")
    assert "Dialogue_ID 'x'" in reasons.pop(f"{csv_path}:{n + 2}")
    assert reasons.pop(str(truncated))
    assert reasons.pop(str(garbage))
    assert reasons == {}
    # The official splits survive, minus the three clips that could not be used.
    info = module.describe()
    assert info["split"] == "official" and info["dropped_recordings"] == 2
    sizes = {s: info["splits"][s]["samples"] for s in ("train", "val", "test")}
    assert sizes == {"train": 16, "val": 6, "test": 5}
    assert all(s.key.startswith("test/") for s in module.samples("test"))
    assert all(s.key.startswith("dev/") for s in module.samples("val"))
    speakers = {s.actor for s in module.samples("train")}
    assert speakers <= {speaker_name(i) for i in range(1, 5)}


def test_meld_slowfast_trains_on_meld_by_default(corpus: Path, tmp_path: Path) -> None:
    """meld-slowfast's default data.layout is "meld": no --set needed for MELD.Raw."""
    from tests.conftest import run_trainers
    from trainers.rundir import RunDir

    sets = [
        "model.depth=18", "model.width=8", "data.clip_frames=8", "data.max_frames=16",
        "data.face_size=32", "train.batch_size=4", "train.grad_accum=1", "train.threads=1",
        "data.prepare_workers=2", "data.face_detector=haar", "train.epochs=1",
        "train.min_epochs=1", "train.amp=off",
        f"data.cache_dir={tmp_path / 'cache'}",
    ]  # fmt: skip
    args = ["train", "meld-slowfast", "--data", str(corpus), "--out", str(tmp_path)]
    proc = run_trainers(*args, "--run-id", "m", *[x for s in sets for x in ("--set", s)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = RunDir(tmp_path / "m")
    assert run.read_manifest()["config"]["data"]["layout"] == "meld"
    summary = run.read_summary()
    assert summary["classes"] == list(CLASSES)
    assert summary["majority_floor"]["class"] == 0  # neutral
    rows = run.predictions.read_text().splitlines()
    assert len(rows) == 12  # dev 6 + test 6 clips, one prediction each (clips averaged)


# ---------------------------------------------------------------- realistic layout


@pytest.fixture(scope="module")
def realistic(tmp_path_factory) -> tuple[Path, dict[str, Recording]]:
    """The realistic layout at its smallest: 2 speakers; train dialogues 0, 1, 125,
    dev 110 (8 utterances, utt7's clip missing), test 155 (31 clips)."""
    out = tmp_path_factory.mktemp("meld-realistic")
    tasks = synth_meld.plan(actors=2, seed=6, statements=1, repetitions=1, realistic=True)
    return out, {t.key: synth_meld.write(t, out) for t in tasks}


def _index(root: Path) -> tuple[MeldIndex, dict[str, str]]:
    bad = Bad()
    index = index_meld(str(root), bad)
    reasons = dict(bad.items)
    assert len(reasons) == len(bad.items), "an input was reported twice"
    return index, reasons


def test_realistic_layout_has_melds_folders_and_csv_places(realistic) -> None:
    root, _ = realistic
    assert synth_meld.SUPPORTS_REALISTIC
    assert sorted(str(p.relative_to(root)) for p in root.iterdir()) == ["dev", "test", "train"]
    for split, folder in FOLDERS.items():
        assert (root / split / folder).is_dir()
        assert (root / split / CSV_NAMES[split]).is_file()


def test_realistic_csvs_mix_c1_apostrophes_with_lf_and_typographic_quotes_with_crlf(
    realistic,
) -> None:
    root, _ = realistic
    for split in ("train", "dev"):
        data = (root / split / CSV_NAMES[split]).read_bytes()
        assert b"\r\n" not in data and data.count(b"\n") > 1
        assert "\x92".encode() in data and "’".encode() not in data
    data = (root / "test" / CSV_NAMES["test"]).read_bytes()
    assert data.count(b"\r\n") == data.count(b"\n") > 1
    assert "’".encode() in data and "“".encode() in data
    assert not any(0x80 <= ord(ch) <= 0x9F for ch in data.decode("utf-8"))


def test_realistic_csvs_parse_gaps_hours_two_digit_ms_and_zero_duration(realistic) -> None:
    root, written = realistic
    rows = {
        split: list(csv.DictReader(io.StringIO(
            (root / split / CSV_NAMES[split]).read_text(encoding="utf-8"), newline=""
        )))
        for split in FOLDERS
    }  # fmt: skip
    serials = [int(r["Sr No."]) for r in rows["train"]]
    assert serials != list(range(1, len(serials) + 1))  # gaps, as in MELD
    times = [r[c] for r in rows["train"] for c in ("StartTime", "EndTime")]
    assert any(t.startswith("0:") for t in times) and any(t.startswith("00:") for t in times)
    assert any(len(t.split(",")[1]) == 2 for t in times)  # 00:06:47,28
    zero = [r for r in rows["test"] if r["StartTime"] == r["EndTime"]]
    assert [(r["Dialogue_ID"], r["Utterance_ID"]) for r in zero] == [("155", "3")]

    index, _ = _index(root)
    assert index.bad_times == 0  # every spelling parsed
    assert index.rows["test/dia155_utt3"].csv_seconds == 0.0
    assert index.recordings[-1].key.startswith("test/")
    kept = {r.key: r for r in index.recordings}
    assert kept["test/dia155_utt3"].label == written["test/dia155_utt3"].label  # kept, right label
    two_digit = next(r for r in rows["train"] if len(r["EndTime"].split(",")[1]) == 2)
    key = f"train/dia{two_digit['Dialogue_ID']}_utt{two_digit['Utterance_ID']}"
    want = parse_time(two_digit["EndTime"]) - parse_time(two_digit["StartTime"])
    assert index.rows[key].csv_seconds == pytest.approx(want) and want > 0


def test_realistic_corpus_reads_back_every_label_and_speaker(realistic) -> None:
    root, written = realistic
    index, _ = _index(root)
    broken = {"train/dia125_utt3"}  # unplayable; dev/dia110_utt7 was never written
    assert "dev/dia110_utt7" not in written
    assert sorted(r.key for r in index.recordings) == sorted(set(written) - broken)
    for rec in index.recordings:
        truth = written[rec.key]
        assert rec.label == truth.label and CLASSES[rec.label] == truth.emotion
        assert rec.actor == speaker_name(truth.actor)
        assert index.split_of[rec.key] == SPLIT_OF[rec.key.split("/")[0]]
    assert Counter(index.split_of.values()) == {"train": 17, "val": 7, "test": 6}


def test_melds_known_defects_are_listed_once_each_with_their_issue(
    realistic, tmp_path: Path
) -> None:
    root, _ = realistic
    copy = tmp_path / "MELD.Raw"
    shutil.copytree(root, copy)
    test_folder = copy / "test" / FOLDERS["test"]
    for utt in (1, 2):  # the real folder holds about 130 of them: still one line
        shutil.copy(
            test_folder / "dia155_utt0.mp4", test_folder / f"final_videos_testdia155_utt{utt}.mp4"
        )
    _, reasons = _index(copy)
    unplayable = reasons.pop(str(copy / "train" / FOLDERS["train"] / "dia125_utt3.mp4"))
    assert unplayable.startswith("unplayable: cannot open") and "MELD/issues/39" in unplayable
    missing = reasons.pop(str(copy / "dev" / FOLDERS["dev"] / "dia110_utt7.mp4"))
    assert missing.startswith("listed in dev_sent_emo.csv (Sr No. ") and "issues/27" in missing
    summary = reasons.pop(str(test_folder / "final_videos_test*.mp4"))
    assert summary.startswith("3 file(s) ignored") and "issues/22" in summary
    assert reasons == {}


def test_a_repaired_dia125_utt3_is_used(realistic, tmp_path: Path) -> None:
    """Users replace the broken clip with a re-cut one (declare-lab/MELD#39)."""
    root, written = realistic
    copy = tmp_path / "MELD.Raw"
    shutil.copytree(root, copy)
    train = copy / "train" / FOLDERS["train"]
    shutil.copy(train / "dia125_utt2.mp4", train / "dia125_utt3.mp4")
    index, reasons = _index(copy)
    assert str(train / "dia125_utt3.mp4") not in reasons and len(reasons) == 2
    assert {r.key: r.label for r in index.recordings}["train/dia125_utt3"] == (
        written["train/dia125_utt3"].label
    )


def test_c1_speaker_names_and_a_cp1252_csv_read_the_same(realistic, tmp_path: Path) -> None:
    """A speaker name with MELD.Raw's U+0092, and the train CSV re-saved as cp1252 bytes."""
    assert fix_c1("Chandler\x92s Boss") == "Chandler’s Boss" and fix_c1("Joey") == "Joey"
    root, _ = realistic
    copy = tmp_path / "MELD.Raw"
    shutil.copytree(root, copy)
    path = copy / "train" / CSV_NAMES["train"]
    text = path.read_text(encoding="utf-8").replace(",Joey,", ",Joey\x92s Dad,", 1)
    path.write_bytes(fix_c1(text).encode("cp1252"))
    assert b"\x92" in path.read_bytes()  # raw bytes now: no UTF-8
    want, _ = _index(root)
    got, _ = _index(copy)
    assert [(r.key, r.label) for r in got.recordings] == [(r.key, r.label) for r in want.recordings]
    assert "Joey’s Dad" in {r.actor for r in got.recordings}


def test_realistic_meld_is_deterministic(realistic, tmp_path: Path) -> None:
    """The spoiled clip and the CSVs are the same bytes each time."""
    root, written = realistic
    tasks = synth_meld.plan(actors=2, seed=6, statements=1, repetitions=1, realistic=True)
    for task in (tasks[0], next(t for t in tasks if t.key == "train/dia125_utt3")):
        assert synth_meld.write(task, tmp_path) == written[task.key]
    for rel in ("train/train_sent_emo.csv", "train/train_splits/dia125_utt3.mp4"):
        assert (tmp_path / rel).read_bytes() == (root / rel).read_bytes(), rel
