"""What Transform and Trainer run: features, preprocessing, model, baselines."""
