"`mlnb new` writes a file that its own rules let through: the shapes of real tables that broke it, run end to end."
import json
import numpy as np, pandas as pd, pytest, yaml
from conftest import mlnb, write_params

pytestmark = pytest.mark.slow

def new_then_run(tmp_path, df, target, name='t'):
    "`mlnb new` in a project folder of its own, then `mlnb run` of the file as written (only the registry moved into tmp_path)."
    df.to_csv(tmp_path/f'{name}.csv', index=False)
    project = tmp_path/'project'; project.mkdir(exist_ok=True); (project/'settings.ini').write_text('[DEFAULT]\n')
    r = mlnb('new', name, '--data', tmp_path/f'{name}.csv', '--target', target, cwd=project)
    assert r.returncode == 0, r.stdout + r.stderr
    text = (project/'params'/f'{name}.yaml').read_text(); p = yaml.safe_load(text)
    p['stages']['deploy']['params']['registry'] = str(tmp_path/'registry')
    r = mlnb('run', write_params(tmp_path/f'{name}-run.yaml', p), '--runs-dir', tmp_path/'runs')
    runs = sorted((tmp_path/'runs').glob('*/run.json'), key=lambda f: f.stat().st_mtime_ns)
    return text, r, (json.loads(runs[-1].read_text()) if runs else None)

def test_a_nearly_empty_column_a_boolean_and_words_among_numbers(tmp_path):
    "The raw house-sales shape: a 99.6%-missing column (validate's rule stopped the file mlnb new wrote), a True/False column (validate crashed), a row number."
    rng = np.random.default_rng(2); n = 1200
    df = pd.DataFrame({'Unnamed: 0': np.arange(n), 'Pool.QC': [None] * 1195 + ['Ex'] * 5, 'area': rng.normal(1500, 300, n).round(),
                       'age': [str(x) for x in rng.integers(1, 80, n - 5)] + ['unknown'] * 5, 'has_garage': rng.choice([True, False], n)})
    df['price'] = (df.area * 100 + df.has_garage * 20000 + rng.normal(0, 20000, n)).round()
    text, r, m = new_then_run(tmp_path, df, 'price', 'house')
    assert 'exclude: [Pool.QC]' in text and '99.6%, 1,195 of 1,200 values are missing' in text, text
    assert r.returncode == 0, r.stdout + r.stderr
    assert m['stages']['features']['glued']['roles']['has_garage'] == 'categorical' and 'Pool.QC' not in m['stages']['features']['glued']['roles']
    assert m['stages']['features']['glued']['dropped'] == ['Unnamed: 0']
    assert yaml.safe_load(text)['shared']['missing_markers'] == ['unknown']          # the word among the ages means missing
    assert m['stages']['features']['glued']['roles']['age'] == 'numeric' and m['stages']['prepare']['glued']['number_columns'] == ['age']
