"Evaluate and explain by task (binary, multiclass, regression) on real fitted pipelines; metrics checked against scikit-learn's own."
import nbformat, numpy as np, pandas as pd, pytest
from sklearn import metrics as skm
from mlnb.core import MlnbError
from mlnb.evaluate import (classification_metrics, error_by_decile, evaluate_model, model_output, multiclass_metrics, per_class_table,
                           regression_metrics)
from mlnb.explain import (class_importance, explain_pipeline, explained_output, explainer_kind, feature_origins, for_rows_class,
                          global_importance, group_explanation, term_weights, text_terms, top_terms)
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
    for rows in ([0, 1], [0, 1, 0, 1]):  # the same two rows twice: rows differ in how many masked rows they need (7,978 for rows 0-3, 4,122 for 0-1)
        seen.clear(); explain_pipeline(pipe, X.iloc[rows], X.iloc[100:110])
        assert 0 < sum(seen) <= len(rows) * max(500, 2 * p + 1) * 10
        if len(rows) == 2: two = sum(seen)
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
    for nb, stage, params in (('50_evaluate', 'evaluate', dict(n_resamples=200)), ('60_explain', 'explain', dict(sample_size=40, local_rows=[0]))):
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

# --- the features stage's blocks: text, dates, target encoding -----------------------------------------------------------

@pytest.fixture(scope='module')
def reviews():
    "400 clothing reviews: two text columns, numbers, categories, a date column; Rating as the target."
    d = pd.read_csv(ROOT/'data'/'womens_clothing_reviews.csv.gz', nrows=400)
    d['posted'] = pd.date_range('2021-01-01', periods=len(d), freq='29h').astype(str)
    return d[['Review Text', 'Title', 'Age', 'Department Name', 'Clothing ID', 'posted']], d['Rating']

def text_pipe(X, y, task, **kw):
    from mlnb.features import infer_roles, make_preprocessor
    from mlnb.train import compose
    roles = infer_roles(X, roles={'Title': 'text'} | ({'Clothing ID': 'categorical'} if 'Clothing ID' in X else {}))
    prep = make_preprocessor(roles, 'linear', task, text_max_features=400, levels={'Clothing ID': 100}, **kw)
    return compose(prep, 'linear', {}, 0, [], task).fit(X, y)

@pytest.mark.filterwarnings('ignore::FutureWarning')
def test_text_date_and_target_features_map_to_their_columns(reviews):
    X, y = reviews
    pipe = text_pipe(X, y.astype(str), 'multiclass')
    prep = pipe.named_steps['prep']
    o = feature_origins(prep)
    assert list(o.index) == list(prep.get_feature_names_out()) and set(o) == set(X.columns)
    sizes = {name: s.stop - s.start for name, s in prep.output_indices_.items()}
    assert (o == 'Review Text').sum() == sizes['text_Review Text'] > 100 and (o == 'Title').sum() == sizes['text_Title']
    assert (o == 'posted').sum() == 5 and (o == 'Clothing ID').sum() == 5                         # 5 date parts; one encoding per class
    assert o['text_Review Text__love'] == 'Review Text' and o['dates__posted_dayofweek'] == 'posted' and o['cat_target__Clothing ID_5'] == 'Clothing ID'
    rows = X.iloc[:30]
    e = explain_pipeline(pipe, rows, X.iloc[300:])
    g = group_explanation(e, o, rows)
    assert set(g.feature_names) == set(X.columns) and g.values.shape == (30, X.shape[1], 5)
    t = g.feature_names.index('Review Text')
    np.testing.assert_allclose(g.values[:, t], e.values[:, (o == 'Review Text').to_numpy()].sum(1), atol=1e-9)   # a text column: its terms summed
    np.testing.assert_allclose(g.values.sum(1), e.values.sum(1), atol=1e-9)
    assert all(len(str(v)) <= 41 for v in g.display_data[:, t])                                     # review texts cut for plot labels
    imp = global_importance(g)
    assert set(imp.feature) == set(X.columns) and 'Review Text' in set(imp.feature[:3])
    tt = top_terms(e, prep, 3)
    assert set(tt['class']) == {'1', '2', '3', '4', '5'} and set(tt.column) == {'Review Text', 'Title'}
    assert tt.groupby(['column', 'class', 'direction']).size().max() == 3
    five = tt[(tt['class'] == '5') & (tt.direction == 'towards')]
    assert set(five.term) & {'love', 'perfect', 'great', 'comfortable', 'love it', 'love this', 'beautiful'}

