"""``avvos live`` with its OpenCV window, on a virtual X display (Xvfb), driven by xdotool.

The test starts Xvfb itself; it is skipped (failed under CI) when Xvfb or xdotool is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from avvos.checkpoint import save_checkpoint
from avvos.config import ModelConfig
from avvos.masks import read_mask
from avvos.model.stcn import build_model


@pytest.fixture
def display():
    missing = [tool for tool in ("Xvfb", "xdotool") if shutil.which(tool) is None]
    if missing:
        message = f"{', '.join(missing)} not installed (bash scripts/system_deps.sh installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    number = next(n for n in range(90 + os.getpid() % 50, 400) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    env = {**os.environ, "DISPLAY": f":{number}"}
    _wait(lambda: server.poll() is not None or _xdotool(env, "getmouselocation").startswith("x:"),
          "Xvfb accepts clients", timeout=60)  # fmt: skip
    assert server.poll() is None, "Xvfb exited at start-up"
    yield f":{number}"
    server.terminate()
    server.wait(timeout=10)


def _xdotool(env: dict[str, str], *args: str) -> str:
    return subprocess.run(["xdotool", *args], env=env, capture_output=True, text=True, timeout=20).stdout


def _wait(condition, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.2)


def _wait_until_steady(count, what: str, quiet: float, timeout: float = 90.0) -> None:
    """Wait until ``count()`` has not changed for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = count(), time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.2)
        now = count()
        if now != last:
            last, since = now, time.monotonic()


def _wait_for_window(env: dict[str, str], process: subprocess.Popen, log: Path, timeout: float = 180.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"avvos live exited early ({process.returncode}): {log.read_text()[-2000:]}")
        found = _xdotool(env, "search", "--name", "avvos live").split()
        if found:
            return found[0]
        time.sleep(0.3)
    raise AssertionError("the avvos live window did not appear")


def test_opencv_windows_open_after_avvos_loaded_pyav(display: str) -> None:
    """PyAV's bundled xcb libraries, loaded before OpenCV's, made cv2.namedWindow hang: avvos loads cv2 first."""
    code = (
        "import avvos.sources, av, cv2, numpy as np\n"
        "cv2.namedWindow('probe', cv2.WINDOW_AUTOSIZE)\n"
        "cv2.imshow('probe', np.zeros((8, 8, 3), np.uint8))\n"
        "cv2.waitKey(1)\n"
        "print('window ok')"
    )
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "window ok" in done.stdout, done.stderr[-2000:]


def test_window_add_object_with_a_box_then_quit(display: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    save_checkpoint(build_model(ModelConfig.light()), tmp_path / "w.safetensors")
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(400):
        image = np.full((120, 160, 3), 60, np.uint8)
        image[40:80, 50 + t % 40 : 90 + t % 40] = (230, 60, 40)
        Image.fromarray(image).save(frames / f"{t:05d}.png")
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    # Output goes to files, not pipes: a pipe nobody reads until the end can fill up and block the process.
    out_path, err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "avvos.cli", "live", str(frames), "--fps", "10", "--weights",
             str(tmp_path / "w.safetensors"), "--masks-out", str(tmp_path / "masks"), "--device", "cpu"],
            env=env, stdout=out_file, stderr=err_file, text=True,
        )  # fmt: skip
    masks = tmp_path / "masks"
    try:
        window = _wait_for_window(env, process, err_path)
        _wait(lambda: len(list(masks.glob("*.png"))) >= 2, "frames are processed with no object yet")
        _xdotool(env, "windowactivate", "--sync", window)
        _xdotool(env, "key", "--window", window, "a")  # freeze the frame and mark a new object
        # The key is read between frames, which come slowly on a loaded machine: the box is drawn only once the
        # frozen frame shows, i.e. once no new mask has been written for 2 s.
        _wait_until_steady(lambda: len(list(masks.glob("*.png"))), "the frame is frozen for marking", 2.0)
        _xdotool(env, "mousemove", "--window", window, "35", "25", "mousedown", "1")
        _xdotool(env, "mousemove", "--window", window, "100", "70")
        _xdotool(env, "mousemove", "--window", window, "135", "95", "mouseup", "1")
        _wait(lambda: any(read_mask(p).max() == 1 for p in masks.glob("*.png")), "the boxed object is tracked")
        _xdotool(env, "key", "--window", window, "q")
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    out, err = out_path.read_text(), err_path.read_text()
    assert process.returncode == 0, err
    assert "ended: quit" in out, (out, err)
    assert any(read_mask(p).max() == 0 for p in masks.glob("*.png"))  # frames before the object was marked
