"""Tests of the synthetic corpus generator, on the files it really writes.

Why they look like this: loaders are built against real corpora's layouts,
so the names, folders, containers and codecs are checked exactly; the
corpus is only useful if it is reproducible and learnable, so determinism
(including independence from the worker count), face detectability and the
direction of the emotion cues are checked on decoded files, not on the
generator's internals. Corpora are tiny (two actors, one statement, one
repetition) so the whole module runs in seconds.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import soundfile as sf

from trainers.data.synth import FACES_NAME, MANIFEST_NAME, CorpusManifest, write_corpus
from trainers.data.synth import ravdess as rv
from trainers.data.synth.truth import iou, load_face_boxes

NAME_RE = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})\.(mp4|wav)$")
ACTORS = 2
SEED = 7


def _tree_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CorpusManifest]:
    out = tmp_path_factory.mktemp("synth") / "ravdess"
    calls: list[tuple[int, int, str]] = []
    manifest = write_corpus(
        "ravdess",
        out,
        actors=ACTORS,
        seed=SEED,
        statements=1,
        repetitions=1,
        workers=1,
        progress=lambda d, t, w: calls.append((d, t, w)),
    )
    assert [c[0] for c in calls] == list(range(1, len(manifest.recordings) + 1))
    assert {c[1] for c in calls} == {len(manifest.recordings)}
    return out, manifest


def _gray_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="gray") for f in c.decode(video=0)]


# --- layout ---------------------------------------------------------------------------


def test_plan_has_ravdess_counts() -> None:
    tasks = rv.plan(actors=12, seed=0, statements=2, repetitions=2)
    assert len(tasks) == 720
    per_actor: dict[int, int] = defaultdict(int)
    for t in tasks:
        per_actor[t.actor] += 1
        if t.emotion == 1:
            assert t.intensity == 1
    assert per_actor == dict.fromkeys(range(1, 13), 60)
    assert sum(1 for t in tasks if t.actor == 1 and t.emotion == 1) == 4
    assert len({t.key for t in tasks}) == 720


def test_files_are_named_and_foldered_exactly(corpus: tuple[Path, CorpusManifest]) -> None:
    root, manifest = corpus
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert folders == ["Actor_01", "Actor_02"]
    assert (root / MANIFEST_NAME).is_file()
    stems: dict[str, set[int]] = defaultdict(set)
    for folder in folders:
        files = sorted(p.name for p in (root / folder).iterdir())
        assert len(files) == 15 * 3  # 1 neutral + 7 emotions x 2 intensities, 3 files each
        for name in files:
            m = NAME_RE.match(name)
            assert m, name
            mod, voc, emo, inten, stmt, rep, actor = (int(g) for g in m.groups()[:7])
            ext = m.group(8)
            assert (mod, ext) in {(1, "mp4"), (2, "mp4"), (3, "wav")}
            assert voc == 1
            assert 1 <= emo <= 8
            assert inten in (1, 2)
            assert not (emo == 1 and inten == 2), "neutral has normal intensity only"
            assert (stmt, rep) == (1, 1)
            assert folder == f"Actor_{actor:02d}"
            stems[name[3:20]].add(mod)
    assert all(mods == {1, 2, 3} for mods in stems.values())
    assert len(stems) == len(manifest.recordings) == 30


def test_manifest_matches_names(corpus: tuple[Path, CorpusManifest]) -> None:
    root, manifest = corpus
    again = CorpusManifest.load(root)
    assert again == manifest
    assert manifest.classes == rv.EMOTIONS
    # The standard profile's manifest keeps format 1's shape: a whole fps, no new keys.
    raw = json.loads((root / MANIFEST_NAME).read_text())
    assert raw["fps"] == 15 and manifest.fps == 15 and "profile" not in raw
    assert not any("vocal_channel" in r or "faces" in r for r in raw["recordings"])
    for rec in manifest.recordings:
        assert len(rec.files) == 3
        fields = [int(x) for x in Path(rec.files[0]).stem.split("-")]
        assert fields[2] == rec.label and rv.EMOTIONS[rec.label - 1] == rec.emotion
        assert fields[3] == rec.intensity and fields[6] == rec.actor
        assert rec.female == (rec.actor % 2 == 0)
        assert rec.n_frames / manifest.fps == pytest.approx(rec.duration)
        assert rec.n_samples / manifest.sample_rate == pytest.approx(rec.duration)
        assert all((root / f).is_file() for f in rec.files)


# --- containers -----------------------------------------------------------------------


def test_streams_and_durations_agree(corpus: tuple[Path, CorpusManifest]) -> None:
    root, manifest = corpus
    width, height = manifest.frame_size
    durations = []
    for rec in manifest.recordings[::4]:
        av_path, v_path, a_path = (root / f for f in rec.files)
        with av.open(str(av_path)) as c:
            assert [s.type for s in c.streams] == ["video", "audio"]
            vs, aus = c.streams.video[0], c.streams.audio[0]
            assert vs.codec_context.name == "h264" and aus.codec_context.name == "aac"
            assert (vs.codec_context.width, vs.codec_context.height) == (width, height)
            assert aus.codec_context.sample_rate == manifest.sample_rate
            n_frames = sum(1 for _ in c.decode(video=0))
        with av.open(str(av_path)) as c:
            audio = np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio=0)])
        with av.open(str(v_path)) as c:
            assert [s.type for s in c.streams] == ["video"]
            n_frames_v = sum(1 for _ in c.decode(video=0))
        info = sf.info(str(a_path))
        assert (info.format, info.subtype, info.channels) == ("WAV", "PCM_16", 1)
        assert info.samplerate == manifest.sample_rate
        wav, _ = sf.read(str(a_path), dtype="float32")

        assert n_frames == n_frames_v == rec.n_frames
        assert len(wav) == rec.n_samples
        assert 1.2 <= rec.duration <= 4.0
        # AAC pads to whole 1024-sample frames; nothing else may differ.
        assert abs(len(audio) / manifest.sample_rate - rec.duration) < 1024 / 16000 + 1e-6
        # The mp4's audio track is the wav's signal (up to lossy coding).
        n = min(len(wav), len(audio))
        corr = np.corrcoef(wav[:n], audio[:n])[0, 1]
        assert corr > 0.9
        durations.append(rec.duration)
    assert len(set(durations)) > 1, "clip lengths should vary"


def test_video_only_file_is_the_same_recording(corpus: tuple[Path, CorpusManifest]) -> None:
    root, manifest = corpus
    rec = manifest.recordings[5]
    a = _gray_frames(root / rec.files[0])
    b = _gray_frames(root / rec.files[1])
    assert len(a) == len(b)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


# --- determinism ----------------------------------------------------------------------


def test_same_seed_same_bytes_for_any_worker_count(
    corpus: tuple[Path, CorpusManifest], tmp_path: Path
) -> None:
    root, _ = corpus
    again = tmp_path / "again"
    write_corpus("ravdess", again, actors=ACTORS, seed=SEED, statements=1, repetitions=1, workers=2)
    assert _tree_hashes(again) == _tree_hashes(root)


def test_different_seed_different_corpus(
    corpus: tuple[Path, CorpusManifest], tmp_path: Path
) -> None:
    root, _ = corpus
    other = tmp_path / "other"
    write_corpus("ravdess", other, actors=1, seed=SEED + 1, statements=1, repetitions=1, workers=1)
    mine, theirs = _tree_hashes(root), _tree_hashes(other)
    shared = [k for k in theirs if k.endswith((".mp4", ".wav"))]
    assert shared and all(theirs[k] != mine[k] for k in shared)


def test_rewrite_replaces_and_prunes(corpus: tuple[Path, CorpusManifest], tmp_path: Path) -> None:
    root, _ = corpus
    out = tmp_path / "c"
    shutil.copytree(root, out)
    write_corpus("ravdess", out, actors=1, seed=SEED, statements=1, repetitions=1, workers=1)
    assert sorted(p.name for p in out.iterdir()) == sorted(["Actor_01", MANIFEST_NAME, FACES_NAME])
    assert len(CorpusManifest.load(out).recordings) == 15
    fresh = _tree_hashes(root)
    rewritten = _tree_hashes(out)
    assert all(fresh[k] == h for k, h in rewritten.items() if k not in (MANIFEST_NAME, FACES_NAME))
    assert set(load_face_boxes(out)) == {r.key for r in CorpusManifest.load(out).recordings}


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown synth layout 'nope'.*ravdess"):
        write_corpus("nope", tmp_path / "x")
    with pytest.raises(ValueError, match="statements"):
        write_corpus("ravdess", tmp_path / "x", statements=3)
    with pytest.raises(ValueError, match="actors"):
        write_corpus("ravdess", tmp_path / "x", actors=100)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="not empty"):
        write_corpus("ravdess", busy, actors=1, statements=1, repetitions=1)
    assert (busy / "thesis.tex").read_text() == "precious"


# --- learnability ---------------------------------------------------------------------

_CASCADE = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")


def _faces(gray: np.ndarray) -> np.ndarray:
    return _CASCADE.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=4, minSize=(30, 30))


def test_haar_cascade_finds_the_faces(corpus: tuple[Path, CorpusManifest]) -> None:
    root, manifest = corpus
    found = total = 0
    for rec in manifest.recordings:
        for gray in _gray_frames(root / rec.files[1])[::3]:
            found += len(_faces(gray)) > 0
            total += 1
    assert total > 300
    assert found / total >= 0.9


def _mouth_contrast(path: Path) -> float:
    """Texture in the mouth region of the detected face, late in the clip."""
    frames = _gray_frames(path)
    values = []
    for gray in frames[len(frames) // 3 :: 2]:
        boxes = _faces(gray)
        if len(boxes) == 0:
            continue
        x, y, w, h = max(boxes, key=lambda b: b[2] * b[3])
        face = cv2.resize(gray[y : y + h, x : x + w], (64, 64), interpolation=cv2.INTER_AREA)
        face = face.astype(np.float32)
        values.append(face[40:60, 18:46].std() / np.median(face[20:60, 16:48]))
    return float(np.mean(values))


def _voice_stats(path: Path) -> tuple[float, float]:
    """(loudness in dB, median f0 in Hz) of the voiced part of a wav.

    Plain numpy (framewise RMS and autocorrelation pitch): librosa's first
    pitch call costs seconds of JIT compilation.
    """
    wav, sr = sf.read(str(path), dtype="float32")
    n_win, hop = 1024, 256
    frames = np.lib.stride_tricks.sliding_window_view(wav, n_win)[::hop]
    rms = np.sqrt((frames**2).mean(axis=1))
    voiced = frames[rms > 0.3 * rms.max()]
    spec = np.fft.rfft(voiced * np.hanning(n_win), n=2 * n_win, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :n_win]
    lo, hi = sr // 600, sr // 60
    lags = lo + np.argmax(ac[:, lo:hi], axis=1)
    loud = float(20 * np.log10(rms[rms > 0.3 * rms.max()].mean()))
    return loud, float(np.median(sr / lags))


def test_emotion_cues_point_the_expected_way(corpus: tuple[Path, CorpusManifest]) -> None:
    root, manifest = corpus
    by: dict[tuple[str, int], list] = defaultdict(list)
    for rec in manifest.recordings:
        if rec.emotion in ("angry", "sad", "happy"):
            by[(rec.emotion, rec.actor)].append(rec)
    for actor in range(1, ACTORS + 1):
        angry = [_voice_stats(root / r.files[2]) for r in by[("angry", actor)]]
        sad = [_voice_stats(root / r.files[2]) for r in by[("sad", actor)]]
        # Louder by a wide margin and higher pitched, for this speaker.
        assert min(a[0] for a in angry) > max(s[0] for s in sad) + 10.0
        assert np.mean([a[1] for a in angry]) > 1.25 * np.mean([s[1] for s in sad])

        happy_mouth = [_mouth_contrast(root / r.files[1]) for r in by[("happy", actor)]]
        sad_mouth = [_mouth_contrast(root / r.files[1]) for r in by[("sad", actor)]]
        # An open smile shows teeth and a dark mouth; a frown is a closed line.
        assert min(happy_mouth) > max(sad_mouth) + 0.03


# --- ground-truth face boxes ----------------------------------------------------------


def _inside_outside(gray: np.ndarray, box: np.ndarray) -> tuple[float, float]:
    """Mean brightness of the box's central half, and of a band just outside the box."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    core = gray[int(y0 + h / 4) : int(y1 - h / 4), int(x0 + w / 4) : int(x1 - w / 4)]
    H, W = gray.shape
    ox0, ox1 = int(max(0, x0 - 0.25 * w)), int(min(W, x1 + 0.25 * w))
    oy0, oy1 = int(max(0, y0 - 0.1 * h)), int(min(H, y1))
    band = np.concatenate(
        [
            gray[oy0:oy1, ox0 : max(ox0, int(x0) - 1)].ravel(),
            gray[oy0:oy1, int(x1) + 1 : ox1].ravel(),
        ]
    )
    return float(core.mean()), float(band.mean())


