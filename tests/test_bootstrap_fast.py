"""Evaluate's bootstrap counts each resample's draws per distinct row and measures it with those counts as weights, where it
gathered every array for every resample and handed them to `scipy.stats.bootstrap`: the same intervals (to 1e-9), the
same paired differences, the same slices, from the same random draws. The reference below is the implementation this
replaced, copied as it was (issue 20, item 4), run on the default data's held-out predictions and on synthetic sets
with ties; and a million test rows still complete (their time is `bench/bootstrap.py`'s to measure, not a test's).
From `DRAWN_ROWS` (100,000) rows, when the distinct rows are few, each resample's counts are drawn directly
(`multinomial_counts`, one stream per resample): the tests below hold their distribution to the ordinary bootstrap's,
the intervals at 200,000 rows to those of scipy's draws within Monte-Carlo error, and the counts to the same on any
number of threads."""
import warnings
import numpy as np, pandas as pd, pytest
from scipy import stats
import mlnb.evaluate as ev
from mlnb.evaluate import (CI_METRICS, FAST_METRICS, GATE_METRIC, distinct_rows, flat_arrays, metric_intervals, model_output, multinomial_counts,
                           paired_difference, resample_counts, slice_labels, slice_table)
from mlnb.ingest import read_table
from mlnb.prepare import normalise_missing, split
from mlnb.registry import LOWER_IS_BETTER
from mlnb.train import make_pipeline
from conftest import ROOT

TOL = 1e-9  # absolute for values up to 1 (every metric but MAPE, RMSE, MAE), relative beyond

# ---- the reference: evaluate's bootstrap as it was before (flat_arrays is unchanged and imported) ----
def _counts(codes, k, weights=None):
    B = codes.shape[0]
    return np.bincount((codes + k * np.arange(B)[:, None]).ravel(), None if weights is None else weights.ravel(), B * k).reshape(B, k)

def _div(a, b): return np.where(b != 0, a / np.where(b != 0, b, 1), np.nan)

def _binary(names, y, p, r, threshold):
    yp = p >= threshold; P = y.sum(-1); N = y.shape[-1] - P; tp = (yp & (y == 1)).sum(-1); pp = yp.sum(-1); pc = np.clip(p, 1e-15, 1 - 1e-15)
    if {'roc_auc', 'pr_auc'} & set(names):
        k = int(r.max()) + 1; pos = _counts(r, k, y.astype(float)); neg = _counts(r, k) - pos
    prec = lambda: np.nan_to_num(_div(np.cumsum(pos[:, ::-1], 1), np.cumsum(pos[:, ::-1] + neg[:, ::-1], 1)))
    f = dict(roc_auc=lambda: _div((pos * (np.cumsum(neg, 1) - 0.5 * neg)).sum(1), P * N), pr_auc=lambda: _div((pos[:, ::-1] * prec()).sum(1), P),
             accuracy=lambda: (yp == (y == 1)).mean(-1), precision=lambda: np.where(pp > 0, _div(tp, pp), 0.), recall=lambda: _div(tp, P),
             f1=lambda: np.where(pp + P > 0, _div(2 * tp, pp + P), 0.), log_loss=lambda: -(y * np.log(pc) + (1 - y) * np.log(1 - pc)).mean(-1),
             brier=lambda: ((p - y) ** 2).mean(-1))
    return [f[m]() for m in names]

def _multiclass(names, y, pred, p_true, k):
    tp, true, pr = _counts(y, k, (pred == y).astype(float)), _counts(y, k), _counts(pred, k)
    f1, seen = np.nan_to_num(_div(2 * tp, true + pr)), (true + pr) > 0
    f = dict(accuracy=lambda: (pred == y).mean(-1), balanced_accuracy=lambda: np.nanmean(np.where(true > 0, _div(tp, true), np.nan), 1),
             f1_macro=lambda: (f1 * seen).sum(1) / seen.sum(1), f1_weighted=lambda: _div((f1 * true).sum(1), true.sum(1)),
             log_loss=lambda: -np.log(np.clip(p_true, 1e-15, 1)).mean(-1))
    return [f[m]() for m in names]

