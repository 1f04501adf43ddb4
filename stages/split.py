"""split: source dataset -> stratified train/dev/test with stable ids and a leakage report.

python -m stages.split <dataset key>
"""

import sys

from sentiment.config import UserError
from sentiment.data.hub import load_source
from sentiment.data.splitting import SplitConfig, drop_leaked, find_leakage, make_splits, split_report, untracked_source_warning
from sentiment.io import write_csv, write_parquet, write_results
from sentiment.paths import SPLITS, data_dir
from sentiment.stage import Run, run_stage


def main(run: Run) -> None:
    cfg, ds = run.section(SplitConfig, "split"), run.dataset
    if warning := untracked_source_warning(ds.source, run.key):
        print(warning, file=sys.stderr)
    splits = make_splits(load_source(ds.source), ds, cfg)
    leaks = find_leakage(splits)
    dropped = drop_leaked(splits, leaks) if cfg.drop_leaked else {"train": 0, "dev": 0}
    for name in SPLITS:
        if splits[name].empty:
            raise UserError(f"split {name!r} of dataset {run.key!r} is empty")
    out = data_dir(run.key, "split")
    for name in SPLITS:
        write_parquet(splits[name].reset_index(drop=True), out / f"{name}.parquet")
    write_csv(leaks, out / "leakage.csv")
    report = split_report(splits, leaks, dropped, ds.labels)
    headline = {
        "rows": sum(r["rows"] for r in report["splits"].values()),
        "dropped": sum(report["duplicates_dropped"].values()),
    }
    write_results(run.key, "split", report, headline)
    rows = ", ".join(f"{n}={c['rows']}" for n, c in report["splits"].items())
    print(f"[split:{run.key}] {rows}; leaked rows dropped {dropped}")


if __name__ == "__main__":
    run_stage(main, __doc__)
