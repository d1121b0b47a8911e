"bench/tables.py's table makers and its baseline on tiny frames (no mlnb run: the benchmark itself does those)."
import importlib.util
import numpy as np, pandas as pd, pytest
from conftest import ROOT

for pkg in ('flaml', 'palmerpenguins', 'vega_datasets', 'statsmodels'):   # the benchmark's own requirements
    pytest.importorskip(pkg, reason=f'bench/tables.py needs {pkg}')

spec = importlib.util.spec_from_file_location('bench_tables', ROOT/'bench'/'tables.py')
T = importlib.util.module_from_spec(spec); spec.loader.exec_module(T)

@pytest.mark.parametrize('name', list(T.TABLES))
def test_each_table_is_a_real_frame_with_its_target_and_mess(name):
    _, target, task, drop, text, dates, source, mess = T.TABLES[name]
    df = T.make_table(name)
    assert len(df) >= 140 and target in df and set(drop + text + dates) <= set(df.columns) and source and mess
    y = df[target].dropna()
    if task == 'regression': assert pd.api.types.is_numeric_dtype(y) and y.nunique() > 20
    else: assert y.nunique() == 2 if task == 'binary' else y.nunique() > 2
    for c in drop: assert df[c].is_unique                     # the added row numbers and ids: one per row
    s = T.make_table(name, rows=100)
    assert len(s) == 100 and s.index.is_monotonic_increasing and s.equals(T.make_table(name, rows=100))   # seeded, order kept

def test_sorted_and_id_mess_is_as_recorded():
    assert T.make_table('wine')['cultivar'].is_monotonic_increasing and T.make_table('iris')['Species'].is_monotonic_increasing
    assert T.make_table('wine').columns[0] == 'cultivar' and list(T.make_table('iris')['Id'])[:3] == [1, 2, 3]

def test_inputs_and_baseline_on_a_tiny_frame():
    rng = np.random.default_rng(0); n = 200
    df = pd.DataFrame({'row': range(n), 'when': pd.date_range('2024-01-01', periods=n).strftime('%Y-%m-%d'),
                       'city': rng.choice(['a', 'b', 'c'], n), 'x': rng.normal(size=n)})
    df['y'] = np.where((df.city == 'a') | (df.x > 1), 'yes', 'no')
    tr, te = df.iloc[:150], df.iloc[150:].assign(city=lambda d: d.city.where(d.index != 160, 'unseen'))
    Xtr, Xte = T.inputs(tr, te, 'y', drop=['row'], dates=['when'])
    assert 'row' not in Xtr and 'when_month' in Xtr and isinstance(Xtr.city.dtype, pd.CategoricalDtype)
    assert Xte.city.isna().sum() == 1 and list(Xte.city.cat.categories) == list(Xtr.city.cat.categories)
    model, prep = T.baseline(Xtr, tr.y, 'binary')
    assert prep is None and T.score(model, Xte, te.y, 'binary', 'yes') > 0.95

def test_the_text_baseline_and_flaml_answer_in_the_labels():
    words = np.array(['lovely', 'soft', 'awful', 'torn', 'fine', 'ok'])
    rng = np.random.default_rng(1); n = 240
    y = rng.choice(['neg', 'mid', 'pos'], n)
    pick = {'neg': [2, 3], 'mid': [4, 5], 'pos': [0, 1]}
    df = pd.DataFrame({'review': [' '.join(words[rng.choice(pick[c], 4)]) for c in y], 'size': rng.choice(['S', 'M'], n), 'y': y})
    Xtr, Xte = T.inputs(df.iloc[:180], df.iloc[180:], 'y', text=['review'])
    model, prep = T.baseline(Xtr, df.y[:180], 'multiclass', ['review'])
    assert prep is not None and T.score(model, Xte, df.y[180:], 'multiclass') > 0.95
    a = T.flaml_fit(prep.transform(Xtr), df.y[:180], 'multiclass', 3)
    assert set(a.predict(prep.transform(Xte))) <= {'neg', 'mid', 'pos'} and T.score(a, prep.transform(Xte), df.y[180:], 'multiclass') > 0.9
