"Tests of the explain stage's functions on real fitted pipelines (no mocks)."
import numpy as np, pandas as pd, pytest
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from mlnb.core import MlnbError
from mlnb.explain import (class_index, draw_rows, explain_pipeline, explained_output, explainer_kind, feature_origins,
                          global_importance, group_explanation, group_values, local_positions)
from mlnb.ingest import demo_data
from mlnb.prepare import normalise_missing
from mlnb.train import make_pipeline, make_preprocessor

TARGET, POS = 'income', '>50K'
FAST = {'logistic': {}, 'random_forest': dict(n_estimators=10, max_depth=8), 'hgb': dict(max_iter=20)}

@pytest.fixture(scope='module')
def data():
    df = normalise_missing(demo_data(800, seed=1), ['?'])
    return df.drop(columns=[TARGET]), df[TARGET]

@pytest.fixture(scope='module')
def pipes(data):
    X, y = data
    return {name: make_pipeline(X, name, params, seed=0).fit(X, y) for name, params in FAST.items()}

def test_one_hot_columns_map_back_and_sum(data, pipes):
    X, _ = data
    prep = pipes['logistic'].named_steps['prep']
    origins = feature_origins(prep)
    assert list(origins.index) == list(prep.get_feature_names_out())
    assert set(origins) == set(X.columns)
    cols = {name: list(c) for name, _, c in prep.transformers_}
    for col, cats in zip(cols['cat'], prep.named_transformers_['cat'][-1].categories_): assert (origins == col).sum() == len(cats)
    for col in cols['num']: assert (origins == col).sum() == 1
    vals = np.random.default_rng(0).normal(size=(7, len(origins)))
    g = group_values(vals, origins)
    np.testing.assert_allclose(g.sum(axis=1), vals.sum(1), atol=1e-12)
    np.testing.assert_allclose(g['workclass'], vals[:, (origins == 'workclass').to_numpy()].sum(1), atol=1e-12)
    np.testing.assert_allclose(g['age'], vals[:, list(origins.index).index('age')])

def test_tiny_pipeline_mapping():
    toy = pd.DataFrame({'n': [1., 2., 3., 4.]*4, 'c': list('xyzx')*4, 'y': [0, 1, 1, 0]*4})
    p = make_pipeline(toy[['n', 'c']], 'logistic').fit(toy[['n', 'c']], toy['y'])
    o = feature_origins(p.named_steps['prep'])
    assert o.to_dict() == {'n': 'n', 'c_x': 'c', 'c_y': 'c', 'c_z': 'c'}
    assert group_values(np.array([[1., 2., 3., 4.]]), o).to_dict(orient='records') == [{'n': 1., 'c': 9.}]

@pytest.mark.parametrize('name,kind,scale', [('logistic', 'linear', 'log-odds'), ('random_forest', 'tree', 'probability'), ('hgb', 'tree', 'log-odds')])
def test_explainer_per_model_kind_adds_up(data, pipes, name, kind, scale):
    X, _ = data
    pipe = pipes[name]
    assert explainer_kind(pipe.named_steps['model']) == (kind, scale)
    rows, bg = X.iloc[:25], draw_rows(X, 50, 0, 'background_size')
    e = explain_pipeline(pipe, rows, bg, POS)
    assert e.values.shape == (25, len(pipe.named_steps['prep'].get_feature_names_out())) and e.base_values.shape == (25,)
    out = explained_output(pipe, rows, POS)
    if scale == 'log-odds': np.testing.assert_allclose(out, pipe.decision_function(rows))
    else: np.testing.assert_allclose(out, pipe.predict_proba(rows)[:, 1])
    np.testing.assert_allclose(e.base_values + e.values.sum(1), out, atol=1e-4)
    g = group_explanation(e, feature_origins(pipe.named_steps['prep']), rows)
    np.testing.assert_allclose(g.values.sum(1), e.values.sum(1), atol=1e-10)
    imp = global_importance(g)
    assert imp.mean_abs_shap.is_monotonic_decreasing and set(imp.feature) == set(X.columns)

def test_negative_class_is_the_mirror(data, pipes):
    X, _ = data
    for name in ('hgb', 'random_forest'):
        pipe, rows = pipes[name], X.iloc[:10]
        pos, neg = explain_pipeline(pipe, rows, X.iloc[:20], POS), explain_pipeline(pipe, rows, X.iloc[:20], '<=50K')
        np.testing.assert_allclose(neg.values, -pos.values, atol=1e-10)
        np.testing.assert_allclose(neg.base_values + neg.values.sum(1), explained_output(pipe, rows, '<=50K'), atol=1e-4)

def test_model_agnostic_fallback_and_step_positions(data):
    X, y = data
    raw = X.fillna('?')  # the markers step must turn these back into missing values
    pipe = Pipeline([('markers', FunctionTransformer(normalise_missing, kw_args=dict(markers=['?']))),
                     ('prep', make_preprocessor(X, 'linear')), ('model', KNeighborsClassifier(15))]).fit(raw, y)
    assert explainer_kind(pipe.named_steps['model']) == ('permutation', 'probability')
    e = explain_pipeline(pipe, raw.iloc[:4], raw.iloc[100:120], POS, seed=0)
    np.testing.assert_allclose(e.base_values + e.values.sum(1), pipe.predict_proba(raw.iloc[:4])[:, 1], atol=1e-8)
    np.testing.assert_allclose(e.base_values, pipe.predict_proba(raw.iloc[100:120])[:, 1].mean(), atol=1e-8)

def test_grouped_explanation_data():
    toy = pd.DataFrame({'n': [1., 2., 3., 4.]*4, 'c': list('xyzx')*4, 'y': ['a', 'b', 'b', 'a']*4})
    p = make_pipeline(toy[['n', 'c']], 'hgb', dict(max_iter=5, min_samples_leaf=2)).fit(toy[['n', 'c']], toy['y'])
    g = group_explanation(explain_pipeline(p, toy[['n', 'c']], toy[['n', 'c']], 'b'), feature_origins(p.named_steps['prep']), toy[['n', 'c']])
    assert g.feature_names == ['c', 'n'] and g.values.shape == (16, 2)  # hgb: the native category block comes first
    np.testing.assert_array_equal(g.data[:, 1], toy['n']); assert np.isnan(g.data[:, 0]).all()
    assert list(g.display_data[:3, 0]) == ['x', 'y', 'z']

def test_user_errors_name_the_parameter(data, pipes):
    X, _ = data
    with pytest.raises(MlnbError, match=r'local_rows \[7, -1\]'): local_positions([0, 7, -1], 5)
    with pytest.raises(MlnbError, match='local_rows must be a list'): local_positions(3, 5)
    assert local_positions([4, 0], 5) == [4, 0]
    with pytest.raises(MlnbError, match='sample_size'): draw_rows(X, 0, 0, 'sample_size')
    assert len(draw_rows(X, 10_000, 0, 'sample_size')) == len(X)
    with pytest.raises(MlnbError, match="positive class 'yes'"): class_index(pipes['hgb'], 'yes')
    with pytest.raises(MlnbError, match="no step prep"):
        explain_pipeline(Pipeline([('pre', pipes['hgb'].named_steps['prep']), ('model', pipes['hgb'].named_steps['model'])]), X[:2], X[:2], POS)
