"""Shared pytest fixtures: the ../shared folder and a seeded tiny AdaptCLIP on random weights."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread per xdist worker: ``-n 2`` on 2 cores would otherwise oversubscribe the CPU.

    The text-feature cache (``adaptclip_med.loading.text_cache``) goes to a fresh folder per test process (also
    seen by the CLIs the tests start), never to the user's ``~/.cache``.
    """
    if "ADAPTCLIP_CACHE_DIR" not in os.environ:
        import tempfile

        os.environ["ADAPTCLIP_CACHE_DIR"] = tempfile.mkdtemp(prefix="adaptclip-test-cache-")
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


def _shared_root() -> Path:
    env = os.environ.get("ADAPTCLIP_SHARED")
    return Path(env) if env else REPO_ROOT.parent / "shared"


def _require_shared(sub: str) -> Path:
    path = _shared_root() / sub
    if path.exists():
        return path
    reason = f"{path} is absent: these tests need the ../shared folder beside the checkout"
    if os.environ.get("ADAPTCLIP_REQUIRE_SHARED") == "1":
        pytest.fail(f"{reason} (ADAPTCLIP_REQUIRE_SHARED=1, as in CI)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (or ``$ADAPTCLIP_SHARED``); skips when absent, fails in CI."""
    return _require_shared("")


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """``../shared/datasets``; skips when absent, fails in CI."""
    return _require_shared("datasets")


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    """``../shared/conformance``; skips when absent, fails in CI."""
    return _require_shared("conformance")


@pytest.fixture(scope="session")
def tiny_model():
    """AdaptCLIP on the registered tiny backbone (random weights, seed 0) at 224 px, eval mode."""
    from adaptclip_med import load_model

    return load_model(
        backbone="adaptclip-tiny", pretrained=None, image_size=224, device="cpu",
        allow_random_backbone=True, seed=0,
    )


@dataclass(frozen=True)
class BadCorpus:
    """The bad-input corpus of tests/bad_corpus.py, written once per session (a ``folder`` data set).

    ``good``: image paths that must be read and scored; ``bad``: ``{path: reason regex}`` of the
    files that must be skipped and listed (a bad image/mask pair under its image).
    """

    root: Path
    good: list[str]
    bad: dict[str, str]


def load_bad_corpus_module():
    """Import tests/bad_corpus.py (pytest's importlib mode does not put tests/ on ``sys.path``)."""
    spec = importlib.util.spec_from_file_location("adaptclip_bad_corpus", REPO_ROOT / "tests" / "bad_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def bad_corpus(tmp_path_factory: pytest.TempPathFactory) -> BadCorpus:
    """The bad-input corpus (see tests/bad_corpus.py), shared by the data and evaluation tests."""
    root = tmp_path_factory.mktemp("bad_corpus") / "corpus"
    good, bad = load_bad_corpus_module().build_bad_corpus(root)
    return BadCorpus(root, good, bad)


@pytest.fixture
def oom_above(monkeypatch: pytest.MonkeyPatch):
    """``oom_above(n)``: from now on (this test), ``AdaptCLIP.encode_images`` raises a real
    ``torch.OutOfMemoryError`` for a batch of more than ``n`` images, as a GPU too small for them would.

    Returns the list it appends every requested batch size to (failed calls included).
    """
    import torch

    from adaptclip_med.model.adaptclip import AdaptCLIP

    original = AdaptCLIP.encode_images

    def patch(n: int) -> list[int]:
        sizes: list[int] = []

        def encode_images(self: AdaptCLIP, images: torch.Tensor):
            sizes.append(int(images.shape[0]))
            if images.shape[0] > n:
                raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {images.shape[0]} images")
            return original(self, images)

        monkeypatch.setattr(AdaptCLIP, "encode_images", encode_images)
        return sizes

    return patch


@pytest.fixture
def encode_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The images of every backbone pass from now on (this test): ``FrozenCLIPVision.encode_image``
    wrapped to append its batch size, then run as usual."""
    import torch

    from adaptclip_med.model.backbone import FrozenCLIPVision

    calls: list[int] = []
    original = FrozenCLIPVision.encode_image

    def counting(self: FrozenCLIPVision, images: torch.Tensor) -> object:
        calls.append(int(images.shape[0]))
        return original(self, images)

    monkeypatch.setattr(FrozenCLIPVision, "encode_image", counting)
    return calls
