"Chunks of a batch (by a date column's period or by rows), chunks of the reference, and bands calibrated on them (issue 21.1-2)."
import numpy as np, pandas as pd, pytest
from mlnb.chunks import (as_dates, band, bands, chunk_batch, chunk_by_period, chunk_by_size, judge, median_rows, metric_side,
                         plot_chunks, reference_chunks)
from mlnb.core import MlnbError
from mlnb.ingest import demo_data

@pytest.fixture(scope='module')
def dated():
    "2,000 Adult rows with a date as text over January to April 2024, in no particular order, and 4,000 others as the reference."
    d = demo_data(6000, seed=4)
    days = pd.date_range('2024-01-01', '2024-04-30', freq='D')
    batch = d.iloc[4000:].assign(day=np.random.default_rng(0).choice(days, 2000).astype('datetime64[ns]').astype(str))
    return d.iloc[:4000], batch

def test_chunk_by_month_week_quarter(dated):
    _, batch = dated
    months = chunk_by_period(batch, 'day', 'month')
    assert [k for k, _ in months] == ['2024-01', '2024-02', '2024-03', '2024-04']
    assert sum(len(f) for _, f in months) == len(batch) and sorted(np.concatenate([f.index for _, f in months])) == sorted(batch.index)
    assert all(f.day.str.startswith(k).all() for k, f in months)
    assert abs(len(months[1][1]) - 2000 * 29 / 121) < 60                   # February: its share of the days
    weeks = chunk_batch(batch, 'day', 'week')
    assert weeks[0][0] == '2024-W01' and weeks[-1][0] == '2024-W18' and len(weeks) == 18 and [k for k, _ in weeks] == sorted(k for k, _ in weeks)
    assert [k for k, _ in chunk_batch(batch, chunk_by='day', period='quarter')] == ['2024-Q1', '2024-Q2']
    around = pd.DataFrame({'when': ['2025-12-31 23:00', '2026-01-01', '2026-01-05', '2024-12-30']})
    assert [(k, len(f)) for k, f in chunk_by_period(around, 'when', 'week')] == [('2025-W01', 1), ('2026-W01', 2), ('2026-W02', 1)]   # ISO weeks
    assert median_rows(months) == int(np.median([len(f) for _, f in months]))

def test_dates_that_do_not_parse_are_named(dated):
    _, batch = dated
    bad = batch.copy(); bad.loc[bad.index[[3, 7]], 'day'] = ['31/02/2024', 'next week']
    with pytest.raises(MlnbError, match=r"column 'day' has 2 value\(s\) that do not read as dates, such as \['31/02/2024', 'next week'\]"):
        chunk_batch(bad, 'day', 'month')
    gap = batch.copy(); gap.loc[gap.index[:5], 'day'] = None
    with pytest.raises(MlnbError, match=r"column 'day' has no date in 5 row\(s\)"): chunk_batch(gap, 'day', 'month')
    with pytest.raises(MlnbError, match="column 'age' holds numbers"): chunk_batch(batch, 'age', 'month')
    with pytest.raises(MlnbError, match="no column 'date' to chunk by"): chunk_batch(batch, 'date', 'month')
    with pytest.raises(MlnbError, match=r"period 'day' is not one of \['week', 'month', 'quarter'\]"): chunk_batch(batch, 'day', 'day')
    with pytest.raises(MlnbError, match='needs both a column and a period'): chunk_batch(batch, period='month')
    offsets = pd.DataFrame({'t': ['2024-03-31T23:30:00+02:00', '2024-04-01T00:30:00-05:00']})
    assert [k for k, _ in chunk_by_period(offsets, 't', 'month')] == ['2024-03', '2024-04']   # offsets that differ: brought to UTC

def test_chunk_by_size_merges_or_keeps_the_rest(dated):
    _, batch = dated
    merged = chunk_by_size(batch, 600)
    assert [(k, len(f)) for k, f in merged] == [('rows 0–599', 600), ('rows 600–1199', 600), ('rows 1200–1999', 800)]
    kept = chunk_by_size(batch, 600, last='keep')
    assert [(k, len(f)) for k, f in kept][-1] == ('rows 1800–1999 (partial)', 200)
    assert pd.concat([f for _, f in kept]).index.equals(batch.index)       # rows in their order, index kept
    assert [k for k, _ in chunk_batch(batch)] == ['rows 0–1999'] and [k for k, _ in chunk_batch(batch, chunk_size=500)][-1] == 'rows 1500–1999'
    with pytest.raises(MlnbError, match="last='drop' is not 'merge' or 'keep'"): chunk_by_size(batch, 600, last='drop')
    with pytest.raises(MlnbError, match='whole number of rows'): chunk_batch(batch, chunk_size=2.5)
    with pytest.raises(MlnbError, match='not both'): chunk_batch(batch, 'day', 'month', chunk_size=500)

