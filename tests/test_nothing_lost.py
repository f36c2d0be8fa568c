"""Nothing lost, nothing corrupted: outputs that collide with inputs or each other, runs that fail half way,
permissions, links, signals and dead workers. Each test drives the real command."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_poolcli as poolcli

POOLCLI = [sys.executable, "-m", "poolcli"]


def one_error_line(r, code: int, *words: str) -> None:
    assert r.code == code, (r.code, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("poolcli: error: "), r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def x_npy(tmp_path: Path) -> Path:
    path = tmp_path / "x.npy"
    np.save(path, np.arange(16.0).reshape(4, 4))
    return path


# --- item 2: an output never replaces an input, nor another output -----------------------------------------

def test_indices_naming_the_input_is_refused(x_npy: Path):
    before = x_npy.read_bytes()
    r = poolcli("forward", x_npy, "-k", "2", "--indices", x_npy, "-o", x_npy.parent / "y.npy")
    one_error_line(r, 2, "--indices", "is the input file")
    assert x_npy.read_bytes() == before and not (x_npy.parent / "y.npy").exists()


def test_output_naming_the_grad_input_is_refused(x_npy: Path, tmp_path: Path):
    g = tmp_path / "g.npy"
    np.save(g, np.ones((2, 2)))
    r = poolcli("backward", x_npy, "--grad", g, "-o", g)
    one_error_line(r, 2, "-o", "is the --grad input")
    np.testing.assert_array_equal(np.load(g), np.ones((2, 2)))


def test_output_naming_the_unpool_indices_or_the_bilinear_features_is_refused(x_npy: Path, tmp_path: Path):
    idx = tmp_path / "idx.npy"
    assert poolcli("forward", x_npy, "--indices", idx, "-o", tmp_path / "y.npy").code == 0
    before = idx.read_bytes()
    r = poolcli("forward", tmp_path / "y.npy", "--op", "unpool", "--from-indices", idx, "-o", idx)
    one_error_line(r, 2, "is the --from-indices input")
    assert idx.read_bytes() == before
    w = tmp_path / "w.npy"
    np.save(w, np.ones((2, 3, 4, 4)))
    np.save(tmp_path / "f.npy", np.ones((2, 3, 4, 4)))
    r = poolcli("forward", tmp_path / "f.npy", "--op", "bilinear", "--with", w, "-o", w)
    one_error_line(r, 2, "is the --with input")
    assert np.load(w).shape == (2, 3, 4, 4)


def test_two_outputs_with_one_name_are_refused(x_npy: Path, tmp_path: Path):
    y = tmp_path / "y.npy"
    r = poolcli("forward", x_npy, "--indices", y, "-o", y)
    one_error_line(r, 2, "name the same file")
    assert not y.exists()


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_inputs_are_recognised_through_links(x_npy: Path, tmp_path: Path, link: str):
    alias = tmp_path / "alias.npy"
    (os.symlink if link == "symlink" else os.link)(x_npy, alias)
    before = x_npy.read_bytes()
    r = poolcli("forward", x_npy, "-o", alias)
    one_error_line(r, 2, "is the input file", "--in-place")
    r = poolcli("forward", x_npy, "--indices", alias, "-o", tmp_path / "y.npy")
    one_error_line(r, 2, "is the input file")
    assert x_npy.read_bytes() == before


# --- item 3: all outputs of a command are committed together -----------------------------------------------

def test_a_run_failing_half_way_leaves_no_output(x_npy: Path, tmp_path: Path):
    y = tmp_path / "y.npy"
    r = poolcli("forward", x_npy, "-k", "2", "--indices", tmp_path / "missing" / "i.npy", "-o", y)
    one_error_line(r, 1, "does not exist")
    assert not y.exists() and hidden(tmp_path) == []


def test_a_failed_run_keeps_the_old_outputs(x_npy: Path, tmp_path: Path):
    y = tmp_path / "y.npy"
    np.save(y, np.zeros(3))
    r = poolcli("forward", x_npy, "--indices", tmp_path / "missing" / "i.npy", "-o", y)
    assert r.code == 1
    np.testing.assert_array_equal(np.load(y), np.zeros(3))


# --- item 6: permissions ------------------------------------------------------------------------------------

def test_replacing_a_file_keeps_its_mode(x_npy: Path, tmp_path: Path):
    y = tmp_path / "y.npy"
    np.save(y, np.zeros(3))
    os.chmod(y, 0o600)
    assert poolcli("forward", x_npy, "-o", y).code == 0
    assert stat.S_IMODE(os.stat(y).st_mode) == 0o600
    assert np.load(y).shape == (2, 2)


def as_normal_user(*args: object) -> tuple[int, str]:
    """Run ``poolcli ARGS`` in a forked child that has dropped to an unprivileged user (root ignores write
    protection, as cp does); return its exit status and standard error."""
    if os.geteuid() != 0:
        r = poolcli(*args)
        return r.code, r.stderr
    _preload()  # the interpreter's own files are root's: import now what the command could import lazily
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, run, report, and leave without running pytest's teardown
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            r = poolcli(*args)
            os.write(write, f"{r.code}\n{r.stderr}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        code, _, err = f.read().partition("\n")
    os.waitpid(pid, 0)
    return int(code), err


def _preload() -> None:
    import importlib
    import pkgutil

    import typer
    from PIL import Image

    import poolcli

    for package in (poolcli, typer):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if module.name.endswith("__main__"):  # would run the program
                continue
            with contextlib.suppress(Exception):
                importlib.import_module(module.name)
    for name in ("mmap", "zipfile", "zlib"):
        importlib.import_module(name)
    Image.init()


@pytest.fixture
def open_folder():
    """A folder any user may write in (pytest's own tmp_path is private to root)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="poolcli-"))
    os.chmod(folder, 0o777)
    yield folder
    shutil.rmtree(folder)


def test_a_write_protected_output_is_refused_for_a_normal_user(open_folder: Path):
    np.save(open_folder / "x.npy", np.arange(16.0).reshape(4, 4))
    np.save(open_folder / "y.npy", np.zeros(3))
    os.chmod(open_folder / "y.npy", 0o444)
    code, err = as_normal_user("forward", open_folder / "x.npy", "-o", open_folder / "y.npy")
    assert code == 1, err
    assert err.startswith(f"poolcli: error: cannot write {open_folder / 'y.npy'}: permission denied"), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    np.testing.assert_array_equal(np.load(open_folder / "y.npy"), np.zeros(3))
    assert hidden(open_folder) == []


# --- item 9: links ------------------------------------------------------------------------------------------

def test_in_place_through_a_symlink_updates_its_target(x_npy: Path, tmp_path: Path):
    link = tmp_path / "link.npy"
    link.symlink_to(x_npy)
    r = poolcli("forward", link, "-o", link, "--in-place")
    assert r.code == 0, r.stderr
    assert link.is_symlink() and np.load(x_npy).shape == (2, 2)


def test_plain_output_to_a_symlink_replaces_the_link(x_npy: Path, tmp_path: Path):
    other = tmp_path / "other.npy"
    np.save(other, np.zeros(3))
    link = tmp_path / "link.npy"
    link.symlink_to(other)
    assert poolcli("forward", x_npy, "-o", link).code == 0
    assert not link.is_symlink() and np.load(link).shape == (2, 2)
    np.testing.assert_array_equal(np.load(other), np.zeros(3))  # as mv: the link is replaced, not its target


# --- item 11: SIGTERM / SIGHUP mid-write --------------------------------------------------------------------

@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_mid_write_leaves_no_temporary_file(tmp_path: Path, signum: int, code: int):
    x = tmp_path / "x.npy"
    np.lib.format.open_memmap(x, mode="w+", dtype=np.float64, shape=(64, 1024, 1024))[:] = 1.0
    proc = subprocess.Popen([*POOLCLI, "forward", str(x), "-k", "1", "-o", str(tmp_path / "y.npy")],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not hidden(tmp_path) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    assert hidden(tmp_path), "the command ended before it began to write"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "stopped by" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert hidden(tmp_path) == [] and not (tmp_path / "y.npy").exists()


def test_a_signal_while_a_temporary_file_is_made_waits_until_it_is_recorded(tmp_path: Path):
    """The window between creating a temporary file and recording it: a signal then is held, not lost,
    and acted on once the file is known, so that the handler can remove it."""
    from poolcli.io import atomic

    seen: list[tuple[int, set[str]]] = []

    def handler(signum: int, frame: object) -> None:
        if atomic.hold_signal(signum):
            return
        seen.append((signum, set(atomic._temporaries)))

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        with atomic._recording():
            signal.raise_signal(signal.SIGUSR1)
            assert seen == []  # held
        assert [s for s, _ in seen] == [signal.SIGUSR1]  # raised again after the window
        seen.clear()
        with pytest.raises(KeyError):  # a signal in mid-creation sees the file recorded
            with atomic.atomic_write(tmp_path / "out.bin"):
                signal.raise_signal(signal.SIGUSR1)
                assert len(seen) == 1 and any(".out.bin." in t for t in seen[0][1])
                raise KeyError
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert hidden(tmp_path) == []


def test_a_signal_held_while_a_temporary_file_is_made_still_removes_it(tmp_path: Path, monkeypatch):
    """A signal that arrives while the temporary file is being made is held, then raised as the window ends;
    the exception it raises there (the command's handler raises) removes the file all the same."""
    import tempfile

    from poolcli.io import atomic

    def handler(signum: int, frame: object) -> None:
        if atomic.hold_signal(signum):
            return
        raise InterruptedError("stopped")

    real = tempfile.mkstemp

    def mkstemp_then_signal(*args, **kw):
        made = real(*args, **kw)
        signal.raise_signal(signal.SIGUSR1)  # held: the file is not recorded yet
        return made

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_then_signal)
    old = signal.signal(signal.SIGUSR1, handler)
    try:
        with pytest.raises(InterruptedError), atomic.atomic_write(tmp_path / "out.bin"):
            pass
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert hidden(tmp_path) == [] and not atomic._temporaries


# --- item 10: killed batches --------------------------------------------------------------------------------

def make_images(folder: Path, count: int, side: int = 64) -> None:
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / f"{i:03}.png")


