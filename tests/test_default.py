"The default pipeline on all 48,842 rows of the Adult data: the figure the README promises."
import json, re
import pytest, yaml
from conftest import ROOT, mlnb, write_params

NUM = r'(0\.\d+)'

def readme_roc_auc() -> list:
    """Each figure the README quotes for the default model's held-out ROC-AUC, as `(value, low, high)`: the Quick start
    sentence, the examples table row of params/default.yaml, and the intervals section's table row."""
    text = (ROOT/'README.md').read_text()
    found = [re.search(rf'held-out ROC-AUC of the default model is {NUM} \[{NUM}, {NUM}\]', text),
             re.search(rf'^\| `params/default\.yaml` \|.*\| ROC-AUC {NUM} \[{NUM}, {NUM}\] \|$', text, re.M),
             re.search(rf'^\| ROC-AUC \| {NUM} \[{NUM}, {NUM}\] \|$', text, re.M)]
    assert all(found), 'README.md no longer quotes the default ROC-AUC where this test reads it: ' + str([bool(f) for f in found])
    return [tuple(map(float, f.groups())) for f in found]

def test_readme_quotes_one_figure():
    figures = readme_roc_auc()
    assert len({tuple(round(x, 3) for x in f) for f in figures}) == 1, figures        # 0.9266 [0.9211, 0.9319] is 0.927 [0.921, 0.932]
    for value, low, high in figures: assert low < value < high

@pytest.mark.slow
def test_default_pipeline_roc_auc(tmp_path):
    p = yaml.safe_load((ROOT/'params'/'default.yaml').read_text())
    p['stages']['deploy']['params']['registry'] = str(tmp_path/'registry')    # not the project's registry
    r = mlnb('run', write_params(tmp_path/'default.yaml', p), '--runs-dir', tmp_path/'runs')
    assert r.returncode == 0, r.stdout + r.stderr
    m = json.loads(next((tmp_path/'runs').glob('*/run.json')).read_text())
    ev = m['stages']['evaluate']['glued']
    assert m['stages']['ingest']['glued']['rows'] == 48842 and ev['n'] > 9000
    for value, low, high in readme_roc_auc():                                  # inside the README's 95% interval, as precise as it is quoted
        assert low <= ev['roc_auc'] <= high, (ev['roc_auc'], f'README: {value} [{low}, {high}]')
    low, high = ev['roc_auc_ci']
    assert low < ev['roc_auc'] < high and high - low < 0.02, ev['roc_auc_ci']  # the run's own interval, as narrow as the README's
