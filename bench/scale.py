"""Scale-out figures. (a) A sweep of 6 training configurations on the default data against 6 separate full runs.

    python bench/scale.py [--threads 1]

Both sides run the default pipeline's training stages (ingest → evaluate) as fresh `mlnb` processes with the same
thread settings. The separate runs use `--no-cache` (each reads, validates and prepares the data again, as six
hand-started runs would); the sweep runs the shared stages once and the six combinations up to `--jobs` at once.
Prints each side's wall time and the ratio.
"""
import argparse, copy, os, platform, subprocess, sys, tempfile, time
from pathlib import Path
import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = ('ingest', 'validate', 'prepare', 'features', 'train', 'evaluate')
GRID = {'shared.model': ['linear', 'random_forest', 'hgb'], 'train.cv_folds': [3, 5]}

def timed(cmd, env):
    t = time.perf_counter(); r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode: sys.exit(f'failed: {cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}')
    return time.perf_counter() - t

def main():
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0]); a.add_argument('--threads', type=int, default=1); a = a.parse_args()
    env = {**os.environ, **{k: str(a.threads) for k in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS')}}
    mlnb = str(Path(sys.executable).parent/'mlnb')
    print(f'machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {a.threads} thread(s) per process')
    base = yaml.safe_load((ROOT/'params/default.yaml').read_text())
    base['stages'] = {k: v for k, v in base['stages'].items() if k in STAGES}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d); separate = 0.0
        for i, (model, folds) in enumerate([(m, f) for m in GRID['shared.model'] for f in GRID['train.cv_folds']], 1):
            p = copy.deepcopy(base); p['shared']['model'] = model; p['stages']['train']['params']['cv_folds'] = folds
            (d/f'{i}.yaml').write_text(yaml.safe_dump(p, sort_keys=False))
            t = timed([mlnb, 'run', str(d/f'{i}.yaml'), '--runs-dir', str(d/'separate'), '--no-cache'], env); separate += t
            print(f'  separate run {i} ({model}, {folds} folds): {t:6.1f} s', flush=True)
        sweep = copy.deepcopy(base); sweep['sweep'] = GRID
        (d/'sweep.yaml').write_text(yaml.safe_dump(sweep, sort_keys=False))
        t = timed([mlnb, 'run', str(d/'sweep.yaml'), '--runs-dir', str(d/'sweep')], env)
        print(f'  sweep of the same 6: {t:6.1f} s')
    print(f'6 separate runs {separate:.1f} s, one sweep {t:.1f} s: ratio {t / separate:.2f}')

if __name__ == '__main__': main()