def _regression(names, y, pred):
    e = pred - y; sst = ((y - y.mean(-1, keepdims=True)) ** 2).sum(-1)
    f = dict(r2=lambda: 1 - _div((e ** 2).sum(-1), sst), rmse=lambda: np.sqrt((e ** 2).mean(-1)), mae=lambda: np.abs(e).mean(-1),
             median_ae=lambda: np.median(np.abs(e), -1), mape=lambda: (np.abs(e) / np.maximum(np.abs(y), np.finfo(float).eps)).mean(-1))
    return [f[m]() for m in names]

def ref_vector_metrics(info, names, *arrays, threshold=0.5):
    task = info['task']; shape = arrays[0].shape[:-1]; a = [np.asarray(x).reshape(-1, x.shape[-1]) for x in arrays]
    with np.errstate(divide='ignore', invalid='ignore'), warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        vals = (_binary(names, *a, threshold) if task == 'binary' else _multiclass(names, *a, len(info['classes'])) if task == 'multiclass'
                else _regression(names, *a))
    return np.stack([np.asarray(v, dtype=float) for v in vals]).reshape(len(names), *shape)

def _interval(dist, ci, confidence):
    lo, hi = np.array(ci.low, dtype=float, ndmin=1), np.array(ci.high, dtype=float, ndmin=1)
    if (bad := np.isnan(lo) | np.isnan(hi)).any():
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', RuntimeWarning)
            lo[bad], hi[bad] = np.nanquantile(dist[bad], [(1 - confidence) / 2, (1 + confidence) / 2], axis=-1)
    return lo, hi

def ref_bootstrap(arrays, statistic, n_resamples=1000, seed=0, confidence=0.95, batch=200):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', stats.DegenerateDataWarning)
        res = stats.bootstrap(arrays, statistic, paired=True, vectorized=True, n_resamples=n_resamples, batch=batch, method='percentile',
                              confidence_level=confidence, rng=np.random.default_rng(seed))
    dist = np.atleast_2d(res.bootstrap_distribution)
    return *_interval(dist, res.confidence_interval, confidence), np.isnan(dist).sum(-1)

def ref_metric_intervals(y_true, out, info, names=None, threshold=0.5, n_resamples=1000, seed=0, confidence=0.95):
    names = list(names or CI_METRICS[info['task']]); arrays = flat_arrays(y_true, out, info)
    stat = lambda *a, axis=-1: ref_vector_metrics(info, names, *a, threshold=threshold)
    value = stat(*arrays)
    if len(arrays[0]) < 2 or np.isnan(value).all(): lo, hi, undef = np.full(len(names), np.nan), np.full(len(names), np.nan), np.full(len(names), n_resamples)
    else: lo, hi, undef = ref_bootstrap(arrays, stat, n_resamples, seed, confidence)
    return pd.DataFrame({'value': value, 'low': lo, 'high': hi, 'undefined': np.asarray(undef, dtype=int)}, index=pd.Index(names, name='metric'))

def ref_paired_difference(y_true, out_a, out_b, info, metric, threshold_a=0.5, threshold_b=0.5, n_resamples=1000, seed=0, confidence=0.95):
    fa, fb = flat_arrays(y_true, out_a, info), flat_arrays(y_true, out_b, info); k, sign = len(fa), -1 if metric in LOWER_IS_BETTER else 1
    both = lambda *a: (ref_vector_metrics(info, [metric], *a[:k], threshold=threshold_a)[0], ref_vector_metrics(info, [metric], a[0], *a[k:], threshold=threshold_b)[0])
    stat = lambda *a, axis=-1: sign * np.subtract(*both(*a))[None]
    (va, vb), arrays = both(*fa, *fb[1:]), (*fa, *fb[1:])
    lo, hi, undef = ref_bootstrap(arrays, stat, n_resamples, seed, confidence) if len(fa[0]) > 1 else ([np.nan], [np.nan], [n_resamples])
    return dict(metric=metric, a=float(va), b=float(vb), difference=float(sign * (va - vb)), low=float(lo[0]), high=float(hi[0]),
                undefined=int(undef[0]), n=len(fa[0]), n_resamples=n_resamples, higher_is_better=sign == 1)

