"""Prove `dvc plots show` renders with no network: build the HTML, open it in headless Chromium
with networking off, and check every plot drew a chart, every image figure is on the page and
readable, and the screenshot is not blank.

    python bench/check_plots_offline.py [--out dvc_plots] [--screenshot plots_check.png]

Needs Debian's `chromium` (`apt-get install chromium`). Exits 1 if a chart did not draw.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",  # no network at all
    "--virtual-time-budget=20000",
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise SystemExit("chromium not found: apt-get install chromium")


def check(html: Path, screenshot: Path) -> tuple[int, int, float]:
    """(plot divs, drawn charts, screenshot pixel std) for one dvc plots HTML page."""
    exe = chromium()
    with tempfile.TemporaryDirectory() as profile:
        flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        dom = subprocess.run(
            [exe, *flags, "--dump-dom", html.resolve().as_uri()], capture_output=True, text=True, timeout=180
        ).stdout
        subprocess.run(
            [exe, *flags, f"--screenshot={screenshot.resolve()}", "--window-size=1400,3000", html.resolve().as_uri()],
            capture_output=True,
            timeout=180,
        )
    plots = html.read_text().count("vegaEmbed(")  # one call per declared plot in DVC's page script
    drawn = len(re.findall(r"<canvas|<svg[^>]*class=\"marks\"", dom))  # what vega drew (canvas or SVG renderer)
    from PIL import Image, ImageStat

    std = ImageStat.Stat(Image.open(screenshot).convert("L")).stddev[0] if screenshot.exists() else 0.0
    return plots, drawn, std


def image_figures(html: Path) -> tuple[int, int]:
    """(image figures on the page, how many of their files PIL can read): DVC copies each to static/."""
    from PIL import Image

    sources = re.findall(r'<img src="(static/[^"]+)"', html.read_text())
    readable = 0
    for source in sources:
        try:
            with Image.open(html.parent / source) as image:
                image.verify()
            readable += 1
        except (OSError, SyntaxError):
            pass
    return len(sources), readable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="dvc_plots")
    parser.add_argument("--screenshot", default="plots_check.png")
    args = parser.parse_args()
    subprocess.run(["dvc", "plots", "show", "-o", args.out], check=True, capture_output=True)
    html = Path(args.out) / "index.html"
    if "cdn.jsdelivr" in html.read_text():
        sys.exit(f"{html} loads vega from a CDN: run `python -m sentiment.report.plots_template` (setup.sh does)")
    plots, drawn, std = check(html, Path(args.screenshot))
    images, readable = image_figures(html)
    print(
        f"{html}: {plots} plots declared, {drawn} charts drawn, {images} image figures ({readable} readable), "
        f"screenshot pixel std {std:.1f} ({args.screenshot})"
    )
    if plots == 0 or drawn < plots or std < 1.0:
        sys.exit("some charts did not render offline")
    if readable < images:
        sys.exit("some image figures are missing or unreadable")


if __name__ == "__main__":
    main()
