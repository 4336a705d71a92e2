"""DeepClassify's end-to-end benchmark: ``make bench`` (``python -m bench.run``).

One run measures, on the same real photos, the exported model called
in-process (the ceiling), the gateway under gunicorn in front of the model
server (ours), and a minimal Flask app calling Keras in-process (the
baseline), then prints the issue's targets as met or not met.
"""
