"""The notebooks are the source: the library is in sync with them, they are clean, and they run on their own.

nbdev_export and nbdev_clean rewrite files in place, so they run on a copy of the project, never on the checkout
(where someone may be editing): the copy's output is compared with the checkout's files."""
import hashlib, json, shutil, subprocess, sys
from pathlib import Path
import pytest, yaml
from conftest import ROOT

BIN = Path(sys.executable).parent
PROJECT = ['nbs', 'mlnb', 'settings.ini', 'setup.py', 'pyproject.toml']   # what nbdev reads and writes
IGNORE = shutil.ignore_patterns('__pycache__', '.ipynb_checkpoints', '*.pyc')

def digest(folder: Path, pattern: str) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob(pattern))}

def copy_project(src: Path, dest: Path) -> Path:
    "The files nbdev works on, copied from the project at `src` into `dest`."
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT:
        if (src/name).is_dir(): shutil.copytree(src/name, dest/name, ignore=IGNORE)
        elif (src/name).exists(): shutil.copy2(src/name, dest/name)
    return dest

def nbdev(cmd: str, cwd: Path):
    r = subprocess.run([BIN/cmd], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f'{cmd} failed in {cwd}: {r.stdout[-2000:]}{r.stderr[-2000:]}'

def differences(before: dict, after: dict) -> list:
    "Names of files changed, added or removed between two digests."
    return sorted(n for n in before.keys() | after.keys() if before.get(n) != after.get(n))

def export_differences(src: Path, work: Path) -> list:
    "The library files of the project at `src` that nbdev_export (run on a copy of it in `work`) would change, add or remove."
    copy = copy_project(src, work)
    nbdev('nbdev_export', copy)
    return differences(digest(src/'mlnb', '*.py'), digest(copy/'mlnb', '*.py'))

def clean_differences(src: Path, work: Path) -> tuple:
    "`(notebooks nbdev_clean would change, the cleaned copy)` for the project at `src` (cleaned as a copy in `work`)."
    copy = copy_project(src, work)
    nbdev('nbdev_clean', copy)
    return differences(digest(src/'nbs', '*.ipynb'), digest(copy/'nbs', '*.ipynb')), copy

def test_nbdev_export_leaves_library_unchanged(tmp_path):
    changed = export_differences(ROOT, tmp_path/'copy')
    assert not changed, f'mlnb/ is out of sync with nbs/ in {changed}: run nbdev_export and commit'

def test_nbdev_clean_leaves_notebooks_unchanged_and_keeps_parameters_tags(tmp_path):
    changed, copy = clean_differences(ROOT, tmp_path/'copy')
    assert not changed, f'notebooks are not clean: {changed}: run nbdev_clean and commit'
    stages = {n for f in (ROOT/'params').glob('*.yaml') for n in (yaml.safe_load(f.read_text()).get('stages') or {})} | {'monitor'}
    nbs = [p for p in (copy/'nbs').glob('*.ipynb') if p.stem.split('_', 1)[-1] in stages]   # the stage notebooks (not library ones)
    assert len(nbs) >= 9, [p.name for p in nbs]
    for nb in nbs:                                       # cleaned, each still has its one papermill `parameters` cell
        cells = json.loads(nb.read_text())['cells']
        assert sum('parameters' in c['metadata'].get('tags', []) for c in cells) == 1, nb.name

def test_the_checks_find_a_stale_library_and_an_unclean_notebook(tmp_path):
    "The two checks above fail when they should: on a copy whose notebook changed after the last export, and one with an unclean notebook."
    stale = copy_project(ROOT, tmp_path/'stale')         # a project whose explain notebook's export cell changed, not exported since
    nb = json.loads((stale/'nbs'/'60_explain.ipynb').read_text())
    cell = next(c for c in nb['cells'] if c['cell_type'] == 'code' and ''.join(c['source']).startswith('#| export'))
    cell['source'] = ''.join(cell['source']) + '\nSTALE = 1  # changed after the last nbdev_export'
    (stale/'nbs'/'60_explain.ipynb').write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    assert export_differences(stale, tmp_path/'stale-check') == ['explain.py']
    dirty = copy_project(ROOT, tmp_path/'dirty')         # a project with an executed cell: outputs and a count
    for name in ('10_ingest.ipynb', '20_validate.ipynb'):  # both rewritten as nbdev writes them, one of them executed
        nb = json.loads((dirty/'nbs'/name).read_text())
        if name == '10_ingest.ipynb':
            cell = next(c for c in nb['cells'] if c['cell_type'] == 'code')
            cell['execution_count'] = 7; cell['outputs'] = [{'output_type': 'stream', 'name': 'stdout', 'text': ['left behind\n']}]
        (dirty/'nbs'/name).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')
    assert clean_differences(dirty, tmp_path/'dirty-check')[0] == ['10_ingest.ipynb']

def test_settings_keep_tags():
    assert 'allowed_cell_metadata_keys = tags' in (ROOT/'settings.ini').read_text()

NOTEBOOKS = sorted(p.name for p in (ROOT/'nbs').glob('*.ipynb'))

def run_standalone(nb: str):
    "nbdev_test on one notebook, in a process of its own, as the runner gives each stage a fresh kernel (matplotlib keeps per-process state that breaks shap's plots when nbdev_test reuses a worker process for several notebooks)."
    r = subprocess.run([BIN/'nbdev_test', '--path', f'nbs/{nb}'], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

# the notebooks themselves run in tests/test_nbdev_run_1.py and _2.py, half each: `make test` gives each test file to one
# of its two workers, and one file of ~50 notebooks was the longest any worker had to do
