"""MNIST loading: local directories, the cache, downloads from a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.server
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from aekit.data import mnist
from aekit.data.idx import write_idx
from aekit.data.mnist import FILES, DownloadError, load_data
from aekit.errors import ConfigError, InputError

SHARED_SPLIT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist-split"

Arrays = dict[str, npt.NDArray[np.uint8]]


def make_arrays(n_train: int = 6, n_test: int = 3, seed: int = 0) -> Arrays:
    """Small random MNIST-shaped arrays, keyed by file name."""
    rng = np.random.default_rng(seed)
    shapes = {FILES[0]: (n_train, 28, 28), FILES[1]: (n_train,)}
    shapes |= {FILES[2]: (n_test, 28, 28), FILES[3]: (n_test,)}
    return {
        name: rng.integers(0, 256 if len(shape) == 3 else 10, size=shape, dtype=np.uint8)
        for name, shape in shapes.items()
    }


def write_files(directory: Path, arrays: Arrays, *, gz: bool = True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(directory / (name if gz else name.removesuffix(".gz")), array)


def assert_loaded(result: Any, arrays: Arrays) -> None:
    (x_train, y_train), (x_test, y_test) = result
    for got, name in zip((x_train, y_train, x_test, y_test), FILES, strict=True):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, arrays[name])


@dataclasses.dataclass
class Server:
    """A local HTTP server over `root`; `requests` records every path asked for."""

    url: str
    root: Path
    arrays: Arrays
    md5: dict[str, str]
    requests: list[str]


@contextlib.contextmanager
def http_server(root: Path, requests: list[str], *, hang_up: bool = False) -> Iterator[str]:
    """Serve `root` on 127.0.0.1 in a thread; its base URL. `hang_up` closes without answering."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            requests.append(self.path)
            if hang_up:
                self.close_connection = True  # the client sees a dropped connection
                return
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep the test output clean

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # A short poll interval: shutdown() waits for the serving loop to notice (0.5 s by default).
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """Serve four IDX files and make the registry's "mnist" entry expect their checksums."""
    root = tmp_path / "served"
    arrays = make_arrays()
    write_files(root, arrays)
    md5 = {name: hashlib.md5((root / name).read_bytes()).hexdigest() for name in FILES}
    info = dataclasses.replace(mnist.DATASETS["mnist"], md5=md5, mirrors=())
    monkeypatch.setitem(mnist.DATASETS, "mnist", info)
    # Never touch the real home directory.
    monkeypatch.setenv("AEKIT_DATA_DIR", str(tmp_path / "env-cache"))
    requests: list[str] = []
    with http_server(root, requests) as url:
        yield Server(url, root, arrays, md5, requests)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any download attempt fail the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("load_data tried to use the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# --- local files -----------------------------------------------------------------------------


@pytest.mark.usefixtures("no_network")
def test_shared_mnist_split_loads() -> None:
    if not SHARED_SPLIT.is_dir():
        pytest.skip(f"{SHARED_SPLIT} is not present")
    (x_train, y_train), (x_test, y_test) = load_data(SHARED_SPLIT)
    assert x_train.shape == (8000, 28, 28) and y_train.shape == (8000,)
    assert x_test.shape == (2000, 28, 28) and y_test.shape == (2000,)
    for array in (x_train, y_train, x_test, y_test):
        assert array.dtype == np.uint8
    assert y_train.max() < 10 and y_test.max() < 10
    assert set(np.unique(y_train)) == set(range(10))
    assert x_train.max() == 255 and x_train.mean() > 10  # real digits, not blank images


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("gz", [True, False])
def test_local_directory_is_read_without_network_or_checksums(tmp_path: Path, gz: bool) -> None:
    arrays = make_arrays(seed=1)
    write_files(tmp_path, arrays, gz=gz)
    assert_loaded(load_data(tmp_path, download=False), arrays)
    assert_loaded(load_data(str(tmp_path), dataset="kmnist"), arrays)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({FILES[1]: np.zeros(5, np.uint8)}, "6 images but"),
        ({FILES[3]: np.full(3, 10, np.uint8)}, "label 10 is out of range"),
        ({FILES[0]: np.zeros((6, 28, 27), np.uint8)}, "(N, 28, 28)"),
        ({FILES[2]: np.zeros((3, 28, 28), np.int32)}, "expected uint8 images"),
        ({FILES[1]: np.zeros((6, 1), np.uint8)}, "expected uint8 labels"),
    ],
)
def test_inconsistent_files_raise(
    tmp_path: Path, change: Arrays, fragment: str, no_network: None
) -> None:
    write_files(tmp_path, make_arrays() | change)
    with pytest.raises(InputError) as info:
        load_data(tmp_path)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_unknown_dataset_lists_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'mnist', 'fashion_mnist', 'kmnist'"):
        load_data(tmp_path, dataset="cifar10")


def test_registry_is_complete() -> None:
    assert set(mnist.DATASETS) == {"mnist", "fashion_mnist", "kmnist"}
    for name, info in mnist.DATASETS.items():
        assert info.name == name
        assert set(info.md5) == set(FILES)
        assert all(re.fullmatch(r"[0-9a-f]{32}", md5) for md5 in info.md5.values())
        assert info.mirrors and all(m.startswith(("http://", "https://")) for m in info.mirrors)
        assert all(m.endswith("/") for m in info.mirrors)
    # The published MNIST test-set checksums (also given in ../shared/data/README.md).
    assert mnist.DATASETS["mnist"].md5[FILES[2]] == "9fb629c4189551a2d022fa330f9573f3"


# --- downloads ---------------------------------------------------------------------------------


