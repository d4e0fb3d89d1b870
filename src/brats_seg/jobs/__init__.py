"""Jobs that span the stages: a training run (train, evaluate, record). Commands call these."""
