"A real uvicorn server on a free loopback port, called over HTTP; the registry it serves from; batch scoring."
import http.client, json, os, signal, socket, subprocess, threading, time
import numpy as np, pandas as pd, pytest, yaml
from mlnb.core import MlnbError
from mlnb.ingest import demo_data
from mlnb.prepare import normalise_missing
from mlnb.registry import Registry, gate
from mlnb.train import make_pipeline
from mlnb.deploy import reference_sample
from conftest import MLNB, ROOT, mlnb

SCHEMA = yaml.safe_load((ROOT/'params'/'default.yaml').read_text())['stages']['validate']['params']['schema']
KEY, ADMIN = 'test-key-0123456789', 'admin-key-9876543210'

def register(reg, kind='hgb', seed=0, n=2500):
    df = demo_data(n, seed); X, y = df.drop(columns='income'), df['income']
    pipe = make_pipeline(X, kind, {'max_iter': 60} if kind == 'hgb' else {}, seed).fit(X, y)
    ref = reference_sample(normalise_missing(df, ['?']), pipe, '>50K', 1000, seed)
    return reg.register('adult', pipe, schema=SCHEMA, reference=ref, metrics={'roc_auc': 0.9}, run_id=f'test-{seed}'), pipe

@pytest.fixture(scope='module')
def registry(tmp_path_factory):
    reg = Registry(tmp_path_factory.mktemp('registry'))
    v, pipe = register(reg); reg.promote(f'adult@{v}')
    return reg, pipe

def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