def test_download_fills_the_cache_then_reuses_it(tmp_path: Path, server: Server) -> None:
    cache = tmp_path / "cache"
    assert_loaded(load_data(cache, mirrors=[server.url]), server.arrays)
    assert sorted(server.requests) == sorted(f"/{name}" for name in FILES)
    assert leftovers(cache) == sorted(FILES)
    for name in FILES:
        assert (cache / name).read_bytes() == (server.root / name).read_bytes()
    assert_loaded(load_data(cache, mirrors=[server.url]), server.arrays)
    assert len(server.requests) == 4  # the second call found everything cached


def test_only_missing_files_are_downloaded(tmp_path: Path, server: Server) -> None:
    cache = tmp_path / "cache"
    write_files(cache, {name: server.arrays[name] for name in FILES[:3]}, gz=False)
    assert_loaded(load_data(cache, mirrors=[server.url]), server.arrays)
    assert server.requests == [f"/{FILES[3]}"]


def test_registry_mirrors_are_used_by_default(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = dataclasses.replace(mnist.DATASETS["mnist"], mirrors=(server.url,))
    monkeypatch.setitem(mnist.DATASETS, "mnist", info)
    assert_loaded(load_data(tmp_path / "cache"), server.arrays)


def test_aekit_data_dir_is_the_default_cache(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEKIT_DATA_DIR", str(tmp_path / "data"))
    assert mnist.cache_dir() == tmp_path / "data" / "mnist"
    assert_loaded(load_data(mirrors=[server.url]), server.arrays)
    assert leftovers(tmp_path / "data" / "mnist") == sorted(FILES)


def test_home_cache_when_aekit_data_dir_is_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AEKIT_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert mnist.cache_dir("kmnist") == tmp_path / ".cache" / "aekit" / "kmnist"


def test_wrong_checksum_leaves_nothing_behind(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = dict.fromkeys(FILES, "0" * 32)
    monkeypatch.setitem(
        mnist.DATASETS, "mnist", dataclasses.replace(mnist.DATASETS["mnist"], md5=wrong)
    )
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="no mirror served the right file") as info:
        load_data(cache, mirrors=[server.url, server.url])
    assert "md5" in str(info.value) and "\n" not in str(info.value)
    assert len(server.requests) == 2  # both mirrors tried for the first file, then it stopped
    assert leftovers(cache) == []


def test_a_later_bad_file_keeps_only_verified_files(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    md5 = server.md5 | {FILES[2]: "0" * 32}
    monkeypatch.setitem(
        mnist.DATASETS, "mnist", dataclasses.replace(mnist.DATASETS["mnist"], md5=md5)
    )
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match=FILES[2]):
        load_data(cache, mirrors=[server.url])
    assert leftovers(cache) == sorted(FILES[:2])


def test_falls_back_to_the_next_mirror(tmp_path: Path, server: Server) -> None:
    # A mirror without the files (404), one serving other files (bad md5), then the good one.
    other = server.root / "other"
    write_files(other, make_arrays(seed=7))
    mirrors = [f"{server.url}absent/", f"{server.url}other", server.url]
    assert_loaded(load_data(tmp_path / "cache", mirrors=mirrors), server.arrays)
    assert leftovers(tmp_path / "cache") == sorted(FILES)


def test_unreachable_mirrors_move_to_the_end(tmp_path: Path, server: Server) -> None:
    hung_up: list[str] = []
    with http_server(server.root, hung_up, hang_up=True) as dropping:
        mirrors = [dropping, server.url]
        assert_loaded(load_data(tmp_path / "cache", mirrors=mirrors), server.arrays)
    # Only the first file tried the mirror that dropped the connection; the rest skipped it.
    assert hung_up == [f"/{FILES[0]}"]
    assert len(server.requests) == 4
    assert mirrors == [dropping, server.url]  # the caller's list is not modified
    assert leftovers(tmp_path / "cache") == sorted(FILES)


def test_server_down_raises_the_offline_error_fast(tmp_path: Path, server: Server) -> None:
    cache = tmp_path / "cache"
    start = time.perf_counter()
    with pytest.raises(DownloadError) as info:
        load_data(cache, mirrors=[f"http://127.0.0.1:{free_port()}/"])
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert "\n" not in message
    assert "network seems unreachable" in message
    assert all(name in message for name in FILES)  # which files are missing
    assert str(cache) in message  # where they were looked for
    assert "data_dir=" in message and "AEKIT_DATA_DIR" in message  # how to fix it
    assert isinstance(info.value, OSError)
    assert leftovers(cache) == []


def test_download_false_with_missing_files(tmp_path: Path, server: Server) -> None:
    cache = tmp_path / "cache"
    write_files(cache, {FILES[0]: server.arrays[FILES[0]]})
    with pytest.raises(DownloadError) as info:
        load_data(cache, download=False, mirrors=[server.url])
    message = str(info.value)
    assert "download=False" in message and str(cache) in message
    assert FILES[1] in message and FILES[0] not in message.split(";")[0]
    assert server.requests == []


def test_file_names_come_only_from_the_registry(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mnist, "FILES", ("../escape.gz", *FILES[1:]))
    with pytest.raises(ConfigError, match="bare file name"):
        load_data(tmp_path / "cache", mirrors=[server.url])
    assert not (tmp_path / "escape.gz").exists()
    assert server.requests == []


def test_non_http_mirror_is_refused(tmp_path: Path, server: Server) -> None:
    with pytest.raises(ConfigError, match="http"):
        load_data(tmp_path / "cache", mirrors=[server.root.as_uri()])
