"""Evaluate's bootstrap intervals and deploy's paired comparison on a million test rows: the implementation before
issue 20 item 4 (every resample's arrays gathered and handed to `scipy.stats.bootstrap`; kept as the reference in
tests/test_bootstrap_fast.py), the current one on scipy's draws (each resample's row draws counted per distinct row,
measured with the counts as weights: what runs below `DRAWN_ROWS` rows), and the current one as it runs at this size
(each resample's counts per distinct row drawn directly, `multinomial_counts`, one stream per resample), on the same
rows, with the same seed.

    OMP_NUM_THREADS=1 python bench/bootstrap.py [--rows 1000000] [--resamples 1000] [--skip-old] [--skip-scipy] [--repeat 3] [--data FILE]

The thread budget is the stage's: `OMP_NUM_THREADS` (2 lets the next resamples be drawn while one is measured).
The rows are the default data as bench/scale.py makes a million of them (Adult written over and over, `fnlwgt`
jittered): the default model (histogram gradient boosting, fitted on the default split's training rows) scores them,
and a smaller one fitted on a quarter of those rows plays production. Prints, for the intervals (`metric_intervals`,
the binary task's six metrics) and the paired comparison (`paired_difference`, ROC-AUC): each side's seconds (the
least of `--repeat` calls) with the load average before and after, how far the sides' interval ends are apart (as a
share of the interval's width: Monte-Carlo error between different draws, rounding between the same draws), and the
peak memory of the process after each side; and the seconds the random numbers alone take, both ways (scipy's
million row numbers per resample, and one Poisson count per distinct row). The old side needs some 15 GB of memory
at a million rows.
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
    import mlnb.evaluate as ev
    from mlnb.evaluate import distinct_rows, flat_arrays, metric_intervals, multinomial_counts, paired_difference
    from mlnb.train import threads_here
    print(f'machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, OMP_NUM_THREADS={os.environ["OMP_NUM_THREADS"]} '
          f'(threads: {threads_here()}), load average {os.getloadavg()[0]:.1f}')
    if a.data and Path(a.data).exists():   # the scores of an earlier call (fitting the two models takes a minute)
        z = np.load(a.data); y, p_new, p_prod = pd.Series(np.where(z['y'], '>50K', '<=50K')), z['p_new'], z['p_prod']
        info = dict(task='binary', target='income', classes=['<=50K', '>50K'], positive='>50K')
    else:
        y, p_new, p_prod, info = data(a.rows)
        if a.data: np.savez(a.data, y=(y == '>50K').to_numpy(), p_new=p_new, p_prod=p_prod)
    fa, fb = flat_arrays(y, p_new, info), flat_arrays(y, p_prod, info)
    codes, rows = distinct_rows(fa, 'binary'); k2 = len(distinct_rows((*fa, *fb[1:]), 'binary')[1][0])
    print(f'data: {len(y):,} test rows, {len(np.unique(p_new)):,} and {len(np.unique(p_prod)):,} distinct scores; distinct rows: {len(rows[0]):,} '
          f'(target, score), {k2:,} (target, both scores); {a.resamples} resamples; memory so far {peak():.2f} GiB', flush=True)
    def draw(rng=np.random.default_rng(0)):
        for _ in range(a.resamples): rng.integers(0, len(y), len(y))
    def drawn(draw=multinomial_counts(codes, len(rows[0])), streams=np.random.SeedSequence(0).spawn(a.resamples)):
        for s in streams: draw(np.random.default_rng(s))
    print(f'the random numbers alone: {timed(draw, 1)[0]:.1f} s as scipy draws them ({len(y):,} row numbers per resample), '
          f'{timed(drawn, 1)[0]:.1f} s as counts per distinct row (multinomial_counts)', flush=True)
    def scipys(f):  # the current implementation on scipy's draws, as it runs below DRAWN_ROWS rows
        def g(*args, **kw):
            keep, ev.DRAWN_ROWS = ev.DRAWN_ROWS, 10**12
            try: return f(*args, **kw)
            finally: ev.DRAWN_ROWS = keep
        return g
    sides = {'new': (metric_intervals, paired_difference)}
    if not a.skip_scipy: sides['scipy draws'] = (scipys(metric_intervals), scipys(paired_difference))
    if not a.skip_old:
        from test_bootstrap_fast import ref_metric_intervals, ref_paired_difference
        sides['old'] = (ref_metric_intervals, ref_paired_difference)
    res = {}
    for side, (intervals, paired) in sides.items():   # the new side first: the peak memory after it is its own
        l0 = os.getloadavg()[0]
        ti, ci = timed(lambda: intervals(y, p_new, info, n_resamples=a.resamples, seed=42), a.repeat)
        tp, d = timed(lambda: paired(y, p_new, p_prod, info, 'roc_auc', 0.5, 0.5, a.resamples, 42), a.repeat)
        res[side] = ci, d
        print(f'  {side:>11}: intervals {ti:6.2f} s, paired difference {tp:6.2f} s (load {l0:.1f} -> {os.getloadavg()[0]:.1f}); '
              f'peak memory of the process so far {peak():.2f} GiB', flush=True)
    ci, d = res['new']
    print(ci.round(5).to_string()); print({k: round(v, 5) if isinstance(v, float) else v for k, v in d.items()})
    for side in [s for s in res if s != 'new']:
        oci, od = res[side]; w, wd = (oci.high - oci.low).to_numpy(float), od['high'] - od['low']
        ends = np.abs(ci[['low', 'high']].to_numpy(float) - oci[['low', 'high']].to_numpy(float)) / w[:, None]
        print(f'new against {side}: values equal to {np.abs(ci.value - oci.value).max():.1e}; interval ends apart by at most {ends.max():.3f} of the width '
              f'(paired: {max(abs(d["low"] - od["low"]), abs(d["high"] - od["high"])) / wd:.3f}); undefined resamples equal: '
              f'{(ci.undefined == oci.undefined).all() and d["undefined"] == od["undefined"]}')
    if 'old' in res and 'scipy draws' in res:
        (sci, sd), (oci, od) = res['scipy draws'], res['old']
        diff = max(np.nanmax(np.abs(sci[['value', 'low', 'high']].to_numpy(float) - oci[['value', 'low', 'high']].to_numpy(float))),
                   max(abs(sd[k] - od[k]) for k in ('a', 'b', 'difference', 'low', 'high')))
        print(f'scipy draws against old (the same draws): largest absolute difference {diff:.2e}')

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--rows', type=int, default=1_000_000); ap.add_argument('--resamples', type=int, default=1000)
    ap.add_argument('--skip-old', action='store_true', help='without the old implementation (it needs ~15 GB and minutes)')
    ap.add_argument('--skip-scipy', action='store_true', help="without the current implementation on scipy's draws")
    ap.add_argument('--repeat', type=int, default=1, help='calls per side; the least time is printed')
    ap.add_argument('--data', help='an .npz file keeping the targets and scores between calls (made when missing)')
    main(ap.parse_args())
