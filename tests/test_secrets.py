"Secrets in sources: refused when written out, masked by name, kept from other hosts on a redirect, sent by the runner to Dask workers, and in no file of a run."
import http.server, json, os, socket, subprocess, sys, threading, time, uuid
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit
import pytest, yaml
from conftest import mlnb
from mlnb.core import MlnbError
from mlnb.sources import frame_sha256, literal_secrets, mask, read_http

KEY, TOKEN = 'k3y-9f2c71-secret', 'tok-5b0e44-secret'        # what the API wants: X-API-Key and ?token=
ENV = {'MLNB_TEST_KEY': KEY, 'MLNB_TEST_TOKEN': TOKEN}
ITEMS = [{'id': i, 'name': f'item {i}', 'price': i * 1.25} for i in range(30)]

def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

class Api(http.server.BaseHTTPRequestHandler):
    "`/items` wants the key and token and wraps the records in an envelope that changes on every request; `/here` and `/away` redirect."
    seen, sent, other = [], [], None   # (port, path, headers) of every request; the bodies /items sent; the other server's base URL
    def log_message(self, *a): pass
    def send(self, code, body=b'', headers=()):
        body = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(code); self.send_header('Content-Type', 'application/json'); self.send_header('Content-Length', str(len(body)))
        for k, v in headers: self.send_header(k, v)
        self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        u = urlsplit(self.path); q = {k: v[0] for k, v in parse_qs(u.query).items()}
        Api.seen.append((self.server.server_port, u.path, dict(self.headers)))
        if u.path == '/here': return self.send(302, headers=[('Location', f'/items?{u.query}')])
        if u.path == '/away': return self.send(302, headers=[('Location', f'{Api.other}/echo?{u.query}')])
        if u.path == '/away-items': return self.send(302, headers=[('Location', f'{Api.other}/items?{u.query}')])
        if u.path == '/echo': return self.send(200, [{'ok': 1}])
        if u.path == '/items':
            if self.headers.get('X-API-Key') != KEY or q.get('token') != TOKEN: return self.send(401, {'error': 'bad key or token'})
            n = len(Api.seen)   # a different envelope each time, even its length: only the records stay the same
            Api.sent.append(json.dumps({'meta': {'generated_at': time.time_ns(), 'request_id': uuid.uuid4().hex * (1 + n % 3)}, 'data': ITEMS}).encode())
            return self.send(200, Api.sent[-1])
        return self.send(404, {'error': 'no such route'})

def _serve():
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', free_port()), Api); srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv

@pytest.fixture(scope='module')
def api():
    "Two API servers on loopback (two ports: two origins); yields the first's base URL, the second's is `Api.other`."
    a, b = _serve(), _serve()
    Api.other = f'http://127.0.0.1:{b.server_port}'
    yield f'http://127.0.0.1:{a.server_port}'
    for s in (a, b): s.shutdown(); s.server_close()

def spec(api, path='/items', **kw):
    return {'url': f'{api}{path}?token=${{MLNB_TEST_TOKEN}}', 'headers': {'X-API-Key': '${MLNB_TEST_KEY}', 'Accept': 'application/json'}, 'records_path': 'data', **kw}

# --- written out, masked --------------------------------------------------------------------------------------------

def test_written_out_secrets_are_named():
    where = "p.yaml: stage 'ingest': http"
    assert literal_secrets({'url': 'https://h/x?token=${T}&page=2', 'headers': {'X-API-Key': '${K}', 'Authorization': 'Bearer ${T}', 'User-Agent': 'mlnb', 'accept': 'text/csv'},
                            'params': {'access_token': '${T}', 'q': 'shoes'}}, where) == []
    bad = literal_secrets({'url': 'https://h/x?api_key=abc&key=k&password=p&access_token=t&Signature=s&page=2&q=x',
                           'headers': {'X-Auth-Token': 'a', 'Private-Token': 'b', 'X-API-Key': 'c', 'X-Custom': 'd', 'Content-Type': 'application/json'},
                           'params': {'client_secret': 'e', 'auth': 'f', 'page': 1}}, where)
    named = [b[len(where) + 2:b.index(' is written out')] for b in bad]
    assert named == [f"the url's query parameter '{k}'" for k in ('api_key', 'key', 'password', 'access_token', 'Signature')] + \
                    ["params 'client_secret'", "params 'auth'"] + [f"headers '{h}'" for h in ('X-Auth-Token', 'Private-Token', 'X-API-Key', 'X-Custom')], bad
    assert "write it as ?api_key=${NAME}" in bad[0] and "'X-Custom: ${API_KEY}'" in bad[-1]

