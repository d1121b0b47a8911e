"`mlnb monitor` compares like with like: a model trained on numeric category codes, and batches holding the same codes as floats (CSV) or strings (Parquet)."
import json
import numpy as np, pandas as pd, pytest
from mlnb.drift import category_counts, column_drift
from mlnb.monitor import as_trained, unseen_categories
from conftest import mlnb, write_params

NO_DRIFT, FAILED, USAGE, DRIFT = 0, 1, 2, 3   # as in test_monitor.py
CODES = ['region', 'occupation', 'sector', 'industry']   # census-style numeric codes; occupation and industry have more levels than features infers as codes

def census(n, seed):
    "A table of numeric-coded categories, two numbers and a label that depends on both."
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({'region': rng.integers(1, 5, n), 'occupation': rng.integers(1, 13, n), 'sector': rng.choice([10, 20, 30, 40, 50, 60, 70], n),
                       'industry': rng.choice([101, 102, 205, 310, 311, 420, 530, 640, 750, 860, 970, 999], n),
                       'age': rng.integers(18, 80, n), 'hours': rng.normal(38, 8, n).round(1)})
    score = (df.region == 2) * 1.5 + (df.occupation > 8) * 1.2 + (df.sector == 30) * 1.0 + df.industry.isin([205, 640]) * 1.0 + (df.age - 45) / 20
    df['band'] = np.where(score + rng.normal(0, 0.7, n) > 1.2, 'high', 'low')
    return df

def census_params(data, d) -> dict:
    "A parameter file for `data`: codes forced categorical by prepare's `roles`, a small regularised hgb, deploy into `d/registry`."
    schema = {c: {'dtype': 'int', 'ge': 0} for c in [*CODES, 'age']} | {'hours': {'dtype': 'float'}, 'band': {'dtype': 'str', 'isin': ['high', 'low']}}
    return {'description': 'census codes', 'headline': 'evaluate.roc_auc',
            'shared': {'target': 'band', 'task': 'binary', 'seed': 42, 'missing_markers': [], 'model': 'hgb'},
            'stages': {'ingest': {'params': {'path': str(data), 'sample_rows': 0}},
                       'validate': {'upstream': ['ingest'], 'params': {'policy': 'drop', 'schema': schema}},
                       'prepare': {'upstream': ['validate'], 'params': {'test_size': 0.25, 'roles': {c: 'categorical' for c in CODES}}},
                       'features': {'upstream': ['prepare']},
                       'train': {'upstream': ['features', 'prepare'], 'params': {'cv_folds': 2, 'model_params': {'max_iter': 60, 'max_depth': 3, 'min_samples_leaf': 40}}},
                       'evaluate': {'upstream': ['train', 'prepare']},
                       'explain': {'upstream': ['train', 'prepare'], 'params': {'sample_size': 30, 'local_rows': [0]}},
                       'deploy': {'upstream': ['train', 'evaluate', 'validate', 'prepare', 'explain', 'features'],
                                  'params': {'model_name': 'census', 'gate_metric': 'roc_auc', 'minimums': {'roc_auc': 0.6}, 'registry': str(d/'registry')}}}}

@pytest.fixture(scope='module')
def census_run(tmp_path_factory):
    "One `mlnb run` on a 3,000-row table of integer codes, registering the model `census`."
    d = tmp_path_factory.mktemp('census')
    census(3000, 5).to_csv(d/'census.csv', index=False)
    r = mlnb('run', write_params(d/'census.yaml', census_params(d/'census.csv', d)), '--runs-dir', d/'runs')
    assert r.returncode == 0, r.stdout + r.stderr
    return d

def monitor(d, data, tmp_path):
    "`mlnb monitor` of `data` against the census model; `(process, what its monitor stage glued)`."
    r = mlnb('monitor', '--model', 'census', '--registry', d/'registry', '--data', data, '--runs-dir', tmp_path/'monitor')
    runs = sorted((tmp_path/'monitor').glob('*/run.json'), key=lambda f: f.stat().st_mtime_ns)
    return r, (json.loads(runs[-1].read_text())['stages']['monitor'].get('glued') or {} if runs else None)

