"SQL and HTTP sources against real servers: SQLite files, a local HTTP API on a loopback port, and a PostgreSQL server (conftest's `postgres`)."
import http.server, json, socket, threading, time
from urllib.parse import parse_qs, urlsplit
import pandas as pd, pytest, sqlalchemy as sa, yaml
from mlnb.core import MlnbError
from mlnb.sources import check_source, frame_sha256, read_http, read_sql

TOKEN = 'tok-3f9a-secret'
ITEMS = [{'id': i, 'name': f'item {i}', 'price': i * 1.25} for i in range(23)]

def raises(f, *needles, absent=()):
    "The MlnbError `f()` raises, checked to contain each of `needles` and none of `absent`."
    with pytest.raises(MlnbError) as e: f()
    msg = str(e.value)
    for n in needles: assert n in msg, msg
    for a in absent: assert a not in msg, msg
    return msg

# --- SQLite ---------------------------------------------------------------------------------------------------------

@pytest.fixture
def sqlite_db(tmp_path):
    df = pd.DataFrame({'id': range(11), 'name': [f'n{i}' if i % 4 else None for i in range(11)], 'x': [i / 3 for i in range(11)]})
    e = sa.create_engine(f'sqlite:///{tmp_path}/t.db'); df.to_sql('things', e, index=False); e.dispose()
    return f'sqlite:///{tmp_path}/t.db', df

def test_sqlite_table_and_query_in_chunks(sqlite_db):
    url, df = sqlite_db
    got, ident = read_sql({'url': url, 'table': 'things', 'chunksize': 3})      # 4 chunks concatenated
    pd.testing.assert_frame_equal(got, df)
    assert ident == {'source': 'sql', 'url': url, 'table': 'things', 'rows': 11, 'columns': 3, 'sha256': ident['sha256']}
    q, qident = read_sql({'url': url, 'query': 'SELECT id, name, x FROM things ORDER BY id', 'chunksize': 5})
    pd.testing.assert_frame_equal(q, df)
    assert qident['query'] == 'SELECT id, name, x FROM things ORDER BY id' and 'table' not in qident
    assert qident['sha256'] == ident['sha256'] == read_sql({'url': url, 'table': 'things'})[1]['sha256']  # the same rows, any chunking
    assert read_sql({'url': url, 'query': 'SELECT * FROM things WHERE id < 10'})[1]['sha256'] != ident['sha256']

def test_sqlite_errors(sqlite_db, tmp_path):
    url, _ = sqlite_db
    raises(lambda: read_sql({'url': url, 'table': 'thing'}), f'sql source {url}: table thing not found; tables: things')
    raises(lambda: read_sql({'url': url, 'query': 'SELECT * FROM nowhere'}), 'query failed: table nowhere not found')
    raises(lambda: read_sql({'url': url, 'query': 'SELEC 1'}), 'query failed:', 'syntax error')
    raises(lambda: read_sql({'url': url, 'table': 'things', 'query': 'SELECT 1'}), 'exactly one of `query` or `table`, not both')
    raises(lambda: read_sql({'url': url}), 'exactly one of `query` or `table`, neither is set')
    raises(lambda: read_sql({'url': url, 'table': 'things', 'chunksize': -1}), '`chunksize` must be a whole number of at least 1')
    raises(lambda: read_sql({'url': f'sqlite:///{tmp_path}/nope.db', 'table': 'things'}), 'nope.db does not exist')
    assert not (tmp_path/'nope.db').exists()                                  # not created empty
    raises(lambda: read_sql({'url': 'not a url', 'table': 't'}), 'not a database URL')

def test_sql_values_from_env_are_masked(sqlite_db, tmp_path, monkeypatch):
    url, _ = sqlite_db
    monkeypatch.setenv('SQL_PW_TEST', 'pw-7c1e')
    spec = {'url': f'postgresql+psycopg://etl:${{SQL_PW_TEST}}@127.0.0.1:{free_port()}/x', 'table': 't'}
    raises(lambda: read_sql(spec), 'sql source postgresql+psycopg://etl:***@127.0.0.1', 'connection refused', absent=['pw-7c1e'])
    monkeypatch.setenv('SQL_DIR_TEST', str(tmp_path))                       # any value put in from the environment is masked
    _, ident = read_sql({'url': 'sqlite:///${SQL_DIR_TEST}/t.db', 'table': 'things'})
    assert ident['url'] == 'sqlite:///${SQL_DIR_TEST}/t.db'
    raises(lambda: read_sql({'url': 'sqlite:///${SQL_DIR_TEST}/gone.db', 'table': 't'}), 'database file ***/gone.db does not exist', absent=[str(tmp_path)])
    monkeypatch.delenv('SQL_PW_TEST')
    raises(lambda: read_sql(spec), 'sql source postgresql+psycopg://etl:***@127.0.0.1', 'environment variable SQL_PW_TEST is not set')