def children(pid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(proc.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the workers")
def test_workers_exit_when_the_batch_is_killed(tmp_path: Path):
    make_images(tmp_path / "in", 800, side=256)
    proc = subprocess.Popen([*POOLCLI, "forward", str(tmp_path / "in"), "--op", "avg", "--out-dir",
                             str(tmp_path / "out"), "--jobs", "2"], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while len(workers) < 2 and time.monotonic() < deadline:
        workers = children(proc.pid)
        time.sleep(0.01)
    assert len(workers) >= 2
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{w}").exists() and "Z" not in _state(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{w}").exists() and "Z" not in _state(w) for w in workers)
    assert not [p for p in (tmp_path / "out").rglob(".*")]  # the workers removed their temporary files


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


class DiesOn:
    """A recipe whose worker dies (as under the OOM killer) on one input's shape."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        from poolcli.engine import Recipe, WindowSpec

        self.real = Recipe("max", WindowSpec())
        self.shape = shape

    def bind(self, shape: tuple[int, ...]):
        if tuple(shape) == self.shape:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.real.bind(shape)

    def forward(self, x, plan):
        return self.real.forward(x, plan)


def test_a_dead_worker_costs_only_its_file(tmp_path: Path):
    from rich.console import Console

    from poolcli.batch import WORKER_DIED, Task, run_batch

    (tmp_path / "out").mkdir()
    pairs = []
    for i in range(12):
        np.save(tmp_path / f"{i:02}.npy", np.ones((6, 6) if i == 5 else (4, 4)))
        pairs.append((tmp_path / f"{i:02}.npy", tmp_path / "out" / f"{i:02}.npy"))
    summary = run_batch(pairs, Task(DiesOn((6, 6))), 2, False, Console(stderr=True))
    assert summary.failed == [(tmp_path / "05.npy", WORKER_DIED)]
    assert sorted(summary.done) == [p for p, _ in pairs if p.name != "05.npy"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{i:02}.npy" for i in range(12) if i != 5]


# --- item 1: metadata that stays true; every output format reads back -------------------------------------

def rgb(side: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def box2(a: np.ndarray) -> np.ndarray:
    """2x2 average, rounded half up (the reference for lossless outputs)."""
    h, w = a.shape[:2]
    return np.floor(a.astype(np.float64).reshape(h // 2, 2, w // 2, 2, -1).mean(axis=(1, 3)) + 0.5).astype(a.dtype)


@pytest.mark.parametrize("source", [".tif", ".png", ".jpg", ".webp", ".bmp"])
@pytest.mark.parametrize("suffix", [".tif", ".png", ".jpg", ".webp", ".bmp", ".gif"])
def test_every_output_format_reads_back_at_its_new_size(tmp_path: Path, source: str, suffix: str):
    from PIL import Image

    i, j = np.mgrid[0:64, 0:64]
    a = np.stack([4 * i, 4 * j, 2 * (i + j)], axis=-1).astype(np.uint8)  # smooth, so lossy formats stay close
    Image.fromarray(a).save(tmp_path / f"x{source}")
    with Image.open(tmp_path / f"x{source}") as im:
        a = np.asarray(im.convert("RGB"))
    r = poolcli("forward", tmp_path / f"x{source}", "--op", "avg", "-k", "2", "-o", tmp_path / f"y{suffix}")
    assert r.code == 0, r.stderr
    with Image.open(tmp_path / f"y{suffix}") as im:
        im.load()
        assert im.size == (32, 32)
        got = np.asarray(im.convert("RGB")).astype(int)
    want = box2(a).astype(int)
    if suffix in (".tif", ".png", ".bmp"):
        np.testing.assert_array_equal(got, want)
    elif suffix == ".gif":  # 256 colours: each pixel is near its average
        assert np.abs(got - want).mean() < 4
    else:
        assert np.abs(got - want).mean() < 4  # lossy


def test_a_jpeg_whose_exif_gives_its_size_says_the_new_size(tmp_path: Path):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0110] = "Camera"
    exif[256], exif[257] = 64, 64  # ImageWidth/ImageLength, as some cameras write
    sub = exif.get_ifd(0x8769)
    sub[0xA002], sub[0xA003] = 64, 64
    Image.fromarray(rgb()).save(tmp_path / "x.jpg", exif=exif)
    assert poolcli("forward", tmp_path / "x.jpg", "--op", "avg", "-k", "2", "-o", tmp_path / "y.tif").code == 0
    with Image.open(tmp_path / "y.tif") as im:
        im.load()
        assert im.size == (32, 32)
        tags = im.getexif()
        assert tags[256] == 32 and tags.get(0x0110) == "Camera"
        assert tags.get_ifd(0x8769)[0xA002] == 32
    assert poolcli("forward", tmp_path / "x.jpg", "--op", "avg", "-k", "2", "-o", tmp_path / "y.jpg").code == 0
    with Image.open(tmp_path / "y.jpg") as im:
        assert im.getexif().get_ifd(0x8769)[0xA003] == 32 and 256 not in im.getexif()


# --- item 4: 16-bit colour -------------------------------------------------------------------------------

def write_png16(path: Path, a: np.ndarray) -> None:
    """A 16-bit PNG written by plain rows (filter 0), independently of poolcli's encoder."""
    import struct
    import zlib

    h, w, c = a.shape

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    raw = b"".join(b"\0" + a[i].astype(">u2").tobytes() for i in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, {2: 4, 3: 2, 4: 6}[c], 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16_bit_colour_pngs_keep_16_bits(tmp_path: Path, channels: int):
    a = np.zeros((4, 4, channels), np.uint16)
    a[..., 0], a[..., 1] = 7, 1007
    if channels > 2:
        a[..., 2] = 2007
    a[..., -1] = 65535 if channels in (2, 4) else a[..., -1]
    write_png16(tmp_path / "x.png", a)
    r = poolcli("forward", tmp_path / "x.png", "--op", "avg", "-k", "2", "-o", tmp_path / "y.npy")
    assert r.code == 0, r.stderr
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.uint16 and y.shape == (2, 2, channels)
    np.testing.assert_array_equal(y[0, 0], a[0, 0])
    rng = np.random.default_rng(channels)
    b = rng.integers(0, 65536, (6, 8, channels)).astype(np.uint16)
    b[..., -1] = 65535  # opaque, so the average is the plain mean
    write_png16(tmp_path / "b.png", b)
    r = poolcli("forward", tmp_path / "b.png", "--op", "max", "-k", "2", "-o", tmp_path / "b2.png")
    assert r.code == 0, r.stderr
    r = poolcli("forward", tmp_path / "b2.png", "-k", "1", "-o", tmp_path / "b2.npy")
    assert r.code == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "b2.npy"), b.reshape(3, 2, 4, 2, channels).max(axis=(1, 3)))


