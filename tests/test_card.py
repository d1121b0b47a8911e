"The model card (issue 22.5): each registered version's card.md and card.html in the Model Card Toolkit's sections, filled from the run."
import contextlib, hashlib, io, json
import pandas as pd
from conftest import ROOT
from mlnb.cli import main

def section(card: str, title: str) -> str:
    "The text of the card's `## title` section."
    return card.split(f'\n## {title}\n', 1)[1].split('\n## ', 1)[0]

def test_the_small_runs_card(small_run):
    from mlnb.registry import Registry
    _, run_dir, d = small_run
    m = json.loads((run_dir/'run.json').read_text()); st = {n: s['glued'] for n, s in m['stages'].items()}
    mv = Registry(d/'registry').load(f"adult-income@{st['deploy']['version']}"); card = mv.card
    assert card.startswith(f"# Model card: adult-income v{mv.version}\n")
    det = section(card, 'Model details')
    for s in [f"| version | {mv.version} |", f"| date | {mv.meta['created']} |", '(`LogisticRegression`)', '`C=1.0`', f"| run | `{run_dir.name}` |",
              f"| git commit | `{m['git']['commit']}`", 'positive class `>50K`']:
        assert s in det, s
    assert section(card, 'Intended use').strip().startswith('*Not stated: fill this in.* Set the deploy parameter `intended_use`')
    data = section(card, 'Training and evaluation data')
    assert f"sha256 `{hashlib.sha256((ROOT/'data'/'adult.csv.gz').read_bytes()).hexdigest()}`" in data and f"sha256 `{m['stages']['ingest']['data']['data/adult.csv.gz']}`" in data
    assert '3,000 rows read, 3,000 kept, 0 rejected' in data and 'duplicate rows 0' in data
    assert f"{st['prepare']['n_train']:,} training rows (sha256 `{m['stages']['prepare']['artifacts']['train']['sha256']}`)" in data
    ev = st['evaluate']
    assert f"| roc_auc | {ev['roc_auc']:.4f} | {ev['roc_auc_ci'][0]:.4f} to {ev['roc_auc_ci'][1]:.4f} |" in section(card, 'Metrics')
    sl = section(card, 'Slices'); male = next(r for r in ev['slice_table'] if r['slice'] == 'Male')
    assert f"| gender | Male | {male['n']:,} | {male['roc_auc']:.4f} | {male['low']:.4f} to {male['high']:.4f} |" in sl and len(sl.splitlines()) >= len(ev['slice_table']) + 4
    assert f"Expected calibration error {ev['ece']:.4f}, Brier score {ev['brier']:.4f}" in section(card, 'Calibration') and '| 10 |' in section(card, 'Calibration')
    top = st['explain']['top_features'][0]
    assert f"| {top['feature']} | {top['mean_abs_shap']:.4f} |" in section(card, 'Explanation')
    cav = section(card, 'Caveats'); small = [r for r in ev['slice_table'] if r['n'] < ev['slice_spec']['min_rows']]
    assert small and all(f"{r['column']} = {r['slice']} ({r['n']} rows)" in cav for r in small) and 'check the slices' in cav
    gate = section(card, 'Gate decision')
    assert gate.strip().startswith('**Passed** → `production`') and f"roc_auc at least 0.85 (this version {ev['roc_auc']:.4f})" in gate
    page = mv.card_html
    assert 'card.html' in mv.files and '<h2>Slices</h2>' in page and '<td>gender</td>' in page
    assert '<script' not in page and 'src=' not in page and 'href=' not in page                # self-contained
    out = io.StringIO()
    with contextlib.redirect_stdout(out): rc = main(['models', 'card', f'adult-income@{mv.version}', '--registry', str(d/'registry')])
    assert rc == 0 and out.getvalue() == card + '\n'

def test_intended_use_and_caveats_are_written_in(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from mlnb.registry import Registry, model_card
    X = pd.DataFrame({'x': [0., 1, 2, 3]}); y = ['a', 'a', 'b', 'b']
    facts = dict(name='toy', model='linear', task='binary', target='y', positive='b', metrics={'roc_auc': 1.0}, intended_use='Ranking leads for the sales team; not for credit decisions.',
                 caveats=['Trained on four rows.'], rare_classes={'c': 'other'}, leakage_flagged=['leaky'], dropped=['id'], gate=dict(passed=True, reasons=[]))
    reg = Registry(tmp_path/'registry', audit=tmp_path/'audit.jsonl')
    v = reg.register('toy', LogisticRegression().fit(X, y), schema={'x': {}}, reference=X, metrics={'roc_auc': 1.0}, card=lambda meta: model_card(facts, meta))
    mv = reg.load(f'toy@{v}'); cav = section(mv.card, 'Caveats')
    assert mv.card.startswith('# Model card: toy v1') and section(mv.card, 'Intended use').strip().startswith('Ranking leads for the sales team; not for credit decisions.')
    assert '- Trained on four rows.' in cav and '`c` → `other`' in cav and '`leaky`' in cav and 'excluded from the inputs: `id`' in cav
    assert sorted(mv.files) == ['card.html', 'card.md', 'meta.json', 'metrics.json', 'model.skops', 'reference.parquet', 'schema.json']
    assert 'No slices measured' in mv.card and 'No explain stage ran.' in mv.card and '<p>Ranking leads' in mv.card_html
