"""Named pretrained weights (train.pretrained=imagenet / kinetics400): the published
URLs and hashes, the download into torch hub's cache through a loopback mirror, the
hash check, the offline error, and the config check of names a model does not know."""

from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from torchvision import models as tvm

from trainers.config import ConfigError, resolve
from trainers.engine.pretrained import PretrainedError, load_pretrained
from trainers.engine.weights import MIRROR_ENV, NAMES, WeightSource, source_url
from trainers.registry import get_entry

MODELS = {
    "image-resnet50": ("imagenet", tvm.ResNet50_Weights),
    "image-efficientnet-b0": ("imagenet", tvm.EfficientNet_B0_Weights),
    "image-vit-b16": ("imagenet", tvm.ViT_B_16_Weights),
    "r3d-18": ("kinetics400", tvm.video.R3D_18_Weights),
}


def test_named_sources_are_the_libraries_own_urls_and_hashes():
    from pytorchvideo.models.hub.slowfast import checkpoint_paths

    for model, (name, enum) in MODELS.items():
        source = type(get_entry(model).default_config()).pretrained_sources[name]
        assert source.url == enum.DEFAULT.url, model  # torchvision's DEFAULT weights
        assert source.sha256_prefix and source.file.endswith(f"-{source.sha256_prefix}.pth")
    for model in ("slowfast-r50", "meld-slowfast"):
        source = type(get_entry(model).default_config()).pretrained_sources["kinetics400"]
        assert source.url == checkpoint_paths["slowfast_r50"]
        assert source.sha256_prefix is None  # pytorchvideo publishes none
    assert set(NAMES) == {"imagenet", "kinetics400"}


def test_config_refuses_a_name_the_model_does_not_know():
    cfg = resolve(get_entry("image-resnet50").default_config(), assignments=["pretrained=imagenet"])
    assert cfg.train.pretrained == "imagenet"  # no file needed to validate: fetched when loaded
    resolve(get_entry("slowfast-r50").default_config(), assignments=["pretrained=kinetics400"])
    with pytest.raises(ConfigError) as err:
        resolve(
            get_entry("image-resnet50").default_config(), assignments=["pretrained=kinetics400"]
        )
    assert err.value.key == "train.pretrained"
    assert "'kinetics400'" in str(err.value) and "named sources: imagenet" in str(err.value)
    with pytest.raises(ConfigError, match="named sources: none"):
        resolve(get_entry("hybrid-attention").default_config(), assignments=["pretrained=imagenet"])


def test_the_mirror_keeps_the_published_path(monkeypatch):
    source = WeightSource("https://download.pytorch.org/models/x-ab12.pth", "test", "ab12")
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    assert source_url(source) == source.url
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:9/")
    assert source_url(source) == "http://127.0.0.1:9/models/x-ab12.pth"


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A loopback HTTP server of tmp_path/www, set as the weights mirror."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv(MIRROR_ENV, f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    yield root, server
    server.shutdown()
    server.server_close()


def publish(root: Path, payload: bytes, stem: str, prefix: str | None = None) -> WeightSource:
    """Serve ``payload`` under /models/<stem>-<prefix>.pth, as download.pytorch.org names
    files; ``prefix`` defaults to the payload's own SHA-256 prefix."""
    prefix = prefix or hashlib.sha256(payload).hexdigest()[:8]
    name = f"{stem}-{prefix}.pth"
    (root / "models").mkdir(exist_ok=True)
    (root / "models" / name).write_bytes(payload)
    return WeightSource(f"https://download.pytorch.org/models/{name}", "test", prefix)


