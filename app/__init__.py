"""The application layer, installed as ``cosma.app``: the ``cosma`` command line
(:mod:`cosma.app.cli`) and the runner behind ``cosma bench``, ``cosma sweep``,
:func:`cosma.sweep` and the benchmark scripts (:mod:`cosma.app.bench`).

It sits on top of everything: it may import the core (``cosma``), the graph sources
(``cosma.graphs``) and the plan finders (``cosma.solvers``); nothing below imports it at
import time.
"""
