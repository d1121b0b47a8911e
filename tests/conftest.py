import os, subprocess, sys
from pathlib import Path
import pytest, yaml

ROOT = Path(__file__).resolve().parents[1]
MLNB = str(Path(sys.executable).parent/'mlnb')
os.environ.setdefault('OMP_NUM_THREADS', '1')

def small_params(**over) -> dict:
    "The default parameter file, shrunk to a 3,000-row sample and a fast model."
    p = yaml.safe_load((ROOT/'params'/'default.yaml').read_text())
    p['stages']['ingest']['params']['sample_rows'] = 3000
    p['shared']['model'] = 'logistic'
    p['stages']['train']['params'].update(cv_folds=2)
    p['stages']['explain']['params'].update(sample_size=60, local_rows=[0, 1])
    for stage, params in over.items(): p['stages'][stage].setdefault('params', {}).update(params)
    return p

def write_params(path: Path, p: dict) -> Path:
    path.write_text(yaml.safe_dump(p, sort_keys=False)); return path

def mlnb(*args, cwd=ROOT):
    "Run the `mlnb` command; return the completed process."
    return subprocess.run([MLNB, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)

@pytest.fixture(scope='session')
def small_run(tmp_path_factory):
    "One end-to-end `mlnb run` of the small parameter set, shared by the tests that read it."
    d = tmp_path_factory.mktemp('small')
    params = write_params(d/'small.yaml', small_params(deploy={'registry': str(d/'registry')}))
    r = mlnb('run', params, '--runs-dir', d/'runs')
    runs = list((d/'runs').glob('*/run.json'))
    return r, (runs[0].parent if runs else None), d

PG_INSTALL = 'run `bash tests/install-postgres.sh` (it apt-get installs the postgresql package)'

def pg_bindir():
    "The folder of PostgreSQL's server programs: that of `initdb` on PATH, else the newest /usr/lib/postgresql/*/bin; None when not installed."
    import glob, shutil
    if found := shutil.which('initdb'): return Path(found).resolve().parent
    dirs = [Path(p).parent for p in glob.glob('/usr/lib/postgresql/*/bin/initdb')]
    return max(dirs, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0) if dirs else None

@pytest.fixture(scope='session')
def postgres():
    """A real PostgreSQL server for the session, on a free 127.0.0.1 port with password (scram-sha-256) authentication,
    and a database `mlnb_test` with the tables `people` (40 rows) and `Odd Name` (3 rows). Run as root (CI), the server
    runs as the `postgres` system user. Yields host, port, user, password, database and url (with the password)."""
    import secrets, shutil, socket, tempfile, time, types
    bindir = pg_bindir()
    if bindir is None or not (bindir/'pg_ctl').exists():
        pytest.fail(f'PostgreSQL server programs (initdb, pg_ctl) not found on PATH or under /usr/lib/postgresql/*/bin: {PG_INSTALL}', pytrace=False)
    as_user = []
    if os.geteuid() == 0:   # PostgreSQL refuses to run as root
        import pwd
        try: pw = pwd.getpwnam('postgres')
        except KeyError: pytest.fail(f'running as root, and there is no `postgres` system user to run the server as: {PG_INSTALL}', pytrace=False)
        as_user = ['runuser', '-u', 'postgres', '--']
    top = Path(tempfile.mkdtemp(prefix='mlnb-pg-'))   # under /tmp, not pytest's basetemp (0700, root's: postgres could not enter it)
    data, sock, log, pwfile = top/'data', top/'sock', top/'server.log', top/'pwfile'
    password, user = secrets.token_urlsafe(12), 'mlnb'
    sock.mkdir(); pwfile.write_text(password + '\n')
    if as_user:
        for p in (top, sock, pwfile): os.chown(p, pw.pw_uid, pw.pw_gid)
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    def pg(*args, timeout=60):
        r = subprocess.run([*as_user, *map(str, args)], cwd=top, capture_output=True, text=True, timeout=timeout)
        if r.returncode:
            pytest.fail(f"{' '.join(map(str, args[:2]))} failed ({r.returncode}): {r.stdout[-1500:]}{r.stderr[-1500:]}"
                        + (f'\nserver log:\n{log.read_text()[-2000:]}' if log.exists() else ''), pytrace=False)
        return r
    try:
        pg(bindir/'initdb', '-D', data, '-U', user, f'--pwfile={pwfile}', '-A', 'scram-sha-256', '-E', 'UTF8', '--no-locale', '--no-sync')
        pg(bindir/'pg_ctl', '-D', data, '-l', log, '-w', '-t', '30', 'start',
           '-o', f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off", timeout=45)
        import psycopg
        dsn, deadline = dict(host='127.0.0.1', port=port, user=user, password=password, connect_timeout=3), time.monotonic() + 30
        while True:
            try: conn = psycopg.connect(dbname='postgres', autocommit=True, **dsn); break
            except psycopg.OperationalError:
                if time.monotonic() > deadline: raise
                time.sleep(0.2)
        with conn: conn.execute('CREATE DATABASE mlnb_test')
        with psycopg.connect(dbname='mlnb_test', **dsn) as conn:
            conn.execute("CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL, score double precision, joined date)")
            conn.execute("INSERT INTO people SELECT i, 'person ' || i, CASE WHEN i % 7 = 0 THEN NULL ELSE i * 1.5 END, "
                         "date '2024-01-01' + i FROM generate_series(1, 40) AS i")
            conn.execute('CREATE TABLE "Odd Name" ("a b" int, "c-d" text)')
            conn.execute("""INSERT INTO "Odd Name" VALUES (1, 'x'), (2, 'y'), (3, NULL)""")
        yield types.SimpleNamespace(host='127.0.0.1', port=port, user=user, password=password, database='mlnb_test',
                                    url=f'postgresql+psycopg://{user}:{password}@127.0.0.1:{port}/mlnb_test')
    finally:
        if (data/'postmaster.pid').exists(): subprocess.run([*as_user, str(bindir/'pg_ctl'), '-D', str(data), 'stop', '-m', 'fast', '-w'], cwd=top, capture_output=True, timeout=60)
        shutil.rmtree(top, ignore_errors=True)

GUARDED = ('params', 'data')   # the checkout's inputs: tests write into tmp_path, never here

def folder_digests(root: Path = ROOT, folders=GUARDED) -> dict:
    "sha256 of every file under `folders` of `root`, by path relative to `root`."
    import hashlib
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for f in folders for p in sorted((root/f).rglob('*')) if p.is_file() and '__pycache__' not in p.parts}

@pytest.fixture(scope='session', autouse=True)
def checkout_inputs_untouched():
    "Fails the session when a test wrote into the checkout's params/ or data/ (added, changed or removed a file there)."
    before = folder_digests()
    yield
    after = folder_digests()
    if changed := sorted(n for n in before.keys() | after.keys() if before.get(n) != after.get(n)):
        pytest.fail(f"the tests changed the checkout's {' and '.join(f + '/' for f in GUARDED)}: {changed} "
                    '(write into tmp_path instead; or someone edited these files while the tests ran)', pytrace=False)