@pytest.mark.slow
def test_codes_in_another_dtype_are_the_same_categories(census_run, tmp_path):
    "The next batch of the same distribution, its codes as floats in a CSV or as strings in Parquet: nothing new, no drift, the model's scores unchanged."
    d, new = census_run, census(3000, 6)
    new.to_csv(tmp_path/'ints.csv', index=False)                                        # the codes' own dtype
    new.astype({c: float for c in CODES}).to_csv(tmp_path/'floats.csv', index=False)
    new.astype({c: str for c in CODES}).to_parquet(tmp_path/'strings.parquet')
    assert '2.0,' in (tmp_path/'floats.csv').read_text()[:200] and pd.read_parquet(tmp_path/'strings.parquet')['sector'].map(type).eq(str).all()
    _, same = monitor(d, tmp_path/'ints.csv', tmp_path)
    for written in ('floats.csv', 'strings.parquet'):
        r, g = monitor(d, tmp_path/written, tmp_path)
        assert r.returncode == NO_DRIFT, (written, r.stdout + r.stderr)
        assert g['unseen_categories'] == {} and 'never seen in training' not in r.stdout, (written, g['unseen_categories'])
        assert g['drifted_columns'] == [] and not g['drift_detected'] and g['labelled'] and not g['performance_drop'], (written, r.stdout)
        rows = {row['column']: row for row in g['drift_table']}
        assert all(rows[c]['method'] == 'jensenshannon' and rows[c]['statistic'] < 0.1 and rows[c]['psi'] < 0.1 for c in CODES), (written, rows)
        assert g['metrics'] == same['metrics'] and g['drift_table'] == same['drift_table'], (written, g['metrics'], same['metrics'])   # scored as the ints are

@pytest.mark.slow
def test_one_new_code_is_reported_in_its_column_only(census_run, tmp_path):
    "A batch with the floats of a CSV and one code the model never saw (sector 80) in 45 rows: exactly that column and count."
    d = census_run
    new = census(3000, 7).astype({c: float for c in CODES}); new.loc[:44, 'sector'] = 80.0
    new.to_csv(tmp_path/'new.csv', index=False)
    r, g = monitor(d, tmp_path/'new.csv', tmp_path)
    assert g['drifted_columns'] == [] and not g['share_drift'], r.stdout + r.stderr   # no column drifts, by the fixed thresholds or its band
    assert r.returncode == DRIFT and 'DRIFT ALERT in 1 of 1 chunk(s): batch (reconstruction_error; driven by sector' in r.stdout, r.stdout   # but rows with a code never seen are unusual rows
    assert g['unseen_categories'] == {'sector': 45} and 'categories never seen in training: sector (45)' in r.stdout, g['unseen_categories']
    nb = next((tmp_path/'monitor').glob('*/01_monitor.ipynb')).read_text()
    assert '80 ×45' in nb and 'were never seen in training' in nb        # the report's table names the new code and its count

def test_unseen_categories_compare_in_the_encoders_dtype():
    "Codes the encoder holds as integers, the batch's as floats, strings with spaces and one word: only the truly new values count."
    known = {'region': {1, 2, 3}, 'sector': {10, 20, 30}, 'job': {'a', 'b'}}
    batch = pd.DataFrame({'region': [1.0, 2.0, 3.0, np.nan], 'sector': ['10', ' 20 ', '80', 'x'], 'job': [' a', 'b', 'c', None]})
    u = unseen_categories(batch, known)
    assert u[['column', 'rows', 'known']].values.tolist() == [['sector', 2, 3], ['job', 1, 2]]
    assert u.set_index('column').loc['sector', 'examples'] in ("80 ×1, 'x' ×1", "'x' ×1, 80 ×1")
    text_codes = unseen_categories(pd.DataFrame({'sector': [10.0, 20.0, 30.0]}), {'sector': {'10', '20'}})   # trained on text codes, read as floats
    assert text_codes[['rows', 'examples']].values.tolist() == [[1, "'30' ×1"]]      # shown as the model holds it: text

def test_as_trained_gives_each_column_the_reference_dtype():
    ref = pd.DataFrame({'sector': [10, 20], 'job': ['a', 'b'], 'hours': [1.5, 2.0]})
    b = pd.DataFrame({'sector': ['10', 'x'], 'job': [3.0, 'b'], 'hours': ['2.5', '1']})
    assert as_trained(b, ref)['sector'].tolist() == [10, 'x'] and np.isnan(as_trained(b, ref, keep=False)['sector'][1])
    assert as_trained(b, ref)['job'].tolist() == ['3', 'b'] and as_trained(b, ref)['hours'].tolist() == [2.5, 1.0]

def test_drift_counts_codes_in_another_dtype_as_the_same_categories():
    rng = np.random.default_rng(0); ref = pd.Series(rng.integers(1, 6, 2000), name='region')
    cur = pd.Series(rng.integers(1, 6, 2000)).astype(str)
    assert len(category_counts(ref, cur)[0]) == 5                           # '3' is the category 3, not a sixth one
    for other in (cur, cur.astype(float), cur.astype(int)):
        row = column_drift(ref, other, 'cat', n_reference=2000)
        assert not row['drift'] and row['statistic'] < 0.05 and row['psi'] < 0.01, row
        row = column_drift(ref, other, 'cat', n_reference=500)               # a small reference: chi-squared
        assert row['method'] == 'chi2' and row['p_value'] > 0.01, row
    text_ref = ref.astype(str)                                              # and the other way round: codes trained as text
    assert not column_drift(text_ref, cur.astype(float), 'cat', n_reference=2000)['drift']