# --- item 5: frames and pages ------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".gif", ".png", ".tif"])
def test_every_frame_is_pooled_keeping_durations_and_loop(tmp_path: Path, suffix: str):
    from PIL import Image

    frames = [np.full((8, 8, 3), 40 * (i + 1), np.uint8) for i in range(3)]
    for f, i in zip(frames, range(3)):
        f[:4, :4] = 10 * i  # a corner that differs, so each frame's average is its own
    images = [Image.fromarray(f) for f in frames]
    images[0].save(tmp_path / f"x{suffix}", save_all=True, append_images=images[1:], duration=[100, 200, 300], loop=3)
    r = poolcli("forward", tmp_path / f"x{suffix}", "--op", "avg", "-k", "2", "-o", tmp_path / f"y{suffix}")
    assert r.code == 0, r.stderr
    with Image.open(tmp_path / f"y{suffix}") as im:
        assert im.n_frames == 3 and im.size == (4, 4)
        for i in range(3):
            im.seek(i)
            np.testing.assert_array_equal(np.asarray(im.convert("RGB")), box2(frames[i]))
            if suffix != ".tif":
                assert im.info["duration"] == 100 * (i + 1)
        if suffix == ".gif":
            assert im.info["loop"] == 3


def test_frames_that_an_output_cannot_hold_are_refused(tmp_path: Path):
    from PIL import Image

    images = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (0, 100)]
    images[0].save(tmp_path / "x.gif", save_all=True, append_images=images[1:])
    for out in ("y.npy", "y.jpg"):
        r = poolcli("forward", tmp_path / "x.gif", "--op", "avg", "-o", tmp_path / out)
        one_error_line(r, 2, "has 2 frames")
        assert not (tmp_path / out).exists()
    for command in ("backward", "visualize"):  # one image in, so an animation is refused, not cut to frame 0
        r = poolcli(command, tmp_path / "x.gif", "-o", tmp_path / "y.png")
        one_error_line(r, 2, "has 2 frames and this command takes one image")
        assert not (tmp_path / "y.png").exists()


