"""The combined RAVDESS + CREMA-D data set (design note 001): the generator writes both
layouts, the loader reads back exactly the mapped labels, prefixed actors, splits and
counts written, splits are actor-disjoint across both corpora, and `describe` shows the
class counts, the majority floor and what the label map excluded."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from sklearn.metrics import accuracy_score

from tests.corpora import CREMAD, shared_corpus
from trainers.cli import main
from trainers.data.av_dataset import LAYOUTS, RavdessDataModule
from trainers.data.combined import CLASSES, LABEL_MAP, corpus_roots, index_combined
from trainers.data.config import DataConfig, DataError
from trainers.data.describe import describe
from trainers.data.ravdess import split_actors
from trainers.data.synth import CorpusManifest

SPLITS = ("train", "val", "test")


def actor_of(layout: str, actor: int) -> str:
    """The combined id the loader must give ``actor`` of ``layout`` (as each corpus names it)."""
    return f"{layout}:{actor:02d}" if layout == "ravdess" else f"{layout}:{actor}"


def expected(manifests: dict[str, CorpusManifest]) -> tuple[dict[str, tuple], Counter]:
    """key -> (combined label, actor, files) of every kept recording; excluded counts."""
    kept: dict[str, tuple] = {}
    excluded: Counter = Counter()
    for layout, manifest in manifests.items():
        for rec in manifest.recordings:
            target = LABEL_MAP[layout][rec.emotion]
            if target is None:
                excluded[layout, rec.emotion, "recordings"] += 1
                excluded[layout, rec.emotion, "files"] += len(rec.files)
                continue
            files = {str(manifest.root / f) for f in rec.files}
            kept[rec.key] = (CLASSES.index(target), actor_of(layout, rec.actor), files)
    return kept, excluded


def excluded_counts(rows: list[dict]) -> Counter:
    out: Counter = Counter()
    for row in rows:
        out[row["corpus"], row["class"], "recordings"] += row["recordings"]
        out[row["corpus"], row["class"], "files"] += row["files"]
    return +out  # zero rows (a class absent from the corpus) drop out, as in `expected`


@pytest.fixture(scope="module")
def combined(small_corpus: Path, tmp_path_factory) -> Path:
    """The session's shared RAVDESS (4 actors) and CREMA-D (3 actors) corpora, linked
    into one combined root: nothing new is generated or decoded twice."""
    root = tmp_path_factory.mktemp("combined")
    os.symlink(small_corpus, root / "ravdess")
    os.symlink(shared_corpus(tmp_path_factory, "crema-d", **CREMAD), root / "crema-d")
    return root


def joined(parts: dict[str, list[str]]) -> list[str]:
    """Every actor of every split, repeats kept (a repeat is an actor in two splits)."""
    return [actor for names in parts.values() for actor in names]


def manifests_of(root: Path) -> dict[str, CorpusManifest]:
    return {layout: CorpusManifest.load(root / layout) for layout in ("ravdess", "crema-d")}


def test_the_label_map_names_every_class_of_both_corpora_once() -> None:
    """Six shared classes; RAVDESS calm and surprised are the only exclusions."""
    from trainers.data import cremad, ravdess

    assert set(LABEL_MAP["ravdess"]) == set(ravdess.CLASSES)
    assert set(LABEL_MAP["crema-d"]) == set(cremad.CLASSES)
    assert [c for c, t in LABEL_MAP["ravdess"].items() if t is None] == ["calm", "surprised"]
    for layout in LABEL_MAP:
        targets = [t for t in LABEL_MAP[layout].values() if t is not None]
        assert sorted(targets) == sorted(CLASSES)  # onto, and no two sources share a target


def test_synth_writes_both_layouts_and_the_loader_reads_them_back(tmp_path: Path, capsys) -> None:
    out = tmp_path / "combined"
    argv = ["synth", "--layout", "combined", "--out", str(out), "--actors", "1", "--seed", "2"]
    assert main([*argv, "--statements", "1", "--repetitions", "1", "--workers", "2"]) == 0
    assert "15 ravdess and 17 crema-d" in capsys.readouterr().out
    manifests = manifests_of(out)
    assert manifests["ravdess"].layout == "ravdess" and manifests["crema-d"].layout == "crema-d"
    assert (out / "ravdess" / "Actor_01").is_dir()
    assert (out / "crema-d" / "AudioWAV").is_dir() and (out / "crema-d" / "VideoMP4").is_dir()
    for manifest in manifests.values():
        assert all(path.is_file() and path.stat().st_size > 0 for path in manifest.files)

    bad: list[tuple[str, str]] = []
    found = index_combined(str(out), lambda p, r: bad.append((p, r)))
    assert bad == []
    want, excluded = expected(manifests)
    got = {r.key: (r.label, r.actor, set(r.files)) for r in found.recordings}
    assert got == want
    assert {found.corpus_of[k] for k in got} == {"ravdess", "crema-d"}
    # One RAVDESS actor at one statement and repetition: calm and surprised at two intensities.
    assert excluded_counts(found.excluded) == excluded
    assert excluded["ravdess", "calm", "recordings"] == 2
    assert excluded["ravdess", "surprised", "files"] == 6  # three files per take


def test_index_counts_and_actor_disjoint_splits(combined: Path) -> None:
    manifests = manifests_of(combined)
    want, excluded = expected(manifests)
    indexed = LAYOUTS["combined"].index(
        str(combined), lambda p, r: pytest.fail(f"{p}: {r}"), DataConfig(root=str(combined))
    )
    assert {r.key: (r.label, r.actor) for r in indexed.recordings} == {
        k: v[:2] for k, v in want.items()
    }
    assert excluded_counts(indexed.excluded) == excluded
    # 4 RAVDESS actors x 2 calm and 2 surprised takes, none of them among the samples.
    assert excluded["ravdess", "calm", "recordings"] == 8
    assert len(indexed.recordings) == 4 * 15 - 16 + 3 * 17

    actors = [r.actor for r in indexed.recordings]
    parts = split_actors(actors, 0.15, 0.15, seed=0)
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not set(parts[a]) & set(parts[b])
    assert sorted(joined(parts)) == sorted(set(actors))
    for split in SPLITS:  # split corpus by corpus: both corpora in every split
        assert {a.split(":")[0] for a in parts[split]} == {"ravdess", "crema-d"}
    # RAVDESS's part is its own: the same with or without the CREMA-D actors.
    alone = split_actors([a for a in actors if a.startswith("ravdess:")], 0.15, 0.15, seed=0)
    for split in SPLITS:
        assert alone[split] == [a for a in parts[split] if a.startswith("ravdess:")]


def test_split_at_real_corpus_sizes_is_proportional_and_disjoint() -> None:
    """24 RAVDESS and 91 CREMA-D actors: 15 % of each in val and in test, never shared."""
    actors = [f"ravdess:{i:02d}" for i in range(1, 25)]
    actors += [f"crema-d:{i}" for i in range(1001, 1092)]
    parts = split_actors(actors, 0.15, 0.15, seed=0)
    for split, n_ravdess, n_crema in (("val", 4, 14), ("test", 4, 14), ("train", 16, 63)):
        assert sum(a.startswith("ravdess:") for a in parts[split]) == n_ravdess
        assert sum(a.startswith("crema-d:") for a in parts[split]) == n_crema
    assert sum(len(v) for v in parts.values()) == len(set(joined(parts))) == 115
    # Males (odd) and females (even) alternate within each corpus's held-out actors.
    val_ravdess = [int(a.split(":")[1]) for a in parts["val"] if a.startswith("ravdess:")]
    assert sorted(n % 2 for n in val_ravdess) == [0, 0, 1, 1]


def test_data_module_trains_on_mapped_labels_with_disjoint_splits(
    combined: Path, tmp_path: Path
) -> None:
    """The module training uses, audio only (cheap to decode): every row's label and
    actor as written, no actor in two splits, exclusions in describe()."""
    cfg = DataConfig(root=str(combined), layout="combined", modalities=("audio",),
                     cache_dir=str(tmp_path / "cache"), prepare_workers=1,
                     max_audio_frames=100)  # fmt: skip
    module = RavdessDataModule(cfg)
    bad: list[tuple[str, str]] = []
    module.setup(lambda p, r: bad.append((p, r)))
    assert bad == []
    assert list(module.classes) == list(CLASSES)
    want, excluded = expected(manifests_of(combined))
    seen: dict[str, str] = {}
    for split in SPLITS:
        labels = module.labels(split)
        samples = module.samples(split)
        assert len(module.dataset(split)) == len(labels) == len(samples) > 0
        for info, label in zip(samples, labels, strict=True):
            assert (int(label), info.actor) == want[info.key][:2]
            assert seen.setdefault(info.actor, split) == split  # one split per actor
        assert {info.actor.split(":")[0] for info in samples} == {"ravdess", "crema-d"}
    assert sum(len(module.labels(s)) for s in SPLITS) == len(want)
    info = module.describe()
    assert info["dataset"] == "combined"
    assert excluded_counts(info["excluded"]) == excluded
    assert sum(sum(info["splits"][s]["per_class"].values()) for s in SPLITS) == len(want)


def test_describe_prints_counts_floor_and_the_excluded_classes(combined: Path, capsys) -> None:
    manifests = manifests_of(combined)
    want, excluded = expected(manifests)
    info = describe("combined", str(combined))
    parts = split_actors([actor for _, actor, _ in want.values()], 0.15, 0.15, seed=0)
    split_of = {a: s for s, names in parts.items() for a in names}
    labels = {s: [lab for lab, a, _ in want.values() if split_of[a] == s] for s in SPLITS}
    for split in SPLITS:
        counts = Counter(CLASSES[label] for label in labels[split])
        assert info["splits"][split]["per_class"] == {c: counts[c] for c in CLASSES}
        assert info["splits"][split]["actor_names"] == parts[split]
    assert info["samples"] == len(want) and info["bad_inputs"] == []
    assert excluded_counts(info["excluded"]) == excluded

    train = Counter(labels["train"]).most_common()
    top = min(label for label, n in train if n == train[0][1])
    floor = accuracy_score(labels["test"], [top] * len(labels["test"]))
    assert info["majority_floor"]["class"] == CLASSES[top]
    assert info["majority_floor"]["accuracy"] == pytest.approx(floor, abs=1e-4)

    assert main(["describe", "combined", str(combined)]) == 0
    text = capsys.readouterr().out
    total = Counter(CLASSES[label] for label, _, _ in want.values())
    for name in CLASSES:  # the total column of each class row
        row = next(line for line in text.splitlines() if line.split()[:1] == [name])
        assert int(row.split()[-1]) == total[name]
    assert f"majority-class floor (always {CLASSES[top]!r}, scored on test): accuracy " in text
    assert f"accuracy {floor:.4f}" in text
    assert "excluded by the label map: ravdess calm 8 recordings (24 files), " in text
    assert "ravdess surprised 8 recordings (24 files)" in text


def test_a_file_of_an_excluded_class_is_counted_not_lost(combined: Path, tmp_path: Path) -> None:
    """One more RAVDESS calm take (its three files) raises the calm count by exactly one."""
    root = tmp_path / "combined"
    (root / "ravdess").mkdir(parents=True)
    os.symlink(combined / "crema-d", root / "crema-d")
    for actor in sorted((combined / "ravdess").glob("Actor_*")):
        os.symlink(actor, root / "ravdess" / actor.name)
    extra = root / "ravdess" / "Actor_09"
    extra.mkdir()
    source = combined / "ravdess" / "Actor_01"
    for modality, ext in (("01", "mp4"), ("02", "mp4"), ("03", "wav")):
        name = f"{modality}-01-02-01-01-01-01.{ext}"  # calm, actor 01 ...
        (extra / name.replace("-01.", "-09.")).write_bytes((source / name).read_bytes())

    def by_class(path: Path) -> dict[tuple[str, str], dict]:
        found = index_combined(str(path), lambda p, r: pytest.fail(f"{p}: {r}"))
        return {(e["corpus"], e["class"]): e for e in found.excluded}

    before, after = by_class(combined), by_class(root)
    assert after["ravdess", "calm"]["recordings"] == before["ravdess", "calm"]["recordings"] + 1
    assert after["ravdess", "calm"]["files"] == before["ravdess", "calm"]["files"] + 3
    assert after["ravdess", "surprised"] == before["ravdess", "surprised"]


def test_a_root_without_both_corpora_is_refused(tmp_path: Path, capsys) -> None:
    (tmp_path / "ravdess").mkdir()
    with pytest.raises(DataError, match="no crema-d/ subfolder"):
        corpus_roots(str(tmp_path))
    (tmp_path / "CREMA-D").mkdir()  # the release's own spelling is accepted too
    assert Path(corpus_roots(str(tmp_path))["crema-d"]).name == "CREMA-D"
    assert main(["describe", "combined", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_a_single_corpus_layout_on_a_combined_root_says_so(combined: Path, capsys) -> None:
    """Not a RAVDESS run with every CREMA-D file listed as a bad name."""
    with pytest.raises(DataError, match=r"that is the combined layout; set data\.layout=combined"):
        RavdessDataModule(DataConfig(root=str(combined))).setup(lambda p, r: None)
    assert main(["describe", "crema-d", str(combined)]) == 2
    assert "data.layout=combined" in capsys.readouterr().err


def test_prefixed_actor_ids_never_collide() -> None:
    """RAVDESS actor 01 and a CREMA-D actor written as 01 are two people."""
    parts = split_actors(["ravdess:01", "crema-d:01", "ravdess:02", "crema-d:02"], 0.15, 0.15, 0)
    everyone = sorted(joined(parts))
    assert everyone == ["crema-d:01", "crema-d:02", "ravdess:01", "ravdess:02"]  # four, once each
