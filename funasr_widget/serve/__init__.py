"""The class server: Ray Serve replicas of the widget's own engine behind nginx.

    python -m funasr_widget.serve --model-path models/sensevoice-small --replicas 2 --port 8443

Modules, one concern each: ``wav`` (the only audio decoded), ``tokens`` (the students'
token file), ``deployment`` (the Recognizer replicas), ``app`` (the OpenAI-compatible
ingress), ``nginx`` (TLS and limits in front), ``launcher`` (the command and the
lifecycle). Only ``launcher`` and ``nginx`` import without Ray.
"""

from .launcher import MAX_SECONDS, Launcher, free_port, main

__all__ = ["Launcher", "MAX_SECONDS", "free_port", "main"]