def test_masking_covers_every_name_like_a_secret():
    values = {'client_secret': 'v1', 'access-token': 'v2', 'auth': 'v3', 'X-Api-Key': 'v4', 'Private-Token': 'v5', 'db_credentials': 'v6', 'page': 2, 'q': 'x'}
    assert mask(values, set()) == {**{k: '***' for k in values if k not in ('page', 'q')}, 'page': 2, 'q': 'x'}
    url = 'https://h/x?client_secret=v1&access-token=v2&auth=v3&page=2'
    assert mask(url, set()) == 'https://h/x?client_secret=***&access-token=***&auth=***&page=2'
    assert mask(f'{url} answered {{"auth": "Bearer v7", "error": "no"}}', set()) == 'https://h/x?client_secret=***&access-token=***&auth=***&page=2 answered {"auth": "***", "error": "no"}'

def test_identity_masks_params_named_like_secrets(api, monkeypatch):
    for k, v in ENV.items(): monkeypatch.setenv(k, v)
    _, ident = read_http({**spec(api), 'params': {'client_secret': '${MLNB_TEST_KEY}', 'auth': 'x', 'n': 1}})
    assert ident['params'] == {'client_secret': '***', 'auth': '***', 'n': 1} and ident['url'] == f'{api}/items?token=***'
    assert KEY not in json.dumps(ident) and TOKEN not in json.dumps(ident)

# --- redirects ------------------------------------------------------------------------------------------------------

def test_a_redirect_to_another_host_gets_none_of_the_headers(api, monkeypatch):
    for k, v in {**ENV, 'MLNB_TEST_TENANT': 'tenant-7'}.items(): monkeypatch.setenv(k, v)
    s = {**spec(api, '/away'), 'records_path': None}
    s['headers'] = {**s['headers'], 'Authorization': 'Bearer ${MLNB_TEST_KEY}', 'X-Tenant': '${MLNB_TEST_TENANT}'}
    Api.seen.clear()
    df, _ = read_http(s)
    assert df.ok.tolist() == [1]
    (p1, _, h1), (p2, path2, h2) = Api.seen
    assert h1['X-API-Key'] == KEY and h1['X-Tenant'] == 'tenant-7' and h1['Authorization'] == f'Bearer {KEY}'   # the url's own server
    assert path2 == '/echo' and p2 != p1 and not {'X-API-Key', 'X-Tenant', 'Authorization', 'Accept'} & set(h2), h2      # the other: none of them
    assert KEY not in json.dumps(h2)
    Api.seen.clear()
    df, _ = read_http(spec(api, '/here'))                                  # a redirect on the same server keeps them
    assert len(df) == len(ITEMS) and [h['X-API-Key'] for _, _, h in Api.seen] == [KEY, KEY]

def test_a_redirect_elsewhere_that_fails_says_the_headers_stayed_behind(api, monkeypatch):
    for k, v in ENV.items(): monkeypatch.setenv(k, v)
    with pytest.raises(MlnbError) as e: read_http(spec(api, '/away-items'))    # the other server wants the key it was not sent
    assert f'page 1: authentication failed (401) (redirected to {Api.other}, where the `headers` are not sent): ' in str(e.value), e.value
    assert KEY not in str(e.value) and TOKEN not in str(e.value)

# --- the records' hash ----------------------------------------------------------------------------------------------

