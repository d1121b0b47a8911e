"""The pages a person opens after a run (issue 23, items 2 and 7): `report.html` of the small run and the evaluate
stage's HTML. Always: parsed with html.parser, every image and link must resolve on disk (or be a data: URI), and the
evaluate page must fold its library code before its first output. With Debian's chromium (`bash tests/install-chromium.sh`):
the same pages rendered in headless Chromium, whose DOM is checked the same way and whose images must have loaded; with
`MLNB_SCREENSHOTS=docs` (item 8) its screenshot of report.html is kept as docs/report-index.png for the README."""
import io, json, os, re, subprocess, tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse
import pytest
from conftest import ROOT

CHROMIUM = '/usr/bin/chromium'
NO_CHROMIUM = f'{CHROMIUM} is not installed: run `bash tests/install-chromium.sh` (it apt-get installs Debian\'s chromium)'

class Page(HTMLParser):
    "The `src`/`href` targets of a page, its tags in order, and where its first <details> and first cell output are."
    def __init__(self, text: str):
        super().__init__(); self.targets, self.tags, self.first_details, self.first_output, self.details_open = [], [], None, None, []
        self.feed(text)
    def handle_starttag(self, tag, attrs):
        a = dict(attrs); n = len(self.tags); self.tags.append(tag)
        self.targets += [(tag, a[k]) for k in ('src', 'href') if a.get(k) and tag not in ('link', 'script')]
        if tag == 'details':
            self.details_open.append('open' in a)
            if self.first_details is None: self.first_details = n
        if self.first_output is None and 'jp-OutputArea-output' in (a.get('class') or '').split(): self.first_output = n

def unresolved(targets, base: Path) -> list:
    "The targets that are neither data: URIs, in-page anchors, nor files that exist relative to `base` (or as file:// URLs)."
    bad = []
    for tag, t in targets:
        u = urlparse(t)
        if u.scheme == 'data' or t.startswith('#'): continue
        if u.scheme in ('http', 'https', '//') or t.startswith('//'): bad.append((tag, t, 'a network request')); continue
        path = Path(unquote(u.path)) if u.scheme == 'file' else base/unquote(u.path)
        if not path.is_file(): bad.append((tag, t, 'missing'))
    return bad

def check_report(page: Page, run_dir: Path):
    "What every rendering of the small run's report.html must show."
    assert not (bad := unresolved(page.targets, run_dir)), bad
    hrefs = {Path(unquote(urlparse(t).path)).name for tag, t in page.targets if tag == 'a'}
    assert {'01_ingest.html', '06_evaluate.html', 'run.json', 'params.yaml'} <= hrefs, hrefs  # every stage's page, from the DAG and the table
    imgs = [t for tag, t in page.targets if tag == 'img']
    assert any('artifacts/evaluate/' in t and t.endswith('.png') for t in imgs), imgs  # evaluate's main figure as a thumbnail
    assert page.tags.count('svg') >= 2  # the DAG and the timeline

def check_evaluate(page: Page, run_dir: Path):
    "The evaluate page: library code folded (closed) before the first output; every image and link resolves."
    assert page.first_details is not None and page.first_output is not None
    assert page.first_details < page.first_output and not page.details_open[0]
    assert not (bad := unresolved(page.targets, run_dir)), bad

@pytest.fixture(scope='module')
def run_dir(small_run):
    r, d, _ = small_run
    assert d is not None and (d/'report.html').exists(), r.stderr[-2000:]
    return d

def test_report_and_evaluate_pages_resolve(run_dir):
    "The small run's report.html and evaluate page, parsed as HTML: everything they point to exists; the library code is folded."
    check_report(Page((run_dir/'report.html').read_text()), run_dir)
    ev = (run_dir/'06_evaluate.html').read_text()
    check_evaluate(Page(ev), run_dir)
    assert re.search(r'library code: \d+ cells exported to mlnb/evaluate\.py: [a-z_]+', ev)
    assert str(Path(__file__).resolve().parents[1]) + '/' not in ev  # paths in the project shown relative to it

def chromium(*args, timeout=60) -> subprocess.CompletedProcess:
    "Headless Chromium (Debian's), as root in a container needs it: no sandbox, no GPU, its own profile."
    with tempfile.TemporaryDirectory() as prof:
        return subprocess.run([CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', f'--user-data-dir={prof}', *args],
                              capture_output=True, text=True, timeout=timeout)

def keep_screenshot(png: bytes, name: str, limit: int = 150_000):
    "Item 8: with `MLNB_SCREENSHOTS=DIR` (relative to the project), keep a browser's screenshot as DIR/name for the README, in 256 colours (Pillow) and under `limit` bytes."
    if not (out := os.environ.get('MLNB_SCREENSHOTS')): return None
    from PIL import Image
    buf = io.BytesIO(); Image.open(io.BytesIO(png)).convert('RGB').quantize(256).save(buf, 'PNG', optimize=True)
    assert len(buf.getvalue()) < limit, f'{name}: {len(buf.getvalue()):,} bytes after quantizing, over {limit:,}'
    dest = ROOT/out/name; tmp = dest.with_name(f'.{name}.tmp'); tmp.write_bytes(buf.getvalue()); tmp.replace(dest)
    return dest

PROBE = '''<!doctype html><meta charset="utf-8"><iframe id="f" src="{src}" width="1200" height="900"></iframe><script>
document.getElementById('f').onload = () => {{ const d = document.getElementById('f').contentDocument, out = document.createElement('pre');
  out.id = 'probe'; out.textContent = JSON.stringify([...d.images].map(i => [i.src, i.complete && i.naturalWidth > 0]));
  document.body.appendChild(out); }};</script>'''

@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=NO_CHROMIUM)
def test_pages_in_headless_chromium(run_dir, tmp_path):
    "The same pages as Chromium builds them: links and images resolve, every image decoded, the evaluate page folded before its first output."
    for name, check in (('report.html', check_report), ('06_evaluate.html', check_evaluate)):
        r = chromium('--dump-dom', (run_dir/name).as_uri())
        assert r.returncode == 0 and '<body' in r.stdout, r.stderr[-2000:]
        check(Page(r.stdout), run_dir)
    probe = tmp_path/'probe.html'; probe.write_text(PROBE.format(src=(run_dir/'report.html').as_uri()))
    r = chromium('--allow-file-access-from-files', '--virtual-time-budget=5000', '--dump-dom', probe.as_uri())
    m = re.search(r'<pre id="probe">(.*?)</pre>', r.stdout, re.S)
    assert m, r.stdout[-2000:] + r.stderr[-2000:]
    imgs = json.loads(m.group(1).replace('&quot;', '"').replace('&amp;', '&'))
    assert imgs and all(ok for _, ok in imgs), imgs  # each thumbnail loaded and decoded as an image
    shot = tmp_path/'index.png'
    r = chromium(f'--screenshot={shot}', '--window-size=1200,900', (run_dir/'report.html').as_uri())
    assert shot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', r.stderr[-2000:]
    keep_screenshot(shot.read_bytes(), 'report-index.png')
