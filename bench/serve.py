"""Serving throughput and latency: `mlnb serve` under HTTP load, against the in-process ceiling of the same model.

    python bench/serve.py [--registry DIR] [--model NAME --data TABLE] [--duration 10] [--threads 1] [--port PORT] [--mlflow VENV]

Without --registry it first trains and registers adult-income with `mlnb run` on a copy of params/default.yaml
(about a minute) in a temporary folder, and prints that folder so later runs can pass it as --registry.

Server: `mlnb serve` (uvicorn, one process, OMP/MKL/OpenBLAS threads = --threads) on 127.0.0.1 with a random API key.
Load: a separate process POSTs /predict over keep-alive HTTP/1.1 connections (one per client thread) with real rows
of --data (default data/adult.csv.gz; seeded sample, rows outside the model's schema left out, rotated across requests):
1-record and 100-record requests at concurrency 1 and 8, each for --duration seconds after a 1 s warm-up
(at most 200,000 requests). Every response must be HTTP 200. Per case: requests/s, records/s, client-side
p50/p99 latency per request and errors.
Ceiling: in this process (same thread limit), the same model version's scikit-learn Pipeline.predict_proba on a
prebuilt 1-row and 100-row DataFrame, and make_scorer(...).predict_proba (the server's scoring object) on the same
records as columns: median of 300 calls each. Also the max abs difference between the two paths' probabilities
(and the server's) on those 100 rows, which must be <= 1e-6.
Then /health latency while one maximum-size request (10,000 records) is parsed, checked and scored, three times.
Also, in process, the time a request spends queueing its lines for the prediction log (p50/p99 of 20,000 writes).
With --mlflow VENV (a virtualenv holding mlflow, the same scikit-learn, and mlnb installed with --no-deps, so the
Pipeline's own classes unpickle), the same fitted Pipeline is then saved with mlflow.sklearn.save_model (predict_proba
for a classifier, predict for a regressor, a signature inferred from the records) and served by
`mlflow models serve --env-manager local` (uvicorn, 1 worker process, the same thread limit), and the same client
POSTs the same records to /invocations as {"dataframe_records": [...]}: the same cases, its outputs checked against
the Pipeline's. A closing line gives, per server, p99 at 1 record x concurrency 1 and requests/s at 1 record x
concurrency 8 (the README's comparison), with the load average before and after.
Exits non-zero if a server fails, any request errors or the outputs differ.
"""
import argparse, http.client, json, multiprocessing as mp, os, platform, secrets, shutil, socket, statistics, subprocess, sys, tempfile, threading, time
from pathlib import Path

ROOT, BIN = Path(__file__).resolve().parents[1], Path(sys.executable).parent
THREAD_VARS = ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS')
CASES = [(1, 1), (1, 8), (100, 1), (100, 8)]  # (records per request, concurrency)
WARMUP, MAX_REQUESTS, CALLS, ATOL, SEED, MAX_RECORDS = 1.0, 200_000, 300, 1e-6, 0, 10_000
ORIG_ENV = dict(os.environ)

def load_case(port: int, headers: dict, bodies: list, conc: int, duration: float, path: str = '/predict') -> tuple:
    "In the load-generator process: `conc` threads, one keep-alive connection each, POSTing `bodies` in turn to `path`. `(latencies s, errors, elapsed s)`."
    t0 = time.perf_counter() + WARMUP; t_end = t0 + duration
    lock, state, lats, ends = threading.Lock(), dict(n=0, errors=0), [], []
    headers = {'Content-Type': 'application/json', **headers}
    def worker(i):
        conn, mine, k, last = http.client.HTTPConnection('127.0.0.1', port, timeout=30), [], i, t0
        while (start := time.perf_counter()) < t_end:
            if counted := start >= t0:
                with lock:
                    if state['n'] >= MAX_REQUESTS: break
                    state['n'] += 1
            try:
                conn.request('POST', path, body=bodies[k % len(bodies)], headers=headers)
                r = conn.getresponse(); r.read(); ok = r.status == 200
            except (OSError, http.client.HTTPException): ok = False; conn.close()  # reconnects on the next request
            end = time.perf_counter(); k += conc
            if not ok:
                with lock: state['errors'] += 1
            if counted: mine.append(end - start); last = end
        conn.close()
        with lock: lats.extend(mine); ends.append(last)
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(conc)]
    for t in ts: t.start()
    for t in ts: t.join()
    return lats, state['errors'], max(ends) - t0

