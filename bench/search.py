"""Grid, random and Bayesian search on the default data with the same budget of fold fits.

    python bench/search.py [--budget 60] [--folds 5] [--threads 1] [--rows 0]

The default pipeline's data and split (params/default.yaml: Adult, duplicates dropped, stratified 80/20 split with
seed 42) and its features stage's preprocessing for HistGradientBoosting (native categories); 5-fold stratified
cross-validation on the training rows, ROC-AUC. One space for all three searches: learning_rate, max_leaf_nodes,
min_samples_leaf and l2_regularization (300 iterations each). Each search gets --budget fold fits:
  grid:   the grid of 3 x 2 x 2 x 1 = 12 settings (budget 60 at 5 folds; the grid is cut to the budget if smaller),
  random: budget / folds settings drawn by scikit-learn's RandomizedSearchCV,
  bayes:  Optuna TPE without pruning, budget / folds trials,
  bayes+pruning: Optuna TPE with the median pruner (per fold), trials until the fold fits reach the budget.
Prints per search the best CV ROC-AUC and the fold fits it took to get within 0.002 of the unpruned Bayesian
search's best, and the fold fits pruning saved against that. Thread limits are set for every fit (OMP_NUM_THREADS).
"""
import argparse, itertools, os, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--budget', type=int, default=60); ap.add_argument('--folds', type=int, default=5)
    ap.add_argument('--threads', type=int, default=1); ap.add_argument('--rows', type=int, default=0)
    a = ap.parse_args()
    os.environ['OMP_NUM_THREADS'] = str(a.threads)
    import numpy as np, pandas as pd, yaml, platform
    from mlnb.ingest import read_table, sample_frame
    from mlnb.prepare import normalise_missing, dedupe, split
    from mlnb.features import infer_roles, build_preprocessor
    from mlnb.train import compose, check_space, make_cv, sklearn_search, bayes_search
    p = yaml.safe_load((ROOT/'params'/'default.yaml').read_text()); sh = p['shared']
    df = normalise_missing(sample_frame(read_table(ROOT/p['stages']['ingest']['params']['path']), a.rows, sh['seed']), sh['missing_markers'])
    train, _ = split(dedupe(df)[0], sh['target'], 0.2, sh['seed'])
    X, y = train.drop(columns=sh['target']), train[sh['target']]
    roles = infer_roles(X)
    pipe = compose(build_preprocessor(roles, 'hgb', 'binary', X.nunique().to_dict(), {'seed': sh['seed']}), 'hgb', {}, sh['seed'], sh['missing_markers'], 'binary')
    grid = {'learning_rate': [0.04, 0.08, 0.16], 'max_leaf_nodes': [15, 63], 'min_samples_leaf': [20, 80], 'l2_regularization': [1.0]}
    space = {'learning_rate': {'low': 0.02, 'high': 0.3, 'log': True}, 'max_leaf_nodes': {'low': 8, 'high': 96, 'type': 'int', 'log': True},
             'min_samples_leaf': {'low': 5, 'high': 200, 'type': 'int', 'log': True}, 'l2_regularization': {'low': 0.001, 'high': 10, 'log': True}}
    cv, trials = make_cv('binary', a.folds, sh['seed']), max(1, a.budget // a.folds)
    settings = [dict(zip(grid, v)) for v in itertools.product(*grid.values())][:trials]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {a.threads} thread(s); "
          f"{len(X):,} training rows, {a.folds} folds, budget {a.budget} fold fits")
    runs = {}
    def timed(name, f):
        t0 = time.perf_counter(); rows = f(); runs[name] = (pd.DataFrame(rows), time.perf_counter() - t0)
        t = runs[name][0]; print(f"  {name:14} {len(t):3} trials, {int(t.folds.sum()):4} fold fits, best {t['mean'].max():.4f}, {runs[name][1]:.0f} s", flush=True)
    timed('grid', lambda: [r for s in settings for r in sklearn_search('grid', pipe, check_space(pipe, {k: [v] for k, v in s.items()}), X, y, cv, 'roc_auc', 0, sh['seed'])])
    timed('random', lambda: sklearn_search('random', pipe, check_space(pipe, space), X, y, cv, 'roc_auc', trials, sh['seed']))
    timed('bayes', lambda: bayes_search(pipe, check_space(pipe, space), X, y, cv, 'roc_auc', trials, sh['seed'], prune=False))
    db = f"sqlite:///{tempfile.mkdtemp()}/pruned.db"
    def pruned():  # go on with the same study until the fold fits reach the budget
        n = trials
        while True:
            rows = bayes_search(pipe, check_space(pipe, space), X, y, cv, 'roc_auc', n, sh['seed'], storage=db, candidate='hgb')
            if sum(r['folds'] for r in rows) >= a.budget: return rows
            n += 1
    timed('bayes+pruning', pruned)
    target = runs['bayes'][0]['mean'].max() - 0.002
    print(f"fold fits until within 0.002 of the unpruned Bayesian best ({target + 0.002:.4f}):")
    for name, (t, _) in runs.items():
        t = t.reset_index(drop=True); used = t.folds.cumsum()
        hit = t.index[(t.state == 'COMPLETE') & (t['mean'] >= target)]
        print(f"  {name:14} " + (f"{int(used[hit[0]])} fold fits (trial {hit[0] + 1})" if len(hit) else 'not reached within the budget'))

if __name__ == '__main__': main()