def ref_slice_values(y_true, out, info, labels, metric, threshold=0.5, n_resamples=1000, seed=0):
    "slice_table's value and interval per (column, slice), computed as it was."
    arrays = flat_arrays(y_true, out, info); stat = lambda *a, axis=-1: ref_vector_metrics(info, [metric], *a, threshold=threshold); res = {}
    for col in labels:
        for s, idx in pd.Series(labels[col].to_numpy()).groupby(labels[col].to_numpy(), sort=True).indices.items():
            a = [x[idx] for x in arrays]
            if info['task'] == 'binary': a[2] = np.unique(a[1], return_inverse=True)[1].reshape(-1)
            v = float(stat(*a)[0])
            res[col, str(s)] = (v, np.nan, np.nan) if len(idx) < 2 or np.isnan(v) else (v, *(float(x[0]) for x in ref_bootstrap(tuple(a), stat, n_resamples, seed)[:2]))
    return res

# ---- comparisons ----
def assert_same_intervals(new: pd.DataFrame, ref: pd.DataFrame):
    assert list(new.index) == list(ref.index) and (new.undefined == ref.undefined).all(), (new, ref)
    a, b = new[['value', 'low', 'high']].to_numpy(float), ref[['value', 'low', 'high']].to_numpy(float)
    assert (np.isnan(a) == np.isnan(b)).all() and np.nanmax(np.abs(a - b) / np.maximum(1, np.abs(b)), initial=0) <= TOL, (new, ref)

def assert_same_difference(new: dict, ref: dict):
    assert {k: v for k, v in new.items() if not isinstance(v, float)} == {k: v for k, v in ref.items() if not isinstance(v, float)}, (new, ref)
    for k in ('a', 'b', 'difference', 'low', 'high'):
        assert np.isnan(new[k]) == np.isnan(ref[k]) and (np.isnan(ref[k]) or abs(new[k] - ref[k]) <= TOL * max(1, abs(ref[k]))), (k, new, ref)

TARGETS = {'binary': 'income', 'multiclass': 'relationship', 'regression': 'hours-per-week'}

@pytest.fixture(scope='module')
def held_out():
    "The default data (Adult, split as the default parameters split it): per task, the test rows' targets, two models' outputs and the task."
    data = normalise_missing(read_table(str(ROOT/'data/adult.csv.gz')), ['?']); res = {}
    for task, t in TARGETS.items():
        d = data.drop(columns=['income']) if task != 'binary' else data
        train, test = split(d, t, 0.2, 42, task=task); X, y, Xte = train.drop(columns=[t]), train[t], test.drop(columns=[t])
        new = make_pipeline(X, 'hgb', dict(max_iter=60), seed=0, task=task).fit(X, y)
        old = make_pipeline(X, 'hgb', dict(max_iter=15, max_depth=3), seed=1, task=task).fit(X[::4], y[::4])  # production: smaller, fewer rows
        info = dict(task=task, target=t, classes=[str(c) for c in getattr(new, 'classes_', [])], positive='>50K' if task == 'binary' else None)
        res[task] = test[t], model_output(new, Xte, info), model_output(old, Xte, info), info, Xte
    return res

@pytest.mark.parametrize('task', ['binary', 'multiclass', 'regression'])
def test_intervals_on_the_default_data_equal_the_reference(held_out, task):
    y, out, _, info, _ = held_out[task]
    assert len(y) > 9000
    assert_same_intervals(metric_intervals(y, out, info, seed=42), ref_metric_intervals(y, out, info, seed=42))
    names = FAST_METRICS[task]                                                    # every metric with an interval, another threshold and level
    assert_same_intervals(metric_intervals(y, out, info, names, threshold=0.3, n_resamples=450, seed=7, confidence=0.9),
                          ref_metric_intervals(y, out, info, names, threshold=0.3, n_resamples=450, seed=7, confidence=0.9))

