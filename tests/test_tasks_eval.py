"Evaluate and explain by task (binary, multiclass, regression) on real fitted pipelines; metrics checked against scikit-learn's own."
import nbformat, numpy as np, pandas as pd, pytest
from sklearn import metrics as skm
from mlnb.core import MlnbError
from mlnb.evaluate import (classification_metrics, error_by_decile, evaluate_model, model_output, multiclass_metrics, per_class_table,
                           regression_metrics)
from mlnb.explain import (class_importance, explain_pipeline, explained_output, explainer_kind, feature_origins, for_rows_class,
                          global_importance, group_explanation)
from mlnb.ingest import demo_data
from mlnb.prepare import normalise_missing
from mlnb.train import make_pipeline
from conftest import ROOT

TARGETS = {'binary': 'income', 'multiclass': 'relationship', 'regression': 'hours-per-week'}
FAST = {'hgb': dict(max_iter=20), 'random_forest': dict(n_estimators=10, max_depth=6)}

@pytest.fixture(scope='module')
def df(): return normalise_missing(demo_data(900, seed=3), ['?'])

def xy(df, task):
    "Inputs (every column but the target and, for the other tasks, income) and target for `task`, split 600/300."
    t = TARGETS[task]; X = df.drop(columns=[t] + (['income'] if task != 'binary' else []))
    return X[:600], df[t][:600], X[600:], df[t][600:]

def fit(df, task, name):
    Xtr, ytr, Xte, yte = xy(df, task)
    return make_pipeline(Xtr, name, FAST.get(name), seed=0, task=task).fit(Xtr, ytr), Xte, yte

def info(task, pipe=None):
    return dict(task=task, target=TARGETS[task], classes=[str(c) for c in pipe.classes_] if task != 'regression' else [],
                positive='>50K' if task == 'binary' else None)

def test_binary_metrics_match_sklearn(df):
    pipe, X, y = fit(df, 'binary', 'linear')
    m = evaluate_model(pipe, X, y, info('binary', pipe), threshold=0.4)
    p = pipe.predict_proba(X)[:, list(pipe.classes_).index('>50K')]; yt = (y == '>50K').astype(int)
    assert m == classification_metrics(y, p, '>50K', 0.4)
    np.testing.assert_allclose([m['roc_auc'], m['pr_auc'], m['log_loss'], m['f1']],
                               [skm.roc_auc_score(yt, p), skm.average_precision_score(yt, p), skm.log_loss(yt, p), skm.f1_score(yt, p >= 0.4)])

@pytest.mark.parametrize('name', ['hgb', 'naive_bayes', 'linear_svm'])
def test_multiclass_metrics_match_sklearn(df, name):
    pipe, X, y = fit(df, 'multiclass', name)
    ti = info('multiclass', pipe)
    m, proba, pred = evaluate_model(pipe, X, y, ti), pipe.predict_proba(X), pipe.predict(X)
    assert set(m) == {'accuracy', 'balanced_accuracy', 'f1_macro', 'f1_weighted', 'roc_auc_ovr', 'log_loss', 'n'} and m['n'] == len(y)
    np.testing.assert_allclose([m['accuracy'], m['balanced_accuracy'], m['f1_macro'], m['f1_weighted'], m['roc_auc_ovr'], m['log_loss']],
                               [skm.accuracy_score(y, pred), skm.balanced_accuracy_score(y, pred), skm.f1_score(y, pred, average='macro'),
                                skm.f1_score(y, pred, average='weighted'), skm.roc_auc_score(y, proba, multi_class='ovr', labels=pipe.classes_),
                                skm.log_loss(y, proba, labels=pipe.classes_)])
    t = per_class_table(y, proba, ti['classes'])
    rep = skm.classification_report(y, pred, output_dict=True, zero_division=0)
    assert t.support.is_monotonic_decreasing and t.support.sum() == len(y) and set(t['class']) == set(ti['classes'])
    for r in t.to_dict(orient='records'): np.testing.assert_allclose([r['precision'], r['recall'], r['f1']], [rep[r['class']][k] for k in ('precision', 'recall', 'f1-score')])

def test_multiclass_class_order_and_missing_class(df):
    pipe, X, y = fit(df, 'multiclass', 'linear')
    ti = info('multiclass', pipe)
    rev = model_output(pipe, X, ti | dict(classes=ti['classes'][::-1]))       # the task's order decides the columns
    np.testing.assert_allclose(rev, pipe.predict_proba(X)[:, ::-1])
    rare = y.value_counts().index[-1]; keep = (y != rare).to_numpy()
    m = multiclass_metrics(y[keep], pipe.predict_proba(X)[keep], ti['classes'])
    assert 'roc_auc_ovr' not in m and m['n'] == keep.sum()                     # a class with no test rows: no one-vs-rest AUC
    with pytest.raises(MlnbError, match="task's classes"): model_output(pipe, X, ti | dict(classes=ti['classes'][:-1]))
    with pytest.raises(MlnbError, match=r"\['Cousin'\]"): multiclass_metrics(pd.Series(['Cousin']), pipe.predict_proba(X[:1]), ti['classes'])

