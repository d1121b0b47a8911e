"Evaluate's intervals, slices, calibration and threshold on real data and fitted pipelines: bootstrap intervals cover their point and narrow with rows, the vectorised metrics equal sklearn's, undefined metrics never crash."
import json
import nbformat, numpy as np, pandas as pd, pytest
from sklearn import metrics as skm
from mlnb.core import MlnbError
from mlnb.evaluate import (CI_METRICS, FAST_METRICS, calibration, classification_metrics, flat_arrays, metric_intervals, model_output,
                           multiclass_metrics, regression_metrics, slice_labels, slice_table, vector_metrics)
from mlnb.ingest import demo_data
from mlnb.prepare import normalise_missing
from mlnb.train import make_pipeline
from conftest import ROOT

TARGETS = {'binary': 'income', 'multiclass': 'relationship', 'regression': 'hours-per-week'}

@pytest.fixture(scope='module')
def data(): return normalise_missing(demo_data(2000, seed=5), ['?'])

def fitted(data, task, n_test=1000):
    "A fitted pipeline for `task` on the first rows and its output on the last `n_test`, with the task as prepare glues it."
    t = TARGETS[task]; X = data.drop(columns=[t] + (['income'] if task != 'binary' else [])); y = data[t]
    pipe = make_pipeline(X[:-n_test], 'hgb', dict(max_iter=30), seed=0, task=task).fit(X[:-n_test], y[:-n_test])
    info = dict(task=task, target=t, classes=[str(c) for c in getattr(pipe, 'classes_', [])], positive='>50K' if task == 'binary' else None)
    return X[-n_test:], y[-n_test:], model_output(pipe, X[-n_test:], info), info

@pytest.mark.parametrize('task', ['binary', 'multiclass', 'regression'])
def test_vector_metrics_equal_sklearn(data, task):
    X, y, out, info = fitted(data, task)
    v = dict(zip(FAST_METRICS[task], vector_metrics(info, FAST_METRICS[task], *flat_arrays(y, out, info), threshold=0.35)))
    ref = (classification_metrics(y, out, '>50K', 0.35) | {'brier': skm.brier_score_loss(y == '>50K', out)} if task == 'binary'
           else multiclass_metrics(y, out, info['classes']) if task == 'multiclass' else regression_metrics(y, out))
    for k in FAST_METRICS[task]: assert v[k] == pytest.approx(ref[k], abs=1e-9), k

def test_roc_and_pr_auc_with_ties_equal_sklearn():
    rng = np.random.default_rng(1); y = pd.Series(rng.choice(['a', 'b'], 500)); p = rng.integers(0, 8, 500) / 8   # 8 distinct scores
    info = dict(task='binary', positive='b', classes=['a', 'b'])
    auc, ap = vector_metrics(info, ['roc_auc', 'pr_auc'], *flat_arrays(y, p, info))
    assert auc == pytest.approx(skm.roc_auc_score(y == 'b', p)) and ap == pytest.approx(skm.average_precision_score(y == 'b', p))

@pytest.mark.parametrize('task', ['binary', 'multiclass', 'regression'])
def test_interval_covers_its_point_and_narrows_as_rows_grow(data, task):
    X, y, out, info = fitted(data, task)
    small, large = (metric_intervals(y[:n], out[:n], info, n_resamples=1000, seed=42) for n in (150, 1000))
    assert list(large.index) == CI_METRICS[task]
    for t in (small, large): assert ((t.low <= t.value) & (t.value <= t.high)).all(), t
    assert ((large.high - large.low) < (small.high - small.low)).all(), (small, large)
    assert metric_intervals(y, out, info, seed=42).equals(large)                     # seeded: the same interval again

def test_undefined_metric_in_resamples_and_everywhere_does_not_crash():
    info = dict(task='binary', positive='y', classes=['n', 'y'])
    y = pd.Series(['n'] * 59 + ['y']); p = np.linspace(0, 1, 60)
    t = metric_intervals(y, p, info, seed=0)
    assert 0 < t.loc['roc_auc', 'undefined'] < 1000 and np.isfinite(t.loc['roc_auc', ['low', 'high']].astype(float)).all()
    t = metric_intervals(pd.Series(['n'] * 60), p, info, seed=0)                     # no positive row at all
    assert t.loc['roc_auc', ['value', 'low', 'high']].isna().all() and t.loc['roc_auc', 'undefined'] == 1000
    assert np.isfinite(t.loc['log_loss', ['low', 'high']].astype(float)).all()
    assert metric_intervals(pd.Series(['y']), p[:1], info).loc['accuracy', ['low', 'high']].isna().all()   # one row: no interval, no crash
    r = metric_intervals(pd.Series([3., 3., 3.]), np.array([1., 2., 3.]), dict(task='regression'))       # constant target: no R²
    assert np.isnan(r.loc['r2', 'value']) and np.isfinite(r.loc['mae', 'value'])

