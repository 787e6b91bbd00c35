"""2-pass recognition: a streaming model's text while the speaker talks, then a segment
model's text for the closed segment, which replaces it (FunASR's runtime calls this
"2pass"). ``Transcriber(model="sensevoice-small", partials_model="paraformer-zh-streaming")``:
``model`` writes the transcript, ``partials_model`` only the partial line. Each final says
which model wrote it (``"model"``). Offline (``transcribe()``) the streaming pass is skipped.
"""

from __future__ import annotations

import numpy as np

from .base import Decoder, Engine


class TwoPassEngine(Decoder):
    streaming = True  # the pipeline streams the open segment into the first pass
    two_pass = True  # ... and decodes the closed one with the second

    def __init__(self, first: Engine, second: Engine):  # a streaming engine, then a segment one (torch or ONNX)
        self.first, self.second = first, second
        self.name, self.path, self.device = second.name, second.path, second.device
        self.architecture, self.model, self.options = second.architecture, second.model, second.options
        self.partials_name = first.name
        self.notes = (*first.notes, *second.notes)

    @property
    def gives_words(self) -> bool:
        return self.second.gives_words

    def new_stream(self):
        return self.first.new_stream()

    def accept(self, stream, samples: np.ndarray, final: bool = False) -> str:
        return self.first.accept(stream, samples, final)

    def transcribe(self, samples: np.ndarray) -> dict:
        return {**self.second.transcribe(samples), "model": self.second.name}

    def transcribe_batch(self, batch: list[np.ndarray]) -> list[dict | Exception]:
        """The second pass's batch; a segment that failed keeps its exception (that one only)."""
        results = self.second.transcribe_batch(batch)
        return [r if isinstance(r, Exception) else {**r, "model": self.second.name} for r in results]

    def close(self) -> None:
        self.first.close()
        self.second.close()

    def __repr__(self) -> str:
        return f"<TwoPassEngine partials: {self.first!r}, finals: {self.second!r}>"
