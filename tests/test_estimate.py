"""Label-free performance estimates (mlnb.estimate, issue 21.3) on models whose performance is known without labels:
probabilities that are right by construction (p ~ Beta, y ~ Bernoulli(p): the expected accuracy of a chunk is the
mean of max(p, 1 - p); Dirichlet probabilities for multiclass: the mean of the largest), and a regressor whose error
is Gaussian noise of known sigma (MAE sigma * sqrt(2 / pi), RMSE sigma). Each estimate must land within its own
sampling band of that value; the bands alert on a shifted chunk and not on a fresh one; bad input is a clear error.
The comparison with NannyML's own numbers is bench/estimate.py (nannyml is not installed for the tests)."""
import numpy as np, pandas as pd, pytest
from mlnb.core import MlnbError
from mlnb.estimate import estimate_performance, model_outputs, plot_performance, COLUMNS

BINARY = dict(task='binary', target='y', classes=['no', 'yes'], positive='yes')

def binary_frame(n, a, rng, labels=True):
    "A calibrated binary model's outputs: p ~ Beta(a, a), the label drawn with chance p, predicted yes from 0.5."
    p = rng.beta(a, a, n); y = rng.random(n) < p
    df = pd.DataFrame(dict(y_pred=np.where(p >= 0.5, 'yes', 'no'), y_pred_proba=p))
    return df.assign(y_true=np.where(y, 'yes', 'no')) if labels else df

def analysis(table, metric):
    return table[(table.period == 'analysis') & (table.metric == metric)].set_index('chunk')

def test_cbpe_binary_lands_on_the_known_accuracy_and_alerts_on_a_less_certain_model():
    rng = np.random.default_rng(7)
    ref = binary_frame(20_000, 2, rng)
    chunks = [('same 1', binary_frame(2000, 2, rng)), ('same 2', binary_frame(2000, 2, rng)),
              ('sure', binary_frame(2000, 0.7, rng)), ('unsure', binary_frame(2000, 6, rng))]
    t = estimate_performance(ref, chunks, BINARY)
    assert list(t.columns) == COLUMNS and set(t.metric) == {'roc_auc', 'accuracy', 'f1', 'precision', 'recall'}
    assert (t.period == 'reference').sum() == 30 * 5 and (t[t.period == 'reference'].rows == 2000).all()   # mlnb.chunks' 30 reference chunks of 2,000
    acc = analysis(t, 'accuracy')
    for name, f in chunks:
        known = np.maximum(f.y_pred_proba, 1 - f.y_pred_proba).mean()
        row = acc.loc[name]
        assert row.sampling_lower <= known <= row.sampling_upper, (name, row.estimated, known)
        assert abs(row.estimated - known) < 0.01                               # calibrated already: CBPE's sum is the known value
        assert row.sampling_lower <= row.realized <= row.sampling_upper        # and the labels agree
    assert acc.alert.tolist() == [False, False, True, True]                  # more and less certain: outside the reference band
    assert acc.loc['sure', 'estimated'] > acc.loc['sure', 'alert_upper'] and acc.loc['unsure', 'estimated'] < acc.loc['unsure', 'alert_lower']
    auc = analysis(t, 'roc_auc')
    assert (abs(auc.estimated - auc.realized) <= 3 * auc.sampling_error).all(), auc[['estimated', 'realized', 'sampling_error']]
    assert ((t.sampling_upper - t.sampling_lower - 6 * t.sampling_error).abs() < 1e-12).all()   # no metric clipped at 0 or 1 here

def test_estimates_do_not_read_the_labels():
    rng = np.random.default_rng(3)
    ref, chunk = binary_frame(5000, 2, rng), binary_frame(1000, 3, rng)
    with_labels = estimate_performance(ref, [('c', chunk)], BINARY)
    without = estimate_performance(ref, [('c', chunk.drop(columns='y_true'))], BINARY)
    pd.testing.assert_series_equal(with_labels.estimated, without.estimated)
    assert analysis(without, 'accuracy').realized.isna().all() and analysis(with_labels, 'accuracy').realized.notna().all()

def test_cbpe_multiclass_on_known_probabilities():
    rng = np.random.default_rng(11)
    def frame(n, alpha):
        P = rng.dirichlet(alpha, n); y = (rng.random(n)[:, None] > P.cumsum(1)).sum(1)
        return pd.DataFrame({'y_pred': P.argmax(1), **{f'y_pred_proba_{k}': P[:, k] for k in range(3)}, 'y_true': y})
    task = dict(task='multiclass', target='y', classes=[0, 1, 2])          # integer classes, as a label-encoded target has them
    chunks = [('same', frame(3000, [1, 1, 1])), ('sharper', frame(3000, [0.3, 0.3, 0.3]))]
    t = estimate_performance(frame(15_000, [1, 1, 1]), chunks, task)
    acc, f1 = analysis(t, 'accuracy'), analysis(t, 'f1')
    for name, f in chunks:
        known = f[[f'y_pred_proba_{k}' for k in range(3)]].max(axis=1).mean()
        assert acc.loc[name, 'sampling_lower'] <= known <= acc.loc[name, 'sampling_upper'], (name, acc.loc[name, 'estimated'], known)
        assert abs(f1.loc[name, 'estimated'] - f1.loc[name, 'realized']) <= 3 * f1.loc[name, 'sampling_error']
    assert acc.alert.tolist() == [False, True]

