"The Dask executor: a real scheduler and two workers on loopback run the pipeline to the local executor's artifacts; a lost worker's stage is retried once elsewhere."
import json, os, signal, subprocess, sys, threading, time
from pathlib import Path
import pytest
from conftest import MLNB, ROOT, mlnb, small_params, write_params

DASK = str(Path(sys.executable).parent/'dask')
SLEEP = 'tests/notebooks/sleep.ipynb'

@pytest.fixture(scope='module')
def cluster(tmp_path_factory):
    "A `dask scheduler` and two `dask worker` processes (with nannies) on loopback; the scheduler allows one retry of a lost worker's task."
    from distributed import Client
    d = tmp_path_factory.mktemp('dask'); sf = d/'scheduler.json'
    env = {**os.environ, 'DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES': '1'}
    procs = [subprocess.Popen([DASK, 'scheduler', '--host', '127.0.0.1', '--port', '0', '--no-dashboard', '--scheduler-file', sf],
                              cwd=d, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    for i in range(60):
        if sf.exists() and sf.stat().st_size: break
        time.sleep(0.25)
    procs += [subprocess.Popen([DASK, 'worker', '--scheduler-file', sf, '--nthreads', '1', '--no-dashboard', '--name', f'w{i}',
                                '--resources', 'memory=2e9', '--local-directory', d/f'w{i}'], cwd=d, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(2)]
    client = Client(scheduler_file=str(sf), timeout='30s')
    client.wait_for_workers(2, timeout=60)
    yield client
    client.close()
    for p in procs[1:] + procs[:1]: p.terminate()
    for p in procs:
        try: p.wait(20)
        except subprocess.TimeoutExpired: p.kill()

def manifest(runs: Path) -> dict:
    return json.loads(max(runs.glob('*/run.json'), key=lambda p: p.stat().st_mtime).read_text())

def hashes(m: dict) -> dict:
    return {(s, a): ref['sha256'] for s, st in m['stages'].items() for a, ref in st['artifacts'].items()}

@pytest.mark.slow
def test_a_dask_cluster_gives_the_local_executors_artifacts(cluster, tmp_path):
    p = write_params(tmp_path/'small.yaml', small_params())
    local = mlnb('run', p, '--runs-dir', tmp_path/'local', '--no-cache', '--until', 'explain')
    assert local.returncode == 0, local.stdout + local.stderr
    addr = cluster.scheduler.address
    r = mlnb('run', p, '--runs-dir', tmp_path/'dask', '--no-cache', '--until', 'explain', '--scheduler', addr)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f'executor: dask, the scheduler at {addr}' in r.stdout
    a, b = manifest(tmp_path/'local'), manifest(tmp_path/'dask')
    assert {k: b['executor'][k] for k in ('kind', 'scheduler', 'cluster')} == {'kind': 'dask', 'scheduler': addr, 'cluster': 'given'} and a['executor'] == {'kind': 'local'}
    assert b['executor']['distributed']                                 # the Dask version, recorded with the run
    workers = {st['worker'] for st in b['stages'].values()}
    assert workers <= set(cluster.scheduler_info()['workers']) and all(st['attempt'] == 1 for st in b['stages'].values())
    assert len(hashes(a)) > 10 and hashes(a) == hashes(b)          # every artifact, byte for byte
    assert {s: st['glued'].get('cv_roc_auc') for s, st in a['stages'].items()} == {s: st['glued'].get('cv_roc_auc') for s, st in b['stages'].items()}
    train = (tmp_path/'dask'/b['run_id']/b['stages']['train']['output']).read_text()
    assert f'Fits run on the Dask cluster at `{addr}`' in train       # cross-validation went to the cluster through joblib
    assert not list((tmp_path/'dask'/b['run_id']).glob('.*.part.ipynb'))

def _kill_worker_running(client, suffix: str, after: float = 1.0, timeout: float = 120) -> str:
    "Wait until the task whose key ends with `suffix` runs on a worker, then SIGKILL that worker process; return its address."
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        on = [w for w, keys in client.processing().items() if any(str(k).endswith(suffix) for k in keys)]
        if on:
            time.sleep(after)                                        # well into the stage
            pid = client.run(os.getpid, workers=on)[on[0]]
            os.kill(pid, signal.SIGKILL); return on[0]
        time.sleep(0.1)
    raise AssertionError(f'no task ending {suffix} ran within {timeout} s')

def _run_in_thread(args) -> dict:
    box = {}
    t = threading.Thread(target=lambda: box.update(r=mlnb(*args))); t.start()
    return box, t

@pytest.mark.slow
def test_a_worker_lost_mid_stage_is_retried_elsewhere_then_fails_clearly(cluster, tmp_path):
    p = write_params(tmp_path/'p.yaml', {'stages': {'a': {'notebook': SLEEP, 'params': {'seconds': 0}},
                                                    'b': {'notebook': SLEEP, 'upstream': ['a'], 'params': {'seconds': 8}}}})
    addr = cluster.scheduler.address
    box, t = _run_in_thread(('run', p, '--runs-dir', tmp_path/'once', '--scheduler', addr, '--no-cache'))
    lost = _kill_worker_running(cluster, '-b', after=3); t.join(300)
    r, m = box['r'], manifest(tmp_path/'once')
    assert r.returncode == 0, r.stdout + r.stderr
    assert m['stages']['b']['attempt'] == 2 and m['stages']['b']['status'] == 'ok' and m['stages']['b']['glued']['threads'] == [1], m['stages']['b']
    assert not list((tmp_path/'once'/m['run_id']).glob('.*.part.ipynb'))      # the lost attempt's notebook is gone
    cluster.wait_for_workers(2, timeout=60)                                    # the nanny restarted the killed worker

    box, t = _run_in_thread(('run', p, '--runs-dir', tmp_path/'twice', '--scheduler', addr, '--no-cache'))
    _kill_worker_running(cluster, '-b', after=2)
    time.sleep(1.5); _kill_worker_running(cluster, '-b', after=2); t.join(300)  # and again on the retry
    r, m = box['r'], manifest(tmp_path/'twice')
    assert r.returncode == 1 and m['status'] == 'failed' and m['stages']['b']['status'] == 'failed'
    assert 'lost again on the retry' in m['stages']['b']['error']['evalue'], m['stages']['b']['error']
    assert not (tmp_path/'twice'/m['run_id']/m['stages']['b']['output']).exists()   # nothing half-written is kept as the stage's notebook
    cluster.wait_for_workers(2, timeout=60)

def test_a_stage_no_worker_can_take_fails_at_once_naming_it(tmp_path):
    p = write_params(tmp_path/'p.yaml', {'stages': {'a': {'notebook': SLEEP, 'params': {'seconds': 0}, 'resources': {'gpu': 1}}}})
    t = time.monotonic()
    r = mlnb('run', p, '--runs-dir', tmp_path/'runs', '--executor', 'dask', '--jobs', '1')
    assert r.returncode != 0 and time.monotonic() - t < 60
    assert "stage 'a' asks for resources {'gpu': 1.0}; no worker of the cluster" in r.stdout + r.stderr, r.stdout + r.stderr
    bad = write_params(tmp_path/'bad.yaml', {'stages': {'a': {'notebook': SLEEP, 'resources': {'memory': 'lots'}}}})
    r = mlnb('run', bad, '--runs-dir', tmp_path/'runs')
    assert r.returncode == 2 and "stage 'a': resources.memory: 'lots' is not a number or a size such as 8GB" in r.stderr, r.stderr

def test_a_local_cluster_runs_stages_as_tasks(tmp_path):
    nb = SLEEP
    p = write_params(tmp_path/'p.yaml', {'stages': {'a': {'notebook': nb, 'params': {'seconds': 0}},
                                                    'b': {'notebook': nb, 'upstream': ['a'], 'params': {'seconds': 1}, 'resources': {'memory': '100MB'}},
                                                    'c': {'notebook': nb, 'upstream': ['a'], 'params': {'seconds': 1}}}})
    r = mlnb('run', p, '--runs-dir', tmp_path/'runs', '--executor', 'dask', '--jobs', '2')
    assert r.returncode == 0, r.stdout + r.stderr
    m = manifest(tmp_path/'runs')
    assert m['executor']['kind'] == 'dask' and m['executor']['cluster'] == 'started for this run'
    assert {n: st['status'] for n, st in m['stages'].items()} == {'a': 'ok', 'b': 'ok', 'c': 'ok'}
    assert all(st['worker'].startswith('tcp://127.0.0.1:') for st in m['stages'].values())
    r = mlnb('run', p, '--runs-dir', tmp_path/'runs', '--executor', 'dask')        # all cached: no cluster is started
    assert r.returncode == 0 and 'all cached' in r.stdout and 'executor: dask' not in r.stdout, r.stdout

@pytest.mark.slow
def test_a_sweep_runs_every_combination_on_the_cluster(cluster, tmp_path):
    p = write_params(tmp_path/'p.yaml', {'stages': {'a': {'notebook': SLEEP, 'params': {'seconds': 0}},
                                                    'b': {'notebook': SLEEP, 'upstream': ['a'], 'params': {'seconds': 0}}},
                                         'sweep': {'b.seconds': [0, 0.5]}})
    r = mlnb('run', p, '--runs-dir', tmp_path/'runs', '--scheduler', cluster.scheduler.address)
    assert r.returncode == 0, r.stdout + r.stderr
    mans = [json.loads(f.read_text()) for f in (tmp_path/'runs').glob('*/run.json')]
    full = [m for m in mans if not m.get('partial')]
    assert len(mans) == 3 and len(full) == 2                                   # the shared stage `a` once, then one run per value
    assert all(m['executor']['scheduler'] == cluster.scheduler.address for m in mans)
    assert sorted(m['stages']['b']['parameters']['seconds'] for m in full) == [0, 0.5]
    assert all(m['stages']['a']['status'] == 'cached' and m['stages']['b']['worker'] in cluster.scheduler_info()['workers'] for m in full)

@pytest.mark.slow
def test_a_runs_url_needs_no_shared_folder(cluster, tmp_path):
    "`--runs-dir file://…` (any fsspec URL): workers copy their inputs from the URL into a folder of their own and their files back."
    import shutil
    from mlnb.core import sha256_file
    from mlnb.pipeline import mirror_dir
    url, addr = f'file://{tmp_path}/bucket/runs', cluster.scheduler.address
    mirror = mirror_dir(ROOT, url)
    try:
        p = small_params(); p['stages']['explain']['params'].update(sample_size=40)
        r = mlnb('run', write_params(tmp_path/'small.yaml', p), '--runs-dir', url, '--until', 'explain', '--scheduler', addr)
        assert r.returncode == 0, r.stdout + r.stderr
        m = manifest(mirror); remote = tmp_path/'bucket'/'runs'/m['run_id']
        assert m['runs_url'] == url and f'(copied to {url}/{m["run_id"]}/)' in r.stdout
        for s, st in m['stages'].items():
            assert st['staged_in'] > 0 or not st['upstream'], (s, st)                # upstream notebooks and artifacts copied in
            for ref in st['artifacts'].values(): assert sha256_file(remote/ref['path']) == ref['sha256']
        assert (remote/'run.json').exists() and (remote/'report.html').exists()
        injected = json.loads((remote/m['stages']['train']['output']).read_text())
        src = ''.join(next(c['source'] for c in injected['cells'] if 'injected-parameters' in c['metadata'].get('tags', [])))
        assert '/mlnb-stage-' in src and str(mirror) not in src                     # the worker read its own copies, not the runner's folder

        p['stages']['explain']['params'].update(sample_size=50)                     # only explain changes: the rest comes from the cache
        r = mlnb('run', write_params(tmp_path/'small.yaml', p), '--runs-dir', url, '--until', 'explain', '--scheduler', addr)
        assert r.returncode == 0, r.stdout + r.stderr
        m2 = manifest(mirror); remote2 = tmp_path/'bucket'/'runs'/m2['run_id']
        assert m2['stages']['explain']['status'] == 'ok' and m2['stages']['explain']['staged_in'] > 0
        assert m2['stages']['train']['status'] == 'cached' and (remote2/m2['stages']['train']['output']).exists()
        for ref in m2['stages']['train']['artifacts'].values(): assert sha256_file(remote2/ref['path']) == ref['sha256']
    finally:
        shutil.rmtree(mirror_dir(ROOT, f'file://{tmp_path}'), ignore_errors=True)   # the mirror and its cache index sit in outputs/mirror/
        for d in mirror_dir(ROOT, f'file://{tmp_path}').parents:
            if d == ROOT/'outputs' or not d.exists() or any(d.iterdir()): break
            d.rmdir()