@pytest.mark.parametrize('name', ['linear', 'hgb', 'linear_svm'])
def test_regression_metrics_match_sklearn(df, name):
    pipe, X, y = fit(df, 'regression', name)
    m, pred = evaluate_model(pipe, X, y, info('regression')), pipe.predict(X)
    np.testing.assert_allclose([m['mae'], m['rmse'], m['r2'], m['median_ae'], m['mape']],
                               [skm.mean_absolute_error(y, pred), np.sqrt(skm.mean_squared_error(y, pred)), skm.r2_score(y, pred),
                                skm.median_absolute_error(y, pred), skm.mean_absolute_percentage_error(y, pred)])
    d = error_by_decile(y, pred)
    assert d.rows.sum() == len(y) and d.decile.is_monotonic_increasing and d.target_min.is_monotonic_increasing
    np.testing.assert_allclose((d.mae * d.rows).sum() / len(y), m['mae'])

def test_mape_omitted_when_a_target_is_zero(df):
    pipe, X, y = fit(df, 'regression', 'linear')
    y0 = y.copy(); y0.iloc[5] = 0
    m = regression_metrics(y0, pipe.predict(X))
    assert 'mape' not in m and set(m) == {'mae', 'rmse', 'r2', 'median_ae', 'n'}
    np.testing.assert_allclose(m['mae'], skm.mean_absolute_error(y0, pipe.predict(X)))

def test_model_and_task_must_agree(df):
    clf, X, y = fit(df, 'multiclass', 'linear')
    reg, Xr, yr = fit(df, 'regression', 'linear')
    with pytest.raises(MlnbError, match='is a classifier but the task is regression'): evaluate_model(clf, X, y, info('regression'))
    with pytest.raises(MlnbError, match='is a regressor but the task is multiclass'): evaluate_model(reg, Xr, yr, info('multiclass', clf))
    with pytest.raises(MlnbError, match="target 'hours-per-week' must be numeric"): regression_metrics(yr.astype(str), reg.predict(Xr))

@pytest.mark.parametrize('name,kind', [('linear', 'linear'), ('hgb', 'tree'), ('random_forest', 'tree'), ('linear_svm', 'permutation')])
def test_explain_regression_per_column(df, name, kind):
    pipe, X, _ = fit(df, 'regression', name)
    assert explainer_kind(pipe.named_steps['model']) == (kind, 'target units')
    rows, bg = X.iloc[:6], X.iloc[100:120]
    e = explain_pipeline(pipe, rows, bg)
    assert e.values.shape == (6, len(pipe.named_steps['prep'].get_feature_names_out()))
    np.testing.assert_allclose(e.base_values + e.values.sum(1), pipe.predict(rows), atol=1e-6)   # in the target's units
    g = group_explanation(e, feature_origins(pipe.named_steps['prep']), rows)
    assert g.values.shape == (6, X.shape[1]) and set(g.feature_names) == set(X.columns)      # one-hot features summed back to columns
    np.testing.assert_allclose(g.values.sum(1), e.values.sum(1), atol=1e-9)
    imp = global_importance(g)
    assert len(imp) == X.shape[1] and imp.mean_abs_shap.is_monotonic_decreasing

@pytest.mark.parametrize('name,kind,scale', [('hgb', 'tree', 'softmax logit'), ('linear', 'linear', 'softmax logit'),
                                             ('naive_bayes', 'permutation', 'probability'), ('linear_svm', 'permutation', 'probability')])
def test_explain_multiclass_per_class(df, name, kind, scale):
    pipe, X, _ = fit(df, 'multiclass', name)
    assert explainer_kind(pipe.named_steps['model']) == (kind, scale)
    rows, bg, k = X.iloc[:5], X.iloc[100:115], len(pipe.classes_)
    e = explain_pipeline(pipe, rows, bg)
    assert e.values.shape == (5, len(pipe.named_steps['prep'].get_feature_names_out()), k) and list(e.output_names) == list(pipe.classes_)
    np.testing.assert_allclose(e.base_values + e.values.sum(1), explained_output(pipe, rows), atol=1e-6)
    g = group_explanation(e, feature_origins(pipe.named_steps['prep']), rows)
    assert g.values.shape == (5, X.shape[1], k)
    ci, imp = class_importance(g), global_importance(g)
    assert ci.shape == (X.shape[1], k) and list(ci.columns) == list(pipe.classes_)
    np.testing.assert_allclose(imp.set_index('feature').mean_abs_shap.loc[ci.index], ci.mean(axis=1))      # top_features: averaged over classes
    one = explain_pipeline(pipe, rows, bg, pipe.classes_[2])                                             # one class, as for a binary positive
    np.testing.assert_allclose(one.values, e.values[..., 2], atol=1e-9)
    pick = for_rows_class(g, np.arange(5) % k)
    np.testing.assert_allclose(pick.values[3], g.values[3, :, 3 % k])

