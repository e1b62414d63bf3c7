"""CREMA-D: the generated layout read back exactly, both real folder layouts, bad inputs
listed once each, a tiny end-to-end training run through the CLI, and the generator's
realistic (release) layout: folders, codecs and VideoDemographics.csv."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import av
import pytest
import soundfile as sf

from tests.avfiles import moving_frames, tone, write_media, write_wav
from tests.conftest import SMALL_MODEL, run_trainers
from tests.corpora import CREMAD, shared_corpus
from trainers.data.av_dataset import RavdessDataModule
from trainers.data.config import DataConfig, DataError
from trainers.data.cremad import CLASSES, index_cremad, parse_name, read_demographics
from trainers.data.ravdess import split_actors
from trainers.data.synth import CorpusManifest
from trainers.data.synth import cremad as synth_cremad
from trainers.rundir import RunDir

# The data settings of every decoding test here, so the e2e run reuses the suite's cache.
SMALL_DATA = ["data.face_size=32", "data.max_frames=16", "data.max_audio_frames=100"]


class Bad:
    """A report_bad that keeps every call, duplicates included."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def __call__(self, path: str, reason: str) -> None:
        self.items.append((path, reason))

    def by_name(self) -> dict[str, str]:
        return {Path(p).name: r for p, r in self.items}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """3 actors x 17 takes (IEO at LO/HI plus neutral XX, DFA at XX)."""
    return shared_corpus(tmp_path_factory, "crema-d", **CREMAD)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cremad-cache")


