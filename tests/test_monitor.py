"`mlnb monitor` against the model the small end-to-end run registered: drift where it was made, none where not, and retraining."
import json
import pytest, yaml
from mlnb.ingest import read_table
from mlnb.registry import Registry
from conftest import mlnb, small_params, write_params

def batch(seed, shift=False):
    "A random sample of the Adult data, not necessarily seen in training; optionally with age and workclass moved."
    df = read_table('data/adult.csv.gz').sample(3000, random_state=seed).reset_index(drop=True)
    if shift:
        df['age'] = df['age'] + 10
        private = df.index[df['workclass'] == 'Private']
        df.loc[private[: int(len(private) * 0.6)], 'workclass'] = 'Self-emp-inc'
    return df

# `mlnb monitor`'s exit codes (mlnb/cli.py: cmd_monitor, main): every call below asserts exactly one of them
NO_DRIFT, FAILED, USAGE, DRIFT = 0, 1, 2, 3   # 3: drift or a performance drop; 1: the monitor stage, or the retraining asked for, failed; 2: bad arguments, nothing ran

def monitor(d, data, tmp_path, *extra):
    "Run `mlnb monitor` on `data` against the small run's registry; `(process, what this call's monitor stage glued, or None if it made no run)`."
    runs = lambda: sorted((tmp_path/'monitor').glob('*/run.json'), key=lambda f: f.stat().st_mtime_ns)   # ids of one second sort at random
    before = set(runs())
    r = mlnb('monitor', '--model', 'adult-income', '--registry', d/'registry', '--data', data, '--runs-dir', tmp_path/'monitor', *extra)
    new = [f for f in runs() if f not in before]
    return r, (json.loads(new[-1].read_text())['stages']['monitor'].get('glued') or {} if new else None)

def test_no_drift_on_a_random_sample(small_run, tmp_path):
    _, _, d = small_run
    batch(11).to_csv(tmp_path/'new.csv', index=False)
    r, g = monitor(d, tmp_path/'new.csv', tmp_path)
    assert r.returncode == NO_DRIFT, r.stdout + r.stderr
    assert g['drifted_columns'] == [] and not g['drift_detected'] and g['labelled'] and not g['performance_drop']
    assert 'no drift' in r.stdout and (next((tmp_path/'monitor').glob('*/report.html'))).exists()
    assert g['anomaly_share'] < 3 * g['reference_anomaly_share'] + 0.01 and 'anomalous rows' in r.stdout   # a sample like the training data

def test_anomalous_batch_has_a_higher_anomaly_share(small_run, tmp_path):
    _, _, d = small_run
    odd = batch(13); odd.loc[:299, 'age'] = 95; odd.loc[:299, 'hours-per-week'] = 99; odd.loc[:299, 'capital-gain'] = 99999
    odd.to_csv(tmp_path/'odd.csv', index=False)
    r, g = monitor(d, tmp_path/'odd.csv', tmp_path)
    assert r.returncode == DRIFT and g['performance_drop'] and not g['share_drift'], (r.returncode, r.stdout + r.stderr)   # a tenth of the rows absurd: the log loss rises
    assert g['anomaly_share'] >= 0.09 and g['anomaly_share'] > 5 * g['reference_anomaly_share'], (g['anomaly_share'], g['reference_anomaly_share'])

def test_drift_in_exactly_the_moved_columns(small_run, tmp_path):
    _, _, d = small_run
    batch(12, shift=True).to_parquet(tmp_path/'new.parquet')
    r, g = monitor(d, tmp_path/'new.parquet', tmp_path)
    assert sorted(g['drifted_columns']) == ['age', 'workclass'], g['drifted_columns']
    rows = {row['column']: row for row in g['drift_table']}
    assert rows['age']['method'] == 'wasserstein' and rows['workclass']['method'] == 'jensenshannon' and rows['age']['psi'] > 0.2
    assert not g['share_drift'] and not g['performance_drop'], r.stdout + r.stderr                  # 2 of 14 columns: under the 50% share
    assert r.returncode == DRIFT and g['drift_alert'] and 'driven by age' in r.stdout, r.stdout + r.stderr   # but age, which the model leans on, leaves its calibrated band
    nb = next((tmp_path/'monitor').glob('*/01_monitor.ipynb')).read_text()
    assert nb.count('image/png') >= 3                                       # a plot per drifted column and the predictions
    (tmp_path/'strict.yaml').write_text(yaml.safe_dump({'drift_share': 0.1}))
    r, g = monitor(d, tmp_path/'new.parquet', tmp_path, '--params', tmp_path/'strict.yaml')
    assert r.returncode == DRIFT and g['share_drift'] and 'DRIFT: 2 of 14' in r.stdout, r.stdout + r.stderr

def test_small_reference_uses_tests_and_bad_input_is_named(small_run, tmp_path):
    _, _, d = small_run
    batch(13, shift=True).to_csv(tmp_path/'new.csv', index=False)
    (tmp_path/'p.yaml').write_text(yaml.safe_dump({'small_reference': 5000, 'thresholds': 'pvalue'}))   # treat the 2,400-row reference as small; chunks by p-values
    r, g = monitor(d, tmp_path/'new.csv', tmp_path, '--params', tmp_path/'p.yaml')
    assert r.returncode == DRIFT and g['drift_alert'] and not g['share_drift'] and not g['performance_drop'], (r.returncode, r.stdout + r.stderr)
    rows = {row['column']: row for row in g['drift_table']}
    assert rows['age']['method'] == 'ks' and rows['workclass']['method'] == 'chi2' and {'age', 'workclass'} <= set(g['drifted_columns'])
    age = next(x for x in g['results'] if x['metric'] == 'age')
    assert age['lower'] == 0.05 and age['value'] < 1e-6 and age['alert'], age   # the chunk's KS p-value against the fixed 0.05
    batch(13).drop(columns=['age']).to_csv(tmp_path/'bad.csv', index=False)
    r, g = monitor(d, tmp_path/'bad.csv', tmp_path)
    assert r.returncode == FAILED and "lacks the model inputs ['age']" in r.stdout and g is not None, r.stdout + r.stderr   # the stage ran and failed
    (tmp_path/'p.yaml').write_text(yaml.safe_dump({'ks_pvalue': 0.01}))
    r, g = monitor(d, tmp_path/'new.csv', tmp_path, '--params', tmp_path/'p.yaml')
    assert r.returncode == USAGE and "unknown parameter 'ks_pvalue'" in r.stderr and g is None, r.stdout + r.stderr   # refused before any run

