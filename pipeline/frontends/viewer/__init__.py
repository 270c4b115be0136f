"""`panst3r-splat view`: the viser viewer of fitted scenes, predictions folders and ns-train runs (see design.md)."""