# --- item 7: --out-dir inside the input tree -------------------------------------------------------------

def test_an_out_dir_inside_the_inputs_is_not_pooled_again(tmp_path: Path):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(rgb(16)).save(photos / "a.png")
    for _ in range(3):
        r = poolcli("forward", photos, "--op", "avg", "-k", "2", "--out-dir", photos / "small", "-r", "--overwrite")
        assert r.code == 0, r.stderr
    assert sorted(str(p.relative_to(photos)) for p in photos.rglob("*.png")) == ["a.png", "small/a.png"]


@pytest.mark.parametrize("out", ["photos", "photos/", "."])
def test_an_out_dir_holding_the_input_folder_is_refused(tmp_path: Path, out: str):
    """The input folder inside (or equal to) the out-dir: said as such, not "no images found"."""
    from PIL import Image

    (tmp_path / "photos").mkdir()
    Image.fromarray(rgb(16)).save(tmp_path / "photos" / "a.png")
    before = (tmp_path / "photos" / "a.png").read_bytes()
    r = subprocess.run([*POOLCLI, "forward", "photos", "--out-dir", out, "--overwrite"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == (
        f"poolcli: error: --out-dir {out} holds the input folder photos; its outputs would replace the inputs: "
        "choose another folder")
    assert (tmp_path / "photos" / "a.png").read_bytes() == before


# --- item 8: an ICC profile that no longer matches -----------------------------------------------------

def test_a_cmyk_jpeg_loses_its_cmyk_profile_when_it_becomes_rgb(tmp_path: Path):
    from PIL import Image

    profile = b"\0" * 16 + b"CMYK" + b"\0" * 108  # a header that says CMYK (not a usable profile)
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "x.jpg", icc_profile=profile)
    r = poolcli("forward", tmp_path / "x.jpg", "--op", "avg", "-o", tmp_path / "y.jpg")
    assert r.code == 0, r.stderr
    with Image.open(tmp_path / "y.jpg") as im:
        assert im.mode == "RGB" and im.info.get("icc_profile") is None
        assert im.getpixel((1, 1))[0] > 200 and im.getpixel((1, 1))[1] < 60  # still red


# --- item 13: images averaged a strip of rows at a time ----------------------------------------------------

@pytest.mark.parametrize("geometry", [["-k", "2"], ["-k", "3", "-s", "2", "-p", "1"], ["-k", "3", "-s", "2", "--ceil"],
                                      ["-k", "2", "-d", "2", "--no-count-pad", "-p", "1"]])
@pytest.mark.parametrize("extra", [[], ["--linear"]])
def test_strips_give_the_whole_images_result(tmp_path: Path, monkeypatch, geometry, extra):
    from PIL import Image

    import poolcli.imaging as images

    a = np.random.default_rng(1).integers(0, 256, (37, 29, 4), dtype=np.uint8)
    Image.fromarray(a, "RGBA").save(tmp_path / "x.png")
    whole = poolcli("forward", tmp_path / "x.png", "--op", "avg", *geometry, *extra, "-o", tmp_path / "whole.npy")
    assert whole.code == 0, whole.stderr
    monkeypatch.setattr(images, "STRIP_BYTES", 1)  # one output row per strip
    strips = poolcli("forward", tmp_path / "x.png", "--op", "avg", *geometry, *extra, "-o", tmp_path / "strips.npy")
    assert strips.code == 0, strips.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "strips.npy"), np.load(tmp_path / "whole.npy"))


