"""Broken input files through `mlnb run`: each gets a non-zero exit and a message that names the file, line or parameter."""
import json
import pytest, yaml
from conftest import mlnb

pytestmark = pytest.mark.slow

def ingest_only(tmp_path, **params) -> object:
    "A parameter file with the ingest stage alone, reading `params`."
    p = tmp_path/'p.yaml'
    p.write_text(yaml.safe_dump({'shared': {'seed': 42}, 'stages': {'ingest': {'params': {'sample_rows': 0, **params}}}}))
    return p

def run(tmp_path, **params):
    return mlnb('run', ingest_only(tmp_path, **params), '--runs-dir', tmp_path/'runs', '--no-cache')

HEADER = 'age,workclass,income\n'

@pytest.mark.parametrize('name, text, message', [
    ('cut.csv', HEADER + '39,State-gov,<=50K\n50,Self-emp', 'line 3 has 2 fields where the header has 3 (cut off?)'),
    ('stray.csv', HEADER + '39,State-gov,<=50K\n50,Self,emp,>50K\n', 'line 3 has 4 fields where the header has 3 (a stray delimiter'),
    ('semi.csv', HEADER.replace(',', ';') + '39;State-gov;<=50K\n', "set `sep: ';'`"),
])
def test_broken_csv_fails_naming_the_line_or_parameter(tmp_path, name, text, message):
    (tmp_path/name).write_text(text)
    r = run(tmp_path, path=str(tmp_path/name))
    assert r.returncode == 1, r.stdout + r.stderr
    assert message in r.stdout and name in r.stdout, r.stdout

def test_latin1_file_names_the_byte_line_and_encoding(tmp_path):
    (tmp_path/'latin.csv').write_bytes((HEADER + '39,Administración,<=50K\n').encode('latin-1'))
    r = run(tmp_path, path=str(tmp_path/'latin.csv'))
    assert r.returncode == 1 and 'byte 0xf3 on line 2 cannot be decoded; set `encoding`' in r.stdout, r.stdout
    r = run(tmp_path, path=str(tmp_path/'latin.csv'), encoding='latin-1')
    assert r.returncode == 0, r.stdout + r.stderr

def test_skipped_lines_are_counted(tmp_path):
    (tmp_path/'stray.csv').write_text(HEADER + '39,State-gov,<=50K\n50,Self,emp,>50K\n41,Private,>50K\n')
    r = run(tmp_path, path=str(tmp_path/'stray.csv'), on_bad_lines='skip')
    assert r.returncode == 0, r.stdout + r.stderr
    man = json.loads(next((tmp_path/'runs').glob('*/run.json')).read_text())
    assert man['stages']['ingest']['glued']['skipped_lines'] == 1 and man['stages']['ingest']['glued']['rows'] == 2

def test_missing_data_file_fails_before_anything_runs(tmp_path):
    r = run(tmp_path, path='data/no-such-file.csv')
    assert r.returncode == 2 and "parameter 'path': data file data/no-such-file.csv does not exist" in r.stderr, r.stderr
    assert not (tmp_path/'runs').exists()  # no run folder, no kernel: it failed in the check

def until_validate(tmp_path, path, **validate):
    p = tmp_path/'v.yaml'
    p.write_text(yaml.safe_dump({'shared': {'seed': 42, 'target': 'income'}, 'stages': {
        'ingest': {'params': {'path': str(path), 'sample_rows': 0}},
        'validate': {'upstream': ['ingest'], 'params': validate}}}))
    return mlnb('run', p, '--runs-dir', tmp_path/'runs', '--no-cache')

