"mlnb reproduce (issue 22.1): the small run re-executed from its record gives the same bytes, and a changed data file is named with both hashes."
import contextlib, gzip, hashlib, io, json, shutil
from pathlib import Path
import pandas as pd
import pytest, yaml
from conftest import ROOT, mlnb
from mlnb.cli import main

@pytest.mark.slow   # re-executes three stages
def test_reproduce_matches_the_record(small_run, tmp_path):
    r, run_dir, _ = small_run
    assert r.returncode == 0, r.stderr
    man = json.loads((run_dir/'run.json').read_text())
    assert any(l.startswith('pandas==') for l in man['environment']['installed'])            # the full pip freeze is recorded
    rep = mlnb('reproduce', run_dir, '--until', 'prepare', '--runs-dir', tmp_path/'runs')
    assert rep.returncode == 0, rep.stdout + rep.stderr
    new_dir = next((tmp_path/'runs').glob('*/run.json')).parent
    new = json.loads((new_dir/'run.json').read_text())
    assert list(new['stages']) == ['ingest', 'validate', 'prepare'] and all(st['status'] == 'ok' for st in new['stages'].values())   # executed, not cached
    for s in new['stages']:
        assert {k: a['sha256'] for k, a in new['stages'][s]['artifacts'].items()} == {k: a['sha256'] for k, a in man['stages'][s]['artifacts'].items()}
    assert new['reproduces'] == dict(run_id=man['run_id'], run_dir=str(run_dir), ok=True, different=0, compared=new['reproduces']['compared'],
                                     data_changed=[], packages_changed=[]) and new['reproduces']['compared'] >= 35
    assert 'prepare    artifact   train                        identical' in rep.stdout and 'every artifact and glued value identical' in rep.stdout
    page = (new_dir/'reproduce.html').read_text()
    assert 'Every artifact and glued value is identical.' in page and "<tr class='bad'>" not in page and '<script' not in page
    out = io.StringIO()
    with contextlib.redirect_stdout(out): rc = main(['reproduce', str(run_dir), '--env', '--dry-run'])   # --env: the requirements it would install
    req = Path(out.getvalue().split('requirements: ')[1].split()[0]).read_text().splitlines()
    assert rc == 0 and req[1:] == [l for l in man['environment']['installed'] if not l.startswith('mlnb==')] and 'pip install -r' in out.getvalue()

@pytest.mark.slow   # re-executes ingest
def test_a_changed_data_file_is_named(small_run, tmp_path):
    _, run_dir, _ = small_run
    data = tmp_path/'adult.csv.gz'; shutil.copyfile(ROOT/'data'/'adult.csv.gz', data)
    recorded = hashlib.sha256(data.read_bytes()).hexdigest()
    rec = tmp_path/'recorded'; shutil.copytree(run_dir, rec)                                 # the run, as if it had read this copy of the data
    p = yaml.safe_load((rec/'params.yaml').read_text()); p['stages']['ingest']['params']['path'] = str(data)
    (rec/'params.yaml').write_text(yaml.safe_dump(p, sort_keys=False))
    man = json.loads((rec/'run.json').read_text()); man['stages']['ingest']['data'] = {str(data): recorded}
    (rec/'run.json').write_text(json.dumps(man))
    df = pd.read_csv(data, nrows=4000); df['age'] += 1                                      # then someone changed the file
    with gzip.open(data, 'wt') as f: df.to_csv(f, index=False)
    now = hashlib.sha256(data.read_bytes()).hexdigest()
    rep = mlnb('reproduce', rec, '--until', 'ingest', '--runs-dir', tmp_path/'runs')
    assert rep.returncode == 1, rep.stdout + rep.stderr
    assert f'data file changed: {data} (stage ingest): recorded sha256 {recorded}, now {now}' in rep.stdout
    line = next(l for l in rep.stdout.splitlines() if l.startswith('ingest     artifact   data'))
    assert 'DIFFERENT' in line and f'data hash differs: {data} ({recorded[:12]} recorded, {now[:12]} now)' in line
    new = json.loads(next((tmp_path/'runs').glob('*/run.json')).read_text())
    assert new['reproduces']['ok'] is False and new['reproduces']['data_changed'] == [str(data)]
