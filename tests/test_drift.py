"Drift statistics on the real Adult data: random halves do not drift; a batch edited in two columns drifts in exactly those."
import numpy as np, pandas as pd, pytest
from mlnb.core import MlnbError
from mlnb.drift import column_kind, dataset_drift, drift_table, performance_change, prediction_drift, psi
from mlnb.ingest import demo_data

TARGET = 'income'

def shift_batch(df: pd.DataFrame, years: int = 10, share: float = 0.6, seed: int = 0) -> pd.DataFrame:
    "A copy of `df` with `age` + `years` and `share` of the 'Private' workclass turned into 'Self-emp-inc'."
    out = df.assign(age=df.age + years)
    private = out.index[out.workclass == 'Private']
    out.loc[np.random.default_rng(seed).choice(private, int(share * len(private)), replace=False), 'workclass'] = 'Self-emp-inc'
    return out

@pytest.fixture(scope='module')
def halves():
    "Two random halves (3,000 rows each) of a 6,000-row sample of the Adult data."
    d = demo_data(6000, seed=0)
    ref = d.sample(frac=0.5, random_state=1)
    return ref, d.drop(index=ref.index)

@pytest.fixture(scope='module')
def shifted(halves): return shift_batch(halves[1])

def drifted(t): return set(t.column[t.drift])

def test_random_halves_do_not_drift(halves):
    ref, cur = halves
    t = drift_table(ref, cur, target=TARGET)
    assert len(t) == 14 and TARGET not in set(t.column)
    assert set(t.method) == {'wasserstein', 'jensenshannon'} and t.p_value.isna().all()
    assert drifted(t) == set(), t[['column', 'method', 'statistic']]
    assert (t.psi < 0.1).all()
    v = dataset_drift(t)
    assert v == dict(drift_detected=False, n_drifted=0, n_columns=14, share=0.0)

def test_shifted_batch_drifts_in_exactly_the_edited_columns(halves, shifted):
    t = drift_table(halves[0], shifted, target=TARGET)
    assert drifted(t) == {'age', 'workclass'}
    assert set(t.column[:2]) == {'age', 'workclass'}                     # drifted columns first
    m = dict(zip(t.column, t.method))
    assert (m['age'], m['workclass']) == ('wasserstein', 'jensenshannon')
    assert dataset_drift(t)['drift_detected'] is False                   # 2 of 14 columns

def test_small_reference_uses_tests(halves, shifted):
    ref = halves[0].iloc[:800]
    t = drift_table(ref, shifted, target=TARGET)
    assert set(t.method) == {'ks', 'chi2'} and t.p_value.notna().all()
    assert drifted(t) == {'age', 'workclass'}
    m = dict(zip(t.column, t.method))
    assert (m['age'], m['workclass']) == ('ks', 'chi2')
    assert t.set_index('column').loc[['age', 'workclass'], 'p_value'].max() < 1e-6
    assert drifted(drift_table(ref, halves[1], target=TARGET)) == set()  # the unedited half: the two-sample chi² does not over-flag

def test_psi(halves, shifted):
    ref, cur = halves
    assert psi(ref.age, ref.age, 'num') == 0 and psi(ref.workclass, ref.workclass, 'cat') == 0
    assert psi(ref.age, cur.age, 'num') < 0.05
    assert psi(ref.age, shifted.age, 'num') > 0.2 and psi(ref.workclass, shifted.workclass, 'cat') > 0.2
    assert psi(ref['capital-gain'], cur['capital-gain'], 'num') < 0.05  # mostly 0: repeated quantiles collapse to unique edges

def test_thresholds_are_honoured(halves, shifted):
    ref = halves[0]
    assert drifted(drift_table(ref, shifted, target=TARGET, wasserstein_threshold=100, js_threshold=1.01)) == set()
    assert drifted(drift_table(ref, shifted, target=TARGET, js_threshold=1.01)) == {'age'}
    assert drifted(drift_table(ref.iloc[:800], shifted, target=TARGET, ks_p=1e-300, chi2_p=1e-300)) == set()
    t = drift_table(ref, shifted, target=TARGET, small_reference=len(ref))
    assert set(t.method) == {'ks', 'chi2'} and set(t.threshold) == {0.05}
    assert column_kind(ref['educational-num']) == 'num' and column_kind(ref['educational-num'], num_unique_threshold=20) == 'cat'
    t = drift_table(ref, shifted, target=TARGET, num_unique_threshold=20)
    assert dict(zip(t.column, t.kind))['educational-num'] == 'cat'
    with pytest.raises(MlnbError, match='wasserstein_treshold'): drift_table(ref, shifted, wasserstein_treshold=0.2)