@pytest.mark.parametrize('task', ['binary', 'multiclass', 'regression'])
def test_paired_difference_on_the_default_data_equals_the_reference(held_out, task):
    y, new, old, info, _ = held_out[task]
    for metric in FAST_METRICS[task]:
        assert_same_difference(paired_difference(y, new, old, info, metric, 0.4, 0.6, 1000, 42), ref_paired_difference(y, new, old, info, metric, 0.4, 0.6, 1000, 42))
    metric = GATE_METRIC[task]
    assert_same_difference(paired_difference(y, old, new, info, metric, n_resamples=300, seed=3), ref_paired_difference(y, old, new, info, metric, n_resamples=300, seed=3))
    same = paired_difference(y, new, new.copy(), info, metric)
    assert (same['difference'], same['low'], same['high']) == (0, 0, 0)

def test_slices_on_the_default_data_equal_the_reference(held_out):
    y, out, _, info, X = held_out['binary']
    labels = slice_labels(X, ['gender', 'race', 'age'], 4)
    t, ref = slice_table(y, out, info, labels, n_resamples=300, seed=42), ref_slice_values(y, out, info, labels, 'roc_auc', n_resamples=300, seed=42)
    assert len(t) == len(ref) == 11
    for r in t.itertuples():
        v, lo, hi = ref[r.column, r.slice]
        assert abs(r.roc_auc - v) <= TOL and abs(r.low - lo) <= TOL and abs(r.high - hi) <= TOL, (r, ref[r.column, r.slice])

def synthetic(task, n, ties, seed=0):
    "`(y, two model outputs, task)`: outputs rounded to `ties` decimals (to `ties - 1` for regression; many rows share one) or left distinct (`ties=None`)."
    rng = np.random.default_rng(seed); rnd = (lambda a: np.round(a, ties)) if ties is not None else (lambda a: a)
    if task == 'binary':
        p = rng.uniform(size=n); y = pd.Series(np.where(rng.uniform(size=n) < p, 'y', 'n'))
        return y, rnd(p), rnd(np.clip(p + rng.normal(0, .2, n), 0, 1)), dict(task='binary', positive='y', classes=['n', 'y'])
    if task == 'multiclass':
        classes = list('abcd'); p = rng.dirichlet(np.ones(4), n); y = pd.Series(np.array(classes)[(rng.uniform(size=(n, 1)) > p.cumsum(1)).sum(1)])
        q = rng.dirichlet(np.ones(4), n) * .5 + p * .5
        return y, rnd(p), rnd(q), dict(task='multiclass', classes=classes)
    y = pd.Series(np.clip(np.round(rng.normal(40, 12, n) / 5) * 5, 5, None) if ties is not None else rng.normal(40, 12, n))  # ties: multiples of 5
    rnd = (lambda a: np.round(a, ties - 1)) if ties is not None else rnd
    return y, rnd(y + rng.normal(0, 5, n)), rnd(y + rng.normal(1, 8, n)), dict(task='regression')

@pytest.mark.parametrize('task', ['binary', 'multiclass', 'regression'])
@pytest.mark.parametrize('ties', [1, 2, None])
def test_synthetic_with_and_without_ties_equal_the_reference(task, ties):
    y, a, b, info = synthetic(task, 3000, ties)
    codes, rows = distinct_rows(flat_arrays(y, a, info), task)
    if ties == 1: assert codes is not None and len(rows[0]) < 1000               # counted per distinct row
    if ties is None: assert (codes is None) == (task != 'binary')                # most rows distinct: counted per row (binary: in score order)
    names = FAST_METRICS[task]
    assert_same_intervals(metric_intervals(y, a, info, names, seed=5), ref_metric_intervals(y, a, info, names, seed=5))
    for m in names: assert_same_difference(paired_difference(y, a, b, info, m, seed=5), ref_paired_difference(y, a, b, info, m, seed=5))

