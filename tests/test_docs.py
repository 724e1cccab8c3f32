"""The documentation site builds with no warning (``sphinx-build -W -n``: nitpicky, and with every public
name of the API reference documented, see ``docs/conf.py``), and its pages render in a real
browser: the home page, one API page and one notebook page, opened in headless Chromium where
``/usr/bin/chromium`` exists, have their heading, images that exist in the build, internal links to
files of the build, math typeset by MathJax (served from the build, no network) without a TeX error,
and a silent browser console; the notebook page's figures load (a decoded <img>). Screenshots of the
three pages are saved in the test's tmp dir."""

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytest.importorskip("sphinx", reason="the docs extra is not installed (pip install -e '.[docs]')")

#: Building the site takes about a minute on two cores.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
#: The browser: $PYROVAE_CHROMIUM, else ``chromium`` on the PATH (Debian's package).
CHROMIUM = os.environ.get("PYROVAE_CHROMIUM") or shutil.which("chromium")
#: Seconds the browser may take to load one page.
BROWSER_TIMEOUT = 120

#: Page (relative to the build) and the heading it must show; each holds math.
PAGES = [
    ("index.html", "pyrovae"),
    ("api/generated/pyrovae.infer.html", "pyrovae.infer"),
    ("notebooks/04_gmvae.html", "4. Gaussian-mixture VAE"),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Build the site from scratch into a fresh folder; return the HTML folder."""
    out = tmp_path_factory.mktemp("docs")
    command = [sys.executable, "-m", "sphinx", "-W", "-n", "--keep-going", "-b", "html", "-d", str(out / "doctrees"),
               str(ROOT / "docs"), str(out / "html")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, f"sphinx-build failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    assert "WARNING" not in result.stderr, result.stderr[-5000:]
    return out / "html"


class _Page(HTMLParser):
    """The headings' text, the <img> sources, the <a> targets and the math elements of an HTML page."""

    def __init__(self):
        super().__init__()
        self.headings, self.images, self.links, self.math = [], [], [], 0
        self.typeset, self.tex_errors = 0, 0
        self._heading = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("h1", "h2"):
            self._heading = []
        elif tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if "math" in (attrs.get("class") or "").split():
            self.math += 1
        self.typeset += tag == "mjx-container"  # MathJax 3's output
        self.tex_errors += tag == "mjx-merror"

    def handle_endtag(self, tag):
        if tag in ("h1", "h2") and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data):
        if self._heading is not None:
            self._heading.append(data)


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def _missing_targets(build: Path, page_path: Path, urls: list[str]) -> list[str]:
    """The internal (relative or file:) URLs of a page that name no file of the build."""
    missing = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("", "file") or (parts.scheme == "" and parts.netloc):
            continue  # another site, or a protocol-relative URL
        if parts.scheme == "" and not parts.path:
            continue  # a link to an anchor on the same page
        if parts.scheme == "data":
            continue
        target = Path(unquote(parts.path)) if parts.scheme == "file" else page_path.parent / unquote(parts.path)
        target = target.resolve()
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file() or build.resolve() not in target.parents:
            missing.append(url)
    return missing


def test_the_site_builds_without_warnings_and_has_every_page(site):
    for page, _ in PAGES:
        assert (site / page).is_file(), page
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert (site / "notebooks" / f"{notebook.stem}.html").is_file(), notebook.name
    for area in ("models", "distributions", "objectives", "training", "evaluation", "data", "distributed"):
        assert (site / "api" / f"{area}.html").is_file(), area


def test_every_page_links_only_to_files_of_the_build(site):
    pages = sorted(site.rglob("*.html"))
    missing = {}
    for path in pages:
        parsed = _parse(path.read_text())
        if targets := _missing_targets(site, path, parsed.images + parsed.links):
            missing[str(path.relative_to(site))] = targets
    assert len(pages) > 40 and not missing, missing


@pytest.mark.parametrize("page, heading", PAGES, ids=[page for page, _ in PAGES])
def test_the_built_html_links_only_to_files_of_the_build(site, page, heading):
    path = site / page
    parsed = _parse(path.read_text())
    assert any(text.startswith(heading) for text in parsed.headings), parsed.headings
    assert not _missing_targets(site, path, parsed.images), "images missing from the build"
    assert not _missing_targets(site, path, parsed.links), "links to files missing from the build"
    assert parsed.math, "no math on the page"


def _chromium(*args: str, user_data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={user_data_dir}", *args],
        capture_output=True, text=True, timeout=BROWSER_TIMEOUT)


def _console_messages(stderr: str) -> list[str]:
    """The page's console messages (errors, uncaught exceptions, logs), as ``--enable-logging=stderr`` prints them."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


#: Appended to a copy of a page: once the page has loaded, the number of its images that the browser
#: decoded (an image that failed to load has ``naturalWidth`` 0) lands in the DOM that --dump-dom prints.
_COUNT_LOADED_IMAGES = """<script>window.addEventListener("load", () => {
  const loaded = [...document.images].filter((image) => image.complete && image.naturalWidth > 0).length;
  document.body.setAttribute("data-loaded-images", String(loaded));
});</script>"""


def _loaded_images(path: Path, tmp_path: Path) -> int:
    """How many of the page's <img> the browser loaded (non-zero ``naturalWidth``): a copy of the page
    beside it (so its relative URLs resolve the same) counts them once loaded."""
    probe = path.with_name(f"_probe_{path.name}")
    probe.write_text(path.read_text().replace("</body>", _COUNT_LOADED_IMAGES + "</body>"))
    try:
        dumped = _chromium("--virtual-time-budget=10000", "--dump-dom", probe.resolve().as_uri(),
                           user_data_dir=tmp_path / "profile-images")
    finally:
        probe.unlink()
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    found = re.search(r'data-loaded-images="(\d+)"', dumped.stdout)
    assert found, "the page's load event did not fire"
    return int(found.group(1))


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
@pytest.mark.parametrize("page, heading", PAGES, ids=[page for page, _ in PAGES])
def test_the_page_renders_in_chromium(site, page, heading, tmp_path):
    path = site / page
    url = path.resolve().as_uri()
    # Ten seconds of the page's (virtual) time lets MathJax typeset before the DOM is dumped.
    dumped = _chromium("--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom", url,
                       user_data_dir=tmp_path / "profile-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    assert not _console_messages(dumped.stderr), _console_messages(dumped.stderr)
    rendered = _parse(dumped.stdout)
    # The DOM after the page's scripts ran: the heading, every image and internal link resolves, math typeset.
    assert any(text.startswith(heading) for text in rendered.headings), rendered.headings
    assert not _missing_targets(site, path, rendered.images), "images missing from the build"
    assert not _missing_targets(site, path, rendered.links), "links to files missing from the build"
    assert rendered.typeset >= rendered.math > 0, f"{rendered.math} math elements, {rendered.typeset} typeset"
    assert not rendered.tex_errors, "MathJax could not typeset some math"

    if page.startswith("notebooks/"):
        assert _loaded_images(path, tmp_path) > 0, "no figure of the notebook loaded in the browser"

    screenshot = tmp_path / f"{page.replace('/', '_')}.png"
    shot = _chromium(f"--screenshot={screenshot}", "--window-size=1280,1600", "--virtual-time-budget=10000", url,
                     user_data_dir=tmp_path / "profile-shot")
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.stat().st_size > 10_000, "a blank screenshot"  # a white 1280x1600 PNG is a few kB
    shutil.copy(screenshot, tmp_path.parent / screenshot.name)  # beside the test folders, to look at