def table(n=60, **cols):
    import pandas as pd
    base = pd.DataFrame({'age': [30 + i % 40 for i in range(n)], 'workclass': ['Private', 'State-gov'] * (n // 2), 'income': ['<=50K', '>50K', '<=50K'] * (n // 3)})
    return base.assign(**cols)

def test_empty_column_fails_naming_it(tmp_path):
    table(notes=None).to_csv(tmp_path/'t.csv', index=False)
    r = until_validate(tmp_path, tmp_path/'t.csv')
    assert r.returncode == 1 and 'notes: 100%, 60 of 60 values are missing (the column is empty)' in r.stdout, r.stdout

def test_text_among_numbers_fails_naming_column_count_and_examples(tmp_path):
    t = table(); t['age'] = t['age'].astype(object); t.loc[:4, 'age'] = 'unknown'
    t.to_csv(tmp_path/'t.csv', index=False)
    r = until_validate(tmp_path, tmp_path/'t.csv')
    assert r.returncode == 1 and "age: 5 of 60 values are not numbers: 'unknown' ×5" in r.stdout, r.stdout
    r = until_validate(tmp_path, tmp_path/'t.csv', quality={'max_non_numeric': {'action': 'warn'}})  # the rule, turned into a warning
    assert r.returncode == 0, r.stdout + r.stderr

def test_schema_lock_is_written_then_enforced(tmp_path):
    lock = tmp_path/'schema.yaml'
    table().to_csv(tmp_path/'t.csv', index=False)
    assert until_validate(tmp_path, tmp_path/'t.csv', schema_lock=str(lock)).returncode == 0
    assert yaml.safe_load(lock.read_text())['columns']['age']['dtype'] == 'int'
    t = table().drop(columns='workclass'); t['age'] = t['age'].astype(object); t.loc[:2, 'age'] = 'unknown'   # tomorrow's file
    t.to_csv(tmp_path/'t.csv', index=False)
    r = until_validate(tmp_path, tmp_path/'t.csv', schema_lock=str(lock), quality={'max_non_numeric': None})
    assert r.returncode == 1, r.stdout
    assert 'age: not int (3, e.g. unknown)' in r.stdout and 'workclass' in r.stdout, r.stdout   # the failing column, its values, the missing column
    failed = next(m.parent for m in (tmp_path/'runs').glob('*/run.json') if json.loads(m.read_text())['status'] == 'failed')   # the second run
    nb = json.loads((failed/'02_validate.ipynb').read_text())
    shown = json.dumps(nb)
    assert 'dtype changed' in shown and 'removed' in shown   # the diff against the lock is in the report

def test_anomalies_are_quarantined_with_scores_and_reasons(tmp_path):
    import pandas as pd
    t = table(n=600)
    t.loc[[5, 50], 'age'] = [150, -20]                                   # two impossible ages among ordinary rows
    t.to_csv(tmp_path/'t.csv', index=False)
    r = until_validate(tmp_path, tmp_path/'t.csv', anomalies={'policy': 'quarantine', 'contamination': 0.005})
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = next((tmp_path/'runs').glob('*/run.json')).parent
    st = json.loads((run_dir/'run.json').read_text())['stages']['validate']
    n = st['glued']['anomalies']['rows']
    assert 2 <= n <= 4 and st['glued']['rows_out'] == 600 - n and st['glued']['anomalies']['policy'] == 'quarantine'
    q = pd.read_parquet(run_dir/st['artifacts']['quarantine']['path'])
    assert {150, -20} <= set(q.age) and q.why.str.startswith('age').sum() >= 2 and q.anomaly_score.is_monotonic_decreasing
    assert (run_dir/'artifacts/validate/anomaly_scores.png').exists()

@pytest.mark.parametrize('stage, reads', [('deploy', 'pipeline, train, test, task'), ('validate', 'data'), ('evaluate', 'task, pipeline, test')])
def test_a_stage_without_its_upstream_is_refused_before_anything_runs(tmp_path, stage, reads):
    "Run by `mlnb run` without `upstream:`, a stage would have run on its notebook's demo data (Adult) and deploy registered that model under the user's name."
    p = tmp_path/'p.yaml'
    p.write_text(yaml.safe_dump({'shared': {'seed': 42}, 'stages': {stage: {'params': {'model_name': 'mine'} if stage == 'deploy' else {}}}}))
    r = mlnb('run', p, '--runs-dir', tmp_path/'runs', '--no-cache')
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"stage '{stage}'" in r.stderr and f'reads {reads}' in r.stderr and 'no `upstream:`' in r.stderr, r.stderr
    assert not (tmp_path/'runs').exists() or not any((tmp_path/'runs').iterdir())   # refused before a run folder was made
