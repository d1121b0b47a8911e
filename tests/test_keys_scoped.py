"""Scoped serving keys on a real server on loopback: each pair of scope and route, 401 and 403, the failed-attempt limit
per client address (429 with Retry-After), admin calls in the audit log by key id, and `mlnb serve --keys-file`."""
import http.client, json, os, socket, subprocess, threading, time
import pytest, yaml
from mlnb.access import ROUTE_SCOPES, SCOPES, FailureLimit, key_entry, new_key
from mlnb.audit import entries, verify
from mlnb.cli import main
from mlnb.ingest import demo_data
from mlnb.registry import Registry
from mlnb.serve import create_app
from mlnb.train import make_pipeline
from conftest import MLNB, ROOT

SCHEMA = yaml.safe_load((ROOT/'params'/'default.yaml').read_text())['stages']['validate']['params']['schema']
RECORD = demo_data(5, 3).drop(columns='income').head(1).to_dict('records')
CALLS = {'/health': ('GET', None), '/predict': ('POST', json.dumps(RECORD)), '/model': ('GET', None), '/docs': ('GET', None), '/openapi.json': ('GET', None),
         '/metrics': ('GET', None), '/reload': ('POST', None)}

def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def call(port, path, key=None, source='127.0.0.1'):
    "`(status, headers)` of the route's call from the loopback address `source`, with `key` as X-API-Key."
    method, body = CALLS[path]
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=30, source_address=(source, 0))
    c.request(method, path, body=body, headers={'X-API-Key': key} if key else {})
    r = c.getresponse(); r.read(); c.close()
    return r.status, dict(r.getheaders())

@pytest.fixture(scope='module')
def served(tmp_path_factory):
    "A uvicorn server on a free loopback port (in a thread) with a key per scope and one with every scope; its clock can be moved on."
    import uvicorn
    d = tmp_path_factory.mktemp('keys')
    reg = Registry(d/'registry'); df = demo_data(600, 0)
    pipe = make_pipeline(df.drop(columns='income'), 'logistic', {}, 0).fit(df.drop(columns='income'), df['income'])
    reg.promote(f"adult@{reg.register('adult', pipe, schema=SCHEMA, reference=df.head(200), metrics={}, run_id='t')}")
    made = {s: new_key(f'{s}-only', [s]) for s in SCOPES} | {'all': new_key('everything', list(SCOPES))}
    skew = [0.0]
    app = create_app(reg, 'adult', keys=[key_entry(e, 'test') for _, e in made.values()], log_path=d/'p.jsonl',
                     failures=FailureLimit(clock=lambda: time.monotonic() + skew[0]))
    port = free_port(); server = uvicorn.Server(uvicorn.Config(app, host='127.0.0.1', port=port, log_level='warning', access_log=False))
    t = threading.Thread(target=server.run, daemon=True); t.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline: time.sleep(0.05)
    yield dict(port=port, keys={s: k for s, (k, _) in made.items()}, entries={s: e for s, (_, e) in made.items()}, app=app, skew=skew, dir=d)
    server.should_exit = True; t.join(10)

def test_each_scope_on_each_route(served):
    port, keys = served['port'], served['keys']
    routes = [p for p in ROUTE_SCOPES if p in {r.path for r in served['app'].routes}]    # /metrics when it exists
    assert {'/predict', '/model', '/docs', '/openapi.json', '/reload'} <= set(routes), routes
    got = {(s, p): call(port, p, keys[s])[0] for s in (*SCOPES, 'all') for p in routes}
    want = {(s, p): 200 if s in (ROUTE_SCOPES[p], 'all') else 403 for s in (*SCOPES, 'all') for p in routes}
    assert got == want
    for p in routes:                                                        # no key, and a key the server does not know
        assert call(port, p, source='127.0.0.5')[0] == 401, p
        assert call(port, p, 'not-a-key-of-this-server', source='127.0.0.6')[0] == 401, p
    assert call(port, '/health', source='127.0.0.5')[0] == 200              # the one route without a key

def test_unknown_keys_are_limited_per_client(served):
    port, good, skew = served['port'], served['keys']['all'], served['skew']
    assert [call(port, '/model', f'guess-number-{i:04d}', source='127.0.0.7')[0] for i in range(10)] == [401] * 10
    st, h = call(port, '/model', good, source='127.0.0.7')                    # the right key no longer helps
    assert st == 429 and 55 <= int(h['retry-after']) <= 60, (st, h)
    assert call(port, '/predict', source='127.0.0.7')[0] == 429
    assert call(port, '/model', good, source='127.0.0.8')[0] == 200           # another client is not held up
    skew[0] += 61                                                            # a minute on, the failures have aged out
    assert call(port, '/model', good, source='127.0.0.7')[0] == 200
    assert call(port, '/model', 'one-more-guess-of-16', source='127.0.0.7')[0] == 401

def test_admin_calls_are_audited_by_key_id(served):
    port, keys, log = served['port'], served['keys'], served['app'].state.audit
    assert log == served['dir']/'audit.jsonl'                               # beside the registry
    n = len(entries(log)) if log.exists() else 0
    assert call(port, '/reload', keys['score'])[0] == 403 and call(port, '/reload', keys['admin'])[0] == 200
    es = entries(log)[n:]
    assert [(e['event'], e['fields']['key_id'], e['fields']['client'], e['fields']['outcome']) for e in es] == [
        ('serve.reload', 'score-only', '127.0.0.1', 'refused: the key may not admin'), ('serve.reload', 'admin-only', '127.0.0.1', 'ok')]
    text = log.read_text()
    assert not any(k in text or served['entries'][s]['sha256'] in text for s, k in keys.items())   # ids only: never a key or its hash
    assert verify(log)['ok']

def test_serve_reads_a_keys_file_and_records_its_start(served, tmp_path, capsys):
    (tmp_path/'bad.yaml').write_text(yaml.safe_dump({'keys': [dict(served['entries']['score'], scopes=['score', 'write'])]}))
    assert main(['serve', '--registry', str(served['dir']/'registry'), '--model', 'adult', '--keys-file', str(tmp_path/'bad.yaml')]) == 2
    assert f"keys file {tmp_path/'bad.yaml'}, entry 1: key 'score-only': scopes must be a list of score, read, admin, not ['write']" in capsys.readouterr().err
    (tmp_path/'keys.yaml').write_text(yaml.safe_dump({'keys': [served['entries']['score'], served['entries']['read']]}))
    port, env = free_port(), {k: v for k, v in os.environ.items() if k not in ('MLNB_API_KEYS', 'MLNB_ADMIN_KEYS', 'MLNB_KEYS')}
    proc = subprocess.Popen([MLNB, 'serve', '--registry', served['dir']/'registry', '--model', 'adult', '--port', str(port), '--log', tmp_path/'p.jsonl',
                             '--keys-file', tmp_path/'keys.yaml'], env={**env, 'OMP_NUM_THREADS': '1'}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            try: st, _ = call(port, '/predict', served['keys']['score']); break
            except OSError: time.sleep(0.2)
        assert st == 200 and call(port, '/predict', served['keys']['read'])[0] == 403 and call(port, '/model', served['keys']['read'])[0] == 200
        assert call(port, '/model', served['keys']['all'])[0] == 401              # not in this file
    finally: proc.terminate(); proc.wait(15)
    start = [e for e in entries(served['dir']/'audit.jsonl') if e['event'] == 'serve.start'][-1]['fields']
    assert start['port'] == port and start['auth'] and start['keys'] == [['read-only', ['read']], ['score-only', ['score']]]
