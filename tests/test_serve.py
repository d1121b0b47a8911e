"A real uvicorn server on a free loopback port, called over HTTP; the registry it serves from; batch scoring."
import http.client, json, os, signal, socket, subprocess, threading, time
from pathlib import Path
import numpy as np, pandas as pd, pytest, yaml
from mlnb.core import MlnbError
from mlnb.ingest import demo_data
from mlnb.prepare import normalise_missing
from mlnb.registry import Registry, gate
from mlnb.serve import known_categories
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
    def __init__(self, reg_root, log, *extra, env_extra=None):
        self.port = free_port()
        env = {**os.environ, 'MLNB_API_KEYS': KEY, 'MLNB_ADMIN_KEYS': ADMIN, 'OMP_NUM_THREADS': '1'}
        self.out = Path(str(log) + '.server-output')
        with open(self.out, 'w') as out:
            self.proc = subprocess.Popen([MLNB, 'serve', '--registry', reg_root, '--model', 'adult', '--port', str(self.port), '--log', log, *extra],
                                         env={**env, **(env_extra or {})}, stdout=out, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                if self.call('GET', '/health')[0] == 200: return
            except OSError: time.sleep(0.3)
        raise TimeoutError('server did not start')
    def call(self, method, path, body=None, key=KEY, conn=None, headers=False):
        c = conn or http.client.HTTPConnection('127.0.0.1', self.port, timeout=60)
        data = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
        c.request(method, path, body=data, headers={'X-API-Key': key} if key else {})
        r = c.getresponse(); raw = r.read()
        payload = json.loads(raw or b'null') if 'json' in (r.getheader('content-type') or 'json') else raw.decode()
        if conn is None: c.close()
        return (r.status, payload, dict(r.getheaders())) if headers else (r.status, payload)
    def output(self): return self.out.read_text()
    def stop(self):
        self.proc.terminate()
        try: self.proc.wait(15)
        except subprocess.TimeoutExpired: self.proc.kill()

@pytest.fixture(scope='module')
def server(registry, tmp_path_factory):
    d = tmp_path_factory.mktemp('serve'); s = Server(registry[0].root, d/'predictions.jsonl'); s.log = d/'predictions.jsonl'
    yield s
    s.stop()

def log_lines(path, at_least, timeout=10):
    "The lines of the prediction log, once it has `at_least` (the server writes it from a background thread)."
    deadline = time.monotonic() + timeout
    while len(lines := path.read_text().splitlines()) < at_least and time.monotonic() < deadline: time.sleep(0.05)
    return lines

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
    lines = log_lines(server.log, 41)
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
    st, r = server.call('POST', '/predict', b'[' * 100_000 + b']' * 100_000)
    assert st == 422 and 'nests too deeply' in r['detail'][0]['error']
    assert server.call('POST', '/predict', recs[0])[0] == 200          # still serving

def with_value(rec, field, literal):
    "`rec` as JSON text with `field` set to the JSON text `literal` (numbers Python's json would not write)."
    return json.dumps(dict(rec, **{field: '@@'})).replace('"@@"', literal)

OUT_OF_RANGE = [('age', '4' + '0' * 399, 'is an integer of 400 digits: beyond ±1e38'),   # OverflowError before
                ('fnlwgt', '9' * 5000, 'is an integer of 5,000 digits'),                          # past Python's 4,300-digit limit: ValueError while parsing
                ('hours-per-week', '1e400', 'is inf (a number beyond'), ('capital-gain', '4e38', 'is 4e+38: beyond ±1e38'), ('capital-gain', '-1e400', 'is -inf'),
                ('age', 'NaN', 'is missing (NaN) but the column may not be missing'), ('capital-loss', 'Infinity', 'is Infinity: a number must be finite'),
                ('workclass', '-Infinity', 'is -Infinity'), ('workclass', '1' + '0' * 400, 'is an integer of 401 digits')]  # a text column that may be missing

def test_huge_and_non_finite_numbers_get_422_naming_record_and_field(server):
    recs, _ = records(3)
    for field, literal, words in OUT_OF_RANGE:
        st, r = server.call('POST', '/predict', with_value(recs[0], field, literal))
        assert st == 422 and len(r['detail']) == 1 and (r['detail'][0]['record'], r['detail'][0]['field']) == (0, field) and words in r['detail'][0]['error'], (literal[:20], st, r)
        st, r = server.call('POST', '/predict', f'[{json.dumps(recs[0])}, {json.dumps(recs[1])}, {with_value(recs[2], field, literal)}]')
        assert st == 422 and [(e['record'], e['field']) for e in r['detail']] == [(2, field)], (literal[:20], st, r)
    assert server.call('POST', '/predict', recs[0])[0] == 200

def test_a_bad_body_fails_alone_among_good_ones_sent_at_once(server):
    "Bodies sent together are scored together; one that cannot be checked gets its own 422, the others their own 200."
    recs, _ = records(8, seed=9)
    alone = [server.call('POST', '/predict', r)[1]['probabilities'] for r in recs[1:]]
    for n in range(3 * len(OUT_OF_RANGE)):
        field, literal, words = OUT_OF_RANGE[n % len(OUT_OF_RANGE)]
        bodies = [json.dumps(r) for r in recs[1:]]; bad = n % (len(bodies) + 1); bodies.insert(bad, with_value(recs[0], field, literal))
        conns = [http.client.HTTPConnection('127.0.0.1', server.port, timeout=60) for _ in bodies]
        for c in conns: c.connect()
        go, got = threading.Barrier(len(bodies)), [None] * len(bodies)
        def send(k): go.wait(); got[k] = server.call('POST', '/predict', bodies[k], conn=conns[k])
        threads = [threading.Thread(target=send, args=(k,)) for k in range(len(bodies))]
        for t in threads: t.start()
        for t in threads: t.join()
        for c in conns: c.close()
        st, r = got.pop(bad)
        assert [st for st, _ in got] == [200] * len(got), (literal[:20], got)
        assert [r['probabilities'] for _, r in got] == alone                 # each good reply is its own, as if scored alone
        assert st == 422 and r['detail'][0]['field'] == field and words in r['detail'][0]['error'], (literal[:20], st, r)

def test_a_batch_the_model_fails_on_is_scored_again_one_request_at_a_time(registry, tmp_path):
    "In process: the app's `score` on one batch of bodies, with a model that refuses one record (ValueError: 422) or fails on one (500)."
    from mlnb.serve import create_app
    app = create_app(registry[0], 'adult', api_keys=[KEY], log_path=tmp_path/'p.jsonl'); m = app.state.current(); score = m.scorer.score
    def flaky(cols):
        if 999 in cols['fnlwgt']: raise ValueError('Input X contains infinity')
        if 998 in cols['fnlwgt']: raise TypeError('a bug')
        return score(cols)
    recs, _ = records(6, seed=11); m.scorer.score = flaky
    bodies = [json.dumps(r).encode() for r in recs]; bodies[1] = json.dumps(dict(recs[1], fnlwgt=999)).encode(); bodies[4] = json.dumps([recs[0], dict(recs[4], fnlwgt=998)]).encode()
    replies = app.state.score(bodies)
    assert [r.status_code for r in replies] == [200, 422, 200, 200, 500, 200]
    assert 'the model could not score these records (ValueError: Input X contains infinity)' in replies[1].body.decode() and 'TypeError: a bug' in replies[4].body.decode()
    m.scorer.score = score
    assert [json.loads(r.body)['probabilities'] for r in replies if r.status_code == 200] == [json.loads(app.state.score([bodies[k]])[0].body)['probabilities'] for k in (0, 2, 3, 5)]  # as if scored alone
    app.state.log.close()

def test_api_keys(server):
    recs, _ = records(1)
    assert server.call('POST', '/predict', recs[0], key=None) == (401, {'detail': 'missing X-API-Key header'})
    assert server.call('POST', '/predict', recs[0], key='wrong')[0] == 401            # an unknown key: 401, as no key (a known key without the scope: 403)
    assert server.call('GET', '/model', key=None)[0] == 401
    assert server.call('POST', '/reload', key=KEY)[0] == 403            # reload needs an admin key
    st, m = server.call('GET', '/model')
    assert st == 200 and m['name'] == 'adult' and m['metrics'] == {'roc_auc': 0.9} and m['schema']['gender']['isin'] == ['Female', 'Male']
    assert m['scorer'] == 'FastScorer'

def test_openapi_describes_the_body_and_the_refusals(server):
    st, d = server.call('GET', '/openapi.json')
    p = d['paths']['/predict']['post']; record = p['requestBody']['content']['application/json']['schema']['anyOf'][0]
    assert st == 200 and record['required'] == list(SCHEMA)[:-1] and record['properties']['age'] == {'type': 'integer', 'minimum': 17, 'maximum': 100}
    assert record['properties']['gender'] == {'anyOf': [{'type': 'string', 'enum': ['Female', 'Male'], 'maxLength': 10_000}, {'type': 'null'}]}  # null: like the `?` marker
    assert {'200', '401', '403', '413', '422'} <= set(p['responses']) and d['paths']['/health']['get']['security'] == []
    assert server.call('GET', '/openapi.json', key=None)[0] == 401

def test_reload_under_concurrent_requests(server, registry):
    reg = registry[0]
    v2, pipe2 = register(reg, seed=5); reg.promote(f'adult@{v2}')
    recs, df = records(20, seed=3)
    expected = {1: registry[1].predict_proba(df)[:, 1], v2: pipe2.predict_proba(df)[:, 1]}
    assert np.abs(expected[1] - expected[v2]).max() > 0.01                 # the versions really answer differently
    results, stop = [], threading.Event()
    def client(i):
        c = http.client.HTTPConnection('127.0.0.1', server.port, timeout=30)
        while not stop.is_set():
            k = i % 20; st, r = server.call('POST', '/predict', recs[k], conn=c); results.append((st, r.get('version'), k, r.get('probabilities')))
            i += 6
        c.close()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads: t.start()
    try:
        time.sleep(1)
        st, r = server.call('POST', '/reload', key=ADMIN)
        assert st == 200 and r['version'] == v2, (st, r)
        time.sleep(1)
        reg.promote('adult@1'); server.proc.send_signal(signal.SIGHUP)      # SIGHUP reloads too
        deadline = time.monotonic() + 30
        while server.call('GET', '/health')[1]['version'] != 1 and time.monotonic() < deadline: time.sleep(0.2)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads: t.join()
    assert len(results) > 50 and all(st == 200 for st, *_ in results), [r for r in results if r[0] != 200][:3]
    versions = [v for _, v, _, _ in results]
    assert {1, v2} <= set(versions) and versions[-1] == 1
    for _, v, k, proba in results:                                         # every reply is wholly the version it names
        assert abs(proba[0]['>50K'] - expected[v][k]) <= 1e-6, (v, k, proba, expected[v][k])

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

def hostile_records(n=1000, seed=21):
    "`n` single records with missing values (null and the `?` marker) and categories never seen in training."
    recs, _ = records(n, seed)
    for i, r in enumerate(recs):
        if i % 7 == 0: r['workclass'] = None
        if i % 11 == 0: r['occupation'] = '?'
        if i % 13 == 0: r['native-country'] = 'Atlantis'
        if i % 17 == 0: r['education'] = '  Bachelors '                    # spaces trimmed, as in training
    return recs, pd.DataFrame(recs)

def test_1000_single_records_on_the_fast_path_equal_the_pipeline(server, registry):
    recs, df = hostile_records()
    expected = registry[1].predict_proba(df)
    c = http.client.HTTPConnection('127.0.0.1', server.port, timeout=30)
    got, paths, warned = [], set(), []
    for i, r in enumerate(recs):
        st, resp, h = server.call('POST', '/predict', r, conn=c, headers=True)
        assert st == 200 and resp['version'] == 1, resp
        got.append([resp['probabilities'][0]['<=50K'], resp['probabilities'][0]['>50K']]); paths.add(h['x-mlnb-scorer'])
        warned += [(i, w['field']) for w in resp['warnings']]
    c.close()
    assert paths == {'fast-trees'}                                          # the tree arrays answered, not a fallback
    assert np.abs(np.array(got) - expected).max() <= 1e-6
    known = known_categories(registry[1])                                  # what the encoders saw in training
    unseen = [(i, f) for i, r in enumerate(recs) for f in known if r[f] is not None and r[f].strip() not in known[f] | {'?'}]
    assert warned == unseen and {(i, 'native-country') for i in range(0, 1000, 13)} <= set(unseen)

@pytest.fixture(scope='module')
def tight(registry, tmp_path_factory):
    "A server with small limits, strict categories, a log that rotates every 20 KB and records that may carry their own id (`key`)."
    d = tmp_path_factory.mktemp('tight')
    s = Server(registry[0].root, d/'p.jsonl', '--max-body-mb', '0.05', '--max-records', '50', '--max-errors', '5', '--strict-categories',
               '--log-max-mb', '0.02', '--log-keep', '3', '--id-field', 'key')
    s.log = d/'p.jsonl'
    yield s
    s.stop()

def test_hostile_requests_get_4xx_and_the_server_keeps_answering(tight):
    recs, _ = records(60)
    r0 = json.dumps(recs[0])
    ok = lambda: tight.call('POST', '/predict', recs[0])[0] == 200 and tight.call('GET', '/health')[0] == 200
    cases = [
        (b'[' * 20_000 + b']' * 20_000, 422, 'nests too deeply'),
        (json.dumps([dict(recs[0], age=[[[[40]]]])]), 422, 'nested list'),
        (json.dumps(recs[:51]), 413, 'more than 50 records'),
        (json.dumps(dict(recs[0], workclass='x' * 60_000)), 413, 'larger than 0.05 MB'),
        (r0.replace(f'"age": {recs[0]["age"]}', '"age": NaN'), 422, 'is missing (NaN)'),
        (r0.replace(f'"hours-per-week": {recs[0]["hours-per-week"]}', '"hours-per-week": -Infinity'), 422, '-Infinity'),
        (b'\xff\xfe{}', 422, 'not UTF-8'),
        (json.dumps(dict(recs[0], **{'native-country': 'Atlantis'})), 422, 'never seen in training'),
    ]
    for body, status, words in cases:
        st, r = tight.call('POST', '/predict', body)
        assert st == status and words in json.dumps(r), (words, st, str(r)[:300])
        assert ok(), words
    st, r = tight.call('POST', '/predict', [dict(rec, age='old', gender='Robot') for rec in recs[:30]])
    assert st == 422 and len(r['detail']) == 5 and r['errors'] == 60       # five listed, all counted
    st, r = tight.call('POST', '/predict', r0.replace(f'"workclass": "{recs[0]["workclass"]}"', '"workclass": NaN'))
    assert st == 200, r                                                    # a text column takes NaN as missing, like `?`
    c = http.client.HTTPConnection('127.0.0.1', tight.port, timeout=30)   # no Content-Length: a chunked body past the limit
    c.putrequest('POST', '/predict'); c.putheader('X-API-Key', KEY); c.putheader('Transfer-Encoding', 'chunked'); c.endheaders()
    for _ in range(8): c.send(b'8000\r\n' + b' ' * 0x8000 + b'\r\n')
    c.send(b'0\r\n\r\n'); r = c.getresponse()
    assert r.status == 413 and b'larger than' in r.read()
    c.close()
    assert ok()

@pytest.mark.serial   # a latency bound: run alone, after the parallel part of `make test`
def test_health_answers_while_a_maximum_request_is_scored(server):
    recs, _ = records(10_000, seed=4)
    body = json.dumps(recs); assert len(body) < 10 * 2**20
    done = {}
    def big(): done['r'] = server.call('POST', '/predict', body)
    t = threading.Thread(target=big); t.start()
    lat, c = [], http.client.HTTPConnection('127.0.0.1', server.port, timeout=30)
    while t.is_alive():
        t0 = time.perf_counter(); assert server.call('GET', '/health', conn=c)[0] == 200; lat.append(time.perf_counter() - t0)
        time.sleep(0.005)
    t.join(); c.close()
    st, r = done['r']
    assert st == 200 and len(r['predictions']) == 10_000
    assert len(lat) >= 5 and max(lat) < 0.05, f'/health took up to {max(lat) * 1e3:.1f} ms over {len(lat)} calls'

def test_keys_docs_and_failed_reload(registry, tmp_path):
    r = subprocess.run([MLNB, 'serve', '--registry', registry[0].root, '--model', 'adult', '--port', str(free_port())],
                       env={**os.environ, 'MLNB_API_KEYS': 'short'}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'keys need at least 16' in r.stderr
    kf = tmp_path/'keys'; kf.write_text(KEY + '\n'); kf.chmod(0o644)
    reg = Registry(tmp_path/'reg'); register(reg, kind='logistic', n=800); reg.promote('adult@1')
    s = Server(reg.root, tmp_path/'p.jsonl', '--api-keys-file', kf, env_extra={'MLNB_API_KEYS': ''})
    try:
        assert 'may be read by group or others' in s.output()
        for path in ('/docs', '/openapi.json', '/model'): assert s.call('GET', path, key=None)[0] == 401, path
        st, spec = s.call('GET', '/openapi.json'); assert st == 200 and '/predict' in spec['paths']
        st, page = s.call('GET', '/docs'); assert st == 200 and '"X-API-Key"' in page and "url: '/openapi.json'" not in page   # the spec is inlined
        v2, _ = register(reg, kind='logistic', seed=3, n=800); reg.promote(f'adult@{v2}')
        with open(reg.root/'adult'/f'v{v2}'/'model.skops', 'ab') as f: f.write(b'\0')     # the new production file is damaged
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while 'reload failed' not in s.output() and time.monotonic() < deadline: time.sleep(0.2)
        assert 'reload failed, still serving' in s.output(), s.output()
        assert s.call('GET', '/health')[1]['version'] == 1 and s.call('POST', '/predict', records(1)[0][0])[0] == 200
    finally: s.stop()

def test_log_is_private_rotates_and_monitor_reads_every_file(tight, registry, tmp_path):
    recs, _ = records(50, seed=8)
    for _ in range(8): assert tight.call('POST', '/predict', recs)[0] == 200   # 400 lines, about 120 KB
    deadline = time.monotonic() + 10
    while not (tight.log.parent/'p.jsonl.3').exists() and time.monotonic() < deadline: time.sleep(0.1)
    time.sleep(0.3)
    files = [tight.log, *sorted(tight.log.parent.glob('p.jsonl.[0-9]*'))]
    assert [f.name for f in files] == ['p.jsonl', 'p.jsonl.1', 'p.jsonl.2', 'p.jsonl.3']
    for f in files:                                                        # private; a request's lines are never split
        assert f.stat().st_mode & 0o777 == 0o600 and (f.stat().st_size <= 0.02 * 2**20 or len(f.read_text().splitlines()) == 50), f
    n = sum(len(f.read_text().splitlines()) for f in files)
    r = mlnb('monitor', '--model', 'adult', '--registry', registry[0].root, '--log', tight.log, '--runs-dir', tmp_path)
    assert r.returncode in (0, 3), r.stdout + r.stderr
    g = json.loads(next(tmp_path.glob('*/run.json')).read_text())['stages']['monitor']['glued']
    assert g['rows'] == n and 100 < n < 400                                # older lines rotated away, the kept ones all read

def test_monitor_reads_the_prediction_log(server, registry, tmp_path):
    n = len(server.log.read_text().splitlines())
    assert n >= 40
    r = mlnb('monitor', '--model', 'adult', '--registry', registry[0].root, '--log', server.log, '--runs-dir', tmp_path)
    assert r.returncode in (0, 3), r.stdout + r.stderr
    g = json.loads(next(tmp_path.glob('*/run.json')).read_text())['stages']['monitor']['glued']
    assert g['rows'] == n and not g['labelled'] and len(g['drift_table']) == 14
    assert g['unseen_categories']['native-country'] >= 77 and 'never seen in training: native-country' in r.stdout   # Atlantis, sent 77 times

def post(server, body, **headers):
    "`(status, reply, headers in lower case)` of a POST /predict with these headers."
    c = http.client.HTTPConnection('127.0.0.1', server.port, timeout=60)
    c.request('POST', '/predict', body=json.dumps(body), headers={'X-API-Key': KEY, **headers}); r = c.getresponse()
    out = r.status, json.loads(r.read()), {k.lower(): v for k, v in r.getheaders()}; c.close()
    return out

def test_each_record_gets_an_id_in_the_reply_and_the_log(server, tight, tmp_path):
    "Issue 21.5: the client's X-Request-ID names its records, a request without one gets a uuid4, a record's own --id-field value wins; the ids come back in order, land in the log and join labels."
    from mlnb.predlog import join_labels, read_prediction_log
    recs, _ = records(3, seed=21)
    st, r, h = post(server, recs, **{'X-Request-ID': 'batch-21'})
    assert st == 200 and (r['request_id'], r['ids'], h['x-request-id']) == ('batch-21', ['batch-21-0', 'batch-21-1', 'batch-21-2'], 'batch-21')
    st, one, h = post(server, recs[0])
    assert st == 200 and len(one['request_id']) == 32 and int(one['request_id'], 16) >= 0 and one['ids'] == [one['request_id'] + '-0'] == [h['x-request-id'] + '-0']
    st, r, _ = post(server, recs[0], **{'X-Request-ID': 'x' * 201})
    assert st == 422 and 'X-Request-ID header must be 1 to 200' in r['detail'][0]['error']
    lines = [json.loads(l) for l in log_lines(server.log, 0)]
    deadline = time.monotonic() + 10
    while not any(l.get('request_id') == one['request_id'] for l in lines) and time.monotonic() < deadline:
        time.sleep(0.05); lines = [json.loads(l) for l in server.log.read_text().splitlines()]
    mine = [l for l in lines if l.get('request_id') == 'batch-21']
    assert [(l['id'], l['inputs']) for l in mine] == [(f'batch-21-{i}', rec) for i, rec in enumerate(recs)]
    (tmp_path/'labels.csv').write_text('id,income\nbatch-21-0,<=50K\nbatch-21-2,>50K\nbatch-99-0,>50K\n')
    j = join_labels(read_prediction_log(server.log), tmp_path/'labels.csv', 'id', 'income')
    assert (j.attrs['label_join']['labelled'], j.attrs['label_join']['unmatched_labels']) == (2, 1)
    assert j.loc[j['_id'] == 'batch-21-2', 'income'].tolist() == ['>50K']
    st, r, _ = post(tight, [dict(recs[0], key=4711), dict(recs[1], key='cust-9'), recs[2]], **{'X-Request-ID': 'b2'})   # --id-field key
    assert st == 200 and r['ids'] == ['4711', 'cust-9', 'b2-2']
    st, r, _ = post(tight, [dict(recs[0], key={'nested': 1})])
    assert st == 422 and (r['detail'][0]['record'], r['detail'][0]['field']) == (0, 'key') and 'is not an id' in r['detail'][0]['error']
