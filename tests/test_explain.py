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

# --- mlnb's own TreeSHAP for native categorical splits, against Shapley values by brute force -------------------------
# tree_shap computes path-dependent TreeSHAP: the value of a coalition S of features is, per tree, the tree's output
# with the features of S fixed at the instance's values and the others integrated out by the training rows through
# each node (at a split on a feature outside S, each child weighted by count[child] / count[node]). The brute force
# below evaluates that value function on every subset, straight from scikit-learn's own tree nodes and bitsets (not
# from mlnb's TreeArrays), and sums the Shapley formula over all 2^(n-1) coalitions for each feature.
from itertools import combinations
from math import factorial
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from mlnb.explain import tree_shap
from mlnb.explain import TreeArrays   # the trees-as-arrays class tree_shap is given, wherever it lives (serve, or trees)

def _in_bitset(words, code) -> bool:
    return bool((int(words[code // 32]) >> (code % 32)) & 1)

class BruteTrees:
    "A fitted HistGradientBoosting model's trees as scikit-learn keeps them, routed as its `_predict_one_from_raw_data` does."
    def __init__(self, model):
        self.model, self.k = model, model.n_trees_per_iteration_
        self.trees = [(i * self.k + k, p) for i, it in enumerate(model._predictors) for k, p in enumerate(it)]
        self.known, self.fmap = model._bin_mapper.make_known_categories_bitsets()
        pre = model._preprocessor   # with categorical features the model re-codes them and puts them first
        self.cols = np.arange(model.n_features_in_) if pre is None else \
            np.concatenate([np.flatnonzero(np.asarray(c)) for n, _, c in pre.transformers_ if n != 'remainder'])
        self.base = np.ravel(model._baseline_prediction).astype(float)

    def inputs(self, X):
        "Rows `X` (the model's input) as the trees see them."
        X = np.asarray(X, dtype=float)
        return X if self.model._preprocessor is None else np.ascontiguousarray(self.model._preprocess_X(X, reset=False), dtype=float)

    def left(self, p, i, x) -> bool:
        node = p.nodes[i]; v = x[node['feature_idx']]
        if np.isnan(v): return bool(node['missing_go_to_left'])
        if node['is_categorical']:
            if v < 0: return bool(node['missing_go_to_left'])
            if _in_bitset(p.raw_left_cat_bitsets[node['bitset_idx']], int(v)): return True
            if _in_bitset(self.known[self.fmap[node['feature_idx']]], int(v)): return False
            return bool(node['missing_go_to_left'])   # a category unseen in training goes as missing values go
        return bool(v <= node['num_threshold'])

    def tree_value(self, p, x, S, i=0) -> float:
        "The path-dependent expectation of tree `p` at row `x` (trees' coordinates) given the input features in `S`."
        node = p.nodes[i]
        if node['is_leaf']: return float(node['value'])
        l, r = int(node['left']), int(node['right'])
        if self.cols[node['feature_idx']] in S: return self.tree_value(p, x, S, l if self.left(p, i, x) else r)
        c = float(node['count'])
        return (p.nodes[l]['count'] * self.tree_value(p, x, S, l) + p.nodes[r]['count'] * self.tree_value(p, x, S, r)) / c

    def value(self, x, S) -> np.ndarray:
        "v(S) per output: the baseline plus every tree's expectation."
        out = self.base.copy()
        for t, p in self.trees: out[t % self.k] += self.tree_value(p, x, S)
        return out

    def shapley(self, X) -> tuple:
        "`(values rows x features x outputs, v(empty set) per output)` by the Shapley formula over every coalition."
        Xm, n = self.inputs(X), self.model.n_features_in_
        w = [factorial(s) * factorial(n - s - 1) / factorial(n) for s in range(n)]
        phi = np.zeros((len(Xm), n, self.k))
        for r, x in enumerate(Xm):
            v = {S: self.value(x, set(S)) for s in range(n + 1) for S in combinations(range(n), s)}
            for f in range(n):
                others = [g for g in range(n) if g != f]
                phi[r, f] = sum(w[s] * (v[tuple(sorted(S + (f,)))] - v[S]) for s in range(n) for S in combinations(others, s))
        return phi, self.value(Xm[0], set())

    def check_routing(self, X):
        "Every tree's leaf value for every row, as routed here, is scikit-learn's own (so v(all features) is the model's output)."
        Xm = self.inputs(X)
        for _, p in self.trees:
            np.testing.assert_array_equal([self.tree_value(p, x, set(self.cols)) for x in Xm], p.predict(Xm, self.known, self.fmap, 1))

def toy_table(n, seed):
    "Four features: a number, a category with codes 0, 2, 5, 7, 9 (not 0..k-1, not first), a number with gaps, a category of 3."
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(size=n), rng.choice([0., 2., 5., 7., 9.], n), rng.uniform(-2, 2, n), rng.integers(0, 3, n).astype(float)])
    X[rng.random(n) < 0.08, 2] = np.nan; X[rng.random(n) < 0.05, 1] = np.nan   # missing values in training: a learnt direction
    signal = X[:, 0] + np.select([X[:, 1] == 2, X[:, 1] == 7, np.isnan(X[:, 1])], [1.5, -1.0, 0.7], 0.) + np.nan_to_num(X[:, 2]) ** 2 * 0.5 - (X[:, 3] == 1)
    return X, signal + rng.normal(scale=0.3, size=n)

def odd_rows(X):
    "Training rows, then the edge cases: unseen categories (4, 12, fractions, negative codes, 5 of three levels), missing values in each kind of feature."
    edge = np.array([[0.3, 4., 1.0, 0.], [-1.2, 12., np.nan, 2.], [0.1, np.nan, 0.5, np.nan], [np.nan, 2., -1.5, 1.],
                     [2.0, -3., 0.2, 5.], [0.3, 2.5, 1.0, 0.5], [0.0, 7., np.nan, np.nan], [np.nan, np.nan, np.nan, np.nan]])
    return np.vstack([X[:6], edge])

FEW = dict(max_iter=6, max_leaf_nodes=6, min_samples_leaf=5, learning_rate=0.3, random_state=0)

@pytest.mark.parametrize('task', ['regression', 'binary', 'multiclass'])
def test_native_category_tree_shap_is_the_brute_force_shapley_value(task):
    X, signal = toy_table(500, 3)
    if task == 'regression': model = HistGradientBoostingRegressor(categorical_features=[1, 3], **FEW).fit(X, signal)
    else:
        y = signal > np.median(signal) if task == 'binary' else np.digitize(signal, np.quantile(signal, [1/3, 2/3]))
        model = HistGradientBoostingClassifier(categorical_features=[1, 3], **FEW).fit(X, y)
    assert model.is_categorical_.tolist() == [False, True, False, True] and model.n_trees_per_iteration_ == (3 if task == 'multiclass' else 1)
    bf, rows = BruteTrees(model), odd_rows(X)
    bf.check_routing(rows)
    assert any(p.nodes['is_categorical'].any() for _, p in bf.trees)                     # the trees do split on the categories
    phi, base = bf.shapley(rows)
    v, b = tree_shap(TreeArrays(model), rows, X.shape[1])
    assert v.shape == phi.shape and np.abs(phi[:, [1, 3]]).max() > 0.01                  # the categories carry weight
    np.testing.assert_allclose(b, base, rtol=0, atol=1e-9)
    np.testing.assert_allclose(v, phi, rtol=0, atol=1e-9)
    raw = model._raw_predict(rows)                                                        # efficiency: base + values = the model's raw output
    np.testing.assert_allclose(base + phi.sum(1), raw if raw.shape[1] > 1 else raw, rtol=0, atol=1e-9)

def test_pipeline_explanation_of_native_categories_is_the_brute_force_shapley_value():
    "Through mlnb's own Pipeline (markers, category codes first, scaling, hgb): the same, with a category never seen and missing values."
    rng = np.random.default_rng(5); n = 600
    df = pd.DataFrame({'hours': rng.uniform(10, 60, n), 'job': rng.choice(['clerk', 'nurse', 'pilot', 'cook'], n), 'age': rng.integers(18, 80, n).astype(float)})
    logit = (df['hours'] - 35) / 10 + df['job'].map({'clerk': -1, 'nurse': 0.5, 'pilot': 2, 'cook': -0.5}) + (df['age'] > 50)
    y = np.where(logit + rng.logistic(size=n) > 0.5, 'yes', 'no')
    df.loc[rng.random(n) < 0.05, 'job'] = '?'                                             # missing-value marker, learnt as missing
    pipe = make_pipeline(df, 'hgb', dict(FEW, max_iter=8)).fit(df, y)
    model = pipe.named_steps['model']
    assert model.is_categorical_.tolist() == [True, False, False]                         # mlnb puts the category codes first
    rows = pd.concat([df.head(5), pd.DataFrame({'hours': [40., 25., np.nan], 'job': ['astronaut', '?', 'pilot'], 'age': [30., np.nan, 66.]})],
                     ignore_index=True)
    Xt = pipe[:-1].transform(rows)
    assert np.isnan(Xt[5:7, 0]).all()                                                     # unseen and missing: both NaN codes
    bf = BruteTrees(model); bf.check_routing(Xt)
    phi, base = bf.shapley(Xt)
    e = explain_pipeline(pipe, rows, df.head(50), 'yes')                                  # classes_ ['no', 'yes']: the log-odds of 'yes'
    np.testing.assert_allclose(e.values, phi[..., 0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(e.base_values, np.full(len(rows), base[0]), rtol=0, atol=1e-9)
    np.testing.assert_allclose(e.base_values + e.values.sum(1), explained_output(pipe, rows, 'yes'), rtol=0, atol=1e-9)
    np.testing.assert_allclose(explain_pipeline(pipe, rows, df.head(50), 'no').values, -phi[..., 0], rtol=0, atol=1e-9)
