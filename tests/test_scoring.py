"The fast scoring path gives the Pipeline's own predictions (to 1e-9) on real records, for each example model's shape: text with a linear model, an hgb regressor, hgb with native categories, and the other text shapes."
import json, math
import numpy as np, pandas as pd, pytest
from sklearn.base import is_regressor
from mlnb.evaluate import multiclass_metrics
from mlnb.features import build_preprocessor
from mlnb.ingest import read_table
from mlnb.registry import Registry
from mlnb.scoring import TEXT_PROBES, FastScorer, make_scorer
from mlnb.train import compose, make_pipeline
from conftest import ROOT
from test_tasks_serve import call, server

ATOL = 1e-9

def columns(df: pd.DataFrame) -> dict:
    "`{feature: values}` as the server's record checks hand them to a scorer: missing values as None."
    return {c: [None if isinstance(v, float) and math.isnan(v) else v for v in df[c].tolist()] for c in df}

def output(pipe, X): return pipe.predict(X) if is_regressor(pipe) else pipe.predict_proba(X)

def assert_same(scorer, pipe, X: pd.DataFrame, singles: int = 200):
    "The scorer's output on `X` all at once and on its first `singles` records one at a time equals the Pipeline's to `ATOL`."
    want, cols = output(pipe, X), columns(X)
    assert np.abs(scorer.score(cols) - want).max() <= ATOL
    worst = max(np.abs(scorer.score({c: v[i:i+1] for c, v in cols.items()}) - want[i:i+1]).max() for i in range(min(singles, len(X))))
    assert worst <= ATOL, worst

def fit(table: pd.DataFrame, roles: dict, target, model: str, task: str, model_params=None, markers=(), **features):
    "The features stage's preprocessing for `roles` composed with `model` as train does, fitted on `table`."
    prep = build_preprocessor(roles, model, task, {c: table[c].nunique() for c in roles}, features)
    return compose(prep, model, model_params or {}, 42, list(markers), task).fit(table[list(roles)], target)

@pytest.fixture(scope='module')
def reviews():
    d = read_table(ROOT/'data'/'womens_clothing_reviews.csv.gz').dropna(subset=['Review Text']).sample(4000, random_state=0).reset_index(drop=True)
    return d.assign(sentiment=d['Rating'].map({1: 'negative', 2: 'negative', 3: 'neutral', 4: 'positive', 5: 'positive'}))

@pytest.fixture(scope='module')
def review_model(reviews):
    "params/reviews.yaml's model: TF-IDF word and word-pair counts of the title and the text, balanced logistic regression, three classes."
    train = reviews[:3000]
    return fit(train, {'Title': 'text', 'Review Text': 'text'}, train['sentiment'], 'linear', 'multiclass', {'class_weight': 'balanced', 'C': 4.0},
               text_ngrams=[1, 2])

def test_text_linear_model_is_fast_and_equals_the_pipeline_on_real_reviews(reviews, review_model):
    sc = make_scorer(review_model, reviews[:3000])
    assert isinstance(sc, FastScorer) and [sc.path(1), sc.path(1000)] == ['fast-linear', 'fast-linear'], sc.note
    assert sc.sparse and sc.texts == ['Title', 'Review Text']
    assert_same(sc, review_model, reviews[3000:][['Title', 'Review Text']], singles=1000)

def test_text_probes_and_missing_titles(reviews, review_model):
    sc, X = make_scorer(review_model, reviews[:3000]), reviews[3000:3000 + len(TEXT_PROBES)][['Title', 'Review Text']]
    odd = pd.DataFrame({'Title': TEXT_PROBES, 'Review Text': TEXT_PROBES[::-1]})
    assert_same(sc, review_model, odd)
    assert_same(sc, review_model, X.assign(Title=None))   # a review without a title, as many have

