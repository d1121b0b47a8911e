import os, subprocess, sys
from pathlib import Path
import pytest, yaml

ROOT = Path(__file__).resolve().parents[1]
MLNB = str(Path(sys.executable).parent/'mlnb')
os.environ.setdefault('OMP_NUM_THREADS', '1')

def small_params(**over) -> dict:
    "The default parameter file, shrunk to a 3,000-row sample and a fast model."
    p = yaml.safe_load((ROOT/'params'/'default.yaml').read_text())
    p['stages']['ingest']['params']['sample_rows'] = 3000
    p['shared']['model'] = 'logistic'
    p['stages']['train']['params'].update(cv_folds=2)
    p['stages']['explain']['params'].update(sample_size=60, local_rows=[0, 1])
    for stage, params in over.items(): p['stages'][stage].setdefault('params', {}).update(params)
    return p

def write_params(path: Path, p: dict) -> Path:
    path.write_text(yaml.safe_dump(p, sort_keys=False)); return path

def mlnb(*args, cwd=ROOT):
    "Run the `mlnb` command; return the completed process."
    return subprocess.run([MLNB, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)

@pytest.fixture(scope='session')
def small_run(tmp_path_factory):
    "One end-to-end `mlnb run` of the small parameter set, shared by the tests that read it."
    d = tmp_path_factory.mktemp('small')
    params = write_params(d/'small.yaml', small_params(deploy={'registry': str(d/'registry')}))
    r = mlnb('run', params, '--runs-dir', d/'runs')
    runs = list((d/'runs').glob('*/run.json'))
    return r, (runs[0].parent if runs else None), d
