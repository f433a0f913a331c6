"""Running an experiment: the planner groups samples into batches, an executor (local or
Ray) generates them with a backend, and the runner writes PNG files (with metadata) and
store rows, exactly once."""
