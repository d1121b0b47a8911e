"Artifacts are the same bytes for the same object whenever and wherever they are written; volatile glued values are named and left out of the stable ones."
import io, os, subprocess, sys, time, zipfile
import nbformat, numpy as np, pandas as pd, pytest
from mlnb.core import (VOLATILE_KEY, ZIP_EPOCH, load_artifact, load_model, read_scraps, save_artifact, sha256_file, stable_scraps)
from conftest import ROOT

def frame() -> pd.DataFrame:
    return pd.DataFrame({'i': np.arange(6), 'f': [0.5, np.nan, 2.25, -1.0, 3.0, 1e-9], 's': ['a', 'b', None, 'd', 'é', 'f'],
                         'c': pd.Categorical(list('xyxyzx')), 'b': [True, False] * 3, 'd': pd.date_range('2024-01-01', periods=6, freq='h')})

def models() -> dict:
    "A fitted Pipeline ending in a seeded HistGradientBoostingClassifier, and a fitted ColumnTransformer."
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    rng = np.random.default_rng(0)
    X = pd.DataFrame({'age': rng.integers(18, 80, 300).astype(float), 'hours': rng.normal(40, 8, 300), 'job': rng.choice(['a', 'b', 'c'], 300)})
    y = np.where(X.age + rng.normal(0, 10, 300) > 45, 'yes', 'no')
    ct = lambda: ColumnTransformer([('num', Pipeline([('impute', SimpleImputer(strategy='median')), ('scale', StandardScaler())]), ['age', 'hours']),
                                    ('cat', OneHotEncoder(handle_unknown='ignore', sparse_output=False), ['job'])])
    pipe = Pipeline([('prep', ct()), ('model', HistGradientBoostingClassifier(max_iter=20, random_state=0))]).fit(X, y)
    return dict(pipeline=pipe, columns=ct().fit(X), X=X)

def figure():
    import matplotlib; matplotlib.use('agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4, 3)); ax.plot([1, 3, 2], label='x'); ax.set(title='same figure', xlabel='step'); ax.legend()
    return fig

def save_all(art) -> dict:
    m = models()
    objs = dict(frame=frame(), pipeline=m['pipeline'], columns=m['columns'], figure=figure(),
                values={'n': 3, 'scores': [0.25, 0.5], 'levels': {'b', 'a', 'c'}, 'nested': {'z': 1, 'a': None}})
    return {k: save_artifact(o, k, art) for k, o in objs.items()}

def test_same_objects_written_twice_give_the_same_bytes(tmp_path):
    one = save_all(tmp_path/'one'/'artifacts'/'stage')
    time.sleep(1.1)                                  # a later second: a writer that records the time shows it
    two = save_all(tmp_path/'two'/'artifacts'/'stage')
    assert {k: r['sha256'] for k, r in one.items()} == {k: r['sha256'] for k, r in two.items()}
    assert [r['path'].rsplit('.', 1)[1] for r in one.values()] == ['parquet', 'skops', 'skops', 'png', 'json']
    for r in one.values(): assert sha256_file(tmp_path/'one'/r['path']) == r['sha256']

def test_model_files_are_canonical_and_still_load(tmp_path):
    refs, m = save_all(tmp_path/'run'/'artifacts'/'stage'), models()
    run = tmp_path/'run'
    for name in ('pipeline', 'columns'):
        z = zipfile.ZipFile(run/refs[name]['path'])
        assert {i.date_time for i in z.infolist()} == {ZIP_EPOCH} and z.namelist()[-1] == 'schema.json'
        assert all(n.split('.')[0].isdigit() for n in z.namelist()[:-1])   # no object ids or uuids in the names
    pipe = load_model(run/refs['pipeline']['path'])                       # the allowlist and skops' audit accept it
    assert (pipe.predict_proba(m['X']) == m['pipeline'].predict_proba(m['X'])).all()
    assert (load_artifact(refs['columns'], run).transform(m['X']) == m['columns'].transform(m['X'])).all()
    assert load_artifact(refs['frame'], run).equals(frame())
    assert load_artifact(refs['values'], run)['levels'] == ['a', 'b', 'c']   # a set, written sorted
    assert b'Matplotlib' not in (run/refs['figure']['path']).read_bytes()   # no Software entry in the PNG

def test_another_process_writes_the_same_bytes(tmp_path):
    "Object ids and string hashing differ between processes; the files must not."
    here = {k: r['sha256'] for k, r in save_all(tmp_path/'a'/'artifacts'/'stage').items()}
    code = (f"import sys, json; sys.path.insert(0, {str(ROOT/'tests')!r}); from test_determinism import save_all; from pathlib import Path\n"
            f"print(json.dumps({{k: r['sha256'] for k, r in save_all(Path({str(tmp_path/'b'/'artifacts'/'stage')!r})).items()}}))")
    r = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, 'PYTHONHASHSEED': '12345'})
    assert r.returncode == 0, r.stderr
    import json
    assert json.loads(r.stdout.strip().splitlines()[-1]) == here

def test_volatile_values_are_glued_and_named(tmp_path):
    import papermill as pm
    cells = ["from mlnb.core import glue\nglue('rows', 9); glue('rows', 10)                     # scrapbook keeps the last value",
             "glue('fit_seconds', 1.234, volatile=True); glue('model', 'hgb')",
             "import time, socket\nglue('finished_at', time.time(), volatile=True); glue('host', socket.gethostname(), volatile=True)",
             "glue('host', 'fixed')                                  # glued again, not volatile: off the list"]
    nb = nbformat.v4.new_notebook(); nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, tmp_path/'src.ipynb')
    pm.execute_notebook(str(tmp_path/'src.ipynb'), str(tmp_path/'out.ipynb'), kernel_name='python3', progress_bar=False, cwd=str(ROOT))
    scraps = read_scraps(tmp_path/'out.ipynb')
    assert scraps[VOLATILE_KEY] == ['finished_at', 'fit_seconds'] and scraps['fit_seconds'] == 1.234 and scraps['rows'] == 10
    assert stable_scraps(scraps) == {'rows': 10, 'model': 'hgb', 'host': 'fixed'}