def health_during(port: int, key: str, body: bytes) -> tuple:
    "In the load-generator process: POST `body` in one thread while another GETs /health every 5 ms. `(health latencies s, big request s, its status)`."
    done = {}
    def big():
        t = time.perf_counter(); done['status'] = call(port, '/predict', key, body)[0]; done['s'] = time.perf_counter() - t
    th = threading.Thread(target=big); th.start()
    conn, lats = http.client.HTTPConnection('127.0.0.1', port, timeout=30), []
    while th.is_alive():
        t = time.perf_counter(); conn.request('GET', '/health'); conn.getresponse().read(); lats.append(time.perf_counter() - t)
        time.sleep(0.005)
    th.join(); conn.close()
    return lats, done['s'], done['status']

def call(port: int, path: str, key: str | None = None, body: bytes | None = None) -> tuple:
    "`(status, parsed JSON body)` of one request on a fresh connection."
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    try:
        c.request('POST' if body else 'GET', path, body=body, headers={'Content-Type': 'application/json', **({'X-API-Key': key} if key else {})})
        r = c.getresponse(); return r.status, json.loads(r.read() or b'null')
    finally: c.close()

def free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def make_registry(tmp: Path) -> Path:
    "Train and register adult-income into `tmp/registry` with `mlnb run` on a copy of params/default.yaml."
    import yaml
    p = yaml.safe_load((ROOT/'params/default.yaml').read_text())
    p['stages']['deploy'].setdefault('params', {})['registry'] = str(tmp/'registry')
    (tmp/'params.yaml').write_text(yaml.safe_dump(p, sort_keys=False))
    print(f'no --registry: training adult-income into {tmp/"registry"} with mlnb run (about a minute)', flush=True)
    r = subprocess.run([str(BIN/'mlnb'), 'run', str(tmp/'params.yaml'), '--runs-dir', str(tmp/'runs')], cwd=ROOT, env=ORIG_ENV, capture_output=True, text=True)
    if r.returncode: sys.exit(f'mlnb run failed:\n{r.stdout}\n{r.stderr}')
    shutil.rmtree(tmp/'runs', ignore_errors=True)
    return tmp/'registry'

def median_ms(f) -> float:
    ts = []
    for _ in range(CALLS): t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3

def start_server(cmd: list, env: dict, log: Path) -> tuple:
    "`(process, its output file)` for a server command."
    out = open(log, 'w')
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT), out

def wait_healthy(proc, port: int, path: str = '/health', limit: float = 120):
    "Return once GET `path` answers 200; raise if the server exits or `limit` seconds pass."
    deadline = time.monotonic() + limit
    while True:
        if proc.poll() is not None: raise RuntimeError(f'the server exited with {proc.returncode}')
        if time.monotonic() > deadline: raise RuntimeError(f'the server was not healthy within {limit:g} s')
        try:
            c = http.client.HTTPConnection('127.0.0.1', port, timeout=5); c.request('GET', path); r = c.getresponse(); r.read(); c.close()
            if r.status == 200: return
        except (OSError, http.client.HTTPException): pass
        time.sleep(0.2)

def stop_server(proc, out):
    proc.terminate()
    try: proc.wait(10)
    except subprocess.TimeoutExpired: proc.kill(); proc.wait()
    out.close()

def run_cases(pool, port: int, headers: dict, bodies: dict, duration: float, path: str = '/predict') -> tuple:
    "Every case of CASES against one server, printed as a table. `({(size, conc): (requests/s, p50 ms, p99 ms)}, any errors)`."
    import numpy as np
    res, errored = {}, False
    print(f"{'case':<22} | {'req/s':>8} | {'records/s':>9} | {'p50 ms':>7} | {'p99 ms':>7} | errors")
    for size, conc in CASES:
        lats, errors, elapsed = pool.apply(load_case, (port, headers, bodies[size], conc, duration, path))
        p50, p99 = np.percentile(lats, [50, 99]) * 1e3 if lats else (float('nan'),) * 2
        print(f"{size:>3} record{'s' if size > 1 else ' '} x conc {conc:<3} | {len(lats)/elapsed:8.1f} | "
              f"{len(lats)*size/elapsed:9.0f} | {p50:7.2f} | {p99:7.2f} | {errors}", flush=True)
        res[size, conc], errored = (len(lats) / elapsed, p50, p99), errored or errors > 0
    return res, errored

