"""A simulated online A/B on the synthetic world: a canary that wins offline AUC and loses online CTR."""