# --- items 12-16: bounded resources and one-line messages --------------------------------------------------

def run_limited(args: list[str], gib: int = 2) -> subprocess.CompletedProcess:
    """Run poolcli with its address space capped, so a step that needs far more memory fails."""
    import resource

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (gib << 30, gib << 30))

    return subprocess.run([*POOLCLI, *args], capture_output=True, text=True, preexec_fn=cap)


def test_geometry_checks_need_no_out_times_kernel_memory(tmp_path: Path):
    r = run_limited(["shape", "1000000", "-k", "1001", "-s", "1"])  # 8 GB of window positions before
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("= 999000")
    np.save(tmp_path / "sig.npy", np.random.default_rng(0).random(100_000).astype(np.float32))
    r = run_limited(["forward", str(tmp_path / "sig.npy"), "-k", "1001", "-s", "1", "--op", "avg",
                     "-o", str(tmp_path / "y.npy")])
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "y.npy").shape == (99_000,)


def lying_npz(path: Path) -> None:
    """A small .npz whose member's header claims a 2 GiB array."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (1 << 28,)})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a.npy", header.getvalue() + b"\0" * 64)


SETUPS = {
    "renamed png": lambda d: (d / "x.npy").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40),
    "lying npz": lambda d: lying_npz(d / "x.npz"),
    "big npz": lambda d: np.savez_compressed(d / "x.npz", a=np.zeros(2_000_000)),
    "text npz member": lambda d: __import__("zipfile").ZipFile(d / "x.npz", "w").writestr("notes.txt", "hello"),
}
BAD = [
    ("renamed png", ["forward", "{d}/x.npy"], 1, "is not a .npy file (it starts like a PNG image)"),
    ("lying npz", ["forward", "{d}/x.npz"], 1, "is corrupt (its header says 2,147,483,648 bytes"),
    ("big npz", ["forward", "{d}/x.npz", "--max-bytes", "1000000"], 1, "more than --max-bytes 1,000,000"),
    ("text npz member", ["forward", "{d}/x.npz"], 1, "notes.txt is not an array"),
    (None, ["forward", "--matrix", "1 2; 3 4", "-s", "99999999999999999999"], 2, "is too large"),
    (None, ["forward", "--matrix", "1 2; 3 4", "--jobs", "2"], 2, "--jobs goes with a batch"),
    (None, ["forward", "--matrix", "1 2; 3 4", "--recursive"], 2, "--recursive goes with a batch"),
]


@pytest.mark.parametrize("setup,args,code,message", BAD)
def test_hostile_inputs_get_one_clear_line(tmp_path: Path, setup, args, code, message):
    if setup:
        SETUPS[setup](tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    r = poolcli(*[a.replace("{d}", str(tmp_path)) for a in args], "-o", tmp_path / "y.npy")
    one_error_line(r, code, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_endless_standard_input_is_cut_at_max_bytes():
    r = poolcli("forward", "-", "--max-bytes", "100", input=b"1 2\n" * 1000)
    one_error_line(r, 1, "standard input holds more than --max-bytes 100")


def test_a_fifo_carrying_npy_is_read(tmp_path: Path):
    import io
    import threading

    fifo = tmp_path / "x.npy"
    os.mkfifo(fifo)
    buf = io.BytesIO()
    np.save(buf, np.arange(16.0).reshape(4, 4))
    writer = threading.Thread(target=lambda: fifo.write_bytes(buf.getvalue()))
    writer.start()
    r = poolcli("forward", fifo, "-o", tmp_path / "y.npy")
    writer.join()
    assert r.code == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), [[5, 7], [13, 15]])


def test_a_png_with_a_large_icc_profile_is_read(tmp_path: Path):
    from PIL import Image

    profile = b"\0" * 16 + b"RGB " + np.random.default_rng(0).bytes(5 << 20)
    Image.fromarray(rgb(8)).save(tmp_path / "x.png", icc_profile=profile)
    r = poolcli("forward", tmp_path / "x.png", "--op", "avg", "-o", tmp_path / "y.png")
    assert r.code == 0, r.stderr
    with Image.open(tmp_path / "y.png") as im:
        assert im.info["icc_profile"] == profile


def test_zero_size_batch_and_channel_axes_give_empty_results(tmp_path: Path):
    np.save(tmp_path / "x.npy", np.ones((0, 3, 8, 8)))
    for command in ("forward", "backward"):
        r = poolcli(command, tmp_path / "x.npy", "--op", "avg", "-o", tmp_path / "y.npy")
        assert r.code == 0, r.stderr
        assert np.load(tmp_path / "y.npy").shape == ((0, 3, 4, 4) if command == "forward" else (0, 3, 8, 8))


def test_shape_of_a_decompression_bomb_reads_only_its_header(tmp_path: Path):
    from PIL import Image

    Image.new("L", (20000, 20000)).save(tmp_path / "bomb.png")  # 400 Mpx: Pillow refuses to open it whole
    r = poolcli("shape", tmp_path / "bomb.png", "-k", "2")
    assert r.code == 0, r.stderr
    assert "(20000, 20000) → (10000, 10000)" in r.text


def test_full_and_ascii_only_standard_output():
    full = subprocess.run(f"{sys.executable} -m poolcli shape 1,3,8,8 > /dev/full", shell=True,
                          capture_output=True, text=True)
    assert full.returncode == 1 and full.stderr.strip() == (
        "poolcli: error: cannot write the output: no space left on the device (disk full)")
    ascii_only = subprocess.run([*POOLCLI, "shape", "1,3,8,8"], capture_output=True, text=True,
                                env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert ascii_only.returncode == 0, ascii_only.stderr
    assert ascii_only.stdout.startswith("(1, 3, 8, 8) -> (1, 3, 4, 4)")


def test_a_dangling_out_dir_link_is_said(tmp_path: Path):
    from PIL import Image

    Image.fromarray(rgb(8)).save(tmp_path / "a.png")
    (tmp_path / "out").symlink_to(tmp_path / "gone")
    r = poolcli("forward", tmp_path / "a.png", "--out-dir", tmp_path / "out")
    one_error_line(r, 2, "is a link to", "which does not exist")


def test_warnings_are_said_once_in_one_line():
    r = poolcli("forward", "--matrix", "1e308 1e308; 1e308 1e308", "--op", "lp", "--format", "json")
    assert r.code == 0
    lines = r.stderr.strip().splitlines()
    assert lines and all(line.startswith("poolcli: warning: ") for line in lines)
    assert len(lines) == len(set(lines)) and "Traceback" not in r.stderr and ".py:" not in r.stderr


def test_a_fifo_is_read_no_further_than_max_bytes(tmp_path: Path):
    import threading

    fifo = tmp_path / "x.npy"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(b"\x93NUMPY" + b"\0" * 1000))
    writer.start()
    r = poolcli("forward", fifo, "--max-bytes", "100", "-o", tmp_path / "y.npy")
    writer.join()
    one_error_line(r, 1, "holds more than --max-bytes 100")


@pytest.mark.parametrize("command,expect", [
    ("shape 1,3,8,8 >&-", (1, "poolcli: error: standard output is closed; give -o FILE")),
    ("forward {x} -k 2 >&-", (1, "poolcli: error: standard output is closed; give -o FILE")),
    ("forward {x} -k 2 -o - >&-", (1, "poolcli: error: standard output is closed; give -o FILE")),
    ("forward {x} -k 2 -o {d}/y.npy >&-", (0, "")),  # nothing to print: closed standard output is no matter
    ("forward - -k 2 <&-", (1, "poolcli: error: standard input is closed; pipe .npy bytes or a text matrix "
                                "into poolcli")),
])
def test_closed_standard_streams_are_said(x_npy: Path, command: str, expect: tuple[int, str]):
    r = subprocess.run(f"{sys.executable} -m poolcli " + command.format(x=x_npy, d=x_npy.parent), shell=True,
                       capture_output=True, text=True)
    assert (r.returncode, r.stderr.strip()) == expect


@pytest.mark.parametrize("name", ["x.npy", "x.npz", "x.txt", "x.png"])
def test_an_unreadable_input_is_said_as_such_for_a_normal_user(open_folder: Path, name: str):
    from PIL import Image

    a = np.arange(16, dtype=np.uint8).reshape(4, 4)
    {"x.npy": lambda p: np.save(p, a), "x.npz": lambda p: np.savez(p, a=a), "x.txt": lambda p: np.savetxt(p, a),
     "x.png": lambda p: Image.fromarray(a).save(p)}[name](open_folder / name)
    os.chmod(open_folder / name, 0)
    code, err = as_normal_user("forward", open_folder / name, "-o", open_folder / "y.npy")
    assert code == 1, err
    assert err.strip() == f"poolcli: error: cannot read {open_folder / name}: permission denied", err
    assert not (open_folder / "y.npy").exists()


def test_a_folder_named_like_an_array_is_said_to_be_a_folder(tmp_path: Path):
    (tmp_path / "x.npy").mkdir()
    one_error_line(poolcli("forward", tmp_path / "x.npy", "-k", "2"), 2, f"{tmp_path / 'x.npy'} is a folder")


@pytest.mark.parametrize("option", ["--jobs", "--max-pixels", "--max-bytes"])
def test_counts_below_one_are_refused_with_their_range(x_npy: Path, option: str):
    one_error_line(poolcli("forward", x_npy, option, "0", "-o", x_npy.parent / "y.npy"), 2, "not in the range x>=1")


def test_too_many_jobs_are_warned_of_once_and_the_batch_runs(tmp_path: Path):
    make_images(tmp_path / "in", 3, side=8)
    jobs = (os.cpu_count() or 1) + 62
    r = poolcli("forward", tmp_path / "in", "--out-dir", tmp_path / "out", "--jobs", jobs)
    assert r.code == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "warning" in line]
    assert warnings == [f"poolcli: warning: --jobs {jobs} is more than the {os.cpu_count()} cores here; "
                        "extra workers only share them"]
    assert len(list((tmp_path / "out").iterdir())) == 3


def test_a_large_image_within_max_pixels_gives_no_pillow_warning(tmp_path: Path):
    from PIL import Image

    Image.new("L", (10000, 9500)).save(tmp_path / "big.png")  # above Pillow's own warning size (89 Mpx)
    r = poolcli("forward", tmp_path / "big.png", "-k", "2", "-o", tmp_path / "small.png")
    assert (r.code, r.stderr) == (0, "")
    assert Image.open(tmp_path / "small.png").size == (5000, 4750)


def test_outputs_held_together_are_per_thread(tmp_path: Path):
    """A cluster worker pools several files at once in threads: one file failing in one thread discards only
    its own outputs, never another thread's (they were staged into whichever group was entered last)."""
    import threading

    from poolcli.io import atomic

    entered_b, entered_a, written_b = threading.Event(), threading.Event(), threading.Event()

    def a() -> None:
        entered_b.wait()
        with contextlib.suppress(RuntimeError), atomic.outputs_together():
            entered_a.set()
            written_b.wait()
            raise RuntimeError("this file fails")

    def b() -> None:
        with atomic.outputs_together():
            entered_b.set()
            entered_a.wait()
            with atomic.atomic_write(tmp_path / "b.out") as f:
                f.write(b"b")
            written_b.set()
            time.sleep(0.05)  # a fails and discards its outputs meanwhile

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert (tmp_path / "b.out").read_bytes() == b"b" and hidden(tmp_path) == []


