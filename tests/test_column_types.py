"""Any column type, any table: a property-based test (hypothesis) makes random small tables of the column types real
files bring, and each goes through `mlnb new` + `mlnb run`. Every run either succeeds or stops with mlnb's own error
naming a column, a file or a parameter: never a bare exception from pandas, NumPy or scikit-learn."""
import itertools, json, re
import numpy as np, pandas as pd, pytest, yaml
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from conftest import mlnb, write_params

pytestmark = pytest.mark.slow

def column(kind: str, n: int, rng) -> pd.Series:
    "A column of `kind` with `n` values, some missing where the kind allows it."
    gaps = rng.random(n) < 0.15
    pick = lambda vals: [vals[i] for i in rng.integers(0, len(vals), n)]
    if kind == 'bool': return pd.Series(rng.choice([True, False], n))
    if kind == 'nullable_bool': return pd.Series(pd.array(np.where(gaps, None, rng.choice([True, False], n)), dtype='boolean'))
    if kind == 'Int64': return pd.Series(pd.array(np.where(gaps, None, rng.integers(-5, 500, n)), dtype='Int64'))
    if kind == 'float': return pd.Series(np.where(gaps, np.nan, rng.normal(10, 3, n)))
    if kind == 'string': return pd.Series(pd.array(np.where(gaps, None, pick(['red', 'green', 'blue', 'teal'])), dtype='string'))
    if kind == 'category': return pd.Series(pd.Categorical(pick(['lo', 'mid', 'hi'])))
    if kind == 'code': return pd.Series(rng.integers(1, 6, n))
    if kind == 'datetime': return pd.Series(pd.Timestamp('2021-03-01') + pd.to_timedelta(rng.integers(0, 900, n), unit='D'))
    if kind == 'datetime_tz': return pd.Series((pd.Timestamp('2021-03-01', tz='America/New_York') + pd.to_timedelta(rng.integers(0, 900, n), unit='h')))
    if kind == 'date_text': return pd.Series((pd.Timestamp('2020-01-01') + pd.to_timedelta(rng.integers(0, 900, n), unit='D')).strftime(str(rng.choice(['%Y-%m-%d', '%d/%m/%Y', '%b %d, %Y']))))
    if kind == 'money': return pd.Series([None if g else f'${v:,.2f}' for g, v in zip(gaps, rng.uniform(1, 9000, n))])
    if kind == 'empty': return pd.Series([None] * n, dtype=object)
    if kind == 'nearly_empty': return pd.Series([None] * (n - 1) + ['x'], dtype=object)
    if kind == 'constant': return pd.Series(['same'] * n)
    if kind == 'text': return pd.Series([' '.join(rng.choice(['fine', 'poor', 'quick', 'late', 'good', 'ok', 'meh'], int(rng.integers(6, 60)))) for _ in range(n)])
    if kind == 'row_number': return pd.Series(np.arange(1, n + 1))
    raise ValueError(kind)

KINDS = ['bool', 'nullable_bool', 'Int64', 'float', 'string', 'category', 'code', 'datetime', 'datetime_tz', 'date_text', 'money', 'empty',
         'nearly_empty', 'constant', 'text', 'row_number']

def table(kinds: list, target: str, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({f'c{i}_{k}': column(k, n, rng) for i, k in enumerate(kinds)})
    signal = rng.normal(size=n)
    if target == 'regression': df['y'] = np.round(signal * 3 + 10, 3)
    elif target == 'binary': df['y'] = np.where(signal > 0.3, 'yes', 'no')
    else: df['y'] = np.select([signal < -0.5, signal < 0.6], ['a', 'b'], 'c')
    df.loc[rng.random(n) < 0.03, 'y'] = None   # a target with gaps
    return df


ROTATE = itertools.count()  # which candidate the next example trains

@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])  # no shrinking: each example is two mlnb runs
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=6), target=st.sampled_from(['binary', 'multiclass', 'regression']),
       n=st.integers(80, 400), seed=st.integers(0, 10**6))
def test_random_tables_run_or_stop_with_a_named_error(tmp_path_factory, kinds, target, n, seed):
    d = tmp_path_factory.mktemp('types')
    df = table(kinds, target, n, seed)
    df.to_parquet(d/'t.parquet')
    project = d/'project'; project.mkdir(); (project/'settings.ini').write_text('[DEFAULT]\n')
    r = mlnb('new', 't', '--data', d/'t.parquet', '--target', 'y', cwd=project)
    if r.returncode:
        assert r.returncode == 2 and r.stderr.startswith('mlnb: error: ') and 'Traceback' not in r.stderr, (kinds, r.stderr[-2000:])
        return
    p = yaml.safe_load((project/'params'/'t.yaml').read_text())
    p['stages']['deploy']['params']['registry'] = str(d/'registry'); p['stages']['train']['params']['cv_folds'] = 2
    if cands := p['stages']['train']['params'].get('candidates'):   # one of the candidates an example, each kind over the examples: not three fits of each
        p['stages']['train']['params']['candidates'] = [cands[next(ROTATE) % len(cands)]]
    r = mlnb('run', write_params(d/'run.yaml', p), '--runs-dir', d/'runs')
    if r.returncode == 0: return
    m = json.loads(next((d/'runs').glob('*/run.json')).read_text())
    failed = [s for s, v in m['stages'].items() if v.get('status') == 'failed']
    err = m['stages'][failed[0]].get('error') or {}
    assert err.get('ename') == 'MlnbError', (kinds, target, failed, err)   # mlnb's own error, naming what is wrong