# --- HTTP -----------------------------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

class Api(http.server.BaseHTTPRequestHandler):
    "Scenario routes; `/flaky/<key>` and `/limited/<key>` fail on the first request for each key."
    hits, times = {}, {}
    def log_message(self, *a): pass
    def send(self, body, code=200, headers=(), length=True):
        body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header('Content-Type', 'application/json')
        for k, v in headers: self.send_header(k, v)
        if length: self.send_header('Content-Length', str(len(body)))
        self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        u = urlsplit(self.path); q = {k: v[0] for k, v in parse_qs(u.query).items()}; path = u.path
        base = f'http://127.0.0.1:{self.server.server_port}'
        key = path.rsplit('/', 1)[-1]
        Api.hits[path] = Api.hits.get(path, 0) + 1; Api.times.setdefault(path, []).append(time.monotonic())
        if path == '/page':                                        # ?page=1.. &per_page=; [] past the end
            p, n = int(q['page']), int(q.get('per_page', 10)); return self.send(ITEMS[(p - 1) * n:p * n])
        if path == '/offset':                                      # ?offset=&limit=; {"results": [...]}
            o, n = int(q['offset']), int(q['limit']); return self.send({'results': ITEMS[o:o + n]})
        if path == '/next':                                        # cursor in the body: {"data": {"items": [...]}, "links": {"next": ...}}
            c = int(q.get('cursor', 0)); nxt = f'/next?cursor={c + 10}' if c + 10 < len(ITEMS) else None
            return self.send({'data': {'items': ITEMS[c:c + 10]}, 'links': {'next': nxt}})
        if path == '/link':                                        # RFC 8288 Link header with absolute URLs
            c = int(q.get('cursor', 0)); h = [('Link', f'<{base}/link?cursor={c + 10}>; rel="next", <{base}/link>; rel="first"')] if c + 10 < len(ITEMS) else []
            return self.send(ITEMS[c:c + 10], headers=h)
        if path == '/loop': return self.send({'items': [{'a': 1}], 'next': '/loop'})
        if path.startswith('/flaky/'): return self.send(b'oops', 500) if Api.hits[path] == 1 else self.send([{'ok': True}])
        if path.startswith('/limited/'): return self.send({'error': 'slow down'}, 429, [('Retry-After', '1')]) if Api.hits[path] == 1 else self.send([{'ok': 1}])
        if path == '/down': return self.send(b'<html>bad gateway</html>', 502)
        if path == '/malformed': return self.send([{'a': 1}] if q.get('page') == '1' else b'[{"a": 2}, {"a": 3,\n "b": }]')
        if path == '/html': return self.send(b'<html>login</html>', headers=[('X', 'y')])
        if path == '/big': return self.send([{'blob': 'x' * 1000}] * 2000)                        # ~2 MB, with Content-Length
        if path == '/big-stream': return self.send([{'blob': 'x' * 1000}] * 2000, length=False)  # no length: counted while read
        if path == '/auth':
            if self.headers.get('Authorization') != f'Bearer {TOKEN}': return self.send({'error': 'invalid token'}, 401)
            return self.send({'data': [{'id': 1, 'meta': {'k': [1, 2]}}], 'echo': self.headers.get('Authorization')})
        if path == '/object': return self.send({'data': {'rows': 3}, 'count': 3})
        return self.send({'error': 'no such route'}, 404)

@pytest.fixture(scope='module')
def api():
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', free_port()), Api); srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{srv.server_port}'
    srv.shutdown(); srv.server_close()

def test_pagination_page(api):
    df, ident = read_http({'url': f'{api}/page', 'pagination': {'type': 'page', 'size': 10}})
    assert df.id.tolist() == list(range(23)) and list(df.columns) == ['id', 'name', 'price']
    assert (ident['pages'], ident['rows'], ident['columns']) == (4, 23, 3)     # 10, 10, 3 and the empty 4th
    assert ident['sha256'] == frame_sha256(df) and ident['url'] == f'{api}/page' and ident['params'] == {}   # the records' hash, not the pages'