def test_missing_column_and_values_are_named(halves):
    ref, cur = halves
    features = [c for c in ref.columns if c != TARGET]
    with pytest.raises(MlnbError, match=r"\['age'\] are not in the current data"): drift_table(ref, cur.drop(columns='age'), columns=features)
    with pytest.raises(MlnbError, match=r"\['nope'\] are not in the reference data"): drift_table(ref, cur, columns=['age', 'nope'])
    assert 'age' not in set(drift_table(ref, cur.drop(columns='age'), target=TARGET).column)  # default: the columns both have
    with pytest.raises(MlnbError, match="column 'hours-per-week' has no values in the current data"):
        drift_table(ref, cur.assign(**{'hours-per-week': np.nan}), target=TARGET)
    holes = cur.assign(age=cur.age.mask(cur.index % 4 == 0))
    r = drift_table(ref, holes, target=TARGET).set_index('column').loc['age']
    assert abs(r.missing_cur - 0.25) < 0.03 and r.missing_ref == 0 and not r.drift  # NaN dropped before the test

def test_dataset_drift_share_rule(halves, shifted):
    t = drift_table(halves[0], shifted, columns=['age', 'workclass', 'fnlwgt', 'race'])
    assert dataset_drift(t) == dict(drift_detected=True, n_drifted=2, n_columns=4, share=0.5)   # exactly 50%: drifted
    assert dataset_drift(t, drift_share=0.51)['drift_detected'] is False
    t = drift_table(halves[0], shifted, columns=['age', 'fnlwgt', 'race'])
    assert dataset_drift(t)['drift_detected'] is False                   # 1 of 3
    with pytest.raises(MlnbError, match='no rows'): dataset_drift(t.iloc[:0])

def test_prediction_drift(halves, shifted):
    from sklearn.linear_model import LogisticRegression
    ref, cur = halves
    num = ['age', 'educational-num', 'hours-per-week']
    m = LogisticRegression(max_iter=500).fit(ref[num], ref[TARGET])
    proba = lambda df: m.predict_proba(df[num])[:, 1]
    assert prediction_drift(proba(ref), proba(cur))['drift'] is False
    r = prediction_drift(proba(ref), proba(shifted))
    assert (r['column'], r['method'], r['drift']) == ('prediction', 'wasserstein', True)
    assert prediction_drift(proba(ref)[:800], proba(shifted))['method'] == 'ks'
    with pytest.raises(MlnbError, match='1-D'): prediction_drift(m.predict_proba(ref[num]), proba(cur))

def test_performance_change_flags_drops():
    test_m = dict(accuracy=0.85, roc_auc=0.90, pr_auc=0.76, log_loss=0.32, n=1800, positive_rate=0.24)
    new_m = dict(accuracy=0.83, roc_auc=0.84, pr_auc=0.73, log_loss=0.39, n=400, positive_rate=0.30)
    t = performance_change(test_m, new_m, max_drop=0.05)
    assert list(t.columns) == ['metric', 'reference', 'current', 'change', 'worse_by', 'max_drop', 'flag']
    assert set(t.metric) == {'accuracy', 'roc_auc', 'pr_auc', 'log_loss'}   # counts are not scores
    assert set(t.metric[t.flag]) == {'roc_auc', 'log_loss'} and set(t.metric[:2]) == {'roc_auc', 'log_loss'}
    r = t.set_index('metric')
    assert r.loc['log_loss', 'change'] == pytest.approx(0.07) and r.loc['log_loss', 'worse_by'] == pytest.approx(0.07)
    assert r.loc['roc_auc', 'change'] == pytest.approx(-0.06) and r.loc['roc_auc', 'worse_by'] == pytest.approx(0.06)
    better = performance_change(test_m, dict(new_m, roc_auc=0.95, log_loss=0.20))
    assert not better.flag.any()                                       # improvements are never flagged
    t = performance_change(test_m, new_m, max_drop={'roc_auc': 0.1, 'pr_auc': 0.01})
    assert set(t.metric[t.flag]) == {'pr_auc'} and t.set_index('metric').max_drop.isna().sum() == 2
    with pytest.raises(MlnbError, match=r"\['f1'\]"): performance_change(test_m, new_m, max_drop={'f1': 0.05})

# --- text columns: judged by the model's own words ----------------------------------------------------------------------

@pytest.fixture(scope='module')
def reviews_pipe():
    "A multiclass text model (Rating from the review text, age and department) fitted on 400 reviews, and the other reviews."
    from mlnb.features import infer_roles, make_preprocessor
    from mlnb.train import compose
    d = pd.read_csv('data/womens_clothing_reviews.csv.gz', nrows=1500).dropna(subset=['Review Text']).reset_index(drop=True)
    X = d[['Review Text', 'Age', 'Department Name']]
    prep = make_preprocessor(infer_roles(X.iloc[:400]), 'linear', 'multiclass')
    return compose(prep, 'linear', {}, 0, [], 'multiclass').fit(X.iloc[:400], d['Rating'].iloc[:400].astype(str)), X.iloc[:400], X.iloc[400:]

