"""Open an HTML file in a real headless Chromium: screenshot it and read back what it rendered.

Used by the report tests and to refresh ``docs/report-screenshot.png`` (900 px wide, 128 colours)::

    python tests/report/browser.py reports/demo/index.html docs/report-screenshot.png
"""

from __future__ import annotations

import fcntl
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Appended to a COPY of the page: after load, records what the browser actually laid out.
_PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const shown = imgs.filter(i => i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().width > 0);
  const tables = Array.from(document.querySelectorAll('table')).map(t => ({
    rows: t.rows.length, cols: t.rows.length ? t.rows[0].cells.length : 0,
    width: t.getBoundingClientRect().width,
    caption: (t.closest('.tbl') && t.closest('.tbl').querySelector('.cap') || {}).textContent || ''}));
  const out = document.createElement('pre');
  out.id = 'render-probe';
  const text = id => (document.getElementById(id) || {}).textContent || null;
  const gallery = tag => document.querySelectorAll('#gallery-' + tag + ' + .gallery figure').length;
  const glossary = document.getElementById('glossary');
  out.textContent = JSON.stringify({images: imgs.length, images_shown: shown.length,
    min_width: Math.min(...shown.map(i => i.getBoundingClientRect().width)), tables: tables,
    headers: Array.from(document.querySelectorAll('table')).map(t => t.rows.length ?
      Array.from(t.rows[0].cells).map(c => c.textContent.trim()) : []),
    notice: text('notice'), counts: text('counts'),
    glossary: Array.from(document.querySelectorAll('#glossary dt')).map(d => d.textContent),
    glossary_width: glossary ? glossary.getBoundingClientRect().width : 0,
    galleries: {top: gallery('top'), false_alarm: gallery('false_alarm'), miss: gallery('miss')},
    gallery_captions: Array.from(document.querySelectorAll('.gallery figcaption')).map(c => c.textContent),
    provenance_folded: !!document.querySelector('details#provenance-details:not([open])')});
  document.body.appendChild(out);
});
</script>"""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary: ``$ADAPTCLIP_CHROMIUM`` or the first one on ``PATH``."""
    env = os.environ.get("ADAPTCLIP_CHROMIUM")
    if env:
        return shutil.which(env)  # a name on PATH or an executable path; None when it is neither
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


def install_chromium() -> str | None:
    """Install Debian's ``chromium`` with apt-get (root only, one installer at a time); return its path."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    with Path("/tmp/adaptclip-chromium-install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if find_chromium() is None:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True)
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                 "chromium", "fonts-dejavu-core"],
                check=False, env=env, capture_output=True,
            )
    return find_chromium()


def _run(binary: str, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--disable-dev-shm-usage", "--no-first-run", "--allow-file-access-from-files", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def screenshot(binary: str, page: Path, png: Path, width: int = 1280, height: int = 1600) -> Path:
    """Write a ``width``×``height`` PNG screenshot of ``page`` (a local HTML file) to ``png``."""
    png.parent.mkdir(parents=True, exist_ok=True)
    res = _run(binary, [f"--window-size={width},{height}", f"--screenshot={png.resolve()}",
                        "--virtual-time-budget=5000", page.resolve().as_uri()])
    if not png.is_file():
        raise RuntimeError(
            f"chromium wrote no screenshot of {page} (exit {res.returncode}): {res.stderr[-2000:]}"
        )
    return png


def probe(binary: str, page: Path, workdir: Path) -> dict:
    """Load a copy of ``page`` with a probe script; return what rendered.

    Keys: ``images`` / ``images_shown`` / ``min_width``, ``tables`` (rows, cols, width, caption) and their
    ``headers``, ``notice``, ``counts`` (the "n images scored" line), ``glossary`` (its terms) and
    ``glossary_width``, ``galleries`` (figures per gallery), ``gallery_captions``, ``provenance_folded``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    probed = workdir / f"probe-{page.name}"
    text = page.read_text(encoding="utf-8")
    probed.write_text(text.replace("</body>", _PROBE + "</body>", 1), encoding="utf-8")
    res = _run(binary, ["--window-size=1280,1600", "--virtual-time-budget=5000", "--dump-dom",
                        probed.resolve().as_uri()])
    match = re.search(r'<pre id="render-probe">(.*?)</pre>', res.stdout, re.S)
    if match is None:
        raise RuntimeError(f"the probe did not run in chromium (exit {res.returncode}): {res.stderr[-2000:]}")
    return json.loads(html.unescape(match.group(1)))


def small_png(png: Path, width: int = 900, colours: int = 128) -> Path:
    """Shrink a screenshot in place for the README: ``width`` px wide, a ``colours`` palette."""
    from PIL import Image

    with Image.open(png) as im:
        im = im.convert("RGB")
        im = im.resize((width, round(im.height * width / im.width)), Image.Resampling.LANCZOS)
        im.quantize(colours, method=Image.Quantize.MEDIANCUT).save(png, optimize=True)
    return png


if __name__ == "__main__":
    chromium = find_chromium() or sys.exit("no chromium found: apt-get install -y chromium")
    print(small_png(screenshot(chromium, Path(sys.argv[1]), Path(sys.argv[2]), width=1200, height=1500)))