def test_undefined_resamples_and_tiny_sets_equal_the_reference():
    info = dict(task='binary', positive='y', classes=['n', 'y'])
    for y, p in [(pd.Series(['n'] * 59 + ['y']), np.linspace(0, 1, 60)),                     # one positive: some resamples have no ROC-AUC
                 (pd.Series(['n'] * 30), np.linspace(0, 1, 30)),                             # none at all
                 (pd.Series(['y', 'n']), np.array([.3, .3])), (pd.Series(['y']), np.array([.7]))]:
        assert_same_intervals(metric_intervals(y, p, info, FAST_METRICS['binary'], seed=0), ref_metric_intervals(y, p, info, FAST_METRICS['binary'], seed=0))
        assert_same_difference(paired_difference(y, p, p[::-1].copy(), info, 'roc_auc'), ref_paired_difference(y, p, p[::-1].copy(), info, 'roc_auc'))
    r = dict(task='regression'); y, p = pd.Series([3., 3., 3., 3.]), np.array([1., 2., 3., 4.])           # a constant target: no R²
    assert_same_intervals(metric_intervals(y, p, r, FAST_METRICS['regression']), ref_metric_intervals(y, p, r, FAST_METRICS['regression']))
    m = dict(task='multiclass', classes=['a', 'b', 'c']); y = pd.Series(list('aab') * 5)                   # a class with no rows
    pr = np.random.default_rng(0).dirichlet(np.ones(3), 15)
    assert_same_intervals(metric_intervals(y, pr, m, FAST_METRICS['multiclass']), ref_metric_intervals(y, pr, m, FAST_METRICS['multiclass']))

@pytest.mark.parametrize('n, n_resamples, cells', [(7, 450, 2**21), (1000, 1000, 3000), (2**16, 5, 1)])
def test_resample_counts_are_scipys_draws_counted(n, n_resamples, cells):
    "The draws behind each resample are scipy.stats.bootstrap's: `integers(0, n, (batch, n))` per batch of 200, from `default_rng(seed)`."
    rng, ref = np.random.default_rng(9), []
    for start in range(0, n_resamples, 200): ref += [np.bincount(i, minlength=n) for i in rng.integers(0, n, (min(200, n_resamples - start), n))]
    codes = np.arange(n) % 3                                                     # each row itself, and per code
    rows, per_code = (np.concatenate(w) for w in zip(*resample_counts(n, [(None, n), (codes, 3)], n_resamples, 9, cells)))
    assert rows.shape == (n_resamples, n) and (rows == np.array(ref)).all()
    assert (per_code == np.array([np.bincount(codes, r, 3) for r in ref])).all()

@pytest.mark.slow
def test_a_million_test_rows_complete():
    "The default data's scale test (bench/scale.py: Adult written over and over): intervals and the paired comparison of a million test rows."
    rng = np.random.default_rng(0); n = 1_000_000
    p = np.round(rng.beta(.6, 1.6, n), 5); y = pd.Series(np.where(rng.uniform(size=n) < p, '>50K', '<=50K'))   # ~60,000 distinct scores
    q = np.clip(np.round(p + rng.normal(0, .05, n), 5), 0, 1); info = dict(task='binary', positive='>50K', classes=['<=50K', '>50K'])
    t = metric_intervals(y, p, info, seed=42)
    assert list(t.index) == CI_METRICS['binary'] and (t.undefined == 0).all() and ((t.low <= t.value) & (t.value <= t.high)).all(), t
    assert (t.high - t.low).max() < 0.01                                         # a million rows: narrow
    d = paired_difference(y, p, q, info, 'roc_auc', seed=42)
    assert d['n'] == n and d['undefined'] == 0 and 0 < d['low'] <= d['difference'] <= d['high'], d

# ---- from DRAWN_ROWS rows: each resample's counts per distinct row drawn directly, from its own stream ----
def scores(n, seed=0):
    "A binary task's `n` targets and two models' scores with a few thousand distinct rows (and pairs of scores), as the default data's at a million rows."
    rng = np.random.default_rng(seed); p = np.round(rng.beta(.6, 1.6, n), 3); y = pd.Series(np.where(rng.uniform(size=n) < p, '>50K', '<=50K'))
    return y, p, np.clip(np.round(p + rng.normal(0, .02, n), 2), 0, 1), dict(task='binary', positive='>50K', classes=['<=50K', '>50K'])

