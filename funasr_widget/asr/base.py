"""What every ASR engine has: the loaded funasr AutoModel and where it came from."""

from __future__ import annotations

import threading
from pathlib import Path


class Engine:
    streaming: bool

    def __init__(self, model, *, name: str, path: Path, device: str, architecture: str,
                 options: dict):
        self.model = model  # the funasr AutoModel, for direct generate() calls
        self.name, self.path, self.device = name, path, device
        self.architecture = architecture  # the model class in config.yaml
        self.options = options
        self._lock = threading.Lock()  # AutoModel.generate rewrites the model's kwargs per call

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.architecture}) on {self.device}>"