SAVE_MLFLOW = """
import pickle, sys, pandas as pd, mlflow, mlflow.sklearn
from mlflow.models import infer_signature
pipe, X, method, path = pickle.load(open(sys.argv[1], 'rb')), pd.read_parquet(sys.argv[2]), sys.argv[3], sys.argv[4]
mlflow.sklearn.save_model(pipe, path, pyfunc_predict_fn=method, serialization_format='cloudpickle',  # read once, at start
                          signature=infer_signature(X, getattr(pipe, method)(X)))
print(mlflow.__version__)
"""

def mlflow_cases(a, pipe, df, recs: list, tmp: Path, summary: dict) -> tuple:
    "The same Pipeline saved and served by MLflow from the virtualenv `a.mlflow`, under the same cases and records. `(outputs agree, any errors)`."
    import pickle, numpy as np
    py, venv = Path(a.mlflow)/'bin'/'python', Path(a.mlflow)
    method = 'predict_proba' if hasattr(pipe, 'predict_proba') else 'predict'
    pickle.dump(pipe, open(tmp/'pipeline.pkl', 'wb')); df.head(200).to_parquet(tmp/'sample.parquet')
    env = {**ORIG_ENV, **{v: str(a.threads) for v in THREAD_VARS}, 'MLFLOW_TRACKING_URI': f'file://{tmp}/mlruns',
           'PATH': f"{venv/'bin'}:{ORIG_ENV.get('PATH', '')}"}  # mlflow starts `uvicorn` from PATH
    r = subprocess.run([str(py), '-c', SAVE_MLFLOW, str(tmp/'pipeline.pkl'), str(tmp/'sample.parquet'), method, str(tmp/'mlflow-model')],
                       env=env, capture_output=True, text=True)
    if r.returncode: raise RuntimeError(f'saving the Pipeline with MLflow failed:\n{r.stderr[-3000:]}')
    version = r.stdout.split()[-1]
    port = free_port()
    proc, out = start_server([str(venv/'bin'/'mlflow'), 'models', 'serve', '-m', str(tmp/'mlflow-model'), '--env-manager', 'local',
                              '-h', '127.0.0.1', '-p', str(port), '-w', '1'], env, tmp/'mlflow.out')
    try:
        wait_healthy(proc, port)
        bodies = {1: [json.dumps({'dataframe_records': [r]}).encode() for r in recs[:1000]],
                  100: [json.dumps({'dataframe_records': recs[i:i+100]}).encode() for i in range(0, len(recs), 100)]}
        status, resp = call(port, '/invocations', body=bodies[100][0])
        if status != 200: raise RuntimeError(f'POST /invocations: {status} {resp}')
        got, want = np.asarray(resp['predictions'], dtype=float), np.asarray(getattr(pipe, method)(df.iloc[:100]), dtype=float)
        gap = np.abs(got.reshape(want.shape) - want).max()
        print(f'\nMLflow {version}: `mlflow models serve --env-manager local -w 1` (uvicorn, 1 process, {a.threads} OpenMP thread(s)), '
              f'{method} of the same Pipeline; max difference from the Pipeline on 100 rows {gap:.1e}')
        with mp.get_context('spawn').Pool(1) as pool:
            summary[f'MLflow {version}'], errored = run_cases(pool, port, {}, bodies, a.duration, '/invocations')
        if proc.poll() is not None: raise RuntimeError(f'MLflow exited with {proc.returncode} during the load')
        return gap <= ATOL, errored
    finally: stop_server(proc, out)