def test_an_operator_that_must_hold_a_whole_sample_says_so_or_refuses(tmp_path, monkeypatch):
    """Pooling into a .npy runs block by block; bilinear needs one whole sample at once: beyond the block budget
    it says so, and where that would not fit in memory it refuses with the memory it would need."""
    import poolcli.cli.common as common

    x = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=(1, 17, 512, 512))
    x[...] = 1
    del x
    monkeypatch.setattr(common, "available_memory", lambda: 20 << 20)
    r = poolcli("forward", tmp_path / "x.npy", "--op", "bilinear", "--block-mb", "1", "-o", tmp_path / "y.npy")
    assert r.code == 2 and "must hold one (17, 512, 512) sample at once" in r.stderr and "GiB are free" in r.stderr
    assert not (tmp_path / "y.npy").exists()
    monkeypatch.setattr(common, "available_memory", lambda: None)
    r = poolcli("forward", tmp_path / "x.npy", "--op", "bilinear", "--block-mb", "1", "-o", tmp_path / "y.npy")
    assert r.code == 0 and "note: --op bilinear holds one (17, 512, 512) sample at a time" in r.stderr
    assert np.load(tmp_path / "y.npy").shape == (1, 17, 17)
    quiet = poolcli("forward", tmp_path / "x.npy", "-k", "2", "--block-mb", "1", "-o", tmp_path / "z.npy")
    assert quiet.code == 0 and "note" not in quiet.stderr  # a max pooling's planes are small: nothing to say


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("delay", [0.15, 0.3])
def test_ctrl_c_while_the_command_loads_prints_one_line_not_a_traceback(delay):
    """Ctrl-C in the first moments (NumPy, Typer and Rich still loading) ends with status 130 and one line."""
    import subprocess
    import time

    command = shutil.which("poolcli")
    if command is None:
        pytest.skip("the poolcli command is not installed")
    p = subprocess.Popen([command, "forward", "--matrix", "1 2; 3 4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert "Traceback" not in err, err
    assert p.returncode in (0, 130), (p.returncode, err)  # 0: it had finished before the signal came


def test_a_signal_while_the_mapped_output_is_flushed_leaves_no_temporary_file(tmp_path: Path, monkeypatch):
    """The last step of writing a .npy block by block is flushing its map; a stop there (Ctrl-C, SIGTERM)
    removes the temporary file as a stop anywhere else does."""
    from poolcli.io import arrays

    def stopped(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(np.memmap, "flush", stopped)
    with pytest.raises(KeyboardInterrupt), arrays.NpyOutputs([str(tmp_path / "y.npy")]) as made:
        made.allocate((4, 4), np.dtype(np.float64))[:] = 1
    assert hidden(tmp_path) == [] and not (tmp_path / "y.npy").exists()