def test_a_changing_envelope_keeps_the_identity(api, monkeypatch):
    for k, v in ENV.items(): monkeypatch.setenv(k, v)
    Api.sent.clear()
    (a, ia), (b, ib) = read_http(spec(api)), read_http(spec(api))
    assert len(Api.sent) == 2 and Api.sent[0] != Api.sent[1] and len(Api.sent[0]) != len(Api.sent[1])   # other envelopes, other lengths
    assert a.equals(b) and ia == ib and ia['sha256'] == frame_sha256(a) and 'bytes' not in ia

# --- through `mlnb run` ---------------------------------------------------------------------------------------------

def params_file(tmp_path, api, validate=True, resources=None, **http) -> Path:
    stages = {'ingest': {'params': {'sample_rows': 0, 'source': 'http', 'http': {**spec(api), **http}}}}
    if resources: stages['ingest']['resources'] = resources
    if validate: stages['validate'] = {'upstream': ['ingest'], 'params': {}}
    p = tmp_path/'p.yaml'; p.write_text(yaml.safe_dump({'shared': {'seed': 42, 'target': 'id'} if validate else {'seed': 42}, 'stages': stages}))
    return p

def latest(runs: Path) -> dict:
    return json.loads(max(runs.glob('*/run.json'), key=lambda p: p.stat().st_mtime).read_text())

def traces(folder: Path, values) -> list:
    "`(file, value)` for each file under `folder` holding one of `values` (as written, or URL-encoded)."
    forms = {f: v for v in values for f in (v, quote(v, safe=''))}
    return [(str(f.relative_to(folder)), v) for f in sorted(folder.rglob('*')) if f.is_file() for form, v in forms.items() if form.encode() in f.read_bytes()]

@pytest.mark.slow
def test_written_out_secrets_stop_mlnb_run_before_anything_runs(api, tmp_path):
    p = params_file(tmp_path, api, validate=False, url=f'{api}/items?token=lit-tok-81&page=1', headers={'X-API-Key': 'lit-key-82', 'Accept': 'application/json'})
    r = mlnb('run', p, '--runs-dir', tmp_path/'runs')
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{p}: stage 'ingest': http: the url's query parameter 'token' is written out" in r.stderr, r.stderr
    assert f"{p}: stage 'ingest': http: headers 'X-API-Key' is written out" in r.stderr and "Accept" not in r.stderr.split('X-API-Key')[0], r.stderr
    assert 'lit-tok-81' not in r.stderr + r.stdout and 'lit-key-82' not in r.stderr + r.stdout and not (tmp_path/'runs').exists()

def test_a_written_out_secret_in_an_unused_source_block_is_refused_too(tmp_path):
    "A file source with a leftover `http:` block: the block is copied into params.yaml and run.json all the same, so its secret is refused."
    p = tmp_path/'p.yaml'
    p.write_text(yaml.safe_dump({'shared': {'seed': 1}, 'stages': {'ingest': {'params': {
        'path': 'data/adult.csv.gz', 'sample_rows': 100, 'http': {'url': 'https://api.example.org/items', 'headers': {'X-API-Key': 'lit-key-83'}}}}}}))
    r = mlnb('run', p, '--runs-dir', tmp_path/'runs')
    assert r.returncode == 2 and "stage 'ingest': http: headers 'X-API-Key' is written out" in r.stderr, r.stdout + r.stderr
    assert 'lit-key-83' not in r.stdout + r.stderr and not (tmp_path/'runs').exists()