def test_face_boxes_cover_every_frame_and_hold_the_face(
    corpus: tuple[Path, CorpusManifest],
) -> None:
    root, manifest = corpus
    truth = load_face_boxes(root)
    assert set(truth) == {r.key for r in manifest.recordings}
    for rec in manifest.recordings[::7]:
        t = truth[rec.key]
        assert t.files == rec.files[:2]  # the two mp4s; the wav has no pictures
        frames = _gray_frames(root / rec.files[1])
        assert len(t.boxes) == len(frames) == rec.n_frames
        for gray, box in list(zip(frames, t.boxes, strict=True))[::6]:
            inside, outside = _inside_outside(gray, box)
            assert inside > outside + 50, (rec.key, inside, outside)


def test_face_box_reader_names_bad_rows(tmp_path: Path) -> None:
    (tmp_path / FACES_NAME).write_text(
        '{"key": "a", "files": [], "boxes": [[0, 0, 1, 1]]}\n{"key"\n'
    )
    with pytest.raises(ValueError, match=rf"{FACES_NAME}:2: not a face-box row"):
        load_face_boxes(tmp_path)
    with pytest.raises(ValueError, match="not found"):
        load_face_boxes(tmp_path / "nowhere")
    assert iou([0, 0, 2, 2], [1, 1, 3, 3]) == pytest.approx(1 / 7)
    assert iou([0, 0, 1, 1], [2, 2, 3, 3]) == 0.0