def test_slice_table_on_a_frame_built_by_hand():
    info = dict(task='binary', positive='y', classes=['n', 'y'])
    X = pd.DataFrame({'sex': ['F'] * 6 + ['M'] * 6 + ['X'] * 3, 'age': [20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, np.nan]})
    y = pd.Series(['n', 'n', 'n', 'y', 'y', 'y'] * 2 + ['y'] * 3)
    p = np.r_[[.1, .2, .3, .7, .8, .9], [.9, .2, .8, .3, .7, .1], [.5, .6, .7]]   # F ranked right, M: two of nine pairs right, X one class
    lab = slice_labels(X, ['sex', 'age'], bins=2)
    assert lab.age.tolist() == ['[20, 52.5]'] * 7 + ['(52.5, 85]'] * 7 + ['(missing)']
    t = slice_table(y, p, info, lab, min_rows=5, n_resamples=300, seed=0)
    s = t[t.column == 'sex'].set_index('slice')
    assert s.n.to_dict() == {'M': 6, 'F': 6, 'X': 3} and list(s.index) == ['M', 'F', 'X']         # worst first, undefined last
    assert s.roc_auc['F'] == 1.0 and s.roc_auc['M'] == pytest.approx(2 / 9) and np.isnan(s.roc_auc['X']) and np.isnan(s.low['X'])
    assert s.index[s.worst].tolist() == ['M'] and t.worst.sum() == 2                              # one per column
    d = s.loc[['M', 'F']]; assert (d.low <= d.roc_auc).all() and (d.roc_auc <= d.high).all()
    a = t[t.column == 'age'].set_index('slice')
    assert a.n.to_dict() == {'[20, 52.5]': 7, '(52.5, 85]': 7, '(missing)': 1} and not a.worst['(missing)']
    assert a.roc_auc['[20, 52.5]'] == pytest.approx(skm.roc_auc_score(y[:7] == 'y', p[:7]))
    r = slice_table(pd.Series([1., 2., 3., 4.]), np.array([1., 2., 2., 5.]), dict(task='regression'), pd.DataFrame({'g': list('aabb')}), min_rows=1, n_resamples=100)
    assert r.columns.tolist() == ['column', 'slice', 'n', 'r2', 'low', 'high', 'worst']

def test_bad_slice_columns_give_a_clear_error():
    X = pd.DataFrame({'gender': ['F', 'M'], 'age': [30, 40]})
    with pytest.raises(MlnbError, match=r"evaluate: parameter 'slices' names column\(s\) \['sex'\] that the test data does not have"): slice_labels(X, ['gender', 'sex'])
    with pytest.raises(MlnbError, match="parameter 'slices' must be a list of column names"): slice_labels(X, 'gender')
    with pytest.raises(MlnbError, match="names the target column 'gender'"): slice_labels(X, ['gender'], target='gender')
    with pytest.raises(MlnbError, match="parameter 'slice_bins' must be at least 2"): slice_labels(X, ['age'], bins=1)

def test_calibration_of_a_real_classifier(data):
    for task in ('binary', 'multiclass'):
        X, y, out, info = fitted(data, task)
        cal, t = calibration(y, out, info, bins=10)
        assert t.n.sum() == len(y) and 0 <= cal['ece'] < 0.2 and 0 < cal['brier'] < (1 if task == 'binary' else 2)
        assert cal['ece'] == pytest.approx((t.n * (t.observed - t.predicted).abs()).sum() / len(y))