def test_pagination_offset_stops_at_a_short_page(api):
    df, ident = read_http({'url': f'{api}/offset', 'records_path': 'results', 'pagination': {'type': 'offset', 'size': 5}})
    assert df.id.tolist() == list(range(23)) and ident['pages'] == 5        # 5, 5, 5, 5, 3
    _, ident = read_http({'url': f'{api}/offset', 'records_path': 'results', 'pagination': {'type': 'offset', 'size': 23}})
    assert ident['pages'] == 2                                             # a full page, then an empty one
    df, ident = read_http({'url': f'{api}/offset?limit=6', 'records_path': 'results', 'pagination': {'type': 'offset', 'size': 6, 'size_param': None}})
    assert len(df) == 23 and ident['pages'] == 4 and ident['url'] == f'{api}/offset?limit=6'   # the URL's own query is kept

def test_pagination_next_link_in_body_and_link_header(api):
    df, ident = read_http({'url': f'{api}/next', 'records_path': 'data.items', 'pagination': {'type': 'next', 'next_path': 'links.next'}})
    assert df.id.tolist() == list(range(23)) and ident['pages'] == 3
    df2, ident2 = read_http({'url': f'{api}/link', 'pagination': {'type': 'next', 'next_path': 'link'}})
    assert df2.equals(df) and ident2['pages'] == 3
    raises(lambda: read_http({'url': f'{api}/loop', 'records_path': 'items', 'pagination': {'type': 'next', 'next_path': 'next'}}),
           'page 1: the next link', '/loop repeats an earlier page')
    raises(lambda: read_http({'url': f'{api}/next', 'records_path': 'data.items', 'pagination': {'type': 'next', 'next_path': 'link.next'}}),
           "page 1: next_path 'link.next' not found: the response is an object with keys ['data', 'links']")
    raises(lambda: read_http({'url': f'{api}/page', 'pagination': {'type': 'page', 'size': 5}, 'max_pages': 3}), 'more than max_pages=3 pages')

def test_retries_500_then_success(api):
    df, ident = read_http({'url': f'{api}/flaky/a', 'backoff': 0.05})
    assert df.ok.tolist() == [True] and Api.hits['/flaky/a'] == 2
    raises(lambda: read_http({'url': f'{api}/down', 'retries': 2, 'backoff': 0.01}), 'page 1: HTTP 502 Bad Gateway (after 3 attempts): <html>bad gateway</html>')
    assert Api.hits['/down'] == 3

def test_429_waits_for_retry_after(api):
    t = time.monotonic(); df, _ = read_http({'url': f'{api}/limited/a', 'backoff': 0.01})
    first, second = Api.times['/limited/a']
    assert df.ok.tolist() == [1] and 0.9 <= second - first < 3 and time.monotonic() - t < 5   # Retry-After: 1, not the 0.01 s backoff

def test_malformed_json_names_the_page(api):
    raises(lambda: read_http({'url': f'{api}/malformed', 'pagination': {'type': 'page', 'size_param': None}}),
           f'http source {api}/malformed: page 2: not valid JSON: Expecting value at line 2 column 7')
    raises(lambda: read_http({'url': f'{api}/html'}), 'page 1: not valid JSON: Expecting value at line 1 column 1')
    raises(lambda: read_http({'url': f'{api}/object', 'records_path': 'data.items'}), "records_path 'data.items' not found: data is an object with keys ['rows']")
    raises(lambda: read_http({'url': f'{api}/object'}), "the response is an object with keys ['count', 'data'], not a list of records; set `records_path`")
    raises(lambda: read_http({'url': f'{api}/object', 'records_path': 'data.rows'}), "records_path 'data.rows' is a int, not a list")

def test_oversized_response(api):
    raises(lambda: read_http({'url': f'{api}/big', 'max_mb': 1}), 'page 1: the response is', 'bytes, more than max_mb=1;')
    raises(lambda: read_http({'url': f'{api}/big-stream', 'max_mb': 1}), 'page 1: the response is more than max_mb=1 (1,000,000 bytes)')
    assert len(read_http({'url': f'{api}/big-stream', 'max_mb': 3})[0]) == 2000

def test_bearer_token_from_env_is_sent_and_masked(api, monkeypatch):
    monkeypatch.setenv('API_TOKEN', TOKEN)
    spec = {'url': f'{api}/auth', 'headers': {'Authorization': 'Bearer ${API_TOKEN}'}, 'params': {'q': '${API_TOKEN}', 'n': 1}, 'records_path': 'data'}
    df, ident = read_http(spec)
    assert df.to_dict('records') == [{'id': 1, 'meta': '{"k": [1, 2]}'}]   # a nested field is kept as JSON text
    assert TOKEN not in json.dumps(ident) and ident['params'] == {'q': '${API_TOKEN}', 'n': 1}
    monkeypatch.setenv('API_TOKEN', 'wrong-token-value')
    raises(lambda: read_http(spec), f'http source {api}/auth: page 1: authentication failed (401): {{"error": "invalid token"}}', absent=['wrong-token-value'])
    raises(lambda: check_source('http', spec), 'authentication failed (401)', absent=['wrong-token-value'])
    monkeypatch.delenv('API_TOKEN')
    raises(lambda: read_http(spec), 'environment variable API_TOKEN is not set')