# --- realistic mode -------------------------------------------------------------------


def test_realistic_plan_has_the_real_song_takes() -> None:
    real = rv.plan(actors=24, seed=0, statements=2, repetitions=2, realistic=True)
    speech = [t for t in real if t.vocal == rv.VOCAL_SPEECH]
    song = [t for t in real if t.vocal == rv.VOCAL_SONG]
    # The real corpus: 1440 speech and 1012 song takes (44 per actor, none by Actor_18).
    assert len(speech) == 1440 and len(song) == 1012
    assert {t.actor for t in song} == set(range(1, 25)) - {18}
    assert {t.emotion for t in song} == set(range(1, 7))
    assert not any(t.emotion == 1 and t.intensity == 2 for t in song)
    assert len({t.key for t in real}) == len(real)
    assert all(t.realistic for t in real)
    # Fewer actors than 18: the last one has no songs; one actor keeps them.
    small = rv.plan(actors=3, seed=0, statements=1, repetitions=1, realistic=True)
    assert {t.actor for t in small if t.vocal == rv.VOCAL_SONG} == {1, 2}
    one = rv.plan(actors=1, seed=0, statements=1, repetitions=1, realistic=True)
    assert sum(t.vocal == rv.VOCAL_SONG for t in one) == 11
    # The standard corpus has no songs, and its tasks are what they were.
    std = rv.plan(actors=2, seed=0, statements=1, repetitions=1)
    assert all(t.vocal == rv.VOCAL_SPEECH and not t.realistic for t in std)
    real_small = rv.plan(actors=2, seed=0, statements=1, repetitions=1, realistic=True)
    assert [t.key for t in std] == [t.key for t in real_small if t.vocal == rv.VOCAL_SPEECH]