def scramble(texts: pd.Series, seed: int = 0) -> pd.Series:
    "Each word's letters shuffled: the same number of words, hardly one the model knows."
    import re
    rng = np.random.default_rng(seed)
    return texts.map(lambda t: re.sub(r'\w+', lambda m: ''.join(rng.permutation(list(m[0]))), t))

def test_text_column_by_length_and_vocabulary(reviews_pipe):
    from mlnb.drift import column_kinds, text_vocabularies
    pipe, ref, rest = reviews_pipe
    kinds, vocab = column_kinds(pipe, list(ref.columns)), text_vocabularies(pipe)
    assert kinds == {'Review Text': 'text', 'Department Name': 'cat'} and set(vocab) == {'Review Text'}
    row = lambda cur: drift_table(ref, cur, kinds=kinds, vocabularies=vocab).set_index('column').loc['Review Text']
    same = row(rest.sample(400, random_state=0))
    assert (same.kind, same.method, same.drift) == ('text', 'length+oov', False)
    assert 0 < same.oov_ref < same.oov_cur < same.oov_ref + 0.1                  # new reviews: a few more unknown words, not many
    shuffled = row(rest.sample(400, random_state=0).assign(**{'Review Text': lambda d: scramble(d['Review Text'])}))
    assert shuffled.drift and shuffled.oov_drift and shuffled.oov_cur > 0.5 and not shuffled.length_drift
    longer = row(rest.sample(400, random_state=0).assign(**{'Review Text': lambda d: d['Review Text'] + ' ' + d['Review Text']}))
    assert longer.drift and longer.length_drift and not longer.oov_drift and longer.length_cur > 1.8 * longer.length_ref
    assert drift_table(ref, rest.sample(400, random_state=0)).set_index('column').loc['Review Text', 'kind'] == 'cat'   # without the model's kinds

# --- chunks judged by bands calibrated on the reference, drift weighted by importance (issue 21) --------------------------

POS = '>50K'

@pytest.fixture(scope='module')
def watched():
    "A logistic model of 4,000 Adult rows, its SHAP shares per input column, 5,000 test rows as the reference (with `_proba`, as deploy keeps 5,000), the other 39,842 rows and the calibration for chunks of 1,000."
    from mlnb.drift import calibrate_drift
    from mlnb.evaluate import positive_proba
    from mlnb.explain import explain_pipeline, global_importance, group_explanation, model_origins
    from mlnb.prepare import normalise_missing
    from mlnb.train import make_pipeline
    d = normalise_missing(demo_data(48842, seed=3), ['?'])        # all of Adult, shuffled
    train, ref, pool = d.iloc[:4000], d.iloc[4000:9000], d.iloc[9000:]
    X = train.drop(columns=TARGET)
    pipe = make_pipeline(X, 'logistic', seed=0).fit(X, train[TARGET])
    e = group_explanation(explain_pipeline(pipe, X.iloc[:200], X.iloc[200:300], POS), model_origins(pipe, X.columns), X.iloc[:200])
    imp = global_importance(e)
    with_proba = lambda df: df.assign(_proba=positive_proba(pipe, df.drop(columns=TARGET), POS))
    importance = dict(zip(imp.feature, imp.share))
    return dict(importance=importance, ref=ref, pool=with_proba(pool), with_proba=with_proba,
                cal=calibrate_drift(with_proba(ref), 1000, columns=list(X.columns), importance=importance))

def test_age_shift_alerts_and_names_age(watched):
    "The issue's case: age + 15 years is one column of fourteen, so the 50% rule stays quiet; the weighted, calibrated check alerts on it and names it."
    from mlnb.chunks import chunk_batch
    from mlnb.drift import chunk_drift, drift_alerts, drift_summary
    batch = watched['pool'].sample(1000, random_state=0).assign(age=lambda d: d.age + 15)
    assert dataset_drift(drift_table(watched['ref'], batch, target=TARGET))['drift_detected'] is False
    frame = chunk_drift(watched['cal'], chunk_batch(batch))
    a = drift_alerts(frame).iloc[0]
    assert a.alert and 'weighted_drift' in a.alerts and a.drivers[0] == 'age', a
    assert a.weighted_drift > 1.3 * frame.upper[frame.metric == 'weighted_drift'].iloc[0]
    assert 'driven by age' in drift_summary(frame)
    assert list(frame.columns[:9]) == ['chunk', 'reference', 'n', 'column', 'metric', 'value', 'lower', 'upper', 'alert']
    assert frame.reference.sum() == len(watched['cal']['frame']) and set(frame.chunk[~frame.reference]) == {'rows 0–999'}