def resnet50_bytes(tmp_path: Path) -> tuple[bytes, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    state = tvm.resnet50(num_classes=1000).state_dict()  # the published file's keys
    torch.save(state, tmp_path / "resnet50.pth")
    return (tmp_path / "resnet50.pth").read_bytes(), state


def test_imagenet_downloads_into_the_hub_cache_then_loads_from_it_offline(
    tmp_path, mirror, monkeypatch
):
    root, server = mirror
    payload, state = resnet50_bytes(tmp_path)
    source = publish(root, payload, "resnet50")
    entry = get_entry("image-resnet50")
    sources = {"imagenet": source}
    model = entry.build(entry.default_config(), 8)

    report = load_pretrained(model, "imagenet", sources)

    cached = tmp_path / "torch" / "hub" / "checkpoints" / source.file
    assert cached.read_bytes() == payload and report.path == cached
    own = model.state_dict()
    for key in ("conv1.weight", "layer4.2.conv3.weight", "layer1.0.bn1.running_var"):
        assert torch.equal(own[f"backbone.{key}"], state[key]), key
    assert report.unused == ["fc.bias", "fc.weight"]  # the 1000-class head is not loaded
    assert all(k.startswith("head.") for k in report.kept)
    assert "imagenet: test" in str(report)

    server.shutdown()  # the second load needs no network
    model = entry.build(entry.default_config(), 8)
    load_pretrained(model, "imagenet", sources)
    assert torch.equal(model.state_dict()["backbone.conv1.weight"], state["conv1.weight"])


def test_a_file_that_does_not_match_its_hash_is_refused_and_not_cached(tmp_path, mirror):
    root, _ = mirror
    payload = b"not the published weights"
    source = publish(root, payload, "resnet50", prefix="11ad3fa6")
    with pytest.raises(PretrainedError) as err:
        load_pretrained(torch.nn.Linear(2, 2), "imagenet", {"imagenet": source})
    message = str(err.value)
    assert "does not match the published SHA-256 prefix 11ad3fa6" in message
    assert not list((tmp_path / "torch" / "hub" / "checkpoints").iterdir())


def test_offline_names_the_url_and_the_cache_path(tmp_path, mirror):
    root, server = mirror
    source = publish(root, b"x", "resnet50")
    server.shutdown()
    server.server_close()
    with pytest.raises(PretrainedError) as err:
        load_pretrained(torch.nn.Linear(2, 2), "imagenet", {"imagenet": source})
    message = str(err.value)
    assert source_url(source) in message and source_url(source).startswith("http://127.0.0.1")
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / source.file) in message
    assert "copy" in message
    with pytest.raises(PretrainedError, match="named sources: imagenet"):
        load_pretrained(torch.nn.Linear(2, 2), "kinetics400", {"imagenet": source})


class Flaky(http.server.BaseHTTPRequestHandler):
    """Serves one payload; the first request breaks off half way, later ones honour
    Range. ``stall`` instead sends the headers and then nothing."""

    payload = b""
    stall = False
    ranges: ClassVar[list[str | None]] = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        asked = self.headers.get("Range")
        type(self).ranges.append(asked)
        data, status = self.payload, 200
        if asked:
            start = int(asked.removeprefix("bytes=").rstrip("-"))
            data, status = data[start:], 206
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.stall:
            threading.Event().wait(5)
            return
        if len(type(self).ranges) == 1:  # the first connection drops half way
            data = data[: len(data) // 2]
        self.wfile.write(data)


@pytest.fixture
def flaky(tmp_path, monkeypatch):
    handler = type("Handler", (Flaky,), {"payload": bytes(range(256)) * 4096, "ranges": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(MIRROR_ENV, f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    prefix = hashlib.sha256(handler.payload).hexdigest()[:8]
    yield handler, WeightSource(f"https://download.pytorch.org/models/x-{prefix}.pth", "t", prefix)
    server.shutdown()
    server.server_close()


def test_a_dropped_download_resumes_from_its_partial_file(flaky):
    from trainers.engine.weights import WeightsDownloadError, fetch

    handler, source = flaky
    with pytest.raises(WeightsDownloadError, match="connection closed after 524288 of 1048576"):
        fetch(source, progress=False)
    path = fetch(source, progress=False)
    assert path.read_bytes() == handler.payload
    assert handler.ranges == [None, "bytes=524288-"]  # only the missing half came again
    assert not path.with_name(path.name + ".partial").exists()


def test_a_stalled_download_times_out_instead_of_hanging(flaky, monkeypatch):
    import time

    from trainers.engine import weights

    handler, source = flaky
    handler.stall = True
    monkeypatch.setattr(weights, "TIMEOUT_S", 0.5)
    start = time.monotonic()
    with pytest.raises(weights.WeightsDownloadError, match="timed out"):
        weights.fetch(source, progress=False)
    assert time.monotonic() - start < 4


def test_train_fetches_named_weights_before_the_run_directory_exists(tmp_path, mirror, capsys):
    from trainers.cli import main

    _, server = mirror
    server.shutdown()
    server.server_close()
    out = tmp_path / "runs"
    code = main(
        ["train", "image-resnet50", "--data", str(tmp_path), "--out", str(out),
         "--set", "train.pretrained=imagenet"]
    )  # fmt: skip
    assert code == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert "train.pretrained=imagenet" in err and "resnet50-11ad3fa6.pth" in err
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in err
