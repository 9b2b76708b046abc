"""The demo report in a real headless browser (Debian chromium): it loads, without console
errors, and every figure decodes. Marked ``browser``: ``.ci/run`` installs chromium and runs
``pytest -m browser``; elsewhere ``apt-get install chromium`` first."""

import re
import shutil
import subprocess

import pytest

from delrec.cli import main

pytestmark = pytest.mark.browser


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError("The browser test needs Debian chromium (apt-get install chromium); "
                         ".ci/run installs it")


def test_report_renders_in_headless_chromium(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--epochs", "1", "--hidden", "8", "--samples", "2", "--no-synth",
                 "--onchip-samples", "0", "--no-progress", "--task-option", "train_size=32",
                 "--task-option", "val_size=16", "--task-option", "test_size=16",
                 "--out", str(out)]) == 0
    page = out / "report.html"
    expected = len(re.findall(r"<img ", page.read_text()))
    assert expected >= 4
    browser = [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
               "--v=0", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]
    run = subprocess.run(browser + ["--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', run.stdout)
    assert loaded, "the page's load handler did not run"
    assert (int(loaded.group(1)), int(loaded.group(2))) == (expected, expected)
    console_errors = [line for line in run.stderr.splitlines()
                      if "CONSOLE" in line and ("Uncaught" in line or "ERROR" in line)]
    assert not console_errors, console_errors
    shot = tmp_path / "report.png"
    subprocess.run(browser + [f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri()],
                   capture_output=True, text=True, timeout=120, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