def main() -> int:
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument('--registry', help='registry holding the model (default: train adult-income into a temporary folder)')
    a.add_argument('--model', default='adult-income', help='the registered model to serve (default adult-income)')
    a.add_argument('--data', default='data/adult.csv.gz', help="a table with the model's input columns; its rows are the requests")
    a.add_argument('--duration', type=float, default=10, help='measured seconds per case (default 10)')
    a.add_argument('--port', type=int, help='server port (default: a free one)')
    a.add_argument('--threads', type=int, default=1, help='OpenMP/BLAS threads of the server and of the in-process timings (default 1)')
    a.add_argument('--mlflow', metavar='VENV', help='also serve the same Pipeline with `mlflow models serve` from this virtualenv and measure it the same way')
    a = a.parse_args()
    os.environ.update({v: str(a.threads) for v in THREAD_VARS})  # this process, before numpy and scikit-learn load
    import numpy as np, pandas as pd
    from threadpoolctl import threadpool_limits
    from mlnb.registry import Registry
    from mlnb.predlog import PredictionLog
    from mlnb.requests import RecordError, check_records
    from mlnb.scoring import make_scorer
    if a.registry and not (Path(a.registry)/'registry.db').exists(): sys.exit(f'{a.registry} is not a registry (no registry.db)')
    tmp = Path(tempfile.mkdtemp(prefix='mlnb-bench-serve-'))
    registry = Path(a.registry).resolve() if a.registry else make_registry(tmp)
    mv = Registry(registry).load(a.model); pipe = mv.pipeline; feats = list(pipe.feature_names_in_)
    output = lambda X: pipe.predict_proba(X) if hasattr(pipe, 'predict_proba') else pipe.predict(X)[:, None]
    threadpool_limits(a.threads)

    from mlnb.ingest import read_table
    df = read_table(a.data)[feats].sample(3000, random_state=SEED).reset_index(drop=True)
    recs = [{k: None if isinstance(v, float) and v != v else v for k, v in r.items()} for r in df.to_dict(orient='records')]  # exact floats (to_json rounds to 10 digits)
    try: check_records(recs, feats, mv.schema); bad = set()
    except RecordError as e: bad = {x['record'] for x in e.errors}
    keep = [i for i in range(len(recs)) if i not in bad][:2000]
    df, recs = df.iloc[keep].reset_index(drop=True), [recs[i] for i in keep]
    bodies = {1: [json.dumps(r).encode() for r in recs[:1000]],
              100: [json.dumps(recs[i:i+100]).encode() for i in range(0, len(recs), 100)]}

    port, key, failed, errored = a.port or free_port(), secrets.token_urlsafe(24), False, False
    env = {**ORIG_ENV, 'MLNB_API_KEYS': key, **{v: str(a.threads) for v in THREAD_VARS}}
    summary, loads = {}, [os.getloadavg()]
    proc, out = start_server([str(BIN/'mlnb'), 'serve', '--registry', str(registry), '--model', a.model, '--host', '127.0.0.1',
                              '--port', str(port), '--log', str(tmp/'predictions.jsonl')], env, tmp/'server.out')
    try:
        wait_healthy(proc, port)
        status, info = call(port, '/model', key)
        if status != 200 or info['version'] != mv.version: raise RuntimeError(f'GET /model: {status} {info}')
        status, resp = call(port, '/predict', key, bodies[100][0])
        if status != 200: raise RuntimeError(f'POST /predict: {status} {resp}')
        server_p = np.array([[d[str(c)] for c in pipe.classes_] for d in resp['probabilities']] if 'probabilities' in resp else [[v] for v in resp['predictions']])
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()} | model {info['name']} "
              f"v{info['version']}, scorer {info['scorer']} | server: uvicorn, 1 process, {a.threads} OpenMP thread(s), auth on")
        print(f'load: separate process, keep-alive HTTP/1.1, {a.duration:g} s per case after {WARMUP:g} s warm-up, '
              f'{len(recs)} rows of {a.data} rotated; load average {loads[0][0]:.2f} {loads[0][1]:.2f} {loads[0][2]:.2f}\n')
        with mp.get_context('spawn').Pool(1) as pool:
            summary['mlnb serve'], errors = run_cases(pool, port, {'X-API-Key': key}, bodies, a.duration)
            errored |= errors
            big = json.dumps((recs * (MAX_RECORDS // len(recs) + 1))[:MAX_RECORDS]).encode()
            for _ in range(3):
                health, big_s, status = pool.apply(health_during, (port, key, big))
                if status != 200: raise RuntimeError(f'the {MAX_RECORDS:,}-record request got {status}')
                print(f"/health during a {MAX_RECORDS:,}-record request ({len(big)/2**20:.1f} MB, {big_s:.2f} s): {len(health)} calls, "
                      f"p50 {np.median(health)*1e3:.2f} ms, max {max(health)*1e3:.2f} ms", flush=True)
        if proc.poll() is not None: raise RuntimeError(f'the server exited with {proc.returncode} during the load')
    except (RuntimeError, OSError, http.client.HTTPException) as e:
        print(f'server failed: {e}\n--- server output ---\n{(tmp/"server.out").read_text()[-3000:]}', file=sys.stderr); failed = True
    finally:
        stop_server(proc, out); (tmp/'predictions.jsonl').unlink(missing_ok=True)
    loads.append(os.getloadavg())
    if a.mlflow and not failed:
        try:
            ok_mlflow, errors = mlflow_cases(a, pipe, df, recs, tmp, summary)
            errored |= errors or not ok_mlflow
        except (RuntimeError, OSError, http.client.HTTPException) as e:
            print(f'MLflow failed: {e}\n--- its output ---\n{(tmp/"mlflow.out").read_text()[-3000:] if (tmp/"mlflow.out").exists() else ""}', file=sys.stderr)
            failed = True
        loads.append(os.getloadavg())
    if a.registry: shutil.rmtree(tmp, ignore_errors=True)
    if failed: return 1
    scorer = make_scorer(pipe, mv.reference())
    X1, X100 = df.iloc[:1], df.iloc[:100]
    c1, c100 = ({c: X[c].tolist() for c in feats} for X in (X1, X100))
    name = type(scorer).__name__
    print(f'\nin process ({a.threads} thread(s), median of {CALLS} calls):')
    print(f'  Pipeline on a DataFrame            {median_ms(lambda: output(X1)):7.3f} ms / 1 row  '
          f'{median_ms(lambda: output(X100)):7.3f} ms / 100 rows')
    print(f'  {name + ".score, columns":<34} {median_ms(lambda: scorer.score(c1)):7.3f} ms / 1 row  '
          f'{median_ms(lambda: scorer.score(c100)):7.3f} ms / 100 rows   ({scorer.note})')
    ref = output(X100)
    d_scorer, d_server = np.abs(scorer.score(c100).reshape(ref.shape) - ref).max(), np.abs(server_p - ref).max()
    ok = d_scorer <= ATOL and d_server <= ATOL
    print(f'  max |p| difference on 100 rows: {name} vs Pipeline {d_scorer:.1e}, server vs Pipeline {d_server:.1e} '
          f'({"ok" if ok else "FAIL"}: must be <= {ATOL:g})')
    with tempfile.TemporaryDirectory() as d:
        log, resp = PredictionLog(Path(d)/'p.jsonl'), dict(model='adult-income', version=1, predictions=['<=50K'], probabilities=[{'<=50K': 0.9, '>50K': 0.1}])
        ts = []
        for i in range(20_000):
            t = time.perf_counter(); log.write(c1, resp); ts.append(time.perf_counter() - t)
        log.close()
        print(f'  prediction log, queueing one 1-record request: p50 {np.median(ts)*1e6:.1f} µs, p99 {np.percentile(ts, 99)*1e6:.1f} µs '
              f'(20,000 writes; a background thread writes them)')
    if not a.registry: print(f'\nregistry kept for reruns: python bench/serve.py --registry {registry}')
    print()
    for server, res in summary.items():
        print(f"{a.model}, {server}: p99 {res[1, 1][2]:.2f} ms at 1 record x concurrency 1, {res[1, 8][0]:.0f} requests/s at 1 record x concurrency 8")
    print('load average (1, 5, 15 min) before, between and after: ' + ' | '.join(' '.join(f'{x:.2f}' for x in l) for l in loads))
    if errored: print('FAIL: some requests errored', file=sys.stderr)
    return 0 if ok and not errored else 1

if __name__ == '__main__':
    sys.exit(main())
