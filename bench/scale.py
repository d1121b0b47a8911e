"""Scale-out figures. (a) A sweep of 6 training configurations on the default data against 6 separate full runs;
(b) the default pipeline on a million rows, with the local executor and with Dask's LocalCluster.

    python bench/scale.py sweep [--threads 1]
    python bench/scale.py big [--rows 1000000] [--executors serial,local,dask]

(a) Both sides run the default pipeline's training stages (ingest → evaluate) as fresh `mlnb` processes with the same
thread settings. The separate runs use `--no-cache` (each reads, validates and prepares the data again, as six
hand-started runs would); the sweep runs the shared stages once and the six combinations up to `--jobs` at once.
Prints each side's wall time and the ratio.

(b) writes the Adult data over and over (with `fnlwgt` jittered so that rows stay distinct) to `--rows` rows and runs
the whole default pipeline on it with `--no-cache`, once per executor. No thread limit is set: the runner's thread
budget shares the cores out (a stage running alone gets all of them; Dask's workers get the same budget). Prints wall
time, each stage's time, and the peak memory of the whole process tree (the runner, kernels, Dask workers: the sum
of their proportional set sizes, so that pages forked kernels share are counted once), sampled every 0.2 s.
`serial` is how mlnb ran before stages ran in parallel: `--jobs 1` and one thread per kernel (`OMP_NUM_THREADS=1`).
"""
import argparse, copy, json, os, platform, subprocess, sys, tempfile, threading, time
from pathlib import Path
import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = ('ingest', 'validate', 'prepare', 'features', 'train', 'evaluate')
GRID = {'shared.model': ['linear', 'random_forest', 'hgb'], 'train.cv_folds': [3, 5]}

def timed(cmd, env):
    t = time.perf_counter(); r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode: sys.exit(f'failed: {cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}')
    return time.perf_counter() - t

def peak_rss(proc, box, every=0.2):
    "Sample the summed proportional set size (PSS) of `proc` and all its descendants until it ends; the peak goes in `box['peak']`."
    import psutil
    root, box['peak'] = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        total = 0
        try: procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess: break
        for p in procs:  # PSS: forked kernels share the zygote's pages; RSS would count them once per kernel
            try: total += p.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied): pass
        box['peak'] = max(box['peak'], total); time.sleep(every)

def big(a):
    import numpy as np, pandas as pd
    env = {k: v for k, v in os.environ.items() if k not in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS')}
    mlnb = str(Path(sys.executable).parent/'mlnb')
    print(f'machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, no thread limit (the thread budget decides)')
    with tempfile.TemporaryDirectory() as d:
        d = Path(d); adult = pd.read_csv(ROOT/'data/adult.csv.gz'); rng = np.random.default_rng(0)
        df = pd.concat([adult] * -(-a.rows // len(adult)), ignore_index=True).iloc[:a.rows]
        df['fnlwgt'] = df['fnlwgt'] + rng.integers(-500, 500, len(df)).clip(-df['fnlwgt'] + 1)  # distinct rows, still positive
        df.to_csv(d/'big.csv.gz', index=False)
        p = yaml.safe_load((ROOT/'params/default.yaml').read_text())
        p['stages']['ingest']['params']['path'] = str(d/'big.csv.gz')
        print(f'data: {len(df):,} rows ({(d/"big.csv.gz").stat().st_size / 1e6:.0f} MB gzipped CSV), the default pipeline ({", ".join(p["stages"])}), each executor deploying to a new registry', flush=True)
        for ex in a.executors.split(','):
            runs, box = d/f'runs-{ex}', {}
            # a registry of its own: with a production version already there, deploy compares on the 200,000 test rows (a minute)
            p['stages'].get('deploy', {}).setdefault('params', {})['registry'] = str(d/f'registry-{ex}')
            (d/'big.yaml').write_text(yaml.safe_dump(p, sort_keys=False))
            t = time.perf_counter()
            flags, e = (['--jobs', '1'], {**env, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'OPENBLAS_NUM_THREADS': '1'}) if ex == 'serial' else (['--executor', ex], env)
            proc = subprocess.Popen([mlnb, 'run', str(d/'big.yaml'), '--runs-dir', str(runs), '--no-cache', *flags], cwd=ROOT, env=e,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            th = threading.Thread(target=peak_rss, args=(proc, box)); th.start()
            out = proc.communicate()[0]; th.join(); t = time.perf_counter() - t
            if proc.returncode: sys.exit(f'failed ({ex}):\n{out[-4000:]}')
            m = json.loads(next(runs.glob('*/run.json')).read_text())
            stages = ', '.join(f"{n} {st['duration_s']:.0f}" for n, st in m['stages'].items())
            print(f'  {ex:5}: {t:6.1f} s, peak memory {box["peak"] / 2**30:.2f} GiB  (stages, s: {stages})', flush=True)

def sweep(a):
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

def main():
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0]); sub = a.add_subparsers(dest='part', required=True)
    s = sub.add_parser('sweep', help='(a) 6 configurations: one sweep against separate runs'); s.add_argument('--threads', type=int, default=1)
    b = sub.add_parser('big', help='(b) the default pipeline on a million rows'); b.add_argument('--rows', type=int, default=1_000_000)
    b.add_argument('--executors', default='serial,local,dask', help='serial (as before: one stage, one thread at a time), local, dask')
    a = a.parse_args()
    (sweep if a.part == 'sweep' else big)(a)

if __name__ == '__main__': main()