def test_permutation_explainer_is_bounded_by_the_sample(df):
    "The model-agnostic explainer asks the model about at most (explained rows) x (evaluations per row) x (background rows) rows."
    pipe, X, _ = fit(df, 'multiclass', 'naive_bayes')
    model, seen = pipe.named_steps['model'], []
    proba = model.predict_proba
    model.predict_proba = lambda Z: seen.append(len(Z)) or proba(Z)
    p = len(pipe.named_steps['prep'].get_feature_names_out())
    for n in (2, 4):
        seen.clear(); explain_pipeline(pipe, X.iloc[:n], X.iloc[100:110])
        assert 0 < sum(seen) <= n * max(500, 2 * p + 1) * 10
        if n == 2: two = sum(seen)
    assert abs(sum(seen) - 2 * two) < 0.05 * two                                 # linear in the explained rows

# --- the notebooks' run parts on each task, with prepare and train stood in for by one executed notebook -------------------

def fake_upstream(run_dir, task, model):
    "Execute a notebook that glues what prepare and train glue for `task` (the task, train/test rows, the fitted pipeline)."
    import papermill as pm
    art = run_dir/'artifacts'/'prepare'
    src = f"""from mlnb.core import glue, glue_artifact
from mlnb.ingest import demo_data
from mlnb.prepare import normalise_missing
from mlnb.train import make_pipeline
task, target = {task!r}, {TARGETS[task]!r}
d = normalise_missing(demo_data(900, seed=3), ['?'])
d = d if task == 'binary' else d.drop(columns=['income'])
tr, te = d[:600].reset_index(drop=True), d[600:].reset_index(drop=True)
p = make_pipeline(tr.drop(columns=[target]), {model!r}, {FAST.get(model)!r}, 0, task=task).fit(tr.drop(columns=[target]), tr[target])
glue('task', task); glue('target', target); glue('classes', [str(c) for c in p.classes_] if task != 'regression' else [])
if task == 'binary': glue('positive', '>50K')
for name, obj in (('train', tr), ('test', te), ('pipeline', p)): glue_artifact(obj, name, {str(art)!r})
"""
    nb = nbformat.v4.new_notebook(); nb.cells = [nbformat.v4.new_code_cell(src)]
    nbformat.write(nb, run_dir/'src.ipynb')
    pm.execute_notebook(str(run_dir/'src.ipynb'), str(run_dir/'03_prepare.ipynb'), kernel_name='python3', progress_bar=False, cwd=str(ROOT))
    return str(run_dir/'03_prepare.ipynb')

@pytest.mark.slow
@pytest.mark.parametrize('task,model', [('multiclass', 'hgb'), ('regression', 'linear')])
def test_stage_notebooks_run_on_task(tmp_path, task, model):
    import papermill as pm, scrapbook as sb
    up = fake_upstream(tmp_path, task, model)
    g = {}
    for nb, stage, params in (('50_evaluate', 'evaluate', {}), ('60_explain', 'explain', dict(sample_size=40, local_rows=[0]))):
        pm.execute_notebook(str(ROOT/'nbs'/f'{nb}.ipynb'), str(tmp_path/f'{nb}.ipynb'), kernel_name='python3', progress_bar=False, cwd=str(ROOT),
                            parameters=dict(upstream={'train': up, 'prepare': up}, artifacts=str(tmp_path/'artifacts'/stage), **params))
        g[stage] = {k: s.data for k, s in sb.read_notebook(str(tmp_path/f'{nb}.ipynb')).scraps.items()}
    ev, ex = g['evaluate'], g['explain']
    assert ev['task'] == ex['task'] == task and 'positive' not in ev and 'positive' not in ex
    assert ev['metrics'] == {k: ev[k] for k in ev['metrics']} and all(isinstance(v, float) for v in ev['metrics'].values())
    if task == 'multiclass': assert {'balanced_accuracy', 'f1_macro', 'roc_auc_ovr'} <= set(ev['metrics']) and len(ev['per_class']) == 6
    else: assert {'mae', 'rmse', 'r2', 'median_ae', 'mape'} <= set(ev['metrics']) and sum(r['rows'] for r in ev['error_by_decile']) == ev['n']
    assert ex['n_explained'] == 40 and ex['additivity_error'] < 1e-6 and len(ex['top_features']) == 10
    assert ex['output_scale'] == ('softmax logit' if task == 'multiclass' else 'target units')
