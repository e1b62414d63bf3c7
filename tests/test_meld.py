"""MELD: the CSVs and clip folders read back exactly (labels, speakers, official splits),
MELD's text quirks, and bad inputs listed once each while setup survives."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.corpora import MELD, shared_corpus
from trainers.data.av_dataset import RavdessDataModule
from trainers.data.config import DataConfig, DataError
from trainers.data.meld import CLASSES, CSV_NAMES, index_meld, parse_time
from trainers.data.synth import CorpusManifest
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
        prepare_workers=2, cache_dir=str(tmp_path / "cache"),
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
        "data.prepare_workers=2", "train.epochs=1", "train.min_epochs=1", "train.amp=off",
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