def test_reference_chunks_and_their_rest(dated):
    ref, _ = dated
    rc = reference_chunks(ref, 500, n=20, seed=1)
    assert len(rc) == 20 and [k for k, _, _ in rc[:3]] == ['reference 1', 'reference 2', 'reference 3']
    for _, chunk, rest in rc:
        assert len(chunk) == 500 and len(rest) == 3500 and chunk.index.intersection(rest.index).empty
    assert all(rc[i][1].index.intersection(rc[j][1].index).empty for i in range(8) for j in range(i + 1, 8))   # one shuffle: 8 disjoint chunks
    assert not rc[8][1].index.equals(rc[0][1].index)                                                          # then a fresh shuffle
    assert [c.index.tolist() for _, c, _ in reference_chunks(ref, 500, n=5, seed=1)] == [c.index.tolist() for _, c, _ in rc[:5]]
    with pytest.raises(MlnbError, match='the reference has 4,000 rows, too few for chunks of 2,500 rows'): reference_chunks(ref, 2500)

def test_band_of_chunk_means_matches_sampling_noise():
    "The band of a chunk's mean is the sampling noise of a mean: 3·σ·√(1/m + 1/(R−m)) for chunks of m against the rest of R."
    x = pd.DataFrame({'x': np.random.default_rng(0).normal(size=20000)})
    rows = pd.DataFrame([dict(chunk=k, reference=True, n=len(c), column='x', metric='mean_gap', value=c.x.mean() - r.x.mean())
                         for k, c, r in reference_chunks(x, 400, n=60)])
    lo, up = band(rows.value, side=metric_side('mean_gap'))
    expected = 3 * np.sqrt(1 / 400 + 1 / 19600)
    assert abs(up - expected) < 0.2 * expected and abs(-lo - expected) < 0.2 * expected, (lo, up, expected)
    new = pd.DataFrame(dict(chunk=['same', 'moved'], reference=False, n=400, column='x', metric='mean_gap', value=[0.02, 0.3]))
    judged = judge(pd.concat([rows, new], ignore_index=True), bands(rows))
    assert judged[~judged.reference].alert.tolist() == [False, True] and judged[judged.reference].alert.sum() <= 1
    assert metric_side('roc_auc') == 'lower' and np.isnan(band(rows.value, side='lower')[1])
    with pytest.raises(MlnbError, match="band side 'up' is not"): band(rows.value, side='up')

def test_month_chunks_judged_against_the_reference(dated):
    "Chunk a dated batch by month, calibrate on reference chunks of the median month's size: only the month whose ages moved alerts."
    from mlnb.drift import calibrate_drift, chunk_drift, drift_alerts
    ref, batch = dated
    batch = batch.assign(age=batch.age + 15 * batch.day.str.startswith('2024-03'))
    months = chunk_batch(batch, 'day', 'month')
    cal = calibrate_drift(ref, median_rows(months), columns=['age', 'workclass', 'hours-per-week', 'education'], multivariate=False)
    frame = chunk_drift(cal, months)
    a = drift_alerts(frame)
    assert a.chunk.tolist() == ['2024-01', '2024-02', '2024-03', '2024-04'] and a.alert.tolist() == [False, False, True, False]
    assert a.drivers[2] == ['age']
    fig = plot_chunks(frame, 'age', title='age per month')
    ax = fig.axes[0]
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ('age per month', 'chunk', 'wasserstein')
    assert [t.get_text() for t in ax.get_xticklabels()] == ['2024-01', '2024-02', '2024-03', '2024-04']
    assert len(ax.patches) == 1 and ax.patches[0].get_label() == 'reference chunks (100)'   # the reference shaded
    assert len(plot_chunks(frame, 'jensenshannon').axes[0].lines) == 2                      # a line per category column, no band
    with pytest.raises(MlnbError, match="nothing called 'salary'"): plot_chunks(frame, 'salary')