@pytest.fixture(scope="module")
def realistic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CorpusManifest]:
    """A realistic corpus cut to two takes (strong anger, spoken and sung) by planning
    only those: the 720p encode costs about 2 s a take on one core."""
    out = tmp_path_factory.mktemp("realistic") / "ravdess"
    plan = rv.plan

    def two_takes(**kw):
        return [t for t in plan(**kw) if t.emotion == 5 and t.intensity == 2]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rv, "plan", two_takes)
        manifest = write_corpus(
            "ravdess", out, actors=1, seed=SEED, statements=1, repetitions=1, workers=1,
            realistic=True,
        )  # fmt: skip
    return out, manifest


def test_realistic_files_imitate_the_real_download(
    realistic: tuple[Path, CorpusManifest],
) -> None:
    root, manifest = realistic
    assert manifest.profile == "realistic"
    assert manifest.fps == Fraction(30000, 1001)
    assert (manifest.frame_size, manifest.sample_rate) == ((1280, 720), 48000)
    raw = json.loads((root / MANIFEST_NAME).read_text())
    assert raw["fps"] == "30000/1001" and raw["profile"] == "realistic"
    assert CorpusManifest.load(root) == manifest
    by_vocal = {r.vocal_channel: r for r in manifest.recordings}
    assert set(by_vocal) == {1, 2}
    assert Path(by_vocal[2].files[0]).name == "01-02-05-02-01-01-01.mp4"
    for rec in manifest.recordings:
        av_path, v_path, a_path = (root / f for f in rec.files)
        with av.open(str(av_path)) as c:
            vs, aus = c.streams.video[0], c.streams.audio[0]
            assert vs.codec_context.name == "h264" and vs.codec_context.profile == "Main"
            assert (vs.codec_context.width, vs.codec_context.height) == (1280, 720)
            assert vs.average_rate == Fraction(30000, 1001)
            assert aus.codec_context.name == "aac"
            assert aus.codec_context.sample_rate == 48000 and aus.codec_context.channels == 2
            packets = [p for p in c.demux(vs) if p.dts is not None]
            # B-frames: packets are stored out of presentation order.
            pts = [p.pts for p in packets]
            assert pts != sorted(pts)
        with av.open(str(v_path)) as c:
            n_frames = sum(1 for _ in c.decode(video=0))
        info = sf.info(str(a_path))
        assert (info.samplerate, info.subtype, info.channels) == (48000, "PCM_16", 1)
        assert n_frames == rec.n_frames and info.frames == rec.n_samples
        # Frames and samples share no grid: the video ends within half a frame of the audio.
        assert abs(rec.n_frames / manifest.fps - rec.duration) <= 0.5 / manifest.fps
        assert rec.duration == pytest.approx(rec.n_samples / 48000)
    # Songs are sung: held notes make the sung take longer than the spoken one.
    assert by_vocal[2].duration > 1.3 * by_vocal[1].duration


