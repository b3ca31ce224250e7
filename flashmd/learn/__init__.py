"""Learning from the model's own states: selection of uncertain rollout states, reference
continuations from them and retraining, as one resumable loop (``flashmd learn``). The signal
itself, the stride self-consistency, lives with the stride engine (:mod:`flashmd.md.consistency`).
This package calls data/, train/ and md/; none of them imports it."""