def test_other_text_shapes(reviews):
    "hgb on the text's SVD components (trees), ridge on word and character n-grams without stop words, text with numbers and categories."
    train, new = reviews[:2000], reviews[3000:3400]
    cases = [(fit(train, {'Review Text': 'text', 'Age': 'numeric'}, train['Rating'] >= 4, 'hgb', 'binary', {'max_iter': 40}, text_svd=30), 'fast-trees'),
             (fit(train, {'Review Text': 'text'}, train['Rating'].astype(float), 'linear', 'regression', text_char_ngrams=[2, 4], stop_words=True), 'fast-linear'),
             (fit(train, {'Review Text': 'text', 'Age': 'numeric', 'Department Name': 'categorical'}, train['Rating'] >= 4, 'linear', 'binary'), 'fast-linear'),
             (fit(train, {'Review Text': 'text', 'Department Name': 'categorical'}, train['sentiment'], 'naive_bayes', 'multiclass'), 'fast-model')]
    for pipe, path in cases:
        sc = make_scorer(pipe, train)
        assert isinstance(sc, FastScorer) and sc.path(1) == path, sc.note
        assert_same(sc, pipe, new[list(pipe.feature_names_in_)], singles=100)

def test_hgb_regressor_on_real_housing_records():
    "params/housing.yaml's model: eight numbers, imputed and scaled, HistGradientBoostingRegressor."
    d = read_table(ROOT/'data'/'california_housing.csv.gz').sample(6000, random_state=0).reset_index(drop=True)
    roles = {c: 'numeric' for c in d.columns if c != 'MedHouseVal'}
    pipe = fit(d[:5000], roles, d['MedHouseVal'][:5000], 'hgb', 'regression', {'max_iter': 150})
    sc = make_scorer(pipe, d[:5000])
    assert isinstance(sc, FastScorer) and [sc.path(1), sc.path(100)] == ['fast-trees', 'fast-model'], sc.note
    assert_same(sc, pipe, d[5000:][list(roles)], singles=500)

def test_hgb_with_native_categories_on_real_adult_records():
    "params/default.yaml's model: Adult with `?` as missing, native categories, HistGradientBoostingClassifier."
    d = read_table(ROOT/'data'/'adult.csv.gz').sample(6000, random_state=0).reset_index(drop=True)
    X = d.drop(columns='income')
    pipe = make_pipeline(X[:5000], 'hgb', {'max_iter': 100}, 0).fit(X[:5000], d['income'][:5000])
    sc = make_scorer(pipe, d[:5000])
    assert isinstance(sc, FastScorer) and sc.path(1) == 'fast-trees', sc.note
    assert_same(sc, pipe, X[5000:], singles=500)

def test_the_server_answers_text_on_the_fast_path_with_the_pipelines_probabilities(reviews, review_model, tmp_path):
    reg, pipe = Registry(tmp_path/'registry'), review_model
    train, new = reviews[:3000], reviews[3000:3200][['Title', 'Review Text']]
    classes = [str(c) for c in pipe.classes_]
    v = reg.register('reviews', pipe, schema={'Title': {'dtype': 'str', 'nullable': True}, 'Review Text': {'dtype': 'str'}},
                     reference=train[['Title', 'Review Text', 'sentiment']].assign(_prediction=pipe.predict(train[['Title', 'Review Text']])),
                     metrics=multiclass_metrics(reviews['sentiment'][3000:3200], pipe.predict_proba(new), classes),
                     run_id='test-scoring', task=dict(task='multiclass', target='sentiment', classes=classes, positive=None))
    reg.promote(f'reviews@{v}')
    want = pipe.predict_proba(new)
    with server(reg, 'reviews', tmp_path/'p.jsonl') as port:
        st, m, _ = call(port, 'GET', '/model')
        assert st == 200 and m['scorer'] == 'FastScorer' and 'coefficients' in m['scorer_note'], m
        recs = json.loads(new.to_json(orient='records'))
        for i, r in enumerate(recs):
            st, one, h = call(port, 'POST', '/predict', r)
            assert st == 200 and h['x-mlnb-scorer'] == 'fast-linear', (st, one)
            assert max(abs(one['probabilities'][0][c] - p) for c, p in zip(classes, want[i])) <= ATOL