def test_http_settings_are_checked(api):
    raises(lambda: read_http({'url': f'{api}/page', 'max_page': 3}), 'unknown setting max_page')
    raises(lambda: read_http({'url': f'{api}/page', 'pagination': {'type': 'cursor'}}), '`type` is next, page or offset')
    raises(lambda: read_http({'url': f'{api}/page', 'timeout': 'soon'}), '`timeout` must be a number')
    raises(lambda: read_http({'url': 'ftp://example.org/x'}), 'not an http:// or https:// URL')

def test_check_source_http(api):
    check_source('http', {'url': f'{api}/page', 'pagination': {'type': 'page'}})
    t = time.monotonic()
    raises(lambda: check_source('http', {'url': f'http://127.0.0.1:{free_port()}/x'}), 'http source http://127.0.0.1:', 'connection refused')
    assert time.monotonic() - t < 5
    raises(lambda: check_source('http', {'url': f'{api}/missing'}), f'http source {api}/missing: not found (404)')
    assert Api.hits.get('/down', 0) in (0, 3)
    n = Api.hits.get('/down', 0); raises(lambda: check_source('http', {'url': f'{api}/down'}), 'HTTP 502'); assert Api.hits['/down'] == n + 1  # no retries

def test_read_http_connection_refused_after_retries():
    t = time.monotonic()
    raises(lambda: read_http({'url': f'http://127.0.0.1:{free_port()}/x', 'retries': 2, 'backoff': 0.05}), 'page 1: connection refused (after 3 attempts)')
    assert 0.15 <= time.monotonic() - t < 3                                 # waited 0.05 s + 0.1 s

# --- PostgreSQL ---------------------------------------------------------------------------------------------------------

def test_postgres_table_and_query_with_password_from_env(postgres, monkeypatch):
    monkeypatch.setenv('PGPASS_TEST', postgres.password)
    url = f'postgresql+psycopg://{postgres.user}:${{PGPASS_TEST}}@127.0.0.1:{postgres.port}/{postgres.database}'
    df, ident = read_sql({'url': url, 'table': 'people', 'chunksize': 7})
    assert len(df) == 40 and list(df.columns) == ['id', 'name', 'score', 'joined'] and df.score.isna().sum() == 5
    assert ident['url'] == url.replace('${PGPASS_TEST}', '***') and postgres.password not in json.dumps(ident) and (ident['rows'], ident['columns']) == (40, 4)
    q, qident = read_sql({'url': url, 'query': "SELECT * FROM people WHERE name LIKE 'person %' ORDER BY id"})
    assert qident['sha256'] == ident['sha256'] and q.equals(df.sort_values('id', ignore_index=True))
    odd, _ = read_sql({'url': url, 'table': 'public.Odd Name'})                # quoted by SQLAlchemy, schema-qualified
    assert list(odd.columns) == ['a b', 'c-d'] and len(odd) == 3
    lit, lident = read_sql({'url': url, 'query': "SELECT '10:30 :x' AS t, 'a%' AS p, '%s' AS s, 2::int AS i, '{\"a\": [1]}'::jsonb AS j, 1.10::numeric AS n"})
    assert lit.iloc[0].tolist()[:5] == ['10:30 :x', 'a%', '%s', 2, {'a': [1]}]  # `:x` and `%` are not parameters
    assert len(lident['sha256']) == 64                                       # a jsonb column's dicts and a numeric's decimals hash too
    raises(lambda: read_sql({'url': url, 'table': 'persons'}), 'table persons not found; tables: Odd Name, people', absent=[postgres.password])
    raises(lambda: read_sql({'url': url, 'query': 'SELECT * FROM persons'}), 'query failed: table persons not found')
    check_source('sql', {'url': url, 'table': 'people'}); check_source('sql', {'url': url, 'query': 'SELECT 1'})
    raises(lambda: check_source('sql', {'url': url, 'table': 'persons'}), 'table persons not found')
    raises(lambda: read_sql({'url': url.replace(postgres.database, 'nodb'), 'table': 'people'}), 'database nodb does not exist')

