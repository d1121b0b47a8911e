"""Evaluate's bootstrap intervals and deploy's paired comparison on a million test rows: the implementation before
issue 20 item 4 (every resample's arrays gathered and handed to `scipy.stats.bootstrap`; kept as the reference in
tests/test_bootstrap_fast.py) against the current one (each resample counted per distinct row and measured with the
counts as weights), on the same rows, with the same seed.

    OMP_NUM_THREADS=1 python bench/bootstrap.py [--rows 1000000] [--resamples 1000] [--skip-old] [--repeat 1]

The rows are the default data as bench/scale.py makes a million of them (Adult written over and over, `fnlwgt`
jittered): the default model (histogram gradient boosting, fitted on the default split's training rows) scores them,
and a smaller one fitted on a quarter of those rows plays production. Prints, for the intervals (`metric_intervals`,
the binary task's six metrics) and the paired comparison (`paired_difference`, ROC-AUC): each side's seconds, the
largest absolute difference between their numbers, and the peak memory of the process after each side; and the
seconds the random draws alone take (numpy's generator drawing the million row numbers 1,000 times: the floor of any
implementation that keeps scipy's resamples). The old side needs some 15 GB of memory at a million rows.
"""
import argparse, os, platform, resource, sys, time
os.environ.setdefault('OMP_NUM_THREADS', '1')
from pathlib import Path
import numpy as np, pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT/'tests'), str(ROOT)]

def data(rows: int):
    "`(targets, candidate's and production's probabilities of >50K, task)` for `rows` test rows of the default data."
    from mlnb.ingest import read_table
    from mlnb.prepare import normalise_missing, split
    from mlnb.train import make_pipeline
    adult = normalise_missing(read_table(str(ROOT/'data/adult.csv.gz')), ['?']); rng = np.random.default_rng(0)
    train, _ = split(adult, 'income', 0.2, 42); X, y = train.drop(columns=['income']), train['income']
    big = pd.concat([adult] * -(-rows // len(adult)), ignore_index=True).iloc[:rows]
    big['fnlwgt'] = big['fnlwgt'] + rng.integers(-500, 500, len(big)).clip(-big['fnlwgt'] + 1)   # as bench/scale.py: distinct rows
    new = make_pipeline(X, 'hgb', seed=42).fit(X, y)
    prod = make_pipeline(X, 'hgb', dict(max_iter=50), seed=1).fit(X[::4], y[::4])
    Xb = big.drop(columns=['income']); pos = lambda m: m.predict_proba(Xb)[:, list(m.classes_).index('>50K')]
    return big['income'], pos(new), pos(prod), dict(task='binary', target='income', classes=['<=50K', '>50K'], positive='>50K')

def timed(f, repeat):
    "`(least seconds of `repeat` calls, the last result)`."
    best = float('inf')
    for _ in range(repeat):
        t = time.perf_counter(); out = f(); best = min(best, time.perf_counter() - t)
    return best, out

peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # GiB (Linux reports KiB)

def main(a):
    from mlnb.evaluate import metric_intervals, paired_difference
    print(f'machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, OMP_NUM_THREADS={os.environ["OMP_NUM_THREADS"]}, '
          f'load average {os.getloadavg()[0]:.1f}')
    y, p_new, p_prod, info = data(a.rows)
    print(f'data: {len(y):,} test rows, {len(np.unique(p_new)):,} and {len(np.unique(p_prod)):,} distinct scores; {a.resamples} resamples; memory so far {peak():.2f} GiB', flush=True)
    def draw(rng=np.random.default_rng(0)):
        for _ in range(a.resamples): rng.integers(0, len(y), len(y))
    draws, _ = timed(draw, 1)
    print(f'the random draws alone: {draws:.1f} s', flush=True)
    sides = {'new': (metric_intervals, paired_difference)}
    if not a.skip_old:
        from test_bootstrap_fast import ref_metric_intervals, ref_paired_difference
        sides['old'] = (ref_metric_intervals, ref_paired_difference)
    res = {}
    for side, (intervals, paired) in sides.items():   # the new side first: the peak memory after it is its own
        ti, ci = timed(lambda: intervals(y, p_new, info, n_resamples=a.resamples, seed=42), a.repeat)
        tp, d = timed(lambda: paired(y, p_new, p_prod, info, 'roc_auc', 0.5, 0.5, a.resamples, 42), a.repeat)
        res[side] = ci, d
        print(f'  {side}: intervals {ti:6.1f} s, paired difference {tp:6.1f} s; peak memory of the process so far {peak():.2f} GiB', flush=True)
    ci, d = res['new']
    print(ci.round(5).to_string()); print({k: round(v, 5) if isinstance(v, float) else v for k, v in d.items()})
    if 'old' in res:
        (oci, od) = res['old']
        diff = max(np.nanmax(np.abs(ci[['value', 'low', 'high']].to_numpy(float) - oci[['value', 'low', 'high']].to_numpy(float))),
                   max(abs(d[k] - od[k]) for k in ('a', 'b', 'difference', 'low', 'high')))
        print(f'largest absolute difference between old and new: {diff:.2e}; undefined resamples equal: '
              f'{(ci.undefined == oci.undefined).all() and d["undefined"] == od["undefined"]}')

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--rows', type=int, default=1_000_000); ap.add_argument('--resamples', type=int, default=1000)
    ap.add_argument('--skip-old', action='store_true', help='only the current implementation (the old one needs ~15 GB and minutes)')
    ap.add_argument('--repeat', type=int, default=1, help='calls per side; the least time is printed')
    main(ap.parse_args())
