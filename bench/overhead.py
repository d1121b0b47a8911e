"""Overhead of the notebook machinery: `mlnb run --no-cache` against the same stage functions in one plain Python process.

    python bench/overhead.py [--params params/default.yaml] [--repeat 3] [--threads 1]

Both sides run as fresh processes with the same thread settings (OMP/MKL/OpenBLAS threads) and do the same
work on the same data: read, the data-quality report, validate, prepare, infer roles and build the preprocessing, cross-validate and fit,
train's leakage guard, evaluate with its bootstrap intervals, slices and calibration (the parameter file's other
stages, explain and deploy, are left out on both sides). The plain side calls the
functions the stage notebooks export, with no kernels, notebooks, scraps, artifacts, plots or report.
Prints each side's wall times, their medians and the ratio.
"""
import argparse, os, platform, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = ('ingest', 'validate', 'prepare', 'features', 'train', 'evaluate')

PLAIN = r'''
import sys, yaml
from mlnb.ingest import read_table, sample_frame
from mlnb.validate import build_schema, infer_spec, validate_frame, apply_policy, quality_report, quality_findings, quality_rules
from mlnb.prepare import normalise_missing, dedupe, decide_task, decide_positive, split
from mlnb.roles import infer_roles
from mlnb.features import make_preprocessor
import time
from mlnb.train import compose, cross_validate_pipeline, SCORING, leakage_scores
from mlnb.evaluate import positive_proba, classification_metrics, metric_intervals, slice_labels, slice_table, calibration
p = yaml.safe_load(open(sys.argv[1])); sh = p.get('shared', {}); st = {k: (v or {}).get('params', {}) for k, v in p['stages'].items()}
target, seed, model = sh['target'], sh['seed'], sh.get('model', 'hgb')
i, v, pr, fe, tr = st['ingest'], st['validate'], st['prepare'], st.get('features', {}), st['train']
df = sample_frame(read_table(i['path']), i.get('sample_rows', 0), seed)
quality_findings(*quality_report(df), quality_rules(v.get('quality')))   # validate's data-quality report
df, _ = apply_policy(df, validate_frame(df, build_schema(v.get('schema') or infer_spec(df, target))), v.get('policy', 'fail'))
markers = sh.get('missing_markers', ['?'])
df = normalise_missing(df, markers)
if pr.get('drop_duplicates'): df, _ = dedupe(df)
task, _ = decide_task(df[target], sh.get('task', 'auto')); positive = decide_positive(df[target], task, sh.get('positive'))
roles = infer_roles(df.drop(columns=[target]), pr.get('roles'), pr.get('drop')); used = roles.loc[roles['role'] != 'id', 'column'].tolist()   # prepare: on the whole table
train, test = split(df, target, pr.get('test_size', 0.2), seed, task)
X, y = train.drop(columns=[target]), train[target]
pipe = compose(make_preprocessor(roles, model, task, levels=X.nunique().to_dict()), model, tr.get('model_params', {}), seed, markers, task)
t0 = time.perf_counter()
roles_of = dict(zip(roles['column'], roles['role']))
leak = leakage_scores(X[used], y, task, {c: roles_of[c] for c in used}, min(tr.get('cv_folds', 3), 3), seed) if tr.get('leakage', 'warn') not in ('off', False) else None   # train's leakage guard
t1 = time.perf_counter()
cv = cross_validate_pipeline(pipe, X[used], y, tr.get('cv_folds', 3), tr.get('scoring') or SCORING[task], seed, task)
pipe.fit(X[used], y)
t2 = time.perf_counter()
proba = positive_proba(pipe, test[used], positive)
m = classification_metrics(test[target], proba, positive)
ev, info = st.get('evaluate', {}), dict(task=task, target=target, classes=sorted(df[target].astype(str).unique()), positive=positive)   # the evaluate stage's statistics too
cis = metric_intervals(test[target], proba, info, seed=seed)
if sl := ev.get('slices'): slice_table(test[target], proba, info, slice_labels(test, sl, ev.get('slice_bins', 4), target), seed=seed)
calibration(test[target], proba, info)
print(f"roc_auc={m['roc_auc']:.4f} [{cis.loc['roc_auc', 'low']:.4f}, {cis.loc['roc_auc', 'high']:.4f}] leakage guard {t1 - t0:.2f} s of train's {t2 - t0:.2f} s ({(t1 - t0) / (t2 - t0):.0%})")
'''

def timed(cmd, env):
    t = time.perf_counter(); r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode: sys.exit(f'failed: {cmd}\n{r.stdout}\n{r.stderr}')
    return time.perf_counter() - t, r.stdout

def main():
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument('--params', default='params/default.yaml'); a.add_argument('--repeat', type=int, default=3)
    a.add_argument('--threads', type=int, default=1)
    a = a.parse_args()
    env = {**os.environ, **{k: str(a.threads) for k in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS')}}
    bindir = Path(sys.executable).parent
    print(f'machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {a.threads} thread(s) per process')
    print(f'parameters: {a.params}, {a.repeat} repeats, sides alternating')
    mlnb_t, plain_t = [], []
    with tempfile.TemporaryDirectory() as runs:
        p = yaml.safe_load((ROOT/a.params).read_text())   # the stages the plain side does; explain and deploy are left out
        p['stages'] = {k: v for k, v in p['stages'].items() if k in STAGES}
        params = Path(runs)/'stages.yaml'; params.write_text(yaml.safe_dump(p, sort_keys=False))
        for k in range(a.repeat):
            t, out = timed([str(bindir/'python'), '-c', PLAIN, str(params)], env); plain_t.append(t)
            print(f'  plain  #{k+1}: {t:6.1f} s  {out.strip()}', flush=True)
            t, out = timed([str(bindir/'mlnb'), 'run', str(params), '--runs-dir', runs, '--no-cache'], env); mlnb_t.append(t)   # every stage runs
            print(f'  mlnb   #{k+1}: {t:6.1f} s  {out.strip().splitlines()[-2]}', flush=True)
    m, p = statistics.median(mlnb_t), statistics.median(plain_t)
    print(f'median: mlnb run {m:.1f} s, plain process {p:.1f} s, ratio {m/p:.2f} (overhead {m-p:.1f} s)')
    print(f'overhead per stage: {(m - p) / len(STAGES):.2f} s ({len(STAGES)} stages; the target is 0.75 s)')

if __name__ == '__main__': main()