def test_round_trip_reads_back_every_label_actor_and_file(corpus: Path) -> None:
    manifest = CorpusManifest.load(corpus)
    bad = Bad()
    recordings = index_cremad(str(corpus), bad)
    assert bad.items == []
    assert manifest.classes == CLASSES
    assert len(recordings) == len(manifest.recordings) == 3 * 17
    want = {r.key: r for r in manifest.recordings}
    assert {r.key for r in recordings} == set(want)
    for rec in recordings:
        truth = want[rec.key]
        assert CLASSES[rec.label] == truth.emotion and rec.label == truth.label
        assert rec.actor == str(truth.actor) and rec.intensity == truth.intensity
        assert {str(Path(p).relative_to(corpus)) for p in rec.files} == set(truth.files)
        assert Path(rec.video_sources[0]).suffix == ".mp4"
        assert Path(rec.audio_sources[0]).suffix == ".wav"  # the wav first, the mp4 as fallback
    counts = Counter(CLASSES[r.label] for r in recordings)
    assert counts == Counter(r.emotion for r in manifest.recordings)
    # NEU is the rare class, as in the real corpus.
    assert counts["neutral"] == 6 and all(counts[c] == 9 for c in CLASSES if c != "neutral")
    assert sorted({r.actor for r in recordings}) == ["1001", "1002", "1003"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("1001_DFA_ANG_XX.wav", ("1001", "DFA", 0, "XX")),
        ("1091_IEO_NEU_XX.flv", ("1091", "IEO", 4, "XX")),
        ("1022_ieo_sad_hi.mp4", ("1022", "IEO", 5, "HI")),
    ],
)
def test_parse_name(name: str, expected: tuple) -> None:
    parsed = parse_name(name)
    assert (parsed.actor, parsed.sentence, parsed.emotion, parsed.level) == expected


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("1001_DFA_ANG.wav", "ActorID_Sentence_Emotion_Level"),
        ("1001_XYZ_ANG_XX.wav", "sentence 'XYZ'"),
        ("1001_DFA_JOY_XX.wav", "emotion 'JOY'"),
        ("1001_DFA_ANG_ZZ.wav", "level 'ZZ'"),
        ("101_DFA_ANG_XX.wav", "ActorID"),
        ("1001_DFA_ANG_XX", "extension"),
        # Older copies' misnamed file (the repository's issue #6): said, not guessed.
        ("1040_ITH_SAD_X.wav", "probably a cut 'XX': rename the file to 1040_ITH_SAD_XX.wav"),
    ],
)
def test_parse_name_says_what_is_wrong(name: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_name(name)


def test_real_folder_layouts_flash_video_and_flat_read_the_same(corpus: Path, tmp_path: Path):
    """AudioWAV/ + VideoFlash/*.flv (the release) and one flat folder index as the generator's."""
    reference = index_cremad(str(corpus), Bad())
    flash = tmp_path / "release"
    (flash / "AudioWAV").mkdir(parents=True)
    (flash / "VideoFlash").mkdir()
    flat = tmp_path / "flat"
    flat.mkdir()
    for wav in (corpus / "AudioWAV").iterdir():
        shutil.copy(wav, flash / "AudioWAV" / wav.name)
        shutil.copy(wav, flat / wav.name)
    for mp4 in (corpus / "VideoMP4").iterdir():
        shutil.copy(mp4, flash / "VideoFlash" / (mp4.stem + ".flv"))
        shutil.copy(mp4, flat / mp4.name)
    (flash / "VideoDemographics.csv").write_text("ActorID,Age,Sex\n1001,51,Male\n")
    for root, video_suffix in ((flash, ".flv"), (flat, ".mp4")):
        bad = Bad()
        got = index_cremad(str(root), bad)
        assert bad.items == []  # the CSV beside the folders is not a media file
        assert [(r.key, r.label, r.actor) for r in got] == [
            (r.key, r.label, r.actor) for r in reference
        ]
        assert all(Path(r.video_sources[0]).suffix == video_suffix for r in got)
        assert all(len(r.files) == 2 for r in got)


def corrupt_copy(corpus: Path, dest: Path) -> dict[str, list[Path]]:
    """Actor 1001's takes plus every kind of bad input; returns what was broken."""
    for sub in ("AudioWAV", "VideoMP4"):
        (dest / sub).mkdir(parents=True)
        for f in sorted((corpus / sub).glob("1001_*")):
            shutil.copy(f, dest / sub / f.name)
    truncated = dest / "VideoMP4" / "1001_DFA_ANG_XX.mp4"
    blob = truncated.read_bytes()
    truncated.write_bytes(blob[: len(blob) // 3])
    empty = dest / "AudioWAV" / "1001_DFA_SAD_XX.wav"
    empty.write_bytes(b"")
    garbage = dest / "VideoMP4" / "1001_ITH_HAP_XX.mp4"  # a take of its own, video only
    garbage.write_bytes(bytes(range(256)) * 40)
    odd = [dest / "AudioWAV" / "1001_DFA_ANG.wav", dest / "VideoMP4" / "final take.mp4"]
    for path in odd:
        shutil.copy(dest / "AudioWAV" / "1001_DFA_HAP_XX.wav", path)
    return {"truncated": [truncated], "empty": [empty], "garbage": [garbage], "names": odd}


def test_bad_inputs_are_listed_once_each_and_setup_survives(
    corpus: Path, cache: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    broken = corrupt_copy(corpus, data)
    cfg = DataConfig(
        root=str(data), layout="crema-d", face_size=32, max_frames=16, max_audio_frames=100,
        prepare_workers=2, cache_dir=str(cache), face_detector="haar",
    )  # fmt: skip
    module = RavdessDataModule(cfg)
    assert module.classes == list(CLASSES)
    bad = Bad()
    module.setup(bad)
    paths = [p for p, _ in bad.items]
    assert len(paths) == len(set(paths)), "a file was reported twice"
    reasons = bad.by_name()
    for path in broken["names"]:
        assert reasons.pop(path.name).startswith("not a CREMA-D file name")
    assert reasons.pop("1001_DFA_SAD_XX.wav") == "zero-byte file"  # audio falls back to the mp4
    assert reasons.pop("1001_ITH_HAP_XX.mp4")  # garbage: both modalities tried, one line
    # The truncated mp4 was the take's only video: the take is dropped and its wav says why.
    assert reasons.pop("1001_DFA_ANG_XX.mp4")
    assert reasons.pop("1001_DFA_ANG_XX.wav").startswith("skipped: recording 1001_DFA_ANG_XX")
    assert reasons == {}
    # 17 takes of 1001 plus the garbage-only take; two dropped; all in train (one actor).
    info = module.describe()
    assert info["recordings"] == 18 and info["dropped_recordings"] == 2
    assert info["splits"]["train"]["samples"] == 16
    assert info["dataset"] == "crema-d" and info["classes"] == list(CLASSES)


def test_nothing_to_read_names_the_layout(tmp_path: Path) -> None:
    (tmp_path / "readme.mp4").write_bytes(b"x")
    module = RavdessDataModule(DataConfig(root=str(tmp_path), layout="crema-d"))
    with pytest.raises(DataError, match=r"no crema-d recordings.*1001_DFA_ANG_XX"):
        module.setup(Bad())


def test_train_hybrid_attention_end_to_end(corpus: Path, cache: Path, tmp_path: Path) -> None:
    sets = [*SMALL_MODEL, *SMALL_DATA, "data.layout=crema-d", "train.epochs=1",
            f"data.cache_dir={cache}"]  # fmt: skip
    args = ["train", "hybrid-attention", "--data", str(corpus), "--out", str(tmp_path)]
    proc = run_trainers(*args, "--run-id", "c", *[x for s in sets for x in ("--set", s)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = RunDir(tmp_path / "c")
    summary = run.read_summary()
    assert summary["classes"] == list(CLASSES)
    assert summary["test"]["confusion"] and len(summary["test"]["confusion"]) == 6
    assert "majority_floor" in summary
    # 3 actors: 1 train, 1 val, 1 test; predictions cover val and test, labels as written.
    rows = [json.loads(x) for x in run.predictions.read_text().splitlines()]
    assert Counter(r["split"] for r in rows) == {"val": 17, "test": 17}
    actors = {s: {r["actor"] for r in rows if r["split"] == s} for s in ("val", "test")}
    assert len(actors["val"]) == len(actors["test"]) == 1 and actors["val"] != actors["test"]
    truth = {r.key: r.label for r in CorpusManifest.load(corpus).recordings}
    assert all(truth[r["key"]] == r["label"] for r in rows)


# ---------------------------------------------------------------- realistic layout (generator)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> tuple[Path, list]:
    """Two takes in the release's layout: actor 1001's first (which also writes
    VideoDemographics.csv for both actors) and actor 1002's first."""
    tasks = synth_cremad.plan(actors=2, seed=4, statements=1, repetitions=1, realistic=True)
    picked = [tasks[0], next(t for t in tasks if t.actor == 1002)]
    out = tmp_path_factory.mktemp("cremad-release")
    return out, [synth_cremad.write(t, out) for t in picked]


def test_realistic_layout_is_the_releases_folders(release) -> None:
    out, recs = release
    assert synth_cremad.SUPPORTS_REALISTIC
    profile = synth_cremad.REALISTIC_PROFILE  # what the manifest says the files hold
    assert (profile.frame_size, profile.fps, profile.sample_rate) == ((480, 360), 30, 16000)
    assert sorted(p.name for p in out.iterdir()) == [
        "AudioMP3", "AudioWAV", "VideoDemographics.csv", "VideoFlash",
    ]  # fmt: skip
    for rec in recs:
        assert rec.files == (
            f"VideoFlash/{rec.key}.flv", f"AudioWAV/{rec.key}.wav", f"AudioMP3/{rec.key}.mp3",
        )  # fmt: skip
        assert all((out / f).is_file() for f in rec.files)


def test_realistic_media_have_the_releases_codecs(release) -> None:
    out, recs = release
    for rec in recs:
        with av.open(str(out / rec.files[0])) as flv:
            assert flv.format.name == "flv"
            video, audio = flv.streams.video[0], flv.streams.audio[0]
            assert video.codec_context.name == "flv"  # FLV1, Sorenson Spark
            assert (video.codec_context.width, video.codec_context.height) == (480, 360)
            assert video.average_rate == 30
            assert audio.codec_context.name in ("mp3", "mp3float")
            assert audio.codec_context.sample_rate == 44100 and audio.channels == 1
            frames = sum(1 for _ in flv.decode(video))
        assert frames == rec.n_frames == round(rec.duration * 30) == len(rec.faces)
        x0, y0, x1, y1 = rec.faces[0]  # the ground truth is in the flv's own pixels
        assert 0 <= x0 < x1 <= 480 and 0 <= y0 < y1 <= 360 and x1 - x0 > 60
        info = sf.info(str(out / rec.files[1]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert info.frames == rec.n_samples
        with av.open(str(out / rec.files[2])) as mp3:
            assert mp3.format.name == "mp3"
            stream = mp3.streams.audio[0]
            assert stream.codec_context.sample_rate == 44100 and stream.channels == 1
            seconds = sum(f.samples for f in mp3.decode(stream)) / 44100
        assert abs(seconds - rec.duration) < 0.1  # the encoder's padding, no more


def test_demographics_csv_has_the_real_header_and_the_generators_sexes(release) -> None:
    out, recs = release
    text = (out / "VideoDemographics.csv").read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == '"ActorID","Age","Sex","Race","Ethnicity"'
    rows = list(csv.DictReader(lines))
    assert [int(r["ActorID"]) for r in rows] == [1001, 1002]
    female = {rec.actor: rec.female for rec in recs}
    for row in rows:
        assert row["Sex"] == ("Female" if female[int(row["ActorID"])] else "Male")
        assert 20 <= int(row["Age"]) <= 74
        assert row["Race"] in synth_cremad.RACES
        assert row["Ethnicity"] in synth_cremad.ETHNICITIES
    assert "1001," in text and '"Male"' in text  # numbers bare, strings quoted, as R writes


def test_realistic_takes_are_deterministic(release, tmp_path: Path) -> None:
    out, recs = release
    task = synth_cremad.plan(actors=2, seed=4, statements=1, repetitions=1, realistic=True)[0]
    again = synth_cremad.write(task, tmp_path)
    assert again == recs[0]
    for rel in (*again.files, "VideoDemographics.csv"):
        assert (tmp_path / rel).read_bytes() == (out / rel).read_bytes(), rel


@pytest.fixture(scope="module")
def release_files(tmp_path_factory) -> Path:
    """The real release's layout, tiny: VideoFlash/*.flv with an mp3 track, AudioWAV/ at
    16 kHz, AudioMP3/ (the same audio again) and VideoDemographics.csv; plus an flv with
    no audio track beside its wav, one with no audio at all, and the misnamed wav."""
    root = tmp_path_factory.mktemp("release") / "CREMA-D"
    for i, stem in enumerate(("1001_DFA_ANG_XX", "1002_DFA_SAD_XX")):
        write_media(root / "VideoFlash" / f"{stem}.flv", moving_frames(2, 15, i), 15,
                    tone(2, 22050))  # fmt: skip
        write_media(root / "AudioMP3" / f"{stem}.mp3", None, 0, tone(2, 22050))
        write_wav(root / "AudioWAV" / f"{stem}.wav", tone(2, 16000))
    write_media(root / "VideoFlash" / "1001_IOM_NEU_XX.flv", moving_frames(2, 15, 2), 15)
    write_wav(root / "AudioWAV" / "1001_IOM_NEU_XX.wav", tone(2, 16000))
    write_media(root / "VideoFlash" / "1002_IOM_HAP_XX.flv", moving_frames(2, 15, 3), 15)
    write_media(root / "VideoFlash" / "1040_ITH_SAD_XX.flv", moving_frames(2, 15, 4), 15,
                tone(2, 22050))  # fmt: skip
    write_wav(root / "AudioWAV" / "1040_ITH_SAD_X.wav", tone(2, 16000))
    (root / "VideoDemographics.csv").write_text(
        '"ActorID","Age","Sex","Race","Ethnicity"\n'
        '1001,51,"Male","Caucasian","Not Hispanic"\n'
        '1002,21,"Female","Caucasian","Not Hispanic"\n'
    )
    return root


def test_release_layout_one_sample_per_take_wav_first_sex_from_demographics(release_files):
    bad = Bad()
    recordings = {r.key: r for r in index_cremad(str(release_files), bad)}
    assert [(Path(p).name, why) for p, why in bad.items] == [
        ("1040_ITH_SAD_X.wav", "not a CREMA-D file name: level 'X' is not one of XX, LO, MD, "
         "HI; probably a cut 'XX': rename the file to 1040_ITH_SAD_XX.wav to use it"),
    ]  # fmt: skip
    assert sorted(recordings) == [
        "1001_DFA_ANG_XX", "1001_IOM_NEU_XX", "1002_DFA_SAD_XX", "1002_IOM_HAP_XX",
        "1040_ITH_SAD_XX",
    ]  # fmt: skip
    take = recordings["1001_DFA_ANG_XX"]
    assert len(take.files) == 3  # flv, wav and mp3: one take, not three
    assert [Path(p).parent.name for p in take.audio_sources] == [
        "AudioWAV", "AudioMP3", "VideoFlash"
    ]  # fmt: skip
    assert [Path(p).suffix for p in take.video_sources] == [".flv"]
    assert {k: r.sex for k, r in recordings.items()} == {
        "1001_DFA_ANG_XX": "male", "1001_IOM_NEU_XX": "male", "1002_DFA_SAD_XX": "female",
        "1002_IOM_HAP_XX": "female", "1040_ITH_SAD_XX": None,  # not in the table
    }  # fmt: skip


def test_release_layout_decodes_flv_and_wav_and_says_what_lacks_audio(release_files, tmp_path):
    cfg = DataConfig(
        root=str(release_files), layout="crema-d", face_size=16, max_frames=16, max_audio_frames=50,
        prepare_workers=1, cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip
    module = RavdessDataModule(cfg)
    bad = Bad()
    module.setup(bad)
    used = {
        s.key: [Path(p).name for p in s.sources]
        for split in ("train", "val", "test")
        for s in module.samples(split)
    }
    assert used == {
        "1001_DFA_ANG_XX": ["1001_DFA_ANG_XX.flv", "1001_DFA_ANG_XX.wav"],  # the mp3 unused
        # An flv without an audio track costs nothing while its wav works...
        "1001_IOM_NEU_XX": ["1001_IOM_NEU_XX.flv", "1001_IOM_NEU_XX.wav"],
        "1002_DFA_SAD_XX": ["1002_DFA_SAD_XX.flv", "1002_DFA_SAD_XX.wav"],
        # ...and the misnamed wav is not read: the take's audio is its flv's mp3 track.
        "1040_ITH_SAD_XX": ["1040_ITH_SAD_XX.flv"],
    }
    reasons = bad.by_name()
    assert reasons.pop("1002_IOM_HAP_XX.flv") == "no audio stream"  # no other audio: dropped
    assert reasons.pop("1040_ITH_SAD_X.wav").startswith("not a CREMA-D file name")
    assert reasons == {}
    assert module.describe()["dropped_recordings"] == 1


def test_demographics_rows_that_cannot_be_read_are_listed_not_guessed(tmp_path):
    table = tmp_path / "VideoDemographics.csv"
    table.write_text("ActorID,Age,Sex\n1001,51,Male\n1002,21,F\n10x3,30,Female\n1001,51,Male\n")
    bad = Bad()
    actors = read_demographics(str(table), bad)
    assert {a: (r.sex, r.age) for a, r in actors.items()} == {"1001": ("male", 51)}
    assert len(bad.items) == 1  # one line for the file, every problem named
    assert bad.items[0][1] == (
        "line 3: Sex 'F' of actor 1002 is not Male or Female; line 4: ActorID '10x3' is not "
        "four digits; line 5: actor 1001 listed twice (those actors' sexes are unknown)"
    )
    table.write_text("ActorID,Age\n1001,51\n")
    bad = Bad()
    assert read_demographics(str(table), bad) == {}
    assert "no Sex column (columns: ActorID, Age)" in bad.items[0][1]


def test_actor_split_balances_the_recorded_sex():
    """CREMA-D's actor numbers say nothing about sex (RAVDESS's odd numbers are male):
    with the demographics, the two held-out actors are one man and one woman."""
    actors = ["1001", "1002", "1003", "1004", "1005", "1006"]
    sex = dict(zip(actors, ["male"] * 3 + ["female"] * 3, strict=True))
    by_parity = set()
    for seed in range(8):
        parts = split_actors(actors, 0.15, 0.15, seed, sex_of=sex)
        assert {sex[a] for a in parts["val"] + parts["test"]} == {"male", "female"}
        plain = split_actors(actors, 0.15, 0.15, seed)
        by_parity.add(frozenset(sex[a] for a in plain["val"] + plain["test"]))
    assert frozenset({"male"}) in by_parity or frozenset({"female"}) in by_parity