@pytest.mark.slow
def test_mlnb_run_with_secrets_writes_them_nowhere_and_a_new_envelope_keeps_validate_cached(api, tmp_path, monkeypatch):
    for k, v in ENV.items(): monkeypatch.setenv(k, v)
    p, runs = params_file(tmp_path, api), tmp_path/'runs'
    Api.seen.clear()
    first = mlnb('run', p, '--runs-dir', runs)
    assert first.returncode == 0, first.stdout + first.stderr
    m1 = latest(runs)
    assert [m1['stages'][s]['status'] for s in ('ingest', 'validate')] == ['ok', 'ok'] and m1['stages']['ingest']['glued']['rows'] == len(ITEMS)
    second = mlnb('run', p, '--runs-dir', runs)                             # the API answers with a new envelope around the same records
    assert second.returncode == 0, second.stdout + second.stderr
    m2 = latest(runs)
    assert m2['run_id'] != m1['run_id'] and m2['stages']['ingest']['status'] == 'ok' and m2['stages']['validate']['status'] == 'cached', m2['stages']
    assert m2['stages']['ingest']['glued']['source_identity'] == m1['stages']['ingest']['glued']['source_identity']
    assert {h.get('X-API-Key') for _, path, h in Api.seen if path == '/items'} == {KEY}   # the secrets were sent (the check and both runs)
    assert len(list(runs.glob('*/run.json'))) == 2 and list(tmp_path.glob('runs-cache.db*'))
    assert traces(tmp_path, [KEY, TOKEN]) == []                            # notebooks, html, run.json, params copies, artifacts, the cache index
    assert {f.split('/')[-1] for f, _ in traces(tmp_path, ['${MLNB_TEST_KEY}'])} >= {'p.yaml', 'params.yaml', 'run.json', '01_ingest.ipynb'}   # the grep reads them
    assert KEY not in first.stdout + first.stderr + second.stdout + second.stderr and TOKEN not in first.stdout + second.stdout

# --- Dask workers get the runner's values ---------------------------------------------------------------------------

DASK = str(Path(sys.executable).parent/'dask')

@pytest.fixture(scope='module')
def cluster(tmp_path_factory):
    "A scheduler and two workers on loopback: `bare` has no MLNB_TEST_* variables (resource bare=1), `other` has other values (resource other=1)."
    from distributed import Client
    d = tmp_path_factory.mktemp('dask'); sf = d/'scheduler.json'
    base = {k: v for k, v in os.environ.items() if k not in ENV}
    procs = [subprocess.Popen([DASK, 'scheduler', '--host', '127.0.0.1', '--port', '0', '--no-dashboard', '--scheduler-file', sf],
                              cwd=d, env=base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    for _ in range(60):
        if sf.exists() and sf.stat().st_size: break
        time.sleep(0.25)
    for name, env in (('bare', base), ('other', {**base, 'MLNB_TEST_KEY': 'worker-own-key-1', 'MLNB_TEST_TOKEN': 'worker-own-token-2'})):
        procs.append(subprocess.Popen([DASK, 'worker', '--scheduler-file', sf, '--nthreads', '1', '--no-dashboard', '--name', name,
                                       '--resources', f'{name}=1', '--local-directory', d/name], cwd=d, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    client = Client(scheduler_file=str(sf), timeout='30s')
    client.wait_for_workers(2, timeout=60)
    yield client, {w['name']: a for a, w in client.scheduler_info(n_workers=-1)['workers'].items()}
    client.close()
    for p in procs[1:] + procs[:1]: p.terminate()
    for p in procs:
        try: p.wait(20)
        except subprocess.TimeoutExpired: p.kill()

@pytest.mark.slow
def test_dask_workers_take_the_runners_secrets_not_their_own(api, cluster, tmp_path, monkeypatch):
    client, workers = cluster
    for k, v in ENV.items(): monkeypatch.setenv(k, v)
    for name in ('bare', 'other'):                                            # without the variables, then with other values
        runs = tmp_path/name
        Api.seen.clear()
        r = mlnb('run', params_file(tmp_path, api, validate=False, resources={name: 1}), '--runs-dir', runs, '--scheduler', client.scheduler.address)
        assert r.returncode == 0, r.stdout + r.stderr
        ing = latest(runs)['stages']['ingest']
        assert ing['status'] == 'ok' and ing['worker'] == workers[name] and ing['glued']['rows'] == len(ITEMS), ing
        assert [h.get('X-API-Key') for _, path, h in Api.seen if path == '/items'] == [KEY, KEY]   # the check's request, then the worker's
        assert traces(tmp_path, [KEY, TOKEN, 'worker-own-key-1', 'worker-own-token-2']) == []
