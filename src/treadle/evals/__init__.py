"""Quality evaluation: eval suites (accuracy, coherence, safety), scorers, runner, classifiers and the gate.

One responsibility per module: ``suite`` (items and suite files), ``scorers`` (per-item checks),
``embedder`` (the offline sentence-embedding model), ``classifiers`` (refusal and toxicity),
``coherence`` (the coherence checks), ``builtin`` (loaders that read the bundled data/), ``client``
(OpenAI-compatible HTTP), ``runner`` (concurrent runs and result files), ``stats`` (intervals and
paired tests), ``gate`` (the pure validation gate); ``command`` and ``gate_command`` are the CLI.
"""
