"""Plan finders, installed as ``cosma.solvers``: baselines, MILP, CP-SAT, decomposition."""
