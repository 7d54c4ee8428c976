"""The two bundled demo models (``assets/models/demo-mlm``, ``assets/models/demo-clm``) and how they are made.

Tiny BERT and GPT-2 models trained from scratch on sentences built from the bundled fact set, so that they
know its facts in English and Chinese. Rebuild them with ``python -m kn_core.demo train``:

- :mod:`~kn_core.demo.corpus`: the training sentences (train templates only; code-switched and bridge
  sentences for cross-lingual sharing);
- :mod:`~kn_core.demo.tokenizer`: the shared WordPiece vocabulary and the two tokenizers;
- :mod:`~kn_core.demo.train`: :class:`TrainConfig` and the seeded, deterministic training loop;
- :mod:`~kn_core.demo.card`: the model cards (README.md) with the measured accuracy.
"""
