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

def every_kind_of_column(n=600, seed=5) -> pd.DataFrame:
    "One table with every column type a real file brings: booleans (plain and nullable), Int64, string, category, tz-aware, naive and text dates, mixed types, empty, nearly empty and constant columns, lists and dicts, long text, money as text, a target with gaps."
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        'flag': rng.choice([True, False], n), 'nflag': pd.array(rng.choice([True, False, None], n), dtype='boolean'),
        'count': pd.array(np.where(rng.random(n) < 0.1, None, rng.integers(0, 50, n)), dtype='Int64'),
        'city': pd.array(rng.choice(['Oslo', 'Rome', None], n), dtype='string'), 'grade': pd.Categorical(rng.choice(['a', 'b', 'c'], n)),
        'when_tz': pd.date_range('2024-01-01', periods=n, freq='h', tz='Europe/Oslo'), 'when': pd.date_range('2023-01-01', periods=n, freq='D'),
        'when_text': pd.date_range('2022-01-01', periods=n, freq='D').strftime('%d/%m/%Y'), 'mixed': [[1, 'a', 2.5][i % 3] for i in range(n)],
        'empty': [None] * n, 'nearly': [None] * (n - 2) + ['x', 'y'], 'const': ['same'] * n,
        'tags': [rng.choice(['a', 'b'], 2).tolist() for _ in range(n)], 'meta': [{'k': int(rng.integers(0, 3))} for _ in range(n)],
        'essay': [' '.join(rng.choice(['good', 'bad', 'slow', 'fast', 'long', 'short', 'kind', 'rude'], 300)) for _ in range(n)],
        'money': [f'${v:,.2f}' for v in rng.uniform(10, 5000, n)]})
    df['target'] = (rng.normal(size=n) + df['flag'] * 2.0 + df['money'].str.replace(r'[$,]', '', regex=True).astype(float) / 2000).round(3)
    df.loc[::37, 'target'] = None
    return df

def test_every_kind_of_column_runs_end_to_end(tmp_path):
    df = every_kind_of_column()
    df.drop(columns=['mixed']).to_parquet(tmp_path/'all.parquet')   # Parquet cannot hold a column of numbers and words: see the JSON test
    project = tmp_path/'project'; project.mkdir(); (project/'settings.ini').write_text('[DEFAULT]\n')
    r = mlnb('new', 'all', '--data', tmp_path/'all.parquet', '--target', 'target', cwd=project)
    assert r.returncode == 0, r.stdout + r.stderr
    p = yaml.safe_load((project/'params'/'all.yaml').read_text()); p['stages']['deploy']['params']['registry'] = str(tmp_path/'registry')
    assert p['stages']['validate']['params']['exclude'] == ['empty', 'nearly']
    r = mlnb('run', write_params(tmp_path/'all-run.yaml', p), '--runs-dir', tmp_path/'runs')
    assert r.returncode == 0, r.stdout + r.stderr
    m = json.loads(next((tmp_path/'runs').glob('*/run.json')).read_text())
    roles = m['stages']['prepare']['glued']['roles']
    assert roles['money'] == 'numeric' and roles['when_tz'] == roles['when_text'] == 'datetime' and roles['essay'] == 'text' and roles['flag'] == 'categorical'
    assert m['stages']['prepare']['glued']['number_columns'] == ['money']
    assert m['stages']['evaluate']['glued']['r2'] > 0.3, m['stages']['evaluate']['glued']   # flag and money carry most of the target
    # the registered Pipeline takes the raw file as it came (nullable types, time zones, lists, money as text): what prepare did, it does
    r = mlnb('predict', '--model', 'all', '--registry', tmp_path/'registry', tmp_path/'all.parquet', tmp_path/'scored.parquet')
    if r.returncode == 0:
        scored = pd.read_parquet(tmp_path/'scored.parquet')
        assert scored['prediction'].notna().all() and len(scored) == len(df)
    else:   # not promoted (a noisy table may miss the gate): score its version instead
        v = m['stages']['deploy']['glued']['version']
        r = mlnb('predict', '--model', f'all@{v}', '--registry', tmp_path/'registry', tmp_path/'all.parquet', tmp_path/'scored.parquet')
        assert r.returncode == 0, r.stdout + r.stderr
        assert pd.read_parquet(tmp_path/'scored.parquet')['prediction'].notna().all()

def test_json_records_with_mixed_nested_and_missing_values_run(tmp_path):
    "A JSON API's shape: a field holding numbers and words, nested objects and lists, nulls, numbers as text."
    df = every_kind_of_column(400, seed=6)[['mixed', 'tags', 'meta', 'money', 'flag', 'when_text', 'target']]
    (tmp_path/'api.jsonl').write_text(df.to_json(orient='records', lines=True))
    project = tmp_path/'project'; project.mkdir(); (project/'settings.ini').write_text('[DEFAULT]\n')
    r = mlnb('new', 'api', '--data', tmp_path/'api.jsonl', '--target', 'target', cwd=project)
    assert r.returncode == 0, r.stdout + r.stderr
    p = yaml.safe_load((project/'params'/'api.yaml').read_text()); p['stages']['deploy']['params']['registry'] = str(tmp_path/'registry')
    r = mlnb('run', write_params(tmp_path/'api-run.yaml', p), '--runs-dir', tmp_path/'runs')
    assert r.returncode == 0, r.stdout + r.stderr
    roles = json.loads(next((tmp_path/'runs').glob('*/run.json')).read_text())['stages']['prepare']['glued']['roles']
    assert roles['mixed'] == roles['tags'] == roles['meta'] == 'categorical' and roles['money'] == 'numeric', roles

def test_a_leaking_column_and_a_class_of_two_rows(tmp_path):
    "A column that is the class in other words, and a class with 2 rows: mlnb new drops the first (train's guard would stop on it); prepare sets the second aside, counted."
    rng = np.random.default_rng(8); n = 900
    cls = rng.choice(['bronze', 'silver', 'gold'], n, p=[0.5, 0.3, 0.2]).astype(object); cls[:2] = 'platinum'
    df = pd.DataFrame({'spend': rng.gamma(2, 50, n) + (cls == 'gold') * 80, 'visits': rng.integers(1, 30, n), 'tier': cls})
    df['tier_code'] = df['tier'].map({'bronze': 10, 'silver': 20, 'gold': 30, 'platinum': 40}) + rng.integers(0, 3, n)   # the answer, written as a number
    text, r, m = new_then_run(tmp_path, df, 'tier', 'tiers')
    p = yaml.safe_load(text)
    assert p['stages']['prepare']['params']['drop'] == ['tier_code'] and "train's leakage guard would stop on these: tier_code" in text, text
    assert p['stages']['train']['params']['leakage'] == 'fail'
    assert r.returncode == 0, r.stdout + r.stderr
    g = m['stages']['prepare']['glued']
    assert g['rare_classes'] == {'platinum': 2} and g['classes'] == ['bronze', 'gold', 'silver'], g   # alone in `other` it would still be 2 rows: dropped
    assert m['stages']['train']['glued']['leakage_flagged'] == [] and 'tier_code' in m['stages']['features']['glued']['dropped']
