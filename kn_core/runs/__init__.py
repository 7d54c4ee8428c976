"""The runs room: the result store (storage only), the one read-through attribution
(:func:`kn_core.runs.cached.attributions`), batches and their executors (local, Ray).

May import everything below it (method, attribution, model, data); never the app.
"""