def test_top_terms_binary_and_regression(reviews):
    X, y = reviews
    X = X.drop(columns=['Clothing ID'])
    good = np.where(y >= 4, 'good', 'poor')
    pipe = text_pipe(X, good, 'binary')
    prep = pipe.named_steps['prep']
    e = explain_pipeline(pipe, X.iloc[:200], X.iloc[200:], 'good')
    tt = top_terms(e, prep, 5, 'good')
    towards, away = (set(tt.term[(tt.column == 'Review Text') & (tt.direction == d)]) for d in ('towards', 'away from'))
    assert towards & {'love', 'great', 'perfect', 'comfortable', 'love it', 'love this'} and not towards & away
    assert away & {'but', 'disappointed', 'unfortunately', 'returned', 'back', 'fabric', 'too', 'cheap'}
    assert (tt['class'] == 'good').all() and (tt.weight[tt.direction == 'towards'] > 0).all() and (tt.weight[tt.direction == 'away from'] < 0).all()
    pos = text_terms(prep)['Review Text']
    assert list(pos.index[:3]) == list(prep.named_transformers_['text_Review Text'][-1].get_feature_names_out()[:3])
    assert (feature_origins(prep).iloc[pos.to_numpy()] == 'Review Text').all()
    reg = text_pipe(X, y.astype(float), 'regression')
    tr = top_terms(explain_pipeline(reg, X.iloc[:100], X.iloc[200:]), reg.named_steps['prep'], 4)
    assert set(tr.direction) == {'up', 'down'} and tr['class'].isna().all()
    assert set(tr.term[(tr.column == 'Review Text') & (tr.direction == 'up')]) & {'love', 'great', 'perfect', 'comfortable', 'love it', 'love this'}

def test_text_terms_with_svd_and_char_ngrams(reviews):
    X, y = reviews
    X = X[['Review Text', 'Title', 'Age']]
    svd = text_pipe(X, y.astype(str), 'multiclass', text_svd=5)
    o = feature_origins(svd.named_steps['prep'])
    assert (o == 'Review Text').sum() == 5 and (o == 'Title').sum() == 5                              # SVD components map to their column
    assert text_terms(svd.named_steps['prep']) == {'Review Text': None, 'Title': None}
    assert top_terms(explain_pipeline(svd, X.iloc[:10], X.iloc[200:220]), svd.named_steps['prep'], 3).empty
    ch = text_pipe(X, np.where(y >= 4, 'good', 'poor'), 'binary', text_char_ngrams=(3, 3))
    terms = text_terms(ch.named_steps['prep'])['Review Text']
    assert 'love' in terms.index and "' lo'" in terms.index and terms.index.is_unique               # words as they are, char n-grams quoted
    assert (feature_origins(ch.named_steps['prep']).iloc[terms.to_numpy()] == 'Review Text').all()

@pytest.mark.slow
@pytest.mark.filterwarnings('ignore::FutureWarning')
def test_explain_notebook_names_text_columns_and_their_terms(tmp_path):
    "The explain notebook on a binary text model: importance under the input columns, and the glued top terms."
    import papermill as pm, scrapbook as sb
    art = tmp_path/'artifacts'/'prepare'
    src = f"""import numpy as np, pandas as pd
from mlnb.core import glue, glue_artifact
from mlnb.features import infer_roles, make_preprocessor
from mlnb.train import compose
d = pd.read_csv({str(ROOT/'data'/'womens_clothing_reviews.csv.gz')!r}, nrows=500)[['Review Text', 'Title', 'Age', 'Department Name', 'Rating']]
d['good'] = np.where(d.pop('Rating') >= 4, 'yes', 'no')
tr, te = d[:400], d[400:].reset_index(drop=True)
X = tr.drop(columns=['good'])
p = compose(make_preprocessor(infer_roles(X, roles={{'Title': 'text'}}), 'linear', text_max_features=500), 'linear', {{}}, 0, [], 'binary').fit(X, tr.good)
glue('task', 'binary'); glue('target', 'good'); glue('classes', ['no', 'yes']); glue('positive', 'yes')
for name, obj in (('train', tr), ('test', te), ('pipeline', p)): glue_artifact(obj, name, {str(art)!r})
"""
    nb = nbformat.v4.new_notebook(); nb.cells = [nbformat.v4.new_code_cell(src)]
    nbformat.write(nb, tmp_path/'src.ipynb')
    up = str(tmp_path/'03_prepare.ipynb')
    pm.execute_notebook(str(tmp_path/'src.ipynb'), up, kernel_name='python3', progress_bar=False, cwd=str(ROOT))
    pm.execute_notebook(str(ROOT/'nbs'/'60_explain.ipynb'), str(tmp_path/'60_explain.ipynb'), kernel_name='python3', progress_bar=False, cwd=str(ROOT),
                        parameters=dict(upstream={'train': up, 'prepare': up}, artifacts=str(tmp_path/'artifacts'/'explain'), sample_size=60, local_rows=[0], top_k_terms=5))
    ex = {k: s.data for k, s in sb.read_notebook(str(tmp_path/'60_explain.ipynb')).scraps.items()}
    assert {t['feature'] for t in ex['top_features']} == {'Review Text', 'Title', 'Age', 'Department Name'}
    terms = pd.DataFrame(ex['top_terms'])
    assert set(terms.columns) == {'column', 'term', 'class', 'direction', 'weight'} and set(terms['class']) == {'yes'}
    assert terms.groupby(['column', 'direction']).size().max() == 5
    assert set(terms.term[(terms.column == 'Review Text') & (terms.direction == 'towards')]) & {'love', 'great', 'perfect', 'comfortable', 'love it', 'love this'}