def regression_frame(n, sigma, rng, labels=True):
    "A regressor right on average with Gaussian errors: sigma 0.5 for x < 0, `sigma` for x >= 0; chunks differ in where x falls."
    x = rng.uniform(-1, 1, n); cat = np.where(x > 0.5, 'hi', 'lo')
    df = pd.DataFrame(dict(x=x, kind=cat, y_pred=2 * x))
    return df.assign(y_true=2 * x + rng.normal(0, np.where(x >= 0, sigma, 0.5))) if labels else df

def test_dle_on_gaussian_noise_of_known_sigma():
    rng = np.random.default_rng(5)
    ref = regression_frame(8000, 2.0, rng)
    calm = regression_frame(2000, 2.0, rng, labels=False).query('x < 0')       # only the sigma 0.5 half
    loud = regression_frame(2000, 2.0, rng, labels=False).query('x >= 0')      # only the sigma 2 half
    t = estimate_performance(ref, [('calm', calm), ('loud', loud)], dict(task='regression', target='y'))
    mae, rmse = analysis(t, 'mae'), analysis(t, 'rmse')
    for name, sigma in (('calm', 0.5), ('loud', 2.0)):
        assert mae.loc[name, 'sampling_lower'] <= sigma * np.sqrt(2 / np.pi) <= mae.loc[name, 'sampling_upper'], (name, mae.loc[name, 'estimated'])
        assert rmse.loc[name, 'sampling_lower'] <= sigma <= rmse.loc[name, 'sampling_upper'], (name, rmse.loc[name, 'estimated'])
    assert mae.alert.tolist() == [True, True]                                # far below and far above the mixed reference
    assert mae.realized.isna().all()

def test_bad_input_is_a_clear_error():
    rng = np.random.default_rng(0)
    ref, chunk = binary_frame(500, 2, rng), binary_frame(100, 2, rng)
    with pytest.raises(MlnbError, match=r"week 3 lacks the column\(s\) \['y_pred_proba'\]"):
        estimate_performance(ref, [('week 3', chunk.drop(columns='y_pred_proba'))], BINARY)
    with pytest.raises(MlnbError, match="task 'ranking' is not one of binary, multiclass, regression"):
        estimate_performance(ref, [('c', chunk)], dict(task='ranking'))
    with pytest.raises(MlnbError, match=r"the reference lacks the column\(s\) \['y_true'\]"):
        estimate_performance(ref.drop(columns='y_true'), [('c', chunk)], BINARY)
    with pytest.raises(MlnbError, match=r"metric\(s\) \['mae'\] are not estimated for a binary task"):
        estimate_performance(ref, [('c', chunk)], BINARY, metrics=['mae'])
    with pytest.raises(MlnbError, match="the reference has missing values in \\['y_true'\\]"):
        estimate_performance(ref.assign(y_true=ref.y_true.where(ref.index > 0)), [('c', chunk)], BINARY)
    with pytest.raises(MlnbError, match=r"the reference's labels \(y_true\) are all or none of \['yes'\]"):
        estimate_performance(ref.assign(y_true='no'), [('c', chunk)], BINARY)
    reg = regression_frame(300, 1.0, rng)
    with pytest.raises(MlnbError, match=r"batch 2 lacks the model input\(s\) \['kind'\]"):
        estimate_performance(reg, [('batch 2', reg[:100].drop(columns=['kind', 'y_true']))], dict(task='regression', target='y'))
    with pytest.raises(MlnbError, match="too few for chunks of 400 rows"):                  # the reference must hold two chunks
        estimate_performance(ref, [('big', binary_frame(400, 2, rng))], BINARY)

def test_from_a_fitted_pipeline_to_the_plot():
    import matplotlib; matplotlib.use('agg')
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    rng = np.random.default_rng(2)
    X = pd.DataFrame(dict(a=rng.normal(size=4000), b=rng.normal(size=4000)))
    y = np.where(X.a + rng.logistic(size=4000) > 0, 'yes', 'no')
    pipe = make_pipeline(LogisticRegression()).fit(X[:2000], y[:2000])
    ref = model_outputs(pipe, X[2000:3000].assign(y=y[2000:3000]), BINARY)
    shifted = X[3000:].assign(a=X.a[3000:] * 0.3)                            # the signal weakens: less certain, less accurate
    t = estimate_performance(ref, [('batch 1', model_outputs(pipe, shifted[:500], BINARY)), ('batch 2', model_outputs(pipe, shifted[500:], BINARY))], BINARY)
    assert analysis(t, 'accuracy').alert.all() and (t.period == 'reference').sum() == 30 * 5
    fig = plot_performance(t, 'roc_auc')
    assert fig.axes[0].get_ylabel() == 'roc_auc' and len(fig.axes[0].get_xticklabels()) == len(t[t.metric == 'roc_auc'])