def test_retrain_registers_a_new_version(small_run, tmp_path):
    "A performance drop with no drift (the inputs as before, a third of the labels wrong) triggers the retraining, through the deploy gate."
    _, _, d = small_run
    reg = Registry(d/'registry'); before = reg.versions('adult-income')['version'].max()
    new = batch(14); wrong = new.index % 3 == 0
    new.loc[wrong, 'income'] = new.loc[wrong, 'income'].map({'>50K': '<=50K', '<=50K': '>50K'})
    new.to_csv(tmp_path/'new.csv', index=False)
    train = write_params(tmp_path/'train.yaml', small_params())
    r, g = monitor(d, tmp_path/'new.csv', tmp_path, '--retrain', '--train-params', train, '--train-runs-dir', tmp_path/'runs')
    assert r.returncode == DRIFT and g['performance_alert'] and not g['drift_alert'] and 'retrain run' in r.stdout, r.stdout + r.stderr
    assert 'retrain: triggered by realized roc_auc' in r.stdout and '(at least 0.8' in r.stdout, r.stdout
    m = json.loads(next((tmp_path/'runs').glob('*/run.json')).read_text())
    assert m['status'] == 'ok' and m['stages']['ingest']['parameters']['extra'] == [str(tmp_path/'new.csv')]
    assert m['stages']['ingest']['glued']['source_rows'] == 48842 + 3000
    assert reg.versions('adult-income')['version'].max() == before + 1 == m['stages']['deploy']['glued']['version']

def test_usage_errors_exit_2_and_run_nothing(tmp_path):
    d = tmp_path                                         # refused before the registry is opened: no model needed
    batch(15).to_csv(tmp_path/'new.csv', index=False)
    r = mlnb('monitor', '--model', 'adult-income', '--registry', d/'registry', '--runs-dir', tmp_path/'monitor')   # no batch at all
    assert r.returncode == USAGE and 'give the new batch with --data FILE or --log' in r.stderr, r.stdout + r.stderr
    (tmp_path/'list.yaml').write_text('- 1\n')
    r, g = monitor(d, tmp_path/'new.csv', tmp_path, '--params', tmp_path/'list.yaml')
    assert r.returncode == USAGE and 'must be a mapping of monitor parameters' in r.stderr and g is None, r.stdout + r.stderr
    r, g = monitor(d, tmp_path/'new.csv', tmp_path, '--drift-share=0.1')   # not an option of mlnb monitor (a loose '0.1' would read as the history word)
    assert r.returncode == USAGE and 'unrecognized arguments: --drift-share' in r.stderr and g is None, r.stdout + r.stderr
    assert not (tmp_path/'monitor').exists()

def test_a_batch_or_model_that_is_not_there_fails_the_stage(small_run, tmp_path):
    _, _, d = small_run
    r, g = monitor(d, tmp_path/'no-such-batch.csv', tmp_path)
    assert r.returncode == FAILED and 'no-such-batch.csv' in r.stdout + r.stderr and g is not None, r.stdout + r.stderr
    batch(15).to_csv(tmp_path/'new.csv', index=False)
    r = mlnb('monitor', '--model', 'no-such-model', '--registry', d/'registry', '--data', tmp_path/'new.csv', '--runs-dir', tmp_path/'monitor')
    assert r.returncode == FAILED and 'no-such-model' in r.stdout + r.stderr, r.stdout + r.stderr

def test_a_missing_params_file_is_a_usage_error(tmp_path):
    d = tmp_path
    batch(15).to_csv(tmp_path/'new.csv', index=False)
    r, g = monitor(d, tmp_path/'new.csv', tmp_path, '--params', tmp_path/'no-such.yaml')
    assert r.returncode == USAGE and 'no-such.yaml' in r.stderr and 'Traceback' not in r.stderr and g is None, r.stdout + r.stderr

def test_drift_alone_does_not_retrain(small_run, tmp_path):
    "Drift with `--retrain` in a column the model barely uses (fnlwgt × 1.6), on a batch without labels: an alert (exit 3), estimated performance held, no retraining."
    _, _, d = small_run
    batch(16).drop(columns=['income']).assign(fnlwgt=lambda df: df['fnlwgt'] * 1.6).to_csv(tmp_path/'new.csv', index=False)
    (tmp_path/'strict.yaml').write_text(yaml.safe_dump({'drift_share': 0.05}))
    train = write_params(tmp_path/'train.yaml', small_params())
    r, g = monitor(d, tmp_path/'new.csv', tmp_path, '--params', tmp_path/'strict.yaml', '--retrain', '--train-params', train, '--train-runs-dir', tmp_path/'runs')
    assert r.returncode == DRIFT and g['share_drift'] and g['drifted_columns'] == ['fnlwgt'] and not g['performance_alert'], r.stdout + r.stderr
    assert 'retrain: not triggered' in r.stdout and 'drift alone does not retrain' in r.stdout and 'estimated performance held' in r.stdout, r.stdout
    assert not (tmp_path/'runs').exists()
