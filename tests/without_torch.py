"""Code that makes torch and funasr unimportable, run first in a fresh process or kernel, as in a
kernel with only the [onnx] extra (the test process itself has them imported already)."""

WITHOUT_TORCH = """
import sys
class Unimportable:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "funasr", "torchaudio", "modelscope"):
            raise ImportError(f"{name} is not installed in this kernel (blocked by the test)")
        return None
sys.meta_path.insert(0, Unimportable())
"""