def test_postgres_wrong_password(postgres, monkeypatch):
    monkeypatch.setenv('PGPASS_TEST', 'not-the-password-81f')
    url = f'postgresql+psycopg://{postgres.user}:${{PGPASS_TEST}}@127.0.0.1:{postgres.port}/{postgres.database}'
    for f in (lambda: read_sql({'url': url, 'table': 'people'}), lambda: check_source('sql', {'url': url, 'table': 'people'})):
        raises(f, f'sql source postgresql+psycopg://{postgres.user}:***@127.0.0.1:{postgres.port}/{postgres.database}: authentication failed',
               absent=['not-the-password-81f', postgres.password])
    literal = url.replace('${PGPASS_TEST}', 'literal-pw-29')                 # a password written in the URL itself
    raises(lambda: read_sql({'url': literal, 'table': 'people'}), 'authentication failed', absent=['literal-pw-29'])

def test_postgres_check_source_refused_quickly(postgres):
    t = time.monotonic()
    raises(lambda: check_source('sql', {'url': f'postgresql+psycopg://u:p@127.0.0.1:{free_port()}/x', 'query': 'SELECT 1'}), 'connection refused')
    assert time.monotonic() - t < 5

# --- Through `mlnb run` ---------------------------------------------------------------------------------------------

def run_ingest(tmp_path, validate=True, **ingest):
    from conftest import mlnb
    stages = {'ingest': {'params': {'sample_rows': 0, **ingest}}}
    if validate: stages['validate'] = {'upstream': ['ingest'], 'params': {}}
    p = tmp_path/'p.yaml'; p.write_text(yaml.safe_dump({'shared': {'seed': 42, 'target': 'id'} if validate else {'seed': 42}, 'stages': stages}))
    return mlnb('run', p, '--runs-dir', tmp_path/'runs'), tmp_path/'runs'

@pytest.mark.slow
def test_mlnb_run_reads_postgres_masks_the_password_and_always_refetches(postgres, tmp_path, monkeypatch):
    monkeypatch.setenv('PGPASS_TEST', postgres.password)
    url = f'postgresql+psycopg://{postgres.user}:${{PGPASS_TEST}}@127.0.0.1:{postgres.port}/{postgres.database}'
    r, runs = run_ingest(tmp_path, source='sql', sql={'url': url, 'table': 'people'})
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = next(runs.glob('*/run.json')).parent
    ing = json.loads((run_dir/'run.json').read_text())['stages']['ingest']
    assert ing['glued']['rows'] == 40 and ing['glued']['source_identity']['url'] == url.replace('${PGPASS_TEST}', '***')
    assert all(postgres.password not in f.read_text(errors='ignore') for f in run_dir.rglob('*') if f.suffix in ('.json', '.ipynb', '.html', '.yaml'))
    r, _ = run_ingest(tmp_path, source='sql', sql={'url': url, 'table': 'people'})   # the same parameters again
    assert r.returncode == 0 and 'ingest       ok' in r.stdout and 'validate     cached' in r.stdout, r.stdout  # fetched again; same rows: validate cached

@pytest.mark.slow
def test_mlnb_run_reads_an_http_api(api, tmp_path):
    r, runs = run_ingest(tmp_path, validate=False, source='http', http={'url': f'{api}/page', 'pagination': {'type': 'page', 'size': 10}})
    assert r.returncode == 0, r.stdout + r.stderr
    g = json.loads(next(runs.glob('*/run.json')).read_text())['stages']['ingest']['glued']
    assert g['rows'] == len(ITEMS) and g['source_identity']['pages'] >= 2

@pytest.mark.slow
def test_preflight_fails_in_seconds_before_anything_runs(tmp_path, monkeypatch):
    t = time.monotonic()
    r, runs = run_ingest(tmp_path, validate=False, source='sql', sql={'url': f'postgresql+psycopg://u:${{NOPE_PW}}@127.0.0.1:{free_port()}/x', 'table': 't'})
    assert r.returncode == 2 and 'environment variable NOPE_PW is not set' in r.stderr, r.stderr
    monkeypatch.setenv('NOPE_PW', 'pw-123456')
    r, runs = run_ingest(tmp_path, validate=False, source='sql', sql={'url': f'postgresql+psycopg://u:${{NOPE_PW}}@127.0.0.1:{free_port()}/x', 'table': 't'})
    assert r.returncode == 2 and 'connection refused' in r.stderr and 'pw-123456' not in r.stderr, r.stderr
    r, runs = run_ingest(tmp_path, validate=False, source='sql', sql={'url': 'postgresql+psycopg://u:hunter2@127.0.0.1:1/x', 'table': 't'})
    assert r.returncode == 2 and 'the url holds a password' in r.stderr, r.stderr
    assert not runs.exists() and time.monotonic() - t < 20   # no run folder: each failed in the check