@pytest.mark.parametrize('sizes', [[1, 4, 15, 40], [1, 50, 2000]])   # small counts; a large one (its CDF table starts above 0)
def test_multinomial_counts_are_the_bootstraps_counts(sizes):
    "Counts per distinct row drawn directly have the distribution of n rows drawn with replacement and counted: Multinomial(n, sizes/n)."
    sizes = np.array(sizes); n = sizes.sum(); codes = np.repeat(np.arange(len(sizes)), sizes)[np.random.default_rng(1).permutation(n)]; g = np.random.default_rng(2)
    draw = multinomial_counts(codes, len(sizes)); x = np.stack([draw(g) for _ in range(40_000)])
    assert (x.sum(1) == n).all() and (x >= 0).all()
    rows = np.stack([np.bincount(codes[g.integers(0, n, n)], minlength=len(sizes)) for _ in range(40_000)])   # the ordinary bootstrap, counted
    for j, s in enumerate(sizes):                                                 # each count's distribution is Binomial(n, size/n)
        pmf, var = stats.binom.pmf(np.arange(n + 1), n, s / n), s * (1 - s / n)
        assert abs(x[:, j].mean() - s) < 5 * np.sqrt(var / len(x)) and abs(x[:, j].var() / var - 1) < 0.05, j
        assert np.abs(np.bincount(x[:, j], minlength=n + 1) / len(x) - pmf).sum() < 0.045, j   # the ordinary bootstrap's own: up to 0.024
    assert np.abs(np.corrcoef(x.T) - np.corrcoef(rows.T)).max() < 0.03           # and their correlations are the multinomial's

def test_drawn_counts_are_the_same_on_any_number_of_threads_and_blocks():
    n = 200_000; codes = np.random.default_rng(0).integers(0, 5000, n); calls = []
    one = np.concatenate([w for w, in resample_counts(n, [(codes, 5000)], 60, 11, threads=1)])
    two = np.concatenate([w for w, in resample_counts(n, [(codes, 5000)], 60, 11, cells=5000 * 7, threads=2, progress=lambda *a: calls.append(a))])
    three = np.concatenate([w for w, in resample_counts(n, [(codes, 5000)], 60, 11, cells=5000 * 4, threads=3)])
    assert one.shape == (60, 5000) and (one.sum(1) == n).all() and (one == two).all() and (one == three).all()
    assert calls == [(min(60, 7 * i), 60) for i in range(1, 10)]                 # once per block of 7 resamples
    totals = lambda t: np.concatenate(list(resample_counts(n, [(codes, 5000)], 60, 11, cells=5000 * 7, threads=t, measure=lambda ws: ws[0] @ np.arange(5000.))))
    assert (totals(2) == one @ np.arange(5000.)).all() and (totals(1) == totals(2)).all()   # measured on the drawing threads, in order
    assert not (one == np.concatenate([w for w, in resample_counts(n, [(codes, 5000)], 60, 12, threads=1)])).all()   # another seed: other counts

@pytest.mark.parametrize('paired', [False, True])
def test_drawn_counts_give_the_intervals_of_scipys_draws(paired, monkeypatch):
    "At 200,000 rows the directly drawn counts give the intervals scipy's draws give, within Monte-Carlo error (1,000 resamples each)."
    y, p, q, info = scores(200_000)
    def both(f):
        fast = f(); monkeypatch.setattr(ev, 'DRAWN_ROWS', 10**9); exact = f(); monkeypatch.undo()
        return fast, exact
    assert len(distinct_rows((*flat_arrays(y, p, info), *flat_arrays(y, q, info)[1:]), 'binary')[1][0]) < 200_000 // 8   # drawn directly
    if paired:
        fast, exact = both(lambda: paired_difference(y, p, q, info, 'roc_auc', seed=42))
        assert fast['difference'] == exact['difference'] and fast['low'] != exact['low']
        width = exact['high'] - exact['low']
        assert abs(fast['low'] - exact['low']) < 0.15 * width and abs(fast['high'] - exact['high']) < 0.15 * width, (fast, exact)
    else:
        fast, exact = both(lambda: metric_intervals(y, p, info, seed=42))
        assert (fast.value == exact.value).all() and (fast.low != exact.low).any()
        width = exact.high - exact.low
        assert ((fast.low - exact.low).abs() < 0.15 * width).all() and ((fast.high - exact.high).abs() < 0.15 * width).all(), (fast, exact)
