"""The space of samples: evaluation nodes (:mod:`.nodes`), exact counting, counter-based
random draws (:mod:`.draws`), seeded permutations (:mod:`.permutation`) and trace entries
(:mod:`.trace`). The language compiles templates into this; samplers read from it."""