class Server:
    "`mlnb serve` in a subprocess on a free loopback port."
    def __init__(self, reg_root, log, *extra):
        self.port = free_port()
        env = {**os.environ, 'MLNB_API_KEYS': KEY, 'MLNB_ADMIN_KEYS': ADMIN, 'OMP_NUM_THREADS': '1'}
        self.proc = subprocess.Popen([MLNB, 'serve', '--registry', reg_root, '--model', 'adult', '--port', str(self.port), '--log', log, *extra],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stdout.read()
            try:
                if self.call('GET', '/health')[0] == 200: return
            except OSError: time.sleep(0.3)
        raise TimeoutError('server did not start')
    def call(self, method, path, body=None, key=KEY, conn=None):
        c = conn or http.client.HTTPConnection('127.0.0.1', self.port, timeout=30)
        data = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
        c.request(method, path, body=data, headers={'X-API-Key': key} if key else {})
        r = c.getresponse(); payload = json.loads(r.read() or b'null')
        if conn is None: c.close()
        return r.status, payload
    def stop(self):
        self.proc.terminate()
        try: self.proc.wait(15)
        except subprocess.TimeoutExpired: self.proc.kill()

@pytest.fixture(scope='module')
def server(registry, tmp_path_factory):
    d = tmp_path_factory.mktemp('serve'); s = Server(registry[0].root, d/'predictions.jsonl'); s.log = d/'predictions.jsonl'
    yield s
    s.stop()

def records(n, seed=1):
    df = demo_data(n, seed).drop(columns='income')
    return json.loads(df.to_json(orient='records')), df

def test_good_records_match_the_pipeline(server, registry):
    recs, df = records(40)
    st, one = server.call('POST', '/predict', recs[0])
    assert st == 200 and one['model'] == 'adult' and one['version'] == 1 and len(one['predictions']) == 1
    st, many = server.call('POST', '/predict', recs)
    assert st == 200 and len(many['predictions']) == 40
    expected = registry[1].predict_proba(df)
    got = np.array([[p['<=50K'], p['>50K']] for p in many['probabilities']])
    assert np.abs(got - expected).max() <= 1e-6
    assert many['predictions'] == list(registry[1].classes_[expected.argmax(axis=1)])
    lines = server.log.read_text().splitlines()
    assert len(lines) >= 41 and json.loads(lines[-1])['inputs'] == recs[-1] and json.loads(lines[-1])['version'] == 1

def test_bad_input_gets_422_naming_record_and_field(server):
    recs, _ = records(3)
    st, r = server.call('POST', '/predict', '{"age": 3')
    assert st == 422 and 'not valid JSON' in r['detail'][0]['error']
    bad = [dict(recs[0]), dict(recs[1]), dict(recs[2])]
    del bad[1]['occupation']; bad[2]['age'] = 'forty'
    st, r = server.call('POST', '/predict', bad)
    assert st == 422 and {(e['record'], e['field']) for e in r['detail']} == {(1, 'occupation'), (2, 'age')}
    assert any('missing' in e['error'] for e in r['detail']) and any("expected an integer, got 'forty'" in e['error'] for e in r['detail'])
    st, r = server.call('POST', '/predict', dict(recs[0], gender='Robot'))
    assert st == 422 and r['detail'][0]['field'] == 'gender' and 'not one of' in r['detail'][0]['error']
    st, r = server.call('POST', '/predict', [])
    assert st == 422
    assert server.call('POST', '/predict', recs[0])[0] == 200          # still serving

def test_api_keys(server):
    recs, _ = records(1)
    assert server.call('POST', '/predict', recs[0], key=None) == (401, {'detail': 'missing X-API-Key header'})
    assert server.call('POST', '/predict', recs[0], key='wrong')[0] == 403
    assert server.call('GET', '/model', key=None)[0] == 401
    assert server.call('POST', '/reload', key=KEY)[0] == 403            # reload needs an admin key
    st, m = server.call('GET', '/model')
    assert st == 200 and m['name'] == 'adult' and m['metrics'] == {'roc_auc': 0.9} and m['schema']['gender']['isin'] == ['Female', 'Male']
    assert m['scorer'] == 'FastScorer'

def test_reload_under_concurrent_requests(server, registry):
    reg = registry[0]
    v2, _ = register(reg, seed=5); reg.promote(f'adult@{v2}')
    recs, _ = records(20, seed=3)
    results, stop = [], threading.Event()
    def client(i):
        c = http.client.HTTPConnection('127.0.0.1', server.port, timeout=30)
        while not stop.is_set():
            st, r = server.call('POST', '/predict', recs[i % 20], conn=c); results.append((st, r.get('version')))
        c.close()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads: t.start()
    time.sleep(1)
    assert server.call('POST', '/reload', key=ADMIN)[1]['version'] == v2
    time.sleep(1)
    reg.promote('adult@1'); server.proc.send_signal(signal.SIGHUP)          # SIGHUP reloads too
    deadline = time.monotonic() + 30
    while server.call('GET', '/health')[1]['version'] != 1 and time.monotonic() < deadline: time.sleep(0.2)
    time.sleep(0.5); stop.set()
    for t in threads: t.join()
    assert len(results) > 50 and all(st == 200 for st, _ in results), [r for r in results if r[0] != 200][:3]
    versions = [v for _, v in results]
    assert {1, v2} <= set(versions) and versions[-1] == 1

def test_no_auth_only_when_asked(registry, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ('MLNB_API_KEYS', 'MLNB_ADMIN_KEYS')}
    r = subprocess.run([MLNB, 'serve', '--registry', registry[0].root, '--model', 'adult', '--port', str(free_port())],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'no API keys' in r.stderr
    s = Server(registry[0].root, tmp_path/'p.jsonl', '--no-auth')
    try: assert s.call('POST', '/predict', records(1)[0][0], key=None)[0] == 200
    finally: s.stop()

def test_batch_predict(registry, tmp_path):
    df = demo_data(300, 7)
    df.to_csv(tmp_path/'in.csv', index=False)
    r = mlnb('predict', '--registry', registry[0].root, '--model', 'adult@1', tmp_path/'in.csv', tmp_path/'out.parquet')
    assert r.returncode == 0, r.stderr
    out = pd.read_parquet(tmp_path/'out.parquet')
    assert len(out) == 300 and {'prediction', 'proba_>50K'} <= set(out.columns)
    df.drop(columns=['occupation']).to_csv(tmp_path/'bad.csv', index=False)
    r = mlnb('predict', '--registry', registry[0].root, '--model', 'adult', tmp_path/'bad.csv', tmp_path/'o.csv')
    assert r.returncode == 2 and "lacks the columns ['occupation']" in r.stderr and not (tmp_path/'o.csv').exists()

def test_promote_and_rollback_cli(tmp_path):
    reg = Registry(tmp_path)
    for s in (0, 1, 2): register(reg, kind='logistic', seed=s, n=600)
    for v in (1, 2, 3): assert mlnb('models', 'promote', f'adult@{v}', '--registry', tmp_path).returncode == 0
    r = mlnb('models', 'rollback', 'adult', '--registry', tmp_path)
    assert r.returncode == 0 and 'rolled back to v2' in r.stdout and reg.resolve('adult') == ('adult', 2)
    r = mlnb('models', 'list', '--registry', tmp_path)
    assert r.returncode == 0 and len(r.stdout.strip().splitlines()) == 4 and 'production' in r.stdout
    r = mlnb('models', 'show', 'adult', '--registry', tmp_path)
    assert 'adult v2' in r.stdout and 'aliases: production' in r.stdout

def test_gate():
    assert gate({'roc_auc': 0.91}, {'roc_auc': 0.85}, {'roc_auc': 0.915}, 'roc_auc', 0.01) == {'passed': True, 'reasons': []}
    g = gate({'roc_auc': 0.80}, {'roc_auc': 0.85}, {'roc_auc': 0.92}, 'roc_auc', 0.01)
    assert not g['passed'] and len(g['reasons']) == 2 and 'worse than production' in g['reasons'][1]

def test_monitor_reads_the_prediction_log(server, registry, tmp_path):
    n = len(server.log.read_text().splitlines())
    assert n >= 40
    r = mlnb('monitor', '--model', 'adult', '--registry', registry[0].root, '--log', server.log, '--runs-dir', tmp_path)
    assert r.returncode in (0, 3), r.stdout + r.stderr
    g = json.loads(next(tmp_path.glob('*/run.json')).read_text())['stages']['monitor']['glued']
    assert g['rows'] == n and not g['labelled'] and len(g['drift_table']) == 14
