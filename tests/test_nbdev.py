"The notebooks are the source: the library is in sync with them, they are clean, and they run on their own."
import hashlib, json, subprocess, sys
from pathlib import Path
import pytest, yaml
from conftest import ROOT

BIN = Path(sys.executable).parent

def digest(folder, pattern):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((ROOT/folder).glob(pattern))}

def test_nbdev_export_leaves_library_unchanged():
    before = digest('mlnb', '*.py')
    subprocess.run([BIN/'nbdev_export'], cwd=ROOT, check=True, capture_output=True)
    assert digest('mlnb', '*.py') == before, 'mlnb/ was out of sync with nbs/: run nbdev_export and commit'

def test_nbdev_clean_leaves_notebooks_unchanged_and_keeps_parameters_tags():
    before = digest('nbs', '*.ipynb')
    subprocess.run([BIN/'nbdev_clean'], cwd=ROOT, check=True, capture_output=True)
    assert digest('nbs', '*.ipynb') == before, 'notebooks were not clean: run nbdev_clean and commit'
    stages = {n for f in (ROOT/'params').glob('*.yaml') for n in (yaml.safe_load(f.read_text()).get('stages') or {})} | {'monitor'}
    for nb in [p for p in (ROOT/'nbs').glob('*.ipynb') if p.stem.split('_', 1)[-1] in stages]:   # the stage notebooks (not library ones)
        cells = json.loads(nb.read_text())['cells']
        assert sum('parameters' in c['metadata'].get('tags', []) for c in cells) == 1, nb.name

def test_settings_keep_tags():
    assert 'allowed_cell_metadata_keys = tags' in (ROOT/'settings.ini').read_text()

@pytest.mark.parametrize('nb', sorted(p.name for p in (ROOT/'nbs').glob('*.ipynb')))
def test_nbdev_test_runs_each_notebook_standalone(nb):
    # one process per notebook, as the runner gives each stage a fresh kernel (matplotlib keeps per-process
    # state that breaks shap's plots when nbdev_test reuses a worker process for several notebooks)
    r = subprocess.run([BIN/'nbdev_test', '--path', f'nbs/{nb}'], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