def test_fresh_samples_of_the_test_rows_do_not_alert(watched):
    "100 seeded samples of 1,000 test rows the reference does not hold: at most 5 alert (on the weighted drift, the reconstruction error or the prediction); 1.2 on average over ten references."
    from mlnb.drift import chunk_drift, drift_alerts
    pool, cal = watched['pool'], watched['cal']
    alerts = [drift_alerts(chunk_drift(cal, [('batch', pool.sample(1000, random_state=seed))])).alert.iloc[0] for seed in range(100)]
    assert sum(alerts) <= 5, sum(alerts)
    assert cal['frame'].groupby('metric').alert.mean().max() < 0.05     # the reference chunks stay in their own bands too

def test_weighted_drift_follows_importance(watched):
    "The same shift weighs by the column's importance: one standard deviation in `age` raises the weighted drift more than in the least important number, by their shares."
    from mlnb.drift import chunk_drift, drift_alerts
    imp, cal = watched['importance'], watched['cal']
    least = min(['age', 'educational-num', 'hours-per-week', 'fnlwgt'], key=lambda c: imp[c])
    assert imp['age'] > 2 * imp[least], imp
    base = watched['pool'].sample(1000, random_state=1)
    shift = lambda c: base.assign(**{c: base[c] + base[c].std()})       # one standard deviation up
    frames = {c: chunk_drift(cal, [(c or 'unshifted', shift(c) if c else base)]) for c in ('age', least, None)}
    w = {c: drift_alerts(f).weighted_drift.iloc[0] for c, f in frames.items()}
    rise = {c: w[c] - w[None] for c in ('age', least)}
    assert rise['age'] > 2 * rise[least] > 0, (w, imp['age'], imp[least])
    for c in ('age', least):                                            # the rise is the column's share times its drift on the edge scale
        r = frames[c].set_index(['chunk', 'column']).loc[(c, c)]
        assert rise[c] == pytest.approx(imp[c] / sum(imp.values()) * (r.value / r.upper) - frames[None].set_index(['chunk', 'column']).score[('unshifted', c)], rel=1e-6)
    both = drift_alerts(chunk_drift(cal, [('both', base.assign(age=base.age + base.age.std(), **{least: base[least] + base[least].std()}))])).iloc[0]
    assert both.drifted[:2] == ['age', least] and both.drivers[0] == 'age'

def test_pvalue_thresholds_are_an_option(watched):
    from mlnb.drift import calibrate_drift, chunk_drift
    ref = watched['with_proba'](watched['ref'])
    cal = calibrate_drift(ref, 1000, target=TARGET, thresholds='pvalue', n_chunks=5, multivariate=False, columns=['age', 'workclass'])
    frame = chunk_drift(cal, [('aged', watched['pool'].sample(1000, random_state=0).assign(age=lambda d: d.age + 15))])
    rows = frame[~frame.reference].set_index('column')
    assert rows.loc['age', 'metric'] == 'ks' and rows.loc['workclass', 'metric'] == 'chi2' and rows.loc['age', 'lower'] == 0.05
    assert rows.loc['age', 'alert'] and rows.loc['age', 'value'] < 1e-10 and rows.loc['age', 'score'] > 1
    with pytest.raises(MlnbError, match="thresholds 'fixed' is not 'band'"): calibrate_drift(ref, 1000, thresholds='fixed')
    with pytest.raises(MlnbError, match=r"reference lacks the column\(s\) \['nope'\]"): calibrate_drift(ref, 1000, columns=['age', 'nope'])
    with pytest.raises(MlnbError, match='too few for chunks of 3,000 rows'): calibrate_drift(ref, 3000, target=TARGET)

def test_a_registered_version_carries_its_importance(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from mlnb.registry import Registry
    X = pd.DataFrame({'age': [20., 30, 40, 50], 'hours': [10., 40, 40, 60]})
    reg = Registry(tmp_path/'registry')
    v = reg.register('m', LogisticRegression().fit(X, [0, 0, 1, 1]), schema={}, reference=X, metrics={}, importance={'age': 0.75, 'hours': 0.25})
    assert reg.load(f'm@{v}').importance == {'age': 0.75, 'hours': 0.25}

def test_prediction_alone_names_no_column(watched):
    "The model's output moved, its inputs did not (as after a broken model file): the prediction alerts, and no column is blamed."
    from mlnb.drift import chunk_drift, drift_alerts, drift_summary
    batch = watched['pool'].sample(1000, random_state=2)
    frame = chunk_drift(watched['cal'], [('2024-05', batch.assign(_proba=np.sqrt(batch._proba)))])
    a = drift_alerts(frame).iloc[0]
    assert a.alerts == ['_proba'] and a.drivers == [] and a.drifted == []
    assert drift_summary(frame) == 'drift alert in 1 of 1 chunk(s): 2024-05 (_proba; no input column out of its band)'
