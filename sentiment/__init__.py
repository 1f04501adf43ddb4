"""The sentiment pipeline's library: data, models, training, evaluation, attribution, export, reporting and the CLI."""
