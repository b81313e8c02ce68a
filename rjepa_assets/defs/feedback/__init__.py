"""User feedback → validated training data: the `interactions` asset [dataset_version]."""
