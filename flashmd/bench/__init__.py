"""Benchmarks behind ``flashmd bench``: a tool of the command line, not of the engine.

Each module times one part of the system and prints a table; none of the engine's packages
(``data``, ``models``, ``train``, ``md``, ``analysis``) imports this one.

- :mod:`~flashmd.bench.speed`: ``flashmd bench speed``, simulated ps per wall second of flashmd
  against velocity Verlet on its energy model and the reference calculator's MD;
- :mod:`~flashmd.bench.rollout`: ``flashmd bench rollout``, throughput of the batched engine and
  of the ASE drop-in;
- :mod:`~flashmd.bench.generator`: ``flashmd bench storage|workers|calculators``, the reference
  generator's store overhead, its workers' scaling and the cost of each reference calculator;
- :mod:`~flashmd.bench.evaluate`: ``flashmd bench evaluate``, wall time and peak memory of
  ``flashmd evaluate``;
- :mod:`~flashmd.bench.train_memory`: ``flashmd bench train-memory``, training's peak memory
  against store size.
"""