def test_realistic_corpus_loads_for_each_vocal_channel(
    realistic: tuple[Path, CorpusManifest],
) -> None:
    # What the ravdess data module does with data.vocal_channel (without importing torch).
    from trainers.data.config import VOCAL_CHANNELS, DataConfig
    from trainers.data.ravdess import index_ravdess

    root, manifest = realistic
    want = {"speech": {1}, "song": {2}, "both": {1, 2}}
    for channel, vocals in want.items():
        bad: list[tuple[str, str]] = []
        cfg = DataConfig(vocal_channel=channel)
        found = index_ravdess(
            str(root), lambda p, r, bad=bad: bad.append((p, r)), VOCAL_CHANNELS[cfg.vocal_channel]
        )
        assert bad == [], channel
        expected = {r.key for r in manifest.recordings if r.vocal_channel in vocals}
        assert {r.key for r in found} == expected
        assert all(len(r.files) == 3 for r in found)


def test_realistic_face_boxes_hold_the_face(realistic: tuple[Path, CorpusManifest]) -> None:
    root, manifest = realistic
    truth = load_face_boxes(root)
    rec = manifest.recordings[0]
    frames = _gray_frames(root / rec.files[1])
    boxes = truth[rec.key].boxes
    assert len(boxes) == len(frames) == rec.n_frames
    assert (boxes[:, 2] - boxes[:, 0]).min() > 150  # a face at 720p, not at 192x144
    hits = []
    for gray, box in list(zip(frames, boxes, strict=True))[:: len(frames) // 4][:4]:
        inside, outside = _inside_outside(gray, box)
        assert inside > outside + 50
        found = _CASCADE.detectMultiScale(gray, 1.1, 4, minSize=(120, 120))
        for x, y, w, h in found:
            hits.append(iou(box, [x, y, x + w, y + h]))
    # Haar's boxes match the drawn extent at a benchmark's usual IoU threshold (measured
    # 0.70-0.77); a box off by half a face would not.
    assert hits and min(hits) > 0.5


def test_realistic_same_seed_same_bytes(
    realistic: tuple[Path, CorpusManifest], tmp_path: Path
) -> None:
    root, manifest = realistic
    tasks = rv.plan(actors=1, seed=SEED, statements=1, repetitions=1, realistic=True)
    task = next(t for t in tasks if t.key == manifest.recordings[0].key)
    rec = rv.write(task, tmp_path)
    assert rec.files == manifest.recordings[0].files
    for f in rec.files:
        assert (tmp_path / f).read_bytes() == (root / f).read_bytes(), f


def test_realistic_needs_a_layout_that_has_it(tmp_path: Path, capsys) -> None:
    from trainers.cli import main

    with pytest.raises(ValueError, match=r"synth layout 'fi' has no realistic mode.*ravdess"):
        write_corpus("fi", tmp_path / "fi", actors=1, realistic=True)
    assert not (tmp_path / "fi").exists()
    assert main(["synth", "--layout", "fi", "--out", str(tmp_path / "x"), "--realistic"]) == 2
    assert "no realistic mode" in capsys.readouterr().err
