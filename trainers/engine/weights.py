"""Named pretrained weights: ``train.pretrained=imagenet`` or ``kinetics400``.

Each name maps, per model (its config class's ``pretrained_sources``), to a
published file: its URL, its name in torch hub's cache, and the SHA-256 prefix
that was published for it. The file is downloaded on first use into
``torch.hub.get_dir()/checkpoints/<file>``, exactly where torchvision and
pytorchvideo put it, so a file already there (downloaded by either library, or
copied from another machine) is used without any network. A download is
checked against the hash before it is moved into the cache.

Mirror setting: ``EMOCONSOLE_WEIGHTS_MIRROR=http://host:port`` replaces the
scheme and host of every URL below and keeps its path, e.g.
``http://host:port/models/resnet50-11ad3fa6.pth``: a local mirror of
download.pytorch.org and dl.fbaipublicfiles.com laid out as the originals
(the tests serve one on loopback). The hash check is the same either way.

Stdlib only at import: the config check reads these tables without torch.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

MIRROR_ENV = "EMOCONSOLE_WEIGHTS_MIRROR"
# torch.hub's HASH_REGEX: the file name's "-<hex>." part is its SHA-256 prefix.
_HASH_IN_NAME = re.compile(r"-([a-f0-9]*)\.")


@dataclass(frozen=True)
class WeightSource:
    """A published weights file."""

    url: str
    origin: str  # where the URL and hash come from, for the log and the docs
    # The published SHA-256 prefix, checked on download; None when none is published.
    sha256_prefix: str | None

    @property
    def file(self) -> str:
        """Its name in torch hub's cache: the URL's last part, as torch.hub names it."""
        return self.url.rsplit("/", 1)[-1]


def _torchvision(url: str, origin: str) -> WeightSource:
    found = _HASH_IN_NAME.search(url.rsplit("/", 1)[-1])
    assert found, url  # torchvision's file names all carry their hash prefix
    return WeightSource(url, origin, found.group(1))


# URLs from torchvision 0.2x's weight enums (torchvision/models/*.py); each file's
# name ends in the first hex digits of its SHA-256, which torch.hub checks
# (load_state_dict_from_url(check_hash=True)), so we check the same prefix.
RESNET50_IMAGENET = _torchvision(
    "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
    "torchvision ResNet50_Weights.IMAGENET1K_V2 (its DEFAULT)",
)
EFFICIENTNET_B0_IMAGENET = _torchvision(
    "https://download.pytorch.org/models/efficientnet_b0_rwightman-7f5810bc.pth",
    "torchvision EfficientNet_B0_Weights.IMAGENET1K_V1 (its DEFAULT)",
)
VIT_B16_IMAGENET = _torchvision(
    "https://download.pytorch.org/models/vit_b_16-c867db91.pth",
    "torchvision ViT_B_16_Weights.IMAGENET1K_V1 (its DEFAULT)",
)
R3D18_KINETICS400 = _torchvision(
    "https://download.pytorch.org/models/r3d_18-b3b3357e.pth",
    "torchvision R3D_18_Weights.KINETICS400_V1 (its DEFAULT)",
)
# pytorchvideo's model zoo (pytorchvideo/models/hub/slowfast.py, checkpoint_paths
# ["slowfast_r50"]): SlowFast R50 8x8 trained on Kinetics-400. No hash is
# published for it: the file name carries none, pytorchvideo's hub loads it with
# load_state_dict_from_url's default check_hash=False, and its model zoo page
# (docs/source/model_zoo.md) gives only the link, accuracy, FLOPs and parameters.
# So nothing is checked, as in pytorchvideo itself.
SLOWFAST_R50_KINETICS400 = WeightSource(
    "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/SLOWFAST_8x8_R50.pyth",
    "pytorchvideo model zoo slowfast_r50 (Kinetics-400; no hash published)",
    None,
)

# Every name any model knows: a train.pretrained equal to one of them is a named
# source, never a path (a file called "imagenet" is passed as ./imagenet). Which
# names a model knows: its config's pretrained_sources.
NAMES = ("imagenet", "kinetics400")


class WeightsDownloadError(RuntimeError):
    """The file could not be fetched, or its bytes do not match the published hash."""


def hub_dir() -> Path:
    """torch hub's download cache: ``$TORCH_HOME/hub/checkpoints`` by default."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def source_url(source: WeightSource) -> str:
    """The URL to fetch: the published one, or its path on the mirror (MIRROR_ENV)."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return source.url
    base = urlsplit(mirror)
    if not base.scheme or not base.netloc:
        raise WeightsDownloadError(
            f"{MIRROR_ENV}={mirror!r}: expected a scheme and host, e.g. http://127.0.0.1:8000"
        )
    path = base.path.rstrip("/") + urlsplit(source.url).path
    return urlunsplit((base.scheme, base.netloc, path, "", ""))


def fetch(source: WeightSource, progress: bool | None = None) -> Path:
    """The cached file of ``source``, downloaded (hash checked) when not there yet."""
    path = hub_dir() / source.file
    if path.is_file():
        return path
    url = source_url(source)
    path.parent.mkdir(parents=True, exist_ok=True)
    if progress is None:
        progress = sys.stderr.isatty()
    try:
        download(url, path, source.sha256_prefix, progress=progress)
    except HashMismatch as exc:
        raise WeightsDownloadError(
            f"{url}: the downloaded file does not match the published SHA-256 prefix "
            f"{source.sha256_prefix} of {source.file} ({exc}); it was not saved to {path}"
        ) from exc
    except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts, refused connections
        raise WeightsDownloadError(
            f"cannot download {url} ({exc}; no network?): copy {source.file} from a machine "
            f"that can download it into torch hub's cache as {path}, then run again"
        ) from exc
    return path


class HashMismatch(ValueError):
    """The downloaded bytes are not the published file."""


def download(
    url: str,
    path: Path,
    sha256_prefix: str | None,
    *,
    progress: bool = False,
    timeout: float | None = None,
) -> None:
    """Fetch ``url`` into ``path``: resumable, hash-checked, atomic, never hanging.

    Why not ``torch.hub.download_url_to_file``: it opens the URL with no timeout,
    so a stalled connection (a spot instance's flaky NAT, a captive proxy) hangs
    the run forever before its first step, and it restarts a 100 MB file from
    zero after any drop. Here every socket operation times out
    (``timeout``, default :data:`TIMEOUT_S`), bytes already in ``<file>.partial``
    are asked for again with an HTTP Range request (a server that ignores it
    sends the whole file, which then replaces them), and the file is moved into
    place only when its SHA-256 starts with the published prefix. The partial
    file is also the lock: ranks of one torchrun job starting together download
    once, the others wait and find the file there.
    """
    import fcntl
    import hashlib
    import urllib.error
    import urllib.request

    timeout = TIMEOUT_S if timeout is None else timeout
    partial = path.with_name(path.name + ".partial")
    with open(partial, "ab") as out:
        fcntl.flock(out, fcntl.LOCK_EX)
        try:
            if path.is_file():  # another process finished it while we waited
                return
            have = out.tell()
            request = urllib.request.Request(url, headers={"User-Agent": "emoconsole"})
            if have:
                request.add_header("Range", f"bytes={have}-")
            try:
                response = urllib.request.urlopen(request, timeout=timeout)
            except urllib.error.HTTPError as exc:
                if exc.code != 416 or not have:  # 416: the partial file is not a prefix of it
                    raise
                out.truncate(0)
                out.seek(0)
                have = 0
                request.remove_header("Range")
                response = urllib.request.urlopen(request, timeout=timeout)
            with response:
                if have and response.status != 206:  # the server sent the whole file
                    out.truncate(0)
                    out.seek(0)
                    have = 0
                length = response.headers.get("Content-Length")
                total = have + int(length) if length and length.isdigit() else None
                done = have
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        shown = f"{done / total:6.1%}" if total else f"{done / 2**20:.1f} MiB"
                        print(f"\r{path.name}: {shown}", end="", file=sys.stderr, flush=True)
                if progress:
                    print(file=sys.stderr)
                if total is not None and done < total:
                    raise OSError(f"connection closed after {done} of {total} bytes")
            out.flush()
            if sha256_prefix:
                digest = hashlib.sha256()
                with open(partial, "rb") as written:
                    while block := written.read(CHUNK):
                        digest.update(block)
                if not digest.hexdigest().startswith(sha256_prefix):
                    partial.unlink(missing_ok=True)
                    raise HashMismatch(f"its SHA-256 is {digest.hexdigest()}")
            os.replace(partial, path)
        finally:
            fcntl.flock(out, fcntl.LOCK_UN)


# Seconds any one connect or read may take before a download gives up.
TIMEOUT_S = 60.0
CHUNK = 1 << 20
