"""The FI image layout end to end: generator -> files -> loader -> splits -> items.

Why these tests: the loader is only trustworthy if what it reads back is what
the generator wrote (counts, labels, keys) from real JPEG files; stratified
splits and folds must keep FI's 4x imbalance in every split; bad files must be
skipped and reported, never crash; augmentation must be a pure function of
(seed, epoch, index) for exact resume; and TTA must give 8 different views
per image that the engine can group by ``sample``.
"""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from trainers.config import ConfigError, resolve
from trainers.data import image_augment as aug
from trainers.data.config import DataError
from trainers.data.images import (
    FI_CLASSES,
    TEST,
    TRAIN,
    VAL,
    FIDataModule,
    ImageDataConfig,
    assign_splits,
    collate_images,
    decode_image,
    stratified_folds,
    stratified_split,
)
from trainers.data.synth import CorpusManifest, write_corpus
from trainers.data.synth import fi as synth_fi
from trainers.engine.trainer import epoch_batches, sampler_weights

SMALLEST = 12  # images of the smallest class (fear); 218 images in all


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, CorpusManifest]:
    root = tmp_path_factory.mktemp("fi") / "fi"
    manifest = write_corpus("fi", root, actors=SMALLEST, seed=5, workers=1)
    return root, manifest


def module(root: Path, **overrides) -> tuple[FIDataModule, list[tuple[str, str]]]:
    cfg = ImageDataConfig(
        root=str(root), image_size=32, start_size=24, resize_epoch=3, prepare_workers=2
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    bad: list[tuple[str, str]] = []
    dm = FIDataModule(cfg, seed=1)
    dm.setup(lambda path, reason: bad.append((path, reason)))
    return dm, bad


@pytest.fixture(scope="module")
def data(corpus) -> FIDataModule:
    dm, bad = module(corpus[0])
    assert bad == []
    return dm


def hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------------------ generator


def test_generator_writes_fi_folders_of_jpegs_with_the_notes_imbalance(corpus):
    root, manifest = corpus
    assert manifest.classes == FI_CLASSES == synth_fi.EMOTIONS
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == list(FI_CLASSES)
    counts = Counter(r.emotion for r in manifest.recordings)
    assert counts == synth_fi.class_sizes(SMALLEST)
    assert counts["fear"] == SMALLEST and max(counts.values()) == counts["contentment"]
    # At a size where rounding vanishes the ratio is the note's 4.08 exactly.
    big = Counter(t.name for t in synth_fi.plan(actors=25, seed=0))
    assert max(big.values()) / min(big.values()) == pytest.approx(4.08)
    sizes = set()
    for rec in manifest.recordings[::9]:
        with Image.open(root / rec.files[0]) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            sizes.add(im.size)
        assert rec.files[0] == f"{rec.emotion}/{rec.key.split('/')[1]}.jpg"
    assert len(sizes) > 3  # photographs come in many sizes


def test_generator_is_byte_identical_per_seed_and_worker_count(tmp_path):
    a = write_corpus("fi", tmp_path / "a", actors=1, seed=9, workers=1)
    write_corpus("fi", tmp_path / "b", actors=1, seed=9, workers=2)
    write_corpus("fi", tmp_path / "c", actors=1, seed=10, workers=1)
    ha, hb, hc = (hashes(tmp_path / x) for x in "abc")
    assert ha == hb
    assert len(ha) == len(a.recordings) + 1  # + the manifest
    changed = [k for k in ha if k.endswith(".jpg") and ha[k] != hc[k]]
    assert len(changed) == len(a.recordings)


# ------------------------------------------------------------------------- loader round trip


def test_loader_reads_back_counts_labels_and_keys_as_written(corpus, data):
    root, manifest = corpus
    written = {r.key: FI_CLASSES.index(r.emotion) for r in manifest.recordings}
    assert all(r.label == FI_CLASSES.index(r.emotion) for r in manifest.recordings)
    read = {}
    for split in ("train", "val", "test"):
        infos, labels = data.samples(split), data.labels(split)
        assert [s.label for s in infos] == labels.tolist()
        for info in infos:
            assert info.key not in read
            read[info.key] = info.label
            assert info.sources == (str(root / f"{info.key}.jpg"),)
    assert read == written
    described = data.describe()
    assert described["per_class"] == dict(Counter(r.emotion for r in manifest.recordings))
    assert described["imbalance_ratio"] == pytest.approx(49 / 12, abs=1e-3)
    assert described["images"] == len(manifest.recordings) and described["bad_inputs"] == 0
    assert data.images.dtype == torch.uint8 and tuple(data.images.shape[1:]) == (3, 32, 32)


def test_stratified_split_keeps_every_class_share():
    labels = np.repeat(np.arange(8), [370, 120, 240, 408, 130, 225, 100, 220])
    codes = stratified_split(labels, 0.1, 0.1, seed=42)
    for c, n in enumerate(np.bincount(labels)):
        in_class = codes[labels == c]
        assert (in_class == TEST).sum() == round(n * 0.1 + 1e-9)
        assert (in_class == VAL).sum() == round(n * 0.1 + 1e-9)
    overall = np.bincount(labels) / len(labels)
    for code in (TRAIN, VAL, TEST):
        share = np.bincount(labels[codes == code], minlength=8) / (codes == code).sum()
        np.testing.assert_allclose(share, overall, atol=0.01)
    assert np.array_equal(codes, stratified_split(labels, 0.1, 0.1, seed=42))
    assert not np.array_equal(codes, stratified_split(labels, 0.1, 0.1, seed=43))


def test_module_splits_are_stratified_and_fixed_by_split_seed(corpus, data):
    for split in ("val", "test"):
        per_class = data.describe()["splits"][split]["per_class"]
        for name, n in synth_fi.class_sizes(SMALLEST).items():
            assert per_class[name] == int(np.floor(n * 0.1 + 0.5)), (split, name)
    other_seed, _ = module(corpus[0])  # same split_seed; the run seed does not matter
    other_seed.seed = 99
    assert [s.key for s in other_seed.samples("test")] == [s.key for s in data.samples("test")]
    moved, _ = module(corpus[0], split_seed=7)
    assert [s.key for s in moved.samples("test")] != [s.key for s in data.samples("test")]


@pytest.mark.parametrize("k", [2, 3, 5])
def test_kfold_folds_are_disjoint_stratified_and_cover_everything(k):
    labels = np.repeat(np.arange(8), [37, 12, 24, 41, 13, 22, 10, 22])
    folds = stratified_folds(labels, k, seed=42)
    assert set(folds.tolist()) == set(range(k))
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 1
    for c in range(8):
        per_fold = np.bincount(folds[labels == c], minlength=k)
        assert per_fold.max() - per_fold.min() <= 1
    tested = []
    for fold in range(k):
        cfg = ImageDataConfig(folds=k, fold=fold, val_fraction=0.1)
        codes = assign_splits(labels, cfg)
        assert np.array_equal(codes == TEST, folds == fold)
        assert (codes == VAL).sum() > 0 and not np.any((codes == VAL) & (folds == fold))
        tested.append(np.flatnonzero(codes == TEST))
    everything = np.concatenate(tested)
    assert len(everything) == len(labels) and len(set(everything.tolist())) == len(labels)


def test_module_folds_partition_the_corpus_by_key(corpus):
    seen: list[str] = []
    for fold in range(3):
        dm, _ = module(corpus[0], folds=3, fold=fold)
        test = {s.key for s in dm.samples("test")}
        others = {s.key for split in ("train", "val") for s in dm.samples(split)}
        assert test.isdisjoint(others)
        seen += sorted(test)
    assert len(seen) == len(set(seen)) == len(corpus[1].recordings)


def test_config_errors_name_the_key():
    from trainers.models.image import ResNet50Config

    for assignment, key in [
        ("data.folds=1", "data.folds"),
        ("data.fold=3", "data.fold"),  # with folds=3
        ("data.start_size=300", "data.start_size"),
        ("data.resize=squash", "data.resize"),
        ("data.test_fraction=0.95", "data.test_fraction"),
    ]:
        extra = ["data.folds=3"] if key == "data.fold" else []
        with pytest.raises(ConfigError) as err:
            resolve(ResNet50Config(), assignments=[*extra, assignment])
        assert err.value.key == key, assignment


# ------------------------------------------------------------------------------ bad inputs


def test_truncated_empty_and_garbage_files_are_skipped_and_listed_once(corpus, tmp_path):
    root = tmp_path / "fi"
    shutil.copytree(corpus[0], root)
    truncated = sorted((root / "anger").glob("*.jpg"))[0]
    blob = truncated.read_bytes()
    truncated.write_bytes(blob[: len(blob) // 2])
    empty = root / "awe" / "empty.jpg"
    empty.write_bytes(b"")
    garbage = root / "fear" / "garbage.jpg"
    garbage.write_bytes(b"this is not a jpeg" * 50)
    notes = root / "sadness" / "notes.txt"
    notes.write_text("not an image")
    (root / "sadness" / ".DS_Store").write_bytes(b"\0\0")  # hidden: silently ignored

    dm, bad = module(root)
    paths = [p for p, _ in bad]
    assert sorted(paths) == sorted(map(str, (truncated, empty, garbage, notes)))
    assert len(paths) == len(set(paths))
    reasons = dict(bad)
    assert "truncated" in reasons[str(truncated)]
    assert "empty" in reasons[str(empty)]
    assert "not a readable image" in reasons[str(garbage)]
    assert "not an image file" in reasons[str(notes)]
    kept = {s.key for split in ("train", "val", "test") for s in dm.samples(split)}
    assert len(kept) == len(corpus[1].recordings) - 1
    assert f"anger/{truncated.stem}" not in kept
    assert dm.describe()["bad_inputs"] == 4

    for path in list(root.rglob("*.jpg"))[: len(kept) * 2 // 3]:
        path.write_bytes(b"")
    with pytest.raises(DataError, match="max_bad_fraction"):
        module(root)


def test_decode_squares_images_by_the_chosen_resize_mode(tmp_path):
    wide = np.zeros((40, 80, 3), dtype=np.uint8)
    wide[:, :40] = (250, 0, 0)  # left half red, right half blue
    wide[:, 40:] = (0, 0, 250)
    path = tmp_path / "wide.png"
    Image.fromarray(wide).save(path)
    stretch = decode_image(str(path), 32, "stretch")
    assert stretch.shape == (32, 32, 3) and stretch.dtype == np.uint8
    assert stretch[:, :14, 0].min() > 200 and stretch[:, 18:, 2].min() > 200
    pad = decode_image(str(path), 32, "pad")  # 32x16 picture between black bands
    assert pad[:7].max() == 0 and pad[-7:].max() == 0 and pad[10:22, :14, 0].min() > 200
    crop = decode_image(str(path), 32, "crop")  # the middle 40x40, scaled
    assert crop[:, :14, 0].min() > 200 and crop[:, 18:, 2].min() > 200 and crop.min() == 0
    big = tmp_path / "big.jpg"
    Image.fromarray(np.full((900, 1200, 3), 128, dtype=np.uint8)).save(big, quality=95)
    assert abs(int(decode_image(str(big), 64, "crop").mean()) - 128) <= 2  # draft-decoded


def test_missing_root_or_folders_say_what_is_expected(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        module(tmp_path / "nope")
    (tmp_path / "photos").mkdir()
    with pytest.raises(DataError, match="amusement"):
        module(tmp_path)


# --------------------------------------------------------------------- sampling and resizing


def test_weighted_sampler_draws_classes_about_equally_in_one_epoch(data):
    labels = np.asarray(data.dataset("train").item_labels)
    raw = np.bincount(labels, minlength=8)
    assert raw.max() / raw.min() > 3.5  # the corpus really is imbalanced
    weights = sampler_weights(labels, 8)
    drawn = np.concatenate(epoch_batches(len(labels), 16, 42, 1, False, weights))
    freq = np.bincount(labels[drawn], minlength=8) / len(drawn)
    assert np.all(freq > 0.5 / 8) and np.all(freq < 1.6 / 8), freq
    many = np.concatenate(
        [np.concatenate(epoch_batches(len(labels), 16, 42, e, False, weights)) for e in range(30)]
    )
    np.testing.assert_allclose(np.bincount(labels[many], minlength=8) / len(many), 1 / 8, atol=0.02)


def test_progressive_resizing_switches_size_at_resize_epoch(data):
    train = data.dataset("train")
    sizes = {}
    for epoch in (1, 2, 3, 4):
        train.set_epoch(epoch)
        sizes[epoch] = tuple(train[0]["image"].shape)
    assert sizes == {1: (3, 24, 24), 2: (3, 24, 24), 3: (3, 32, 32), 4: (3, 32, 32)}
    batch = collate_images([train[i] for i in range(4)])
    assert batch["image"].shape == (4, 3, 32, 32) and "sample" not in batch
    cfg = ImageDataConfig()
    assert (cfg.train_size(29), cfg.train_size(30)) == (176, 224)  # the note's schedule


def test_augmentation_is_a_pure_function_of_seed_epoch_and_index(data):
    train = data.dataset("train")
    train.set_epoch(2)
    state = torch.get_rng_state()
    a, b = train[5]["image"], train[5]["image"]
    assert torch.equal(torch.get_rng_state(), state)  # dropout's stream is untouched
    assert torch.equal(a, b)
    assert not torch.equal(a, train[6]["image"])  # another index
    other_seed = FIDataModule(data.cfg, seed=2)
    other_seed.images, other_seed._splits = data.images, data._splits
    other_train = other_seed.dataset("train")
    other_train.set_epoch(2)
    assert not torch.equal(a, other_train[5]["image"])  # another run seed
    train.set_epoch(3)
    assert not torch.equal(a[:, :24, :24], train[5]["image"][:, :24, :24])  # another epoch


def test_the_training_pipeline_is_the_notes_list():
    steps = aug.train_transform(224).transforms
    assert [type(t).__name__ for t in steps] == [
        "Resize",
        "RandomHorizontalFlip",
        "RandomRotation",
        "ColorJitter",
        "RandomAffine",
        "RandomPerspective",
        "AutoAugment",
        "ToDtype",
        "Normalize",
        "RandomErasing",
    ]
    resize, flip, rot, jitter, affine, persp, auto, _, norm, erase = steps
    assert list(resize.size) == [224, 224] and flip.p == 0.5 and list(rot.degrees) == [-15, 15]
    assert jitter.brightness == (0.7, 1.3) and jitter.hue == (-0.1, 0.1)
    assert affine.translate == (0.1, 0.1) and affine.scale == (0.9, 1.1)
    assert persp.distortion_scale == 0.2 and persp.p == 0.3
    assert auto.policy == v2.AutoAugmentPolicy.IMAGENET
    assert norm.mean == [0.485, 0.456, 0.406] and norm.std == [0.229, 0.224, 0.225]
    assert erase.p == 0.25 and erase.scale == (0.02, 0.2) and erase.ratio == (0.3, 3.3)


# ------------------------------------------------------------------------------------ TTA


def test_tta_yields_eight_different_views_per_image_sharing_sample(data):
    test = data.dataset("test")
    n = len(data.samples("test"))
    assert len(test) == 8 * n
    rows = [test[i] for i in range(16)]
    assert [r["sample"] for r in rows] == [0] * 8 + [1] * 8
    assert [r["index"] for r in rows] == [0] * 8 + [1] * 8
    assert {r["label"] for r in rows[:8]} == {int(data.labels("test")[0])}
    views = [r["image"] for r in rows[:8]]
    assert all(v.shape == (3, 32, 32) for v in views)
    for i in range(8):
        for j in range(i + 1, 8):
            assert not torch.allclose(views[i], views[j]), (aug.TTA_VIEWS[i], aug.TTA_VIEWS[j])
    assert torch.equal(test[3]["image"], rows[3]["image"])  # fixed, not random per call
    batch = collate_images(rows)
    assert batch["sample"].tolist() == [0] * 8 + [1] * 8
    plain = FIDataModule(data.cfg, seed=1)
    plain.images, plain._splits = data.images, data._splits
    plain.cfg = ImageDataConfig(**{**vars(data.cfg), "tta": False})
    flat = plain.dataset("test")
    assert len(flat) == n and "sample" not in flat[0]
    assert torch.allclose(flat[0]["image"], views[0])  # the "original" view


def test_a_flat_folder_named_by_class_reads_like_class_folders(tmp_path):
    """FI is also shared as one folder of ``<class>_<n>.jpg``: the same records."""
    flat = tmp_path / "flat"
    flat.mkdir()
    rgb = Image.new("RGB", (32, 24), (200, 40, 40))
    for name in ("amusement_0002.jpg", "amusement_0001.jpg", "sadness_0001.jpg"):
        rgb.save(flat / name)
    rgb.save(flat / "holiday_0001.jpg")  # no class: listed
    (flat / "LICENSE.txt").write_text("terms")  # not an image: ignored
    from trainers.data.images import index_fi

    bad = []
    records = index_fi(flat, lambda path, why: bad.append((Path(path).name, why)))
    assert [(r.key, FI_CLASSES[r.label]) for r in records] == [
        ("amusement/amusement_0001", "amusement"),
        ("amusement/amusement_0002", "amusement"),
        ("sadness/sadness_0001", "sadness"),
    ]
    assert [name for name, _ in bad] == ["holiday_0001.jpg"]
    assert "starts with no class" in bad[0][1]


def test_cmyk_greyscale_and_exif_rotated_jpegs_load_upright_rgb(tmp_path):
    """Real photo collections hold CMYK and greyscale JPEGs and camera pictures whose
    pixels are stored sideways with an EXIF orientation tag."""
    left_red = Image.new("RGB", (40, 20), (0, 0, 255))
    left_red.paste((255, 0, 0), (0, 0, 20, 20))  # red left half, blue right half
    left_red.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    left_red.convert("L").save(tmp_path / "grey.jpg", quality=95)
    # Stored rotated 90 degrees counter-clockwise; orientation 6: "rotate 90 CW to view".
    exif = Image.Exif()
    exif[0x0112] = 6
    left_red.transpose(Image.Transpose.ROTATE_90).save(
        tmp_path / "rotated.jpg", quality=95, exif=exif
    )
    for name in ("cmyk.jpg", "rotated.jpg"):
        out = decode_image(str(tmp_path / name), 16, "stretch")
        assert out.shape == (16, 16, 3) and out.dtype == np.uint8
        left, right = out[:, :6].mean(axis=(0, 1)), out[:, -6:].mean(axis=(0, 1))
        assert left[0] > 180 and left[2] < 80, (name, left)  # red on the left: upright
        assert right[2] > 180 and right[0] < 80, (name, right)
    grey = decode_image(str(tmp_path / "grey.jpg"), 16, "stretch")
    assert grey.shape == (16, 16, 3)
    assert np.abs(grey[..., 0].astype(int) - grey[..., 2]).max() <= 2  # grey in all three


def photo_unavailable(path: Path, size: tuple[int, int] = (500, 374), grey: int = 214) -> Path:
    """What an image host serves for a deleted photo, as Flickr's grey card: a flat grey
    field, an outlined picture icon and the line "This photo is no longer available"."""
    from PIL import ImageDraw

    im = Image.new("RGB", size, (grey,) * 3)
    draw = ImageDraw.Draw(im)
    w, h = size
    ink = (grey - 70,) * 3
    draw.rectangle((w * 0.4, h * 0.25, w * 0.6, h * 0.45), outline=ink, width=max(2, w // 100))
    draw.text((w * 0.22, h * 0.6), "This photo is no longer available", fill=ink)
    im.save(path, format="PNG" if path.suffix == ".png" else "JPEG", quality=85)
    return path


def test_photo_unavailable_placeholders_are_listed_not_trained(corpus, tmp_path):
    """A crawl saves the host's grey card under the deleted photo's name and label."""
    root, _ = corpus
    small = tmp_path / "fi"
    for name in FI_CLASSES:
        (small / name).mkdir(parents=True)
        for src in sorted((root / name).iterdir())[:3]:
            shutil.copy(src, small / name / src.name)
    cards = [
        photo_unavailable(small / "awe" / "awe_9001.jpg"),
        photo_unavailable(small / "fear" / "fear_9002.jpg", (240, 180), grey=160),
        photo_unavailable(small / "anger" / "anger_9003.png", (1024, 768), grey=230),
    ]
    dm, bad = module(small)
    assert sorted(Path(p).name for p, _ in bad) == sorted(c.name for c in cards)
    assert all("'photo unavailable' placeholder" in why for _, why in bad)
    assert dm.describe()["images"] == 3 * len(FI_CLASSES)
    keys = {s.key for split in ("train", "val", "test") for s in dm.samples(split)}
    assert not any(key.endswith(("_9001", "_9002", "_9003")) for key in keys)
    # predict still decodes what it is given: only training data is checked.
    assert decode_image(str(cards[0]), 16).shape == (16, 16, 3)


@pytest.mark.parametrize(
    "name",
    ["astronaut", "brick", "camera", "cell", "chelsea", "checkerboard", "clock", "coffee",
     "coins", "colorwheel", "grass", "gravel", "horse", "hubble_deep_field",
     "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina", "rocket",
     "text"],
)  # fmt: skip
def test_placeholder_check_spares_real_pictures(name, tmp_path):
    """scikit-image's sample pictures (they ship with it), greyscale and near-flat ones
    included, saved as JPEGs: none is taken for a placeholder."""
    import skimage.data

    from trainers.data.images import decode_photo

    array = getattr(skimage.data, name)()
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    path = tmp_path / f"{name}.jpg"
    Image.fromarray(array[..., :3]).save(path, quality=90)
    assert decode_photo(str(path), 32).shape == (32, 32, 3)
