"""The generated documents, so no figure in them is typed by hand: README.md's results block
(`readme`) and docs/results.md (`results`) from results/, docs/experiments.md's tables (`experiments`)
from the benchmark records in docs/results/; `markdown` holds the table and number formatting they share.

python -m sentiment.report           # rewrite them
python -m sentiment.report --check   # exit 1 if one is out of date
"""