def fake_upstream(run_dir, threshold):
    "Execute a notebook that glues what prepare and train glue for the binary demo task, train's `threshold` included."
    import papermill as pm
    src = f"""from mlnb.core import glue, glue_artifact
from mlnb.ingest import demo_data
from mlnb.prepare import normalise_missing
from mlnb.train import make_pipeline
d = normalise_missing(demo_data(900, seed=3), ['?']); tr, te = d[:600].reset_index(drop=True), d[600:].reset_index(drop=True)
p = make_pipeline(tr.drop(columns=['income']), 'linear', None, 0).fit(tr.drop(columns=['income']), tr['income'])
glue('task', 'binary'); glue('target', 'income'); glue('classes', [str(c) for c in p.classes_]); glue('positive', '>50K'); glue('threshold', {threshold})
for name, obj in (('train', tr), ('test', te), ('pipeline', p)): glue_artifact(obj, name, {str(run_dir/'artifacts'/'prepare')!r})
"""
    nb = nbformat.v4.new_notebook(); nb.cells = [nbformat.v4.new_code_cell(src)]
    nbformat.write(nb, run_dir/'src.ipynb')
    pm.execute_notebook(str(run_dir/'src.ipynb'), str(run_dir/'up.ipynb'), kernel_name='python3', progress_bar=False, cwd=str(ROOT))
    return str(run_dir/'up.ipynb')

@pytest.mark.slow
def test_evaluate_notebook_uses_trains_threshold_and_glues_intervals_and_slices(tmp_path):
    import papermill as pm, scrapbook as sb
    from mlnb.core import Upstream
    up = fake_upstream(tmp_path, 0.3)
    pm.execute_notebook(str(ROOT/'nbs'/'50_evaluate.ipynb'), str(tmp_path/'ev.ipynb'), kernel_name='python3', progress_bar=False, cwd=str(ROOT),
                        parameters=dict(upstream={'train': up, 'prepare': up}, artifacts=str(tmp_path/'artifacts'/'evaluate'), slices=['gender', 'age'], n_resamples=1000))
    g = {k: s.data for k, s in sb.read_notebook(str(tmp_path/'ev.ipynb')).scraps.items()}
    assert g['threshold'] == 0.3 and g['threshold_source'].startswith('from train')
    u = Upstream({'prepare': up}); te, pipe = u.load('test'), u.load('pipeline')
    p = pipe.predict_proba(te.drop(columns=['income']))[:, list(pipe.classes_).index('>50K')]
    assert g['accuracy'] == pytest.approx(skm.accuracy_score(te.income == '>50K', p >= 0.3))       # label metrics at train's threshold
    for m in CI_METRICS['binary']: assert g[f'{m}_ci'][0] <= g[m] <= g[f'{m}_ci'][1] and g['intervals'][m] == g[f'{m}_ci']
    assert {'brier', 'ece'} <= set(g['metrics']) and sum(r['n'] for r in g['reliability']) == g['n']
    st = pd.DataFrame(g['slice_table'])
    assert set(st.column) == {'gender', 'age'} and st.groupby('column').n.sum().tolist() == [g['n']] * 2
    assert st[st.worst].column.tolist() == ['gender'] and (st[st.column == 'age'].n < 100).all()   # 300 rows: no age bin reaches min_slice_rows
    assert g['slice_spec'] == dict(columns=['gender', 'age'], bins=4, min_rows=100, metric='roc_auc')
    pm.execute_notebook(str(ROOT/'nbs'/'50_evaluate.ipynb'), str(tmp_path/'ev2.ipynb'), kernel_name='python3', progress_bar=False, cwd=str(ROOT),
                        parameters=dict(upstream={'train': up, 'prepare': up}, artifacts=str(tmp_path/'artifacts'/'ev2'), threshold=0.6, n_resamples=1000))
    g2 = {k: s.data for k, s in sb.read_notebook(str(tmp_path/'ev2.ipynb')).scraps.items()}
    assert g2['threshold'] == 0.6 and 'parameter' in g2['threshold_source'] and 'slice_table' not in g2
    with pytest.raises(pm.PapermillExecutionError, match=r"parameter 'slices' names column\(s\) \['sex'\]"):
        pm.execute_notebook(str(ROOT/'nbs'/'50_evaluate.ipynb'), str(tmp_path/'ev3.ipynb'), kernel_name='python3', progress_bar=False, cwd=str(ROOT),
                            parameters=dict(upstream={'train': up, 'prepare': up}, artifacts=str(tmp_path/'artifacts'/'ev3'), slices=['sex']))
